"""Domain exceptions shared by the store, the refresh engine, the API and the CLI.

Messages never contain a token, a secret or a key: they name things, not values.
"""

from __future__ import annotations


class FreshtokenError(Exception):
    """Base class of freshtoken's own errors."""


class ConfigError(FreshtokenError):
    """The service cannot start with this configuration; str() is one line naming the cause."""


class DecryptionError(FreshtokenError):
    """A stored ciphertext could not be decrypted (wrong key, wrong row or field, tampering)."""


class NotFoundError(FreshtokenError):
    """A connection or integration does not exist (or is deleted)."""
