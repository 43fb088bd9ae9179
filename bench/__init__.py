"""The throughput benchmark: `python -m bench` (see docs/bench.md)."""
