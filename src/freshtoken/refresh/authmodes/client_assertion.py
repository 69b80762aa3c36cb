"""``token_request_auth_method: private_key_jwt`` for client credentials (Okta and the like).

As Nango's ``getOauthClientCredentials``: the connection's ``client_private_key`` is a JWK (JSON)
RSA private key; the assertion is RS256 with the JWK's ``kid``, ``iss = sub = client_id``,
``aud`` = the token URL, ``exp`` = now + 300 s and a ``jti`` UUID, sent as ``client_assertion``
with ``client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer``.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric import rsa

from freshtoken.refresh.authmodes.jws import sign
from freshtoken.refresh.grants import PERMANENT, GrantError

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _int(jwk: dict[str, Any], name: str) -> int:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise ValueError(name)
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


def rsa_key_from_jwk(jwk_json: str) -> tuple[rsa.RSAPrivateKey, str | None]:
    """An RSA private key (and its ``kid``) from a JWK; ValueError if it is not one."""
    jwk = orjson.loads(jwk_json)
    if not isinstance(jwk, dict) or jwk.get("kty") != "RSA":
        raise ValueError("not an RSA JWK")
    public = rsa.RSAPublicNumbers(_int(jwk, "e"), _int(jwk, "n"))
    numbers = rsa.RSAPrivateNumbers(
        p=_int(jwk, "p"),
        q=_int(jwk, "q"),
        d=_int(jwk, "d"),
        dmp1=_int(jwk, "dp"),
        dmq1=_int(jwk, "dq"),
        iqmp=_int(jwk, "qi"),
        public_numbers=public,
    )
    kid = jwk.get("kid")
    return numbers.private_key(), kid if isinstance(kid, str) else None


def client_assertion_params(
    client_id: str, private_jwk: str | None, audience: str, now: dt.datetime
) -> dict[str, str]:
    """The form fields that authenticate the client with a signed assertion."""
    if not private_jwk:
        raise GrantError(PERMANENT, "missing_client_private_key")
    try:
        key, kid = rsa_key_from_jwk(private_jwk)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise GrantError(PERMANENT, "invalid_client_private_key_format") from None
    issued = int(now.timestamp())
    payload = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": issued,
        "exp": issued + 300,
        "jti": str(uuid.uuid4()),
    }
    header = {"kid": kid} if kid else {}
    return {
        "client_id": client_id,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": sign(payload, key, "RS256", header),
    }
