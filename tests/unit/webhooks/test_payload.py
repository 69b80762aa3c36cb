"""The wire format: Nango's body, key-sorted serialisation and both signature headers."""

from __future__ import annotations

import hashlib
import hmac
import json

from freshtoken.store.models import Connection
from freshtoken.webhooks.payload import auth_body, serialize, signature_headers

# The reference's own test vector (shared/reference/nango-connect-and-webhooks.md, section 4).
VECTOR_BODY = (
    b'{"authMode":"OAUTH2","connectionId":"c1","endUser":{"endUserEmail":null,"endUserId":"u1",'
    b'"tags":{}},"environment":"dev","from":"nango","operation":"creation","provider":"github",'
    b'"providerConfigKey":"github","success":true,"tags":{"end_user_id":"u1"},"type":"auth"}'
)
VECTOR_HMAC = "46cb71a1380b61c932d62ccd32abf700ba141897dfb70a971b3bdcf5ccb58b08"
VECTOR_LEGACY = "4ae2dd3d1dbb9b17d77820804ebcf6a3ae76bea4ecc721555fdb3217eca308bd"


def _conn(**fields: object) -> Connection:
    values: dict[str, object] = {
        "id": 1,
        "connection_id": "c1",
        "provider_config_key": "github",
        "provider": "github",
        "credentials_type": "OAUTH2",
        "tags": {"end_user_id": "u1"},
        "end_user": {"id": "u1", "email": None, "tags": {}},
    }
    values.update(fields)
    return Connection(**values)


def test_creation_body_serialises_to_the_reference_vector_and_signs_like_nango() -> None:
    """Body, key order and both signatures match the vector computed from Nango's code."""
    body = auth_body(_conn(), operation="creation", success=True, environment="dev")
    raw = serialize(body)
    assert raw == VECTOR_BODY
    headers = signature_headers("secret", raw)
    assert headers == {"X-Nango-Signature": VECTOR_LEGACY, "X-Nango-Hmac-Sha256": VECTOR_HMAC}
    # Independently: HMAC of the raw bytes, and SHA-256 of key + bytes.
    assert hmac.new(b"secret", raw, hashlib.sha256).hexdigest() == VECTOR_HMAC
    assert hashlib.sha256(b"secret" + raw).hexdigest() == VECTOR_LEGACY


def test_failure_body_has_error_and_no_end_user() -> None:
    """A refresh failure carries error{type, description}, tags, and no endUser."""
    error = {"type": "refresh_token_external_error", "description": "rejected"}
    body = auth_body(_conn(), operation="refresh", success=False, environment="prod", error=error)
    assert body["error"] == error
    assert body["success"] is False
    assert body["operation"] == "refresh"
    assert "endUser" not in body
    assert body["tags"] == {"end_user_id": "u1"}
    decoded = json.loads(serialize(body))
    assert list(decoded) == sorted(decoded)


def test_serialisation_sorts_nested_keys_and_keeps_unicode_and_null() -> None:
    """Nested keys are sorted, non-ASCII is sent as UTF-8 and null stays."""
    raw = serialize({"b": {"z": 1, "a": None}, "a": "é"})
    assert raw == '{"a":"é","b":{"a":null,"z":1}}'.encode()
