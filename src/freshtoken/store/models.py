"""ORM models: integrations (provider configs) and connections.

Secrets live only in the ``*_enc`` columns, encrypted by :mod:`freshtoken.crypto` with associated
data bound to the row and field. ``expires_at`` is kept in clear in its own indexed column because
the proactive refresh scan selects on it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from freshtoken.db.base import Base
from freshtoken.db.types import PortableJSON, UTCDateTime


class Integration(Base):
    """A provider configuration (Nango's "integration"), keyed by its ``unique_key``."""

    __tablename__ = "integrations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    unique_key: Mapped[str] = mapped_column(String(255), unique=True)
    provider: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str | None] = mapped_column(String(255))
    client_id: Mapped[str | None] = mapped_column(Text)
    client_secret_enc: Mapped[str | None] = mapped_column(Text)
    scopes: Mapped[str | None] = mapped_column(Text)
    # APP/CUSTOM (GitHub App): {app_id, app_link, private_key}, encrypted like client_secret_enc.
    custom_enc: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Connection(Base):
    """One stored connection and its refresh bookkeeping."""

    __tablename__ = "connections"
    __table_args__ = (
        # Unique among live rows only: a deleted connection's id can be reused by a new import.
        Index(
            "uq_connections_live_key",
            "provider_config_key",
            "connection_id",
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
        # The refresh scan: live rows ordered by expiry.
        Index(
            "ix_connections_live_expires_at",
            "expires_at",
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    connection_id: Mapped[str] = mapped_column(String(255))
    provider_config_key: Mapped[str] = mapped_column(String(255))
    provider: Mapped[str] = mapped_column(String(255))
    integration_id: Mapped[int] = mapped_column(
        ForeignKey("integrations.id", ondelete="CASCADE"), index=True
    )
    credentials_type: Mapped[str] = mapped_column(String(32))
    credentials_enc: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    has_refresh_token: Mapped[bool] = mapped_column(Boolean, default=False)
    connection_config: Mapped[dict[str, Any]] = mapped_column(PortableJSON, default=dict)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", PortableJSON)
    tags: Mapped[dict[str, str]] = mapped_column(PortableJSON, default=dict)
    end_user: Mapped[dict[str, Any] | None] = mapped_column(PortableJSON)
    webhook_url_override: Mapped[str | None] = mapped_column(Text)

    # Refresh bookkeeping (the refresh engine owns these).
    last_refresh_success: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_refresh_failure: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    refresh_attempts: Mapped[int | None] = mapped_column(Integer)
    refresh_exhausted: Mapped[bool] = mapped_column(Boolean, default=False)
    needs_reauth: Mapped[bool] = mapped_column(Boolean, default=False)
    last_refresh_error: Mapped[str | None] = mapped_column(String(255))
    auth_error_log_id: Mapped[str | None] = mapped_column(String(64))
    # Compare-and-set: every credentials write bumps it and requires the value it read.
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Lease taken by the proactive scan so overlapping scans never enqueue a row twice.
    refresh_claimed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # When the proactive scan should next refresh this row: expires_at minus the provider's
    # refresh lead, or the keep-alive time, whichever is first; NULL when nothing can be done
    # (not refreshable, needs re-authorisation, exhausted, deleted). Derived from expires_at on
    # every write, so the scan reads only due rows through this index, never the whole table.
    next_refresh_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), index=True)

    last_fetched_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    @property
    def deleted(self) -> bool:
        """True once soft-deleted."""
        return self.deleted_at is not None


class WebhookOutbox(Base):
    """One webhook to deliver to one URL: the transactional outbox of auth webhooks.

    Rows are written in the same transaction as the state change they announce (see
    :mod:`freshtoken.webhooks`), so a committed change always has its webhook and a rolled-back
    one never does. ``event_id`` is shared by the rows of one event (primary and secondary URL)
    and sent as a header, so a receiver can drop a redelivery.
    """

    __tablename__ = "webhook_outbox"
    __table_args__ = (
        # The sweep: pending rows that are due.
        Index("ix_webhook_outbox_status_next_attempt_at", "status", "next_attempt_at"),
        # Per-connection ordering: the oldest pending row of a (connection, target) goes first.
        Index("ix_webhook_outbox_connection_pk_target_id", "connection_pk", "target", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36))
    # No foreign key: the webhook outlives a deleted connection.
    connection_pk: Mapped[int] = mapped_column(Integer)
    connection_id: Mapped[str] = mapped_column(String(255))
    provider_config_key: Mapped[str] = mapped_column(String(255))
    target: Mapped[str] = mapped_column(String(16))  # primary, secondary or override
    url: Mapped[str] = mapped_column(Text)
    webhook_type: Mapped[str] = mapped_column(String(32))
    operation: Mapped[str] = mapped_column(String(32))
    success: Mapped[bool] = mapped_column(Boolean)
    body: Mapped[str] = mapped_column(Text)  # the exact bytes to POST (key-sorted JSON)
    status: Mapped[str] = mapped_column(String(16))  # pending, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    deadline_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_http_status: Mapped[int | None] = mapped_column(Integer)
    last_outcome: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
