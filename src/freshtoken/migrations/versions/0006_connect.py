"""Add connect_sessions and oauth_sessions (connect sessions and authorization flows).

Revision ID: 0006_connect
Revises: 0005_security
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import freshtoken.db.types

revision: str = "0006_connect"
down_revision: str | None = "0005_security"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "connect_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("end_user", _JSON, nullable=True),
        sa.Column("organization", _JSON, nullable=True),
        sa.Column("allowed_integrations", _JSON, nullable=True),
        sa.Column("integrations_config_defaults", _JSON, nullable=True),
        sa.Column("tags", _JSON, nullable=True),
        sa.Column("webhook_url_override", sa.Text(), nullable=True),
        sa.Column("connection_id", sa.String(length=255), nullable=True),
        sa.Column("provider_config_key", sa.String(length=255), nullable=True),
        sa.Column("created_at", freshtoken.db.types.UTCDateTime(), nullable=False),
        sa.Column("expires_at", freshtoken.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connect_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_connect_sessions_token_hash")),
    )
    op.create_index(
        op.f("ix_connect_sessions_expires_at"), "connect_sessions", ["expires_at"], unique=False
    )
    op.create_table(
        "oauth_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("provider_config_key", sa.String(length=255), nullable=False),
        sa.Column("provider", sa.String(length=255), nullable=False),
        sa.Column("auth_mode", sa.String(length=32), nullable=False),
        sa.Column("connection_id", sa.String(length=255), nullable=False),
        sa.Column("connection_config", _JSON, nullable=False),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("code_verifier_enc", sa.Text(), nullable=True),
        sa.Column("request_token_secret_enc", sa.Text(), nullable=True),
        sa.Column("connect_session_id", sa.Integer(), nullable=True),
        sa.Column("ws_client_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", freshtoken.db.types.UTCDateTime(), nullable=False),
        sa.Column("expires_at", freshtoken.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["connect_session_id"],
            ["connect_sessions.id"],
            name=op.f("fk_oauth_sessions_connect_session_id_connect_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_sessions")),
        sa.UniqueConstraint("state_hash", name=op.f("uq_oauth_sessions_state_hash")),
    )
    op.create_index(
        op.f("ix_oauth_sessions_connect_session_id"),
        "oauth_sessions",
        ["connect_session_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_oauth_sessions_expires_at"), "oauth_sessions", ["expires_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_oauth_sessions_expires_at"), table_name="oauth_sessions")
    op.drop_index(op.f("ix_oauth_sessions_connect_session_id"), table_name="oauth_sessions")
    op.drop_table("oauth_sessions")
    op.drop_index(op.f("ix_connect_sessions_expires_at"), table_name="connect_sessions")
    op.drop_table("connect_sessions")
