"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import freshtoken.db.types

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "integrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("unique_key", sa.String(length=255), nullable=False),
        sa.Column("provider", sa.String(length=255), nullable=False),
        sa.Column("display_name", sa.String(length=255), nullable=True),
        sa.Column("client_id", sa.Text(), nullable=True),
        sa.Column("client_secret_enc", sa.Text(), nullable=True),
        sa.Column("scopes", sa.Text(), nullable=True),
        sa.Column("created_at", freshtoken.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", freshtoken.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_integrations")),
        sa.UniqueConstraint("unique_key", name=op.f("uq_integrations_unique_key")),
    )
    op.create_table(
        "connections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.String(length=255), nullable=False),
        sa.Column("provider_config_key", sa.String(length=255), nullable=False),
        sa.Column("provider", sa.String(length=255), nullable=False),
        sa.Column("integration_id", sa.Integer(), nullable=False),
        sa.Column("credentials_type", sa.String(length=32), nullable=False),
        sa.Column("credentials_enc", sa.Text(), nullable=True),
        sa.Column("expires_at", freshtoken.db.types.UTCDateTime(), nullable=True),
        sa.Column("has_refresh_token", sa.Boolean(), nullable=False),
        sa.Column(
            "connection_config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "tags",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "end_user",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("webhook_url_override", sa.Text(), nullable=True),
        sa.Column("last_refresh_success", freshtoken.db.types.UTCDateTime(), nullable=True),
        sa.Column("last_refresh_failure", freshtoken.db.types.UTCDateTime(), nullable=True),
        sa.Column("refresh_attempts", sa.Integer(), nullable=True),
        sa.Column("refresh_exhausted", sa.Boolean(), nullable=False),
        sa.Column("needs_reauth", sa.Boolean(), nullable=False),
        sa.Column("last_refresh_error", sa.String(length=255), nullable=True),
        sa.Column("auth_error_log_id", sa.String(length=64), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("refresh_claimed_until", freshtoken.db.types.UTCDateTime(), nullable=True),
        sa.Column("last_fetched_at", freshtoken.db.types.UTCDateTime(), nullable=True),
        sa.Column("created_at", freshtoken.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", freshtoken.db.types.UTCDateTime(), nullable=False),
        sa.Column("deleted_at", freshtoken.db.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["integration_id"],
            ["integrations.id"],
            name=op.f("fk_connections_integration_id_integrations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connections")),
    )
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_connections_integration_id"), ["integration_id"], unique=False
        )
        batch_op.create_index(
            "ix_connections_live_expires_at",
            ["expires_at"],
            unique=False,
            sqlite_where=sa.text("deleted_at IS NULL"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        )
        batch_op.create_index(
            "uq_connections_live_key",
            ["provider_config_key", "connection_id"],
            unique=True,
            sqlite_where=sa.text("deleted_at IS NULL"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        )


def downgrade() -> None:

    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_connections_live_key",
            sqlite_where=sa.text("deleted_at IS NULL"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        )
        batch_op.drop_index(
            "ix_connections_live_expires_at",
            sqlite_where=sa.text("deleted_at IS NULL"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        )
        batch_op.drop_index(batch_op.f("ix_connections_integration_id"))

    op.drop_table("connections")
    op.drop_table("integrations")
