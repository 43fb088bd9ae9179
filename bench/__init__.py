"""The throughput benchmark: `python -m bench` (see the README, "Throughput and rate limits")."""
