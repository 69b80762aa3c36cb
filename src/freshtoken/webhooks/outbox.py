"""The transactional outbox: webhook rows written in the state change's own transaction.

The store calls :func:`note_stored`, :func:`note_failure` and :func:`note_recovery` at the three
state transitions (import or override, healthy → failed, failed → refreshed). They only remember
the change in ``session.info``; a ``before_commit`` listener turns each into one outbox row per
target URL (so a URL override set later in the same transaction counts), inside the transaction,
and an ``after_commit`` listener hands the new row ids to the delivery queue. A failed enqueue
loses nothing: the sweep (:func:`freshtoken.store.outbox.due_heads`) picks up every pending row.

Nothing is installed unless a webhook URL is configured
(:func:`freshtoken.runtime.attach_webhooks`), so the store pays nothing, not even a query, when
webhooks are off.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from freshtoken.clock import Clock
from freshtoken.logs import get_logger
from freshtoken.settings import Settings
from freshtoken.store.models import Connection, WebhookOutbox
from freshtoken.store.outbox import PENDING, add_outbox_rows
from freshtoken.webhooks.payload import CREATION, OVERRIDE, REFRESH, auth_body, serialize

log = get_logger("freshtoken.webhooks")

INFO_KEY = "freshtoken.webhooks"
_PENDING_KEY = "freshtoken.webhooks.pending"
_ENQUEUE_KEY = "freshtoken.webhooks.enqueue"

# The refresh failure's error.type, as Nango names them.
ERROR_REFRESH = "refresh_token_external_error"
ERROR_EXHAUSTED = "connection_refresh_exhausted"


@dataclass(frozen=True)
class WebhookConfig:
    """Where auth webhooks go and which ones are sent (from the FRESHTOKEN_WEBHOOK_* settings)."""

    primary_url: str | None
    secondary_url: str | None
    on_creation: bool = True
    on_override: bool = True
    on_refresh_error: bool = True
    on_refresh_recovery: bool = True
    environment: str = "prod"
    deadline_seconds: float = 3600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookConfig:
        """The config of these settings."""
        return cls(
            primary_url=settings.webhook_url,
            secondary_url=settings.webhook_secondary_url,
            on_creation=settings.webhook_on_auth_creation,
            on_override=settings.webhook_on_auth_override,
            on_refresh_error=settings.webhook_on_auth_refresh_error,
            on_refresh_recovery=settings.webhook_on_auth_refresh_recovery,
            environment=settings.webhook_environment,
            deadline_seconds=settings.webhook_deadline_seconds,
        )

    @property
    def enabled(self) -> bool:
        """As Nango: nothing is sent without a primary or secondary URL."""
        return bool(self.primary_url or self.secondary_url)

    def wants(self, operation: str, success: bool) -> bool:
        """Whether this kind of webhook is switched on."""
        if operation == CREATION:
            return self.on_creation
        if operation == OVERRIDE:
            return self.on_override
        return self.on_refresh_recovery if success else self.on_refresh_error

    def targets(self, conn: Connection) -> list[tuple[str, str]]:
        """(target, url) pairs; a connection's override replaces primary and secondary."""
        if not self.enabled:
            return []
        if conn.webhook_url_override:
            return [("override", conn.webhook_url_override)]
        pairs = [("primary", self.primary_url), ("secondary", self.secondary_url)]
        return [(name, url) for name, url in pairs if url]


@dataclass
class _Change:
    connection_pk: int
    operation: str
    success: bool
    error: dict[str, str] | None = None


@dataclass
class _Hooks:
    """What the session listeners need, kept in the session's ``info``."""

    config: WebhookConfig
    clock: Clock
    enqueue: Callable[[int], None]
    log_enqueue_failures: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


# -- the store's hooks (tiny, and free when webhooks are off) -------------------------------------


def active(session: Session) -> bool:
    """True when this session records webhooks (a URL is configured)."""
    return INFO_KEY in session.info


def note_stored(session: Session, conn: Connection, created: bool) -> None:
    """A connection was imported (``creation``) or overridden (``override``)."""
    if active(session):
        _remember(session, _Change(conn.id, CREATION if created else OVERRIDE, True))


def note_failure(
    session: Session,
    connection_pk: int,
    *,
    was_failed: bool,
    exhausted: bool,
    needs_reauth: bool,
    error_code: str,
) -> None:
    """A refresh failed: one webhook when the connection goes from healthy to failed."""
    if not active(session) or was_failed or not (exhausted or needs_reauth):
        return
    if needs_reauth:
        error = {
            "type": ERROR_REFRESH,
            "description": (
                "The provider rejected the refresh token "
                f"({error_code}): the connection must be re-authorised."
            ),
        }
    else:
        error = {
            "type": ERROR_EXHAUSTED,
            "description": "The refresh limit has been reached for this connection.",
        }
    _remember(session, _Change(connection_pk, REFRESH, False, error))


def note_recovery(session: Session, connection_pk: int, *, was_failed: bool) -> None:
    """A refresh succeeded: one webhook if the connection had failed (needs re-auth, exhausted)."""
    if active(session) and was_failed:
        _remember(session, _Change(connection_pk, REFRESH, True))


def _remember(session: Session, change: _Change) -> None:
    session.info.setdefault(_PENDING_KEY, []).append(change)


# -- session listeners ----------------------------------------------------------------------------


def _before_commit(session: Session) -> None:
    hooks: _Hooks | None = session.info.get(INFO_KEY)
    changes: list[_Change] = session.info.pop(_PENDING_KEY, [])
    if hooks is None or not changes:
        return
    config = hooks.config
    now = hooks.clock.now()
    rows: list[WebhookOutbox] = []
    for change in changes:
        if not config.wants(change.operation, change.success):
            continue
        conn = session.get(Connection, change.connection_pk)
        if conn is None:
            continue
        body = serialize(
            auth_body(
                conn,
                operation=change.operation,
                success=change.success,
                environment=config.environment,
                error=change.error,
            )
        )
        event_id = str(uuid.uuid4())
        for target, url in config.targets(conn):
            row = WebhookOutbox(
                event_id=event_id,
                connection_pk=conn.id,
                connection_id=conn.connection_id,
                provider_config_key=conn.provider_config_key,
                target=target,
                url=url,
                webhook_type="auth",
                operation=change.operation,
                success=change.success,
                body=body.decode(),
                status=PENDING,
                attempts=0,
                next_attempt_at=now,
                deadline_at=now + dt.timedelta(seconds=config.deadline_seconds),
                created_at=now,
            )
            rows.append(row)
    if rows:
        add_outbox_rows(session, rows)
        session.info.setdefault(_ENQUEUE_KEY, []).extend(r.id for r in rows)


def _after_commit(session: Session) -> None:
    hooks: _Hooks | None = session.info.get(INFO_KEY)
    ids: list[int] = session.info.pop(_ENQUEUE_KEY, [])
    if hooks is None:
        return
    for outbox_id in ids:
        try:
            hooks.enqueue(outbox_id)
        except Exception as exc:  # the sweep delivers it; the state change stands
            log.warning(
                "webhook.enqueue_failed", outbox_id=outbox_id, error_class=type(exc).__name__
            )


def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)
    session.info.pop(_ENQUEUE_KEY, None)


def install(
    factory: sessionmaker[Session],
    config: WebhookConfig,
    clock: Clock,
    enqueue: Callable[[int], None],
) -> None:
    """Make every session of ``factory`` record auth webhooks and enqueue them after commit."""
    hooks = _Hooks(config, clock, enqueue)
    factory.configure(info={INFO_KEY: hooks})
    if not event.contains(factory, "before_commit", _before_commit):
        event.listen(factory, "before_commit", _before_commit)
        event.listen(factory, "after_commit", _after_commit)
        event.listen(factory, "after_soft_rollback", _after_soft_rollback)


def _after_soft_rollback(session: Session, _previous: Any) -> None:
    _after_rollback(session)
