"""Helpers for tests/test_real_servers.py: real third-party servers, their configs and pins."""
