"""Refresh engine unit tests."""
