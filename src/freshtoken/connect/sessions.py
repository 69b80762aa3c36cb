"""Connect sessions: random tokens (stored as SHA-256), 30-minute lifetime, bound to integrations.

A session token is ``nango_connect_session_`` + 64 hex characters, as Nango's. Only its digest is
stored, so a copy of the database cannot be used to start flows. Finishing a flow does not
consume the session (Nango's behaviour); ``DELETE /connect/session`` or expiry ends it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from freshtoken.store import connect as queries
from freshtoken.store.models import ConnectSession

TOKEN_PREFIX = "nango_connect_session_"  # noqa: S105 - a public prefix, not a secret


def new_token() -> str:
    """A new session token: the prefix and 32 random bytes in hex."""
    return TOKEN_PREFIX + secrets.token_hex(32)


def digest(value: str) -> str:
    """SHA-256 hex of a token or state (what the database keeps)."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class SessionSpec:
    """What a new connect session carries (already validated)."""

    end_user: dict[str, Any] | None = None
    organization: dict[str, Any] | None = None
    allowed_integrations: list[str] | None = None
    integrations_config_defaults: dict[str, Any] | None = None
    tags: dict[str, str] | None = None
    webhook_url_override: str | None = None
    connection_id: str | None = None
    provider_config_key: str | None = None


def create_session(
    session: Session, spec: SessionSpec, *, now: dt.datetime, ttl_seconds: int
) -> tuple[ConnectSession, str]:
    """Insert a connect session and return it with its (only ever shown once) token."""
    token = new_token()
    row = ConnectSession(
        token_hash=digest(token),
        end_user=spec.end_user,
        organization=spec.organization,
        allowed_integrations=spec.allowed_integrations,
        integrations_config_defaults=spec.integrations_config_defaults,
        tags=spec.tags,
        webhook_url_override=spec.webhook_url_override,
        connection_id=spec.connection_id,
        provider_config_key=spec.provider_config_key,
        created_at=now,
        expires_at=now + dt.timedelta(seconds=ttl_seconds),
    )
    queries.add_connect_session(session, row)
    return row, token


def find_session(session: Session, token: str, *, now: dt.datetime) -> ConnectSession | None:
    """The live session for a token, or None (unknown, malformed or expired)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        return None
    row = queries.connect_session_by_token_hash(session, digest(token))
    if row is None or row.expires_at <= now:
        return None
    return row


def delete_session(session: Session, row: ConnectSession) -> None:
    """End a session and every flow it started (their states stop working at once)."""
    queries.delete_connect_session(session, row)


def purge_expired(session: Session, *, now: dt.datetime) -> None:
    """Delete expired connect sessions and authorization flows (called opportunistically)."""
    queries.purge_expired(session, now)


def connection_tags(row: ConnectSession) -> dict[str, str]:
    """The tags a connection made through this session gets, in Nango's order (later wins).

    ``end_user_id``/``_email``/``_display_name``, ``organization_id``/``_display_name``, then the
    end user's own tags, then the session's tags.
    """
    tags: dict[str, str] = {}
    user = row.end_user or {}
    org = row.organization or {}
    for key, value in (
        ("end_user_id", user.get("id")),
        ("end_user_email", user.get("email")),
        ("end_user_display_name", user.get("display_name")),
        ("organization_id", org.get("id")),
        ("organization_display_name", org.get("display_name")),
    ):
        if isinstance(value, str) and value:
            tags[key] = value
    for source in (user.get("tags"), row.tags):
        if isinstance(source, dict):
            tags.update({str(k).lower(): str(v) for k, v in source.items()})
    return tags


def connection_end_user(row: ConnectSession) -> dict[str, Any] | None:
    """The connection's ``end_user`` (the import API's shape), or None without one."""
    if not row.end_user:
        return None
    user = row.end_user
    out: dict[str, Any] = {
        "id": user.get("id"),
        "email": user.get("email"),
        "display_name": user.get("display_name"),
        "tags": user.get("tags"),
        "organization": None,
    }
    if row.organization:
        out["organization"] = {
            "id": row.organization.get("id"),
            "display_name": row.organization.get("display_name"),
        }
    return out


def integration_allowed(row: ConnectSession, provider_config_key: str) -> bool:
    """True when the session may create a connection for this integration."""
    if row.provider_config_key is not None and row.provider_config_key != provider_config_key:
        return False
    allowed = row.allowed_integrations
    return not allowed or provider_config_key in allowed


def config_defaults(row: ConnectSession | None, provider_config_key: str) -> dict[str, Any]:
    """The session's ``integrations_config_defaults`` for one integration ({} if none)."""
    if row is None or not row.integrations_config_defaults:
        return {}
    value = row.integrations_config_defaults.get(provider_config_key)
    return value if isinstance(value, dict) else {}
