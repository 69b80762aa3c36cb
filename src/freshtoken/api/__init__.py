"""The HTTP API: a Nango-compatible connections API served by FastAPI (see :func:`create_app`)."""

from __future__ import annotations

from freshtoken.api.app import create_app

__all__ = ["create_app"]
