"""Credential shapes: parsing expiries, the public form, and stripping refresh tokens.

Stored credentials are a dict with a ``type`` key (``OAUTH2``, ``OAUTH2_CC``, ``OAUTH1``,
``API_KEY``, ``BASIC``) and the fields Nango uses for that type; ``expires_at`` is an ISO string.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

CREDENTIAL_TYPES = (
    "OAUTH2",
    "OAUTH2_CC",
    "OAUTH1",
    "API_KEY",
    "BASIC",
    "TBA",
    "APP",
    "CUSTOM",
    "NONE",
    "JWT",
    "TWO_STEP",
    "BILL",
    "SIGNATURE",
)

# Values above this are read as milliseconds since the epoch (Nango: anything after 1971 in ms).
_MS_THRESHOLD = 10_000_000_000


def parse_datetime(value: Any) -> dt.datetime | None:
    """Parse an absolute expiry: ISO 8601 string, epoch seconds or milliseconds, or a datetime.

    Returns an aware UTC datetime, or None when the value is empty or unparseable.
    """
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if not math.isfinite(value) or value <= 0:
            return None
        seconds = value / 1000 if value > _MS_THRESHOLD else value
        try:
            return dt.datetime.fromtimestamp(seconds, dt.UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return parse_datetime(float(text))
        try:
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return None


def parse_expires_in(value: Any) -> float | None:
    """Parse a relative lifetime given as int, float or numeric string; None if absent or <= 0."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, int | float) and math.isfinite(value) and value > 0:
        return float(value)
    return None


def iso(value: dt.datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z`` suffix (millisecond precision), or None."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def expires_at_of(credentials: dict[str, Any]) -> dt.datetime | None:
    """The expiry stored in a credentials dict, if any.

    CUSTOM (GitHub App OAuth) has two parts: the earlier of the app's and the user's expiry,
    as Nango's ``getExpiresAtFromCredentials``.
    """
    if credentials.get("type") == "CUSTOM":
        parts = [credentials.get("app"), credentials.get("user")]
        expiries = [parse_datetime(p.get("expires_at")) for p in parts if isinstance(p, dict)]
        known = [e for e in expiries if e is not None]
        return min(known) if known else None
    return parse_datetime(credentials.get("expires_at"))


def has_refresh_token(credentials: dict[str, Any]) -> bool:
    """True when the credentials can be refreshed with a refresh-token grant."""
    return bool(credentials.get("refresh_token"))


def _is_refresh_token_key(key: str) -> bool:
    return re.sub(r"[^a-z]", "", key.lower()) == "refreshtoken"


def strip_refresh_tokens(value: Any) -> Any:
    """Remove, recursively, every key that normalises to ``refreshtoken`` (Nango's rule)."""
    if isinstance(value, dict):
        return {
            k: strip_refresh_tokens(v)
            for k, v in value.items()
            if not (isinstance(k, str) and _is_refresh_token_key(k))
        }
    if isinstance(value, list):
        return [strip_refresh_tokens(v) for v in value]
    return value


_PUBLIC_FIELDS: dict[str, tuple[str, ...]] = {
    "OAUTH2": ("type", "access_token", "refresh_token", "expires_at", "raw", "config_override"),
    "OAUTH2_CC": (
        "type",
        "token",
        "expires_at",
        "client_id",
        "client_secret",
        "client_certificate",
        "client_private_key",
        "raw",
    ),
    "OAUTH1": ("type", "oauth_token", "oauth_token_secret", "raw"),
    "API_KEY": ("type", "apiKey"),
    "BASIC": ("type", "username", "password"),
    # Nango's shapes, packages/types/lib/auth/api.ts. JWT and TWO_STEP carry provider-specific
    # keys, so they are served whole (no field list).
    "TBA": ("type", "token_id", "token_secret", "config_override"),
    "APP": ("type", "access_token", "expires_at", "raw", "jwtToken"),
    "CUSTOM": ("type", "app", "user", "raw"),
    "BILL": (
        "type",
        "username",
        "password",
        "organization_id",
        "dev_key",
        "session_id",
        "user_id",
        "expires_at",
    ),
    "SIGNATURE": ("type", "username", "password", "token", "expires_at"),
}


def public_credentials(
    credentials: dict[str, Any], *, include_refresh_token: bool
) -> dict[str, Any]:
    """The ``credentials`` object of the API response, shaped per type."""
    ctype = credentials.get("type", "")
    if ctype == "NONE":
        return {}  # Nango serves an unauthenticated connection's credentials as {}
    fields = _PUBLIC_FIELDS.get(ctype)
    out = (
        {k: credentials[k] for k in fields if k in credentials and credentials[k] is not None}
        if fields
        else dict(credentials)
    )
    if ctype in ("OAUTH2", "OAUTH2_CC", "OAUTH1", "APP", "CUSTOM", "TWO_STEP"):
        out.setdefault("raw", {})
    if ctype == "CUSTOM":
        out.setdefault("user", None)  # Nango: user is null until the user part exists
    return out if include_refresh_token else strip_refresh_tokens(out)
