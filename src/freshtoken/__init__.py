"""freshtoken: a self-hosted OAuth credentials service that keeps every token fresh."""

__version__ = "0.1.0"
