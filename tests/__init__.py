"""freshtoken test suite."""
