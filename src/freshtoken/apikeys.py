"""Scoped API keys: ``read``, ``write`` and ``admin``, stored as SHA-256 digests.

``FRESHTOKEN_SECRET_KEY`` stays the admin key. ``freshtoken keys create --scope S --name N``
adds a key (shown once; only its digest and a short hint are stored), ``keys list`` shows them and
``keys revoke`` ends one. Any number of keys are valid at once, so an admin key is rotated by
creating the new one, moving clients over, then revoking the old one: no downtime.

What each scope may do (:func:`required_scope`):

* ``read``: fetch connections and their credentials (``GET /connections``, ``GET
  /connections/{id}``, the legacy ``/connection`` forms). Nothing else: no integration (whose
  client secret it could read), no writes.
* ``write``: everything on connections (import, update, delete, metadata, refresh), plus listing
  integrations and providers without credentials.
* ``admin``: everything, including integration client secrets and integration changes.

The keys are 256-bit random values, so a plain SHA-256 is enough to make the stored digest
useless to a database reader (nothing to brute-force); comparing digests is constant-time
whatever the key's length.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from freshtoken.store.apikeys import add_api_key, all_api_keys, live_api_keys
from freshtoken.store.models import ApiKey

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

SCOPES: Final = ("read", "write", "admin")
_RANK: Final = {scope: rank for rank, scope in enumerate(SCOPES)}
CACHE_SECONDS: Final = 2.0
"""How long the API trusts its in-memory copy of the key table (a revoke takes this long)."""


def digest(key: str) -> bytes:
    """SHA-256 of a key."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def generate_api_key(scope: str) -> str:
    """A new random key; its prefix names the scope so a leaked key is recognisable."""
    return f"ft_{scope}_" + secrets.token_urlsafe(32)


def allows(granted: str, needed: str) -> bool:
    """True when a key of scope ``granted`` may make a request needing ``needed``."""
    return _RANK[granted] >= _RANK[needed]


def required_scope(method: str, path_format: str, query: dict[str, str]) -> str:
    """The least scope a request needs (see the module docstring)."""
    if path_format.startswith("/connection"):
        return "read" if method in ("GET", "HEAD") else "write"
    if method in ("GET", "HEAD"):
        if path_format.startswith("/providers"):
            return "write"
        if path_format.startswith("/integrations") and "credentials" not in query.get(
            "include", ""
        ):
            return "write"
    return "admin"


def create_key(session: Session, *, name: str, scope: str, now: dt.datetime) -> tuple[ApiKey, str]:
    """Store a new key's digest; returns the row and the key (the only time it is visible)."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    key = generate_api_key(scope)
    row = ApiKey(
        name=name,
        scope=scope,
        key_hash=digest(key).hex(),
        hint=key[: len(f"ft_{scope}_") + 4],
        created_at=now,
        revoked_at=None,
    )
    add_api_key(session, row)
    return row, key


def list_keys(session: Session) -> list[ApiKey]:
    """Every key, oldest first (revoked ones included, with their revocation time)."""
    return all_api_keys(session)


def revoke_key(session: Session, ident: str, now: dt.datetime) -> list[ApiKey]:
    """Revoke the live key(s) with this id or name; returns what was revoked."""
    rows = [row for row in live_api_keys(session) if str(row.id) == ident or row.name == ident]
    for row in rows:
        row.revoked_at = now
    return rows


class KeyRing:
    """Answers "which scope does this bearer token have?" for the API.

    The settings key is checked in memory; scoped keys come from a copy of the live rows of the
    key table, reloaded at most every :data:`CACHE_SECONDS` (so authentication does not cost a
    database round trip per request, and random tokens cannot make it query at all).
    """

    def __init__(
        self,
        admin_key: str,
        session_factory: sessionmaker[Session] | None,
        *,
        cache_seconds: float = CACHE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._admin = digest(admin_key)
        self._session_factory = session_factory
        self._cache_seconds = cache_seconds
        self._monotonic = monotonic
        self._table: dict[bytes, str] = {}
        self._loaded_at: float | None = None
        self._lock = threading.Lock()

    def invalidate(self) -> None:
        """Forget the cached table (the next lookup reloads it)."""
        with self._lock:
            self._loaded_at = None

    def needs_reload(self) -> bool:
        """True when the cached table is older than the cache period (or was never loaded)."""
        loaded = self._loaded_at
        return loaded is None or self._monotonic() - loaded > self._cache_seconds

    def reload(self) -> None:
        """Read the live keys' digests and scopes (blocking: call it off the event loop)."""
        table: dict[bytes, str] = {}
        if self._session_factory is not None:
            with self._session_factory() as session:
                for row in live_api_keys(session):
                    table[bytes.fromhex(row.key_hash)] = row.scope
        with self._lock:
            self._table = table
            self._loaded_at = self._monotonic()

    def is_settings_key(self, token: str) -> bool:
        """True for ``FRESHTOKEN_SECRET_KEY`` (always admin, never looked up)."""
        return hmac.compare_digest(digest(token), self._admin)

    def scope_of(self, token: str) -> str | None:
        """The scope of ``token`` from the cached table (the settings key is ``admin``)."""
        token_digest = digest(token)
        if hmac.compare_digest(token_digest, self._admin):
            return "admin"
        # A dict lookup by digest: the digest of an unknown token reveals nothing about a key.
        return self._table.get(token_digest)
