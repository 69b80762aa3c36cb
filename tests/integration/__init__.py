"""Integration tests: they need the real PostgreSQL and Redis services."""
