"""Encryption at rest: AES-256-GCM with row-bound associated data and a key ring."""

from __future__ import annotations

import os

import pytest

from freshtoken.crypto import Cipher, aad_for, key_id
from freshtoken.errors import DecryptionError


def _key() -> bytes:
    return os.urandom(32)


def test_round_trip_json() -> None:
    """A value encrypted for a row and field decrypts for the same row and field."""
    cipher = Cipher(_key())
    aad = aad_for("connections", 7, "credentials")
    token = cipher.encrypt_json({"access_token": "at-1"}, aad)
    assert cipher.decrypt_json(token, aad) == {"access_token": "at-1"}


def test_fresh_nonce_per_write() -> None:
    """Encrypting the same value twice gives different ciphertexts (a fresh 96-bit nonce each)."""
    cipher = Cipher(_key())
    aad = aad_for("connections", 1, "credentials")
    assert cipher.encrypt(b"same", aad) != cipher.encrypt(b"same", aad)


def test_ciphertext_copied_to_another_row_fails() -> None:
    """A ciphertext moved to another row or field fails authentication."""
    cipher = Cipher(_key())
    token = cipher.encrypt(b"secret", aad_for("connections", 1, "credentials"))
    with pytest.raises(DecryptionError):
        cipher.decrypt(token, aad_for("connections", 2, "credentials"))
    with pytest.raises(DecryptionError):
        cipher.decrypt(token, aad_for("integrations", 1, "client_secret"))


def test_key_id_is_stored_and_plaintext_is_not() -> None:
    """The stored form carries the key id and not the plaintext."""
    key = _key()
    cipher = Cipher(key)
    token = cipher.encrypt(b"plain-secret-value", b"aad")
    assert token.startswith(f"v1.{key_id(key)}.")
    assert "plain-secret-value" not in token


def test_old_keys_decrypt_and_current_key_encrypts() -> None:
    """After rotation, old ciphertexts still decrypt and new ones use the current key."""
    old, new = _key(), _key()
    token = Cipher(old).encrypt(b"v", b"aad")
    ring = Cipher(new, [old])
    assert ring.decrypt(token, b"aad") == b"v"
    assert not ring.is_current(token)
    assert not ring.is_current(ring.encrypt(b"v", b"aad"))  # v1: not bound, due for rotation
    assert ring.is_current(ring.encrypt(b"v", b"aad", version="v2"))


def test_unknown_key_and_tampering_are_errors() -> None:
    """A value under an unconfigured key, or altered, raises DecryptionError without the value."""
    token = Cipher(_key()).encrypt(b"v", b"aad")
    with pytest.raises(DecryptionError, match="not configured"):
        Cipher(_key()).decrypt(token, b"aad")
    cipher = Cipher(_key())
    good = cipher.encrypt(b"v", b"aad")
    tampered = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    with pytest.raises(DecryptionError):
        cipher.decrypt(tampered, b"aad")
    with pytest.raises(DecryptionError):
        cipher.decrypt("not-a-ciphertext", b"aad")
