"""The wire format of Nango's auth webhooks: body, key-sorted serialisation, signatures.

Nango serialises with keys sorted recursively and no whitespace, keeps ``null`` and drops absent
keys, and signs the exact bytes it POSTs: ``X-Nango-Hmac-Sha256`` is the hex HMAC-SHA256 of the
body, ``X-Nango-Signature`` (legacy) the hex SHA-256 of key + body. Receivers verify the raw body,
so the bytes built here are stored in the outbox and POSTed unchanged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from freshtoken.store.models import Connection

CREATION = "creation"
OVERRIDE = "override"
REFRESH = "refresh"
OPERATIONS = (CREATION, OVERRIDE, REFRESH)

EVENT_ID_HEADER = "X-Freshtoken-Event-Id"
ATTEMPT_HEADER = "X-Freshtoken-Delivery-Attempt"


def auth_body(
    conn: Connection,
    *,
    operation: str,
    success: bool,
    environment: str,
    error: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The body of an auth webhook about ``conn`` (Nango's ``NangoAuthWebhookBody``).

    ``error`` ({type, description}) only on failures; ``endUser`` only on a successful creation
    or override of a connection that has an end user, as Nango sends it.
    """
    body: dict[str, Any] = {
        "from": "nango",
        "type": "auth",
        "connectionId": conn.connection_id,
        "providerConfigKey": conn.provider_config_key,
        "authMode": conn.credentials_type or "NONE",
        "provider": conn.provider or "unknown",
        "environment": environment,
        "operation": operation,
        "success": success,
        "tags": dict(conn.tags or {}),
    }
    if not success:
        body["error"] = dict(error or {"type": "unknown_error", "description": ""})
    end_user = conn.end_user
    if success and operation in (CREATION, OVERRIDE) and isinstance(end_user, dict):
        user: dict[str, Any] = {
            "endUserId": end_user.get("id"),
            "endUserEmail": end_user.get("email"),
            "tags": dict(end_user.get("tags") or {}),
        }
        organization = end_user.get("organization")
        if isinstance(organization, dict) and organization.get("id"):
            user["organizationId"] = organization["id"]
        body["endUser"] = user
    return body


def serialize(body: dict[str, Any]) -> bytes:
    """Nango's stable stringify: keys sorted recursively, compact, UTF-8, ``null`` kept."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def signature_headers(key: str, body: bytes) -> dict[str, str]:
    """``X-Nango-Signature`` (SHA-256 of key + body) and ``X-Nango-Hmac-Sha256`` (HMAC)."""
    return {
        "X-Nango-Signature": hashlib.sha256(key.encode() + body).hexdigest(),
        "X-Nango-Hmac-Sha256": hmac.new(key.encode(), body, hashlib.sha256).hexdigest(),
    }
