# ruff: noqa: E501 - the providers YAML below keeps Nango's one-line URL templates.
"""Shared pieces of the auth-mode tests (issue #12): an RSA app key, a providers file with one
entry per auth mode pointing at the mock provider, and the Nango credential shapes."""

from __future__ import annotations

import functools
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

APP_ID = "424242"
INSTALLATION_ID = "38631545"

PROVIDERS_YAML = """
mock-github-app:
    display_name: GitHub App (mock)
    auth_mode: APP
    token_url: ${connectionConfig.api_base}/app/installations/${connectionConfig.installation_id}/access_tokens
mock-github-app-oauth:
    display_name: GitHub App OAuth (mock)
    auth_mode: CUSTOM
    token_url:
        OAUTH2: ${connectionConfig.api_base}/oauth/token
        APP: ${connectionConfig.api_base}/app/installations/${connectionConfig.installation_id}/access_tokens
mock-tba:
    auth_mode: TBA
mock-none:
    auth_mode: NONE
mock-jwt:
    auth_mode: JWT
    signature:
        protocol: HMAC
    token:
        signing_key: ${credentials.secret}
        expires_in_ms: 300000
        header:
            alg: HS256
        payload:
            iss: ${credentials.issuer}
mock-two-step:
    auth_mode: TWO_STEP
    token_url: ${connectionConfig.api_base}/two-step/token
    token_params:
        username: ${credentials.username}
        password: ${credentials.password}
    refresh_token_params:
        refresh_token: ${credentials.refresh_token}
    token_response:
        token: token
        refresh_token: refresh_token
        token_expiration: expires_in
        token_expiration_strategy: expireIn
mock-bill:
    auth_mode: BILL
    token_url: ${connectionConfig.api_base}/bill/login
mock-signature:
    auth_mode: SIGNATURE
    signature:
        protocol: WSSE
    token:
        expires_in_ms: 300000
"""


@functools.cache
def app_key() -> rsa.RSAPrivateKey:
    """One RSA key per test session (generation takes a moment)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_key_pem(key: rsa.RSAPrivateKey | None = None) -> str:
    """The app key as PKCS#1 PEM, the form GitHub hands out and Nango's API requires."""
    return (
        (key or app_key())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        .decode()
    )


def public_key_pem(key: rsa.RSAPrivateKey | None = None) -> str:
    """The public half, which the mock provider verifies app JWTs against."""
    return (
        (key or app_key())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def write_providers_file(folder: Path) -> Path:
    """The auth-mode providers file, written to ``folder``."""
    path = folder / "authmode-providers.yaml"
    path.write_text(PROVIDERS_YAML, encoding="utf-8")
    return path
