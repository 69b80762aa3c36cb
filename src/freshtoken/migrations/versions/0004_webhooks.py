"""Add webhook_outbox, the transactional outbox of auth webhooks.

Revision ID: 0004_webhooks
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import freshtoken.db.types

revision: str = "0004_webhooks"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("connection_pk", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.String(length=255), nullable=False),
        sa.Column("provider_config_key", sa.String(length=255), nullable=False),
        sa.Column("target", sa.String(length=16), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("webhook_type", sa.String(length=32), nullable=False),
        sa.Column("operation", sa.String(length=32), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", freshtoken.db.types.UTCDateTime(), nullable=False),
        sa.Column("claimed_until", freshtoken.db.types.UTCDateTime(), nullable=True),
        sa.Column("deadline_at", freshtoken.db.types.UTCDateTime(), nullable=False),
        sa.Column("last_http_status", sa.Integer(), nullable=True),
        sa.Column("last_outcome", sa.String(length=32), nullable=True),
        sa.Column("created_at", freshtoken.db.types.UTCDateTime(), nullable=False),
        sa.Column("finished_at", freshtoken.db.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_outbox")),
    )
    op.create_index(
        "ix_webhook_outbox_status_next_attempt_at",
        "webhook_outbox",
        ["status", "next_attempt_at"],
        unique=False,
    )
    op.create_index(
        "ix_webhook_outbox_connection_pk_target_id",
        "webhook_outbox",
        ["connection_pk", "target", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_outbox_connection_pk_target_id", table_name="webhook_outbox")
    op.drop_index("ix_webhook_outbox_status_next_attempt_at", table_name="webhook_outbox")
    op.drop_table("webhook_outbox")
