"""The refresh engine: one correct refresh of one connection, however many callers ask at once."""
