"""Add connections.next_refresh_at, the proactive scan's due time (indexed).

Existing refreshable rows are backfilled as due now, so the first scan plans them properly.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import freshtoken.db.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("next_refresh_at", freshtoken.db.types.UTCDateTime(), nullable=True)
        )
        batch_op.create_index(
            batch_op.f("ix_connections_next_refresh_at"), ["next_refresh_at"], unique=False
        )
    op.execute(
        "UPDATE connections SET next_refresh_at = CURRENT_TIMESTAMP "
        "WHERE deleted_at IS NULL AND NOT needs_reauth AND NOT refresh_exhausted "
        "AND (credentials_type = 'OAUTH2_CC' "
        "OR (credentials_type = 'OAUTH2' AND has_refresh_token))"
    )


def downgrade() -> None:
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_connections_next_refresh_at"))
        batch_op.drop_column("next_refresh_at")
