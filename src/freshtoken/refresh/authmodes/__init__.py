"""Grants for Nango's auth modes beyond OAuth 2.0: one function per credentials type.

The refresh core (:mod:`freshtoken.refresh.service`) owns the lock, fencing, classification,
failure accounting and the ``token.refresh`` line; it dispatches here by ``credentials_type`` with
an :class:`AuthModeContext` and stores what comes back. Every HTTP call goes through
:func:`freshtoken.refresh.grants.send`, the same provider call the OAuth 2.0 grants use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from freshtoken.refresh.authmodes.context import AuthModeContext
from freshtoken.refresh.authmodes.github_app import refresh_app, refresh_custom
from freshtoken.refresh.authmodes.local import refresh_jwt, refresh_signature
from freshtoken.refresh.authmodes.sessions import refresh_bill, refresh_two_step

Grant = Callable[[AuthModeContext], tuple[dict[str, Any], bool]]

GRANTS: dict[str, Grant] = {
    "APP": refresh_app,
    "CUSTOM": refresh_custom,
    "JWT": refresh_jwt,
    "TWO_STEP": refresh_two_step,
    "BILL": refresh_bill,
    "SIGNATURE": refresh_signature,
}
"""Credentials type -> grant; each returns (new credentials, whether a refresh token rotated)."""

__all__ = ["GRANTS", "AuthModeContext", "Grant"]
