"""ORM rows → the public JSON shapes, and the orjson response class.

Handlers return :class:`JSONBytesResponse` with plain dicts built here: one orjson call per
response and no pydantic round-trip on the hot read path. The shapes match the response models in
:mod:`freshtoken.api.schemas`, which only document them.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse

from freshtoken.providers.catalog import ProviderSpec
from freshtoken.store.credentials import iso, public_credentials, strip_refresh_tokens
from freshtoken.store.models import Connection, Integration


class JSONBytesResponse(JSONResponse):
    """A JSON response serialised with orjson."""

    def render(self, content: Any) -> bytes:
        """Serialise ``content`` (str keys only, as every API shape has)."""
        return orjson.dumps(content)


def connection_errors(conn: Connection, log_id: str | None = None) -> list[dict[str, str]]:
    """The connection's active errors: one ``auth`` error while a refresh failure stands."""
    current = log_id or conn.auth_error_log_id
    return [{"type": "auth", "log_id": current}] if current else []


def end_user(conn: Connection) -> dict[str, Any] | None:
    """The end user with every public key present."""
    raw = conn.end_user
    if not raw:
        return None
    org = raw.get("organization")
    return {
        "id": raw.get("id"),
        "email": raw.get("email"),
        "display_name": raw.get("display_name"),
        "tags": raw.get("tags"),
        "organization": (
            {"id": org.get("id"), "display_name": org.get("display_name")}
            if isinstance(org, dict)
            else None
        ),
    }


def connection_full(
    conn: Connection,
    credentials: dict[str, Any],
    *,
    include_refresh_token: bool,
    log_id: str | None = None,
) -> dict[str, Any]:
    """Nango's ``ApiPublicConnectionFull``.

    Unless ``include_refresh_token``, every refresh-token-like key is removed from the
    credentials (``raw`` included) and from ``connection_config``.
    """
    config = conn.connection_config or {}
    return {
        "id": conn.id,
        "connection_id": conn.connection_id,
        "provider_config_key": conn.provider_config_key,
        "provider": conn.provider,
        "errors": connection_errors(conn, log_id),
        "end_user": end_user(conn),
        "tags": conn.tags or {},
        "metadata": conn.metadata_,
        "connection_config": config if include_refresh_token else strip_refresh_tokens(config),
        "webhook_url_override": conn.webhook_url_override,
        "created_at": iso(conn.created_at),
        "updated_at": iso(conn.updated_at),
        "last_fetched_at": iso(conn.last_fetched_at),
        "credentials": (
            public_credentials(credentials, include_refresh_token=include_refresh_token)
            if credentials
            else {}
        ),
    }


def connection_denied(conn: Connection, log_id: str | None) -> dict[str, Any]:
    """The connection as shown in an ``invalid_credentials`` error: no credentials at all."""
    return connection_full(conn, {}, include_refresh_token=False, log_id=log_id)


def connection_list_item(conn: Connection) -> dict[str, Any]:
    """A connection in ``GET /connections`` (no credentials)."""
    return {
        "id": conn.id,
        "connection_id": conn.connection_id,
        "provider_config_key": conn.provider_config_key,
        "provider": conn.provider,
        "errors": connection_errors(conn),
        "end_user": end_user(conn),
        "tags": conn.tags or {},
        "metadata": conn.metadata_,
        "created": iso(conn.created_at),
    }


def integration(
    row: Integration,
    spec: ProviderSpec | None,
    *,
    credentials: dict[str, Any] | None = None,
    include_webhook: bool = False,
) -> dict[str, Any]:
    """A public integration; ``credentials`` is added only when given (``include=credentials``)."""
    out: dict[str, Any] = {
        "unique_key": row.unique_key,
        "provider": row.provider,
        "display_name": row.display_name or (spec.display_name if spec else row.provider),
        "logo": None,
        "forward_webhooks": False,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }
    if credentials is not None:
        out["credentials"] = credentials
    if include_webhook:
        out["webhook_url"] = None
    return out
