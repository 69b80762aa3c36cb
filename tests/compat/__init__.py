"""Compatibility tests: third-party clients driven against a live freshtoken API."""
