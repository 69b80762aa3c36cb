"""JWT and SIGNATURE grants: tokens minted locally from the stored credentials (no provider call).

JWT follows Nango's ``packages/shared/lib/auth/jwt.ts`` ``createCredentials``: the entry's
``token.payload`` and ``token.header`` filled from the credentials and connection_config,
``iat``/``exp`` from ``token.expires_in_ms``, signed with ``token.signing_key`` per
``signature.protocol`` (RSA: RS256 PEM, EC: ES256 PEM, HMAC: HS256 with a hex secret unless
``hmac_secret_encoding: utf8``); Ghost's ``id:secret`` admin key is split as Nango does.
SIGNATURE follows ``signature.ts``: a WSSE ``UsernameToken`` (SHA-1 digest of nonce, created
time and password), valid ``token.expires_in_ms``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets
from collections.abc import Mapping
from typing import Any

from freshtoken.refresh.authmodes.context import AuthModeContext
from freshtoken.refresh.authmodes.jws import SigningKeyError, load_private_key, sign
from freshtoken.refresh.authmodes.templates import interpolate_value, unresolved
from freshtoken.refresh.grants import PERMANENT, GrantError
from freshtoken.store.credentials import iso

_ALGORITHMS = {"RSA": "RS256", "EC": "ES256", "HMAC": "HS256"}


def _token_spec(ctx: AuthModeContext) -> tuple[dict[str, Any], float]:
    token = ctx.spec.raw.get("token")
    if not isinstance(token, Mapping):
        raise GrantError(PERMANENT, "missing_token_body")
    lifetime_ms = token.get("expires_in_ms")
    if not isinstance(lifetime_ms, int | float) or lifetime_ms <= 0:
        raise GrantError(PERMANENT, "missing_token_body")
    return dict(token), float(lifetime_ms) / 1000


def refresh_jwt(ctx: AuthModeContext) -> tuple[dict[str, Any], bool]:
    """JWT: sign a new token from the entry's template and the stored credentials."""
    token_spec, lifetime = _token_spec(ctx)
    signature = ctx.spec.raw.get("signature") or {}
    protocol = signature.get("protocol")
    alg = _ALGORITHMS.get(str(protocol))
    if alg is None:
        raise GrantError(PERMANENT, "missing_signature_type")
    dynamic = {k: v for k, v in ctx.credentials.items() if k not in ("type", "token", "expires_at")}
    if ctx.spec.name.startswith("ghost-admin") and isinstance(dynamic.get("privateKey"), str):
        key_id, _, secret = dynamic["privateKey"].partition(":")
        dynamic["privateKey"] = {"id": key_id, "secret": secret}
    now = ctx.sent_at
    issued = int(now.timestamp())
    payload: dict[str, Any] = {}
    for claim, value in (token_spec.get("payload") or {}).items():
        filled = interpolate_value(value, dynamic, ctx.connection_config, now)
        if isinstance(filled, list):
            # Nango's resolvePayloadArray: resolved strings, split on commas, empties dropped;
            # the claim is left out when nothing resolved (apple-app-store's optional scope).
            items = [
                part.strip()
                for item in filled
                if isinstance(item, str) and not unresolved(item)
                for part in item.split(",")
                if part.strip()
            ]
            if items:
                payload[claim] = items
        elif not unresolved(filled):
            payload[claim] = filled
    payload.update({"iat": issued, "exp": issued + int(lifetime)})
    header = {
        k: v
        for k, v in interpolate_value(
            dict(token_spec.get("header") or {}), dynamic, ctx.connection_config, now
        ).items()
        if not unresolved(v)
    }
    signing_key = interpolate_value(
        token_spec.get("signing_key") or "", dynamic, ctx.connection_config, now
    )
    if not isinstance(signing_key, str) or not signing_key or unresolved(signing_key):
        raise GrantError(PERMANENT, "missing_credentials")
    try:
        if protocol == "HMAC":
            utf8 = signature.get("hmac_secret_encoding") == "utf8"
            key: Any = signing_key.encode() if utf8 else bytes.fromhex(signing_key)
        else:
            key = load_private_key(signing_key)
        token = sign(payload, key, str(header.get("alg") or alg), header)
    except (SigningKeyError, ValueError):
        raise GrantError(PERMANENT, "invalid_private_key") from None
    out = {k: v for k, v in ctx.credentials.items() if k not in ("token", "expires_at")}
    out.update(
        {"type": "JWT", "token": token, "expires_at": iso(now + dt.timedelta(seconds=lifetime))}
    )
    return out, False


def wsse_token(username: str, password: str, now: dt.datetime) -> str:
    """A WSSE UsernameToken header value, as Nango's ``generateWSSE``."""
    nonce = secrets.token_hex(16)
    created = now.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    digest_hex = hashlib.sha1((nonce + created + password).encode()).hexdigest()  # noqa: S324 - WSSE
    digest = base64.b64encode(digest_hex.encode()).decode()
    return (
        f'UsernameToken Username="{username}", PasswordDigest="{digest}", '
        f'Nonce="{nonce}", Created="{created}"'
    )


def refresh_signature(ctx: AuthModeContext) -> tuple[dict[str, Any], bool]:
    """SIGNATURE (WSSE): a new UsernameToken for the stored username and password."""
    _, lifetime = _token_spec(ctx)
    protocol = (ctx.spec.raw.get("signature") or {}).get("protocol")
    if protocol != "WSSE":
        raise GrantError(PERMANENT, "unsupported_signature_protocol")
    username, password = ctx.credentials.get("username"), ctx.credentials.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username:
        raise GrantError(PERMANENT, "missing_credentials")
    now = ctx.sent_at
    return {
        "type": "SIGNATURE",
        "username": username,
        "password": password,
        "token": wsse_token(username, password, now),
        "expires_at": iso(now + dt.timedelta(seconds=lifetime)),
    }, False
