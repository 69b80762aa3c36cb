"""Creating connections: Nango's connect sessions and the browser authorization flows."""
