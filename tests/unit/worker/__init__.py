"""Proactive refresh worker unit tests: scan, tasks, rate limit."""
