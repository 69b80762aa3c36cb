"""Encryption at rest: AES-256-GCM with a key ring, a fresh nonce per write and row-bound AAD.

A stored value looks like ``v2.<key id>.<base64(nonce || ciphertext || tag)>``. The key id lets
old ciphertexts be read after a rotation (``FRESHTOKEN_ENCRYPTION_OLD_KEYS``) and lets
``freshtoken keys rotate`` find rows still under an old key. The associated data names the table,
the row and the field, so a ciphertext copied into another row or field fails to decrypt.

``v2`` (issue 10) also binds the clear-text columns that decide where a secret is sent and whose
it is (:func:`bound_aad`: for a connection its provider_config_key, connection_id, provider and
the text values of connection_config; for an integration its unique_key and provider). Someone
with write access to the database who renames a connection or points its token_url elsewhere
gets a row that no longer decrypts: it is neither served nor refreshed. ``v1`` values (row,
table and field only) are still read; ``freshtoken db upgrade`` and ``freshtoken keys rotate``
rewrite them as ``v2``.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from freshtoken.errors import DecryptionError

_VERSION = "v1"  # associated data: table, row, field
BOUND_VERSION = "v2"  # associated data: table, row, field and the row's binding (bound_aad)
_VERSIONS = frozenset({_VERSION, BOUND_VERSION})
_NONCE_BYTES = 12  # 96-bit nonces: the size GCM is designed for


def key_id(key: bytes) -> str:
    """A short, non-secret identifier of a key (a truncated SHA-256 of a derived value)."""
    # Hash a domain-separated value rather than the key itself, so the id reveals nothing usable.
    return hashlib.sha256(b"freshtoken-key-id:" + key).hexdigest()[:12]


def key_prefix(key_identifier: str) -> str:
    """What a value in the bound format under this key starts with (``v2.<key id>.``)."""
    return f"{BOUND_VERSION}.{key_identifier}."


def aad_for(table: str, row_id: int, field: str) -> bytes:
    """The associated data binding a ciphertext to one field of one row."""
    return f"freshtoken:{table}:{row_id}:{field}".encode()


def bound_aad(table: str, row_id: int, field: str, binding: Mapping[str, Any]) -> bytes:
    """The ``v2`` associated data: :func:`aad_for` plus the row's binding, canonical JSON."""
    return (
        aad_for(table, row_id, field)
        + b":"
        + orjson.dumps(dict(binding), option=orjson.OPT_SORT_KEYS)
    )


def version_of(token: str) -> str:
    """The format version of a stored value (``v1`` or ``v2``), without decrypting it."""
    return token.split(".", 1)[0]


class Cipher:
    """Encrypts with the current key; decrypts with any key of the ring."""

    def __init__(self, current: bytes, old: Iterable[bytes] = ()) -> None:
        self._current_id = key_id(current)
        self._keys: dict[str, AESGCM] = {self._current_id: AESGCM(current)}
        for key in old:
            self._keys.setdefault(key_id(key), AESGCM(key))

    def __repr__(self) -> str:
        return f"Cipher(current={self._current_id}, keys={len(self._keys)})"

    @property
    def current_key_id(self) -> str:
        """The id of the key new ciphertexts are written under."""
        return self._current_id

    def encrypt(self, plaintext: bytes, aad: bytes, *, version: str = _VERSION) -> str:
        """Encrypt under the current key with a fresh random nonce.

        ``version`` only labels the value (``v2`` when ``aad`` came from :func:`bound_aad`), so a
        reader knows which associated data to rebuild.
        """
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._keys[self._current_id].encrypt(nonce, plaintext, aad)
        return f"{version}.{self._current_id}.{base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str, aad: bytes) -> bytes:
        """Decrypt a value written by :meth:`encrypt` for the same associated data."""
        try:
            version, kid, body = token.split(".", 2)
        except ValueError:
            raise DecryptionError("stored value is not a freshtoken ciphertext") from None
        if version not in _VERSIONS:
            raise DecryptionError(f"unknown ciphertext version {version!r}")
        aes = self._keys.get(kid)
        if aes is None:
            raise DecryptionError(f"ciphertext is under key {kid}, which is not configured")
        try:
            raw = base64.b64decode(body, validate=True)
            return aes.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], aad)
        except (InvalidTag, ValueError):
            # Deliberately vague: wrong row, wrong field and tampering look the same.
            raise DecryptionError("ciphertext failed authentication") from None

    def encrypt_json(self, value: Any, aad: bytes, *, version: str = _VERSION) -> str:
        """Serialise with orjson and encrypt."""
        return self.encrypt(orjson.dumps(value), aad, version=version)

    def decrypt_json(self, token: str, aad: bytes) -> Any:
        """Decrypt and parse a value written by :meth:`encrypt_json`."""
        return orjson.loads(self.decrypt(token, aad))

    def key_id_of(self, token: str) -> str:
        """The key id a stored value is under (no decryption)."""
        parts = token.split(".", 2)
        return parts[1] if len(parts) == 3 else ""

    def is_current(self, token: str) -> bool:
        """True when the value is already under the current key, in the bound format."""
        return token.startswith(self.current_prefix)

    @property
    def current_prefix(self) -> str:
        """What every up-to-date stored value starts with (bound format, current key)."""
        return key_prefix(self._current_id)
