"""The repository: every read and write of integrations and connections goes through here.

It owns encryption (callers see plain dicts, the database sees only ciphertext), the
compare-and-set write that keeps a stale refresher from overwriting a newer token, and the
refresh schedule: every write that changes a connection's credentials or schedule sets
``next_refresh_at`` through :func:`freshtoken.store.schedule.next_refresh_at`.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

from sqlalchemy import CursorResult, Row, func, select, update
from sqlalchemy.orm import Session

from freshtoken.clock import Clock
from freshtoken.crypto import BOUND_VERSION, Cipher, aad_for, bound_aad, key_prefix, version_of
from freshtoken.errors import DecryptionError
from freshtoken.logs import get_logger
from freshtoken.store import schedule
from freshtoken.store.credentials import expires_at_of, has_refresh_token
from freshtoken.store.models import Connection, Integration
from freshtoken.store.outbox import was_failed
from freshtoken.store.schedule import Planner
from freshtoken.webhooks import outbox as webhooks


@dataclass(frozen=True)
class RefreshWrite:
    """What a successful refresh writes, all in one compare-and-set UPDATE.

    ``next_refresh_at`` is not part of it: the store plans it from the new credentials.
    """

    credentials: dict[str, Any]
    refreshed_at: dt.datetime


@dataclass(frozen=True)
class IntegrationClient:
    """An integration's OAuth client (and, for GitHub App modes, its app), as stored."""

    client_id: str | None
    client_secret: str | None
    scopes: str | None
    # APP/CUSTOM: ``app_id``, ``app_link``, ``private_key`` (stored encrypted as ``custom``).
    app: dict[str, Any] | None = None


class _Keep(enum.Enum):
    KEEP = "keep"


KEEP: Final = _Keep.KEEP
"""An update's "leave this field as it is" (``None`` is a value: it clears the field)."""


log = get_logger("freshtoken.store")


def connection_binding(
    provider_config_key: str,
    connection_id: str,
    provider: str,
    connection_config: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """What a connection's ciphertext is bound to: whose it is and where its secrets go.

    connection_config's text values are the token URL's inputs (``subdomain``, ``extension``,
    ``token_url``); numbers and nested values are left out because the database may hand them
    back in another JSON spelling (``1e3`` as ``1000``), which must not make a row unreadable.
    """
    config = {k: v for k, v in (connection_config or {}).items() if isinstance(v, str)}
    return {
        "provider_config_key": provider_config_key,
        "connection_id": connection_id,
        "provider": provider,
        "connection_config": config,
    }


def _conn_binding(conn: Connection) -> dict[str, Any]:
    return connection_binding(
        conn.provider_config_key, conn.connection_id, conn.provider, conn.connection_config
    )


def _integration_binding(integration: Integration) -> dict[str, Any]:
    return {"unique_key": integration.unique_key, "provider": integration.provider}


class IntegrityCheckFailed(DecryptionError):
    """A stored secret does not match the row it sits in (changed outside freshtoken)."""


class ConnectionStore:
    """Repository over one SQLAlchemy session; the caller owns the transaction."""

    def __init__(
        self, session: Session, cipher: Cipher, clock: Clock, planner: Planner | None = None
    ) -> None:
        self.session = session
        self.cipher = cipher
        self.clock = clock
        # Computes next_refresh_at for the proactive scan after imports and overrides.
        self.planner = planner

    def _plan(self, conn: Connection) -> None:
        # The one place a loaded row's next_refresh_at is written (the rule: store.schedule).
        conn.next_refresh_at = schedule.next_refresh_at(conn, self.planner, self.clock.now())

    # -- integrations -------------------------------------------------------------------------

    def get_integration(self, unique_key: str) -> Integration | None:
        """The integration with this unique key, or None."""
        return self.session.scalars(
            select(Integration).where(Integration.unique_key == unique_key)
        ).one_or_none()

    def list_integrations(self) -> list[Integration]:
        """Every integration, oldest first."""
        return list(self.session.scalars(select(Integration).order_by(Integration.id)))

    def create_integration(
        self,
        *,
        unique_key: str,
        provider: str,
        display_name: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        scopes: str | None = None,
    ) -> Integration:
        """Insert an integration; the client secret is encrypted bound to the new row."""
        now = self.clock.now()
        integration = Integration(
            unique_key=unique_key,
            provider=provider,
            display_name=display_name,
            client_id=client_id,
            scopes=scopes,
            created_at=now,
            updated_at=now,
        )
        self.session.add(integration)
        self.session.flush()  # the row id is part of the ciphertext's associated data
        self.set_client_secret(integration, client_secret)
        return integration

    def set_client_secret(self, integration: Integration, secret: str | None) -> None:
        """Encrypt and store (or clear) an integration's client secret."""
        integration.client_secret_enc = (
            None
            if secret is None
            else self.cipher.encrypt(
                secret.encode(),
                bound_aad(
                    "integrations",
                    integration.id,
                    "client_secret",
                    _integration_binding(integration),
                ),
                version=BOUND_VERSION,
            )
        )
        integration.updated_at = self.clock.now()

    def client_secret(self, integration: Integration) -> str | None:
        """Decrypt an integration's client secret."""
        token = integration.client_secret_enc
        if token is None:
            return None
        if version_of(token) == BOUND_VERSION:
            binding = _integration_binding(integration)
            aad = bound_aad("integrations", integration.id, "client_secret", binding)
        else:
            aad = aad_for("integrations", integration.id, "client_secret")
        try:
            return self.cipher.decrypt(token, aad).decode()
        except DecryptionError as exc:
            raise _integrity_failure("integrations", integration.id, exc) from None

    def set_integration_client(self, integration: Integration, client: IntegrationClient) -> None:
        """Store an integration's OAuth client (secret encrypted) and, if given, its GitHub App."""
        if client.app is not None:
            self.set_custom(integration, client.app)
        integration.client_id = client.client_id
        integration.scopes = client.scopes
        self.set_client_secret(integration, client.client_secret)

    def update_integration(
        self,
        integration: Integration,
        *,
        unique_key: str | None = None,
        display_name: str | _Keep | None = KEEP,
        client: IntegrationClient | None = None,
    ) -> None:
        """Apply a PATCH: a new key (re-keying its connections), display name, client; flushed.

        The flush surfaces a constraint violation inside the caller's ``with`` block.
        """
        if unique_key is not None and unique_key != integration.unique_key:
            # Re-encrypts: the connections' and the client secret's ciphertexts are bound to it.
            self.rename_integration(integration, unique_key)
        if not isinstance(display_name, _Keep):
            integration.display_name = display_name
        if client is not None:
            self.set_integration_client(integration, client)
        integration.updated_at = self.clock.now()
        self.session.flush()

    def rename_integration(self, integration: Integration, new_key: str) -> None:
        """Give an integration a new unique key, re-keying (and re-binding) its connections.

        Every secret bound to the old key is decrypted and encrypted again under the new one,
        row-locked, so a concurrent refresh's write cannot slip in between with the old binding.
        """
        secret = self.client_secret(integration)
        custom = self.custom(integration)
        conns = list(
            self.session.scalars(
                select(Connection)
                .where(Connection.integration_id == integration.id)
                .with_for_update()
            )
        )
        for conn in conns:
            creds = self.credentials(conn) if conn.credentials_enc is not None else None
            conn.provider_config_key = new_key
            if creds is not None:
                conn.credentials_enc = self.encrypt_credentials(conn.id, creds, conn)
            self._plan(conn)
        integration.unique_key = new_key
        self.set_client_secret(integration, secret)
        if custom is not None:
            self.set_custom(integration, custom)

    def set_custom(self, integration: Integration, custom: dict[str, Any] | None) -> None:
        """Encrypt and store (or clear) an integration's GitHub App fields (Nango's ``custom``)."""
        integration.custom_enc = (
            None
            if custom is None
            else self.cipher.encrypt_json(
                custom,
                bound_aad(
                    "integrations", integration.id, "custom", _integration_binding(integration)
                ),
                version=BOUND_VERSION,
            )
        )
        integration.updated_at = self.clock.now()

    def custom(self, integration: Integration) -> dict[str, Any] | None:
        """Decrypt an integration's GitHub App fields, if any."""
        token = integration.custom_enc
        if token is None:
            return None
        if version_of(token) == BOUND_VERSION:
            binding = _integration_binding(integration)
            aad = bound_aad("integrations", integration.id, "custom", binding)
        else:
            aad = aad_for("integrations", integration.id, "custom")
        try:
            value: dict[str, Any] = self.cipher.decrypt_json(token, aad)
        except DecryptionError as exc:
            raise _integrity_failure("integrations", integration.id, exc) from None
        return value

    def delete_integration(self, integration: Integration) -> None:
        """Delete an integration and soft-delete its connections (credentials wiped)."""
        for conn in self.session.scalars(
            select(Connection).where(
                Connection.integration_id == integration.id, Connection.deleted_at.is_(None)
            )
        ):
            self.soft_delete(conn)
        self.session.flush()
        self.session.delete(integration)

    # -- connections --------------------------------------------------------------------------

    def get_connection(self, provider_config_key: str, connection_id: str) -> Connection | None:
        """The live connection with this key pair, or None (one indexed lookup)."""
        return self.session.scalars(
            select(Connection).where(
                Connection.provider_config_key == provider_config_key,
                Connection.connection_id == connection_id,
                Connection.deleted_at.is_(None),
            )
        ).one_or_none()

    def get_connection_by_pk(self, pk: int, *, for_update: bool = False) -> Connection | None:
        """The live connection with this internal id, optionally row-locked (PostgreSQL)."""
        stmt = select(Connection).where(Connection.id == pk, Connection.deleted_at.is_(None))
        if for_update:
            stmt = stmt.with_for_update()
        return self.session.scalars(stmt).one_or_none()

    def credentials(self, conn: Connection) -> dict[str, Any]:
        """Decrypt a connection's credentials ({} for a deleted or empty row)."""
        return decrypt_connection_credentials(self.cipher, conn)

    def encrypt_credentials(
        self, conn_pk: int, credentials: dict[str, Any], conn: Connection | None = None
    ) -> str:
        """The ciphertext of a connection's credentials, bound to its row and binding.

        Without ``conn`` the binding is read from the row, locked (FOR UPDATE on PostgreSQL;
        SQLite's write transaction already excludes other writers) so it cannot change between
        this read and the caller's write.
        """
        binding = _conn_binding(conn) if conn is not None else self._locked_binding(conn_pk)[0]
        return self._encrypt_bound(conn_pk, credentials, binding)

    def _locked_binding(self, conn_pk: int) -> tuple[dict[str, Any], Row[Any]]:
        """The row's binding, and the row as read, locked until the caller's transaction ends."""
        row = self.session.execute(
            select(
                Connection.provider_config_key,
                Connection.connection_id,
                Connection.provider,
                Connection.connection_config,
                Connection.credentials_type,
            )
            .where(Connection.id == conn_pk)
            .with_for_update()
        ).one()
        return connection_binding(*row[:4]), row

    def _encrypt_bound(
        self, conn_pk: int, credentials: dict[str, Any], binding: dict[str, Any]
    ) -> str:
        return self.cipher.encrypt_json(
            credentials,
            bound_aad("connections", conn_pk, "credentials", binding),
            version=BOUND_VERSION,
        )

    def set_credentials(self, conn: Connection, credentials: dict[str, Any]) -> None:
        """Store new credentials on a row this session owns (imports and overrides).

        Bumps ``version`` so a refresher holding the previous version loses its compare-and-set.
        """
        conn.credentials_enc = self.encrypt_credentials(conn.id, credentials, conn)
        conn.credentials_type = str(credentials.get("type", ""))
        conn.expires_at = expires_at_of(credentials)
        conn.has_refresh_token = has_refresh_token(credentials)
        conn.version = (conn.version or 0) + 1
        conn.updated_at = self.clock.now()
        self._plan(conn)

    def upsert_connection(
        self,
        integration: Integration,
        *,
        connection_id: str,
        credentials: dict[str, Any],
        connection_config: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        end_user: dict[str, Any] | None = None,
        webhook_url_override: str | _Keep | None = KEEP,
        issued_at: dt.datetime | None = None,
    ) -> tuple[Connection, bool]:
        """Import a connection, or override the live one with the same id.

        An override replaces the credentials and resets the refresh bookkeeping (as Nango does), so
        a connection that needed re-authorisation comes back to life. ``issued_at`` is when the
        credentials were issued (default now: the token's lifetime is counted from it).
        Returns (row, created).
        """
        now = self.clock.now()
        conn = self.get_connection(integration.unique_key, connection_id)
        created = conn is None
        if conn is None:
            conn = Connection(
                connection_id=connection_id,
                provider_config_key=integration.unique_key,
                provider=integration.provider,
                integration_id=integration.id,
                credentials_type=str(credentials.get("type", "")),
                connection_config=connection_config or {},
                metadata_=metadata,
                tags=tags or {},
                end_user=end_user,
                version=0,
                created_at=now,
                updated_at=now,
            )
            self.session.add(conn)
            self.session.flush()  # the row id is part of the ciphertext's associated data
        else:
            if connection_config is not None:
                conn.connection_config = connection_config
            if metadata is not None:
                conn.metadata_ = metadata
            if tags is not None:
                conn.tags = tags
            if end_user is not None:
                conn.end_user = end_user
        if not isinstance(webhook_url_override, _Keep):
            # Before the flush: the auth webhook (written at commit) goes to the override.
            conn.webhook_url_override = webhook_url_override
        self.set_credentials(conn, credentials)
        conn.last_refresh_success = issued_at or now
        conn.last_refresh_failure = None
        conn.refresh_attempts = None
        conn.refresh_exhausted = False
        conn.needs_reauth = False
        conn.last_refresh_error = None
        conn.auth_error_log_id = None
        conn.refresh_claimed_until = None
        self._plan(conn)
        self.session.flush()
        webhooks.note_stored(self.session, conn, created)
        return conn, created

    def update_connection(
        self,
        conn: Connection,
        *,
        end_user: dict[str, Any] | _Keep | None = KEEP,
        tags: dict[str, str] | _Keep = KEEP,
        webhook_url_override: str | _Keep | None = KEEP,
    ) -> None:
        """Change a connection's end user, tags or webhook URL override (not its credentials)."""
        if not isinstance(end_user, _Keep):
            conn.end_user = end_user
        if not isinstance(tags, _Keep):
            conn.tags = tags
        if not isinstance(webhook_url_override, _Keep):
            conn.webhook_url_override = webhook_url_override
        conn.updated_at = self.clock.now()

    def set_metadata(
        self, conns: Sequence[Connection], metadata: dict[str, Any], *, merge: bool
    ) -> None:
        """Replace the connections' metadata, or merge ``metadata`` into it (top-level keys)."""
        now = self.clock.now()
        for conn in conns:
            # A new dict each time: SQLAlchemy tracks JSON columns by assignment.
            conn.metadata_ = {**(conn.metadata_ or {}), **metadata} if merge else dict(metadata)
            conn.updated_at = now

    def soft_delete(self, conn: Connection) -> None:
        """Mark deleted and wipe the credentials (the ciphertext too, not just the link)."""
        now = self.clock.now()
        conn.deleted_at = now
        conn.credentials_enc = None
        conn.has_refresh_token = False
        conn.expires_at = None
        conn.refresh_claimed_until = None
        self._plan(conn)  # deleted: never due
        conn.version = (conn.version or 0) + 1
        conn.updated_at = now

    def touch_fetched(self, conn: Connection) -> None:
        """Record a read (``last_fetched_at``)."""
        conn.last_fetched_at = self.clock.now()

    # -- refresh writes (compare-and-set) ------------------------------------------------------

    def cas_write_refresh(self, conn_pk: int, expected_version: int, write: RefreshWrite) -> bool:
        """Write refreshed credentials iff the row is still at ``expected_version``.

        One UPDATE both stores the credentials and clears the failure bookkeeping, so a reader
        never sees new tokens with stale state or the reverse. False means someone else wrote
        first (a newer refresh or an import): the caller's tokens must not overwrite theirs.
        """
        creds = write.credentials
        # Auth webhooks only: was this a failed connection coming back? (no query when off)
        failed_before = webhooks.active(self.session) and was_failed(self.session, conn_pk)
        binding, row = self._locked_binding(conn_pk)
        # The row as this write leaves it (claim released, failures cleared), for the schedule.
        refreshed = Connection(
            provider=row.provider,
            credentials_type=row.credentials_type,
            has_refresh_token=has_refresh_token(creds),
            expires_at=expires_at_of(creds),
            last_refresh_success=write.refreshed_at,
            needs_reauth=False,
            refresh_exhausted=False,
        )
        result = self.session.execute(
            update(Connection)
            .where(
                Connection.id == conn_pk,
                Connection.version == expected_version,
                Connection.deleted_at.is_(None),
            )
            .values(
                credentials_enc=self._encrypt_bound(conn_pk, creds, binding),
                expires_at=expires_at_of(creds),
                has_refresh_token=has_refresh_token(creds),
                version=Connection.version + 1,
                last_refresh_success=write.refreshed_at,
                last_refresh_failure=None,
                refresh_attempts=None,
                refresh_exhausted=False,
                needs_reauth=False,
                last_refresh_error=None,
                auth_error_log_id=None,
                refresh_claimed_until=None,
                next_refresh_at=schedule.next_refresh_at(refreshed, self.planner, self.clock.now()),
                updated_at=write.refreshed_at,
            )
            .execution_options(synchronize_session=False)
        )
        written = cast("CursorResult[Any]", result).rowcount == 1
        if written:
            webhooks.note_recovery(self.session, conn_pk, was_failed=failed_before)
        return written

    def write_failure(
        self,
        conn_pk: int,
        *,
        failed_at: dt.datetime,
        attempts: int,
        exhausted: bool,
        needs_reauth: bool,
        error_code: str,
        log_id: str,
        next_refresh_at: dt.datetime | None = None,
    ) -> None:
        """Record a failed refresh (does not touch credentials or ``version``).

        ``next_refresh_at`` is the retry time the caller's backoff chose; a row that leaves the
        scan by this failure (needs re-authorisation, exhausted) gets none, by the schedule rule.
        """
        failed_before = webhooks.active(self.session) and was_failed(self.session, conn_pk)
        due = self._due_after_failure(
            conn_pk,
            failed_at,
            exhausted=exhausted,
            needs_reauth=needs_reauth,
            retry_at=next_refresh_at,
        )
        self.session.execute(
            update(Connection)
            .where(Connection.id == conn_pk, Connection.deleted_at.is_(None))
            .values(
                last_refresh_failure=failed_at,
                last_refresh_success=None,
                refresh_attempts=attempts,
                refresh_exhausted=exhausted,
                needs_reauth=needs_reauth,
                last_refresh_error=error_code[:255],
                auth_error_log_id=log_id,
                refresh_claimed_until=None,
                next_refresh_at=due,
            )
            .execution_options(synchronize_session=False)
        )
        webhooks.note_failure(
            self.session,
            conn_pk,
            was_failed=failed_before,
            exhausted=exhausted,
            needs_reauth=needs_reauth,
            error_code=error_code,
        )

    def _due_after_failure(
        self,
        conn_pk: int,
        failed_at: dt.datetime,
        *,
        exhausted: bool,
        needs_reauth: bool,
        retry_at: dt.datetime | None,
    ) -> dt.datetime | None:
        # The row as the failure leaves it; the refresher read it in this session, so ``get``
        # takes it from the identity map without a query.
        current = self.session.get(Connection, conn_pk)
        if current is None:
            return None
        failed = Connection(
            provider=current.provider,
            credentials_type=current.credentials_type,
            has_refresh_token=current.has_refresh_token,
            expires_at=current.expires_at,
            deleted_at=current.deleted_at,
            last_refresh_failure=failed_at,
            needs_reauth=needs_reauth,
            refresh_exhausted=exhausted,
            next_refresh_at=retry_at,
        )
        return schedule.next_refresh_at(failed, self.planner, self.clock.now())

    # -- key rotation ---------------------------------------------------------------------------

    def count_not_under_current_key(self) -> int:
        """How many stored secrets (credentials, client secrets, GitHub Apps) need re-encrypting."""
        total = 0
        for column in (
            Connection.credentials_enc,
            Integration.client_secret_enc,
            Integration.custom_enc,
        ):
            count = self.session.scalar(
                select(func.count()).where(
                    column.is_not(None), ~column.like(f"{self.cipher.current_prefix}%")
                )
            )
            total += int(count or 0)
        return total

    def integrations_not_under_current_key(
        self, field: Literal["client_secret", "custom"]
    ) -> list[Integration]:
        """Integrations whose client secret (or GitHub App, ``custom``) is not under the current
        key."""
        column = Integration.custom_enc if field == "custom" else Integration.client_secret_enc
        return list(
            self.session.scalars(
                select(Integration).where(
                    column.is_not(None), ~column.like(f"{self.cipher.current_prefix}%")
                )
            ).all()
        )

    def rewrite_ciphertext(self, conn: Connection, ciphertext: str) -> bool:
        """Store ``ciphertext`` (the same credentials re-encrypted) iff the row is still at the
        version read; False when a refresh or an import wrote meanwhile (nothing to do then).

        The credentials do not change, so neither does the schedule (rule of store.schedule): a
        claimed row keeps its lease, a failing one its retry time.
        """
        result = self.session.execute(
            update(Connection)
            .where(Connection.id == conn.id, Connection.version == conn.version)
            .values(
                credentials_enc=ciphertext,
                next_refresh_at=schedule.next_refresh_at(conn, self.planner, self.clock.now()),
            )
            .execution_options(synchronize_session=False)
        )
        return cast("CursorResult[Any]", result).rowcount == 1

    def live_rows_not_under_key(self, key_id: str, after_pk: int, limit: int) -> list[Connection]:
        """A batch of rows (by id) whose ciphertext is not under ``key_id`` (for key rotation)."""
        prefix = f"{key_prefix(key_id)}%"
        return list(
            self.session.scalars(
                select(Connection)
                .where(
                    Connection.id > after_pk,
                    Connection.credentials_enc.is_not(None),
                    ~Connection.credentials_enc.like(prefix),
                )
                .order_by(Connection.id)
                .limit(limit)
            )
        )


def _integrity_failure(table: str, pk: int, exc: DecryptionError) -> IntegrityCheckFailed:
    # Fails closed: the caller gets an error, never the secret and never a refresh with it.
    log.error("credentials.integrity_failed", table=table, row_pk=pk, reason=str(exc))
    return IntegrityCheckFailed(
        f"stored secret of {table} row {pk} failed its integrity check ({exc}); it was changed "
        "outside freshtoken or is under a key that is not configured"
    )


def decrypt_connection_credentials(cipher: Cipher, conn: Connection) -> dict[str, Any]:
    """Decrypt a connection's credentials ({} for a deleted or empty row); no database access.

    The associated data binds the row's identity and where its secrets go, so a row whose
    ``connection_id``, provider or token-URL inputs were changed behind the store's back fails
    closed (``integrity_check_failed``) instead of being served or refreshed.
    """
    token = conn.credentials_enc
    if token is None:
        return {}
    if version_of(token) == BOUND_VERSION:
        aad = bound_aad("connections", conn.id, "credentials", _conn_binding(conn))
    else:
        aad = aad_for("connections", conn.id, "credentials")
    try:
        value = cipher.decrypt_json(token, aad)
    except DecryptionError as exc:
        raise _integrity_failure("connections", conn.id, exc) from None
    return value if isinstance(value, dict) else {}
