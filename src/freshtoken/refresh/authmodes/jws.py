"""Compact JWS (JWT) signing with ``cryptography``: RS256, ES256 and HS256, nothing more.

Ten lines of base64url around ``cryptography``'s signers; PyJWT would add a dependency for it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


class SigningKeyError(ValueError):
    """The signing key is unusable (message never contains the key)."""


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def load_private_key(pem_or_base64: str) -> Any:
    """A PEM private key, also accepted base64-encoded (how Nango stores a GitHub App's key)."""
    text = pem_or_base64.strip().replace("\\n", "\n")
    if not text.startswith("-----BEGIN"):
        try:
            text = base64.b64decode(text, validate=True).decode("utf-8")
        except ValueError:
            raise SigningKeyError("private key is neither PEM nor base64-encoded PEM") from None
    try:
        return serialization.load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError):
        raise SigningKeyError("private key could not be loaded") from None


def sign(
    payload: Mapping[str, Any], key: Any, alg: str, header: Mapping[str, Any] | None = None
) -> str:
    """Sign ``payload`` as a compact JWS with ``alg`` (RS256, ES256 or HS256)."""
    head = {"alg": alg, "typ": "JWT", **(header or {})}
    signing_input = f"{b64url(orjson.dumps(head))}.{b64url(orjson.dumps(dict(payload)))}".encode()
    if alg == "RS256":
        if not isinstance(key, rsa.RSAPrivateKey):
            raise SigningKeyError("RS256 needs an RSA private key")
        signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "ES256":
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise SigningKeyError("ES256 needs an EC private key")
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    elif alg == "HS256":
        secret = key if isinstance(key, bytes) else str(key).encode()
        signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    else:
        raise SigningKeyError(f"unsupported JWT algorithm {alg!r}")
    return f"{signing_input.decode()}.{b64url(signature)}"


def unverified_claims(token: str) -> dict[str, Any] | None:
    """The payload of a compact JWS without verifying it (to read ``exp``), or None."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    return claims if isinstance(claims, dict) else None
