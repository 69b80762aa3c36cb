"""The connect flow in a real browser (Debian Chromium, Nango's frontend SDK)."""
