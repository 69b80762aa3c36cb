"""Auth webhook tests."""
