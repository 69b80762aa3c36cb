"""Nango's value templates for auth-mode requests: ``${key}`` from the stored credentials and
``${connectionConfig.key}`` from connection_config, as ``interpolateString`` and
``interpolateObjectValues`` do (packages/shared/lib/utils/utils.ts).

Plain and dotted keys, ``${now}``, ``${random}``, ``${base64(...)}``, ``${sha256Hex(...)}``,
``${sha256Base64(...)}`` and ``${fingerprint(...)}`` (Snowflake's public-key fingerprint,
``SHA256:`` + base64 of the SHA-256 of the key's SPKI DER) are understood, with Nango's patterns;
Nango's other helpers (``hmacSha1Hex``, ``awsSigV4``, ``ed25519Sign``) are not, and an entry
needing one fails its refresh with the permanent ``unsupported_template``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization

from freshtoken.refresh.authmodes.jws import SigningKeyError, load_private_key
from freshtoken.refresh.grants import PERMANENT, GrantError

_PLACEHOLDER = re.compile(r"\$\{([^{}]*)\}")
_HELPER = re.compile(r"\$\{[a-zA-Z0-9]+\(")
_FINGERPRINT = re.compile(r"\$\{fingerprint\((.*?)\)\}")  # Nango's own patterns
_DIGESTS: dict[re.Pattern[str], Callable[[bytes], str]] = {
    re.compile(r"\$\{base64\((.*?)\)\}"): lambda b: base64.b64encode(b).decode(),
    re.compile(r"\$\{sha256Hex\((.*?)\)\}"): lambda b: hashlib.sha256(b).hexdigest(),
    re.compile(r"\$\{sha256Base64\((.*?)\)\}"): lambda b: base64.b64encode(
        hashlib.sha256(b).digest()
    ).decode(),
}


def fingerprint(private_key_pem: str) -> str:
    """``SHA256:<base64>`` of a private key's public half (SPKI DER), as Nango's getFingerprint."""
    key = load_private_key(private_key_pem)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode()


def _lookup(key: str, values: Mapping[str, Any]) -> Any:
    if key in values:
        return values[key]
    node: Any = values
    for part in key.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            return None
    return node


def interpolate(
    text: str,
    credentials: Mapping[str, Any],
    connection_config: Mapping[str, Any],
    now: dt.datetime,
) -> str:
    """Fill ``${...}`` in one string; unresolved placeholders stay as they are (as in Nango)."""

    def fill_fingerprint(match: re.Match[str]) -> str:
        inner = interpolate(match.group(1), credentials, connection_config, now)
        try:
            return fingerprint(inner)
        except SigningKeyError:
            raise GrantError(PERMANENT, "invalid_private_key") from None

    for pattern, digest in _DIGESTS.items():

        def fill_digest(match: re.Match[str], digest: Callable[[bytes], str] = digest) -> str:
            return digest(interpolate(match.group(1), credentials, connection_config, now).encode())

        text = pattern.sub(fill_digest, text)
    text = _FINGERPRINT.sub(fill_fingerprint, text)
    if _HELPER.search(text):
        raise GrantError(PERMANENT, "unsupported_template")

    def substitute(match: re.Match[str]) -> str:
        key = match.group(1).strip()
        if key == "now":
            return now.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if key == "random":
            return str(uuid.uuid4())
        if key.startswith("connectionConfig."):
            value = _lookup(key[len("connectionConfig.") :], connection_config)
        else:
            value = _lookup(key.removeprefix("credentials."), credentials)
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value) if isinstance(value, str | int | float) else match.group(0)

    return _PLACEHOLDER.sub(substitute, text)


def interpolate_value(
    value: Any,
    credentials: Mapping[str, Any],
    connection_config: Mapping[str, Any],
    now: dt.datetime,
) -> Any:
    """Fill placeholders in a string, or in every string of a nested mapping or list."""
    if isinstance(value, str):
        return interpolate(value, credentials, connection_config, now)
    if isinstance(value, Mapping):
        return {
            str(k): interpolate_value(v, credentials, connection_config, now)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [interpolate_value(v, credentials, connection_config, now) for v in value]
    return value


def unresolved(value: Any) -> bool:
    """Whether a filled value still has a ``${...}`` placeholder anywhere."""
    if isinstance(value, str):
        return bool(_PLACEHOLDER.search(value))
    if isinstance(value, Mapping):
        return any(unresolved(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(unresolved(v) for v in value)
    return False
