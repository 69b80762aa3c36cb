"""Add integrations.custom_enc: a GitHub App's app_id, app_link and private key (encrypted).

Nango keeps the same in ``_nango_configs.custom`` for APP and CUSTOM integrations.

Revision ID: 0006_authmodes
Revises: 0004_webhooks
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_authmodes"
down_revision: str | None = "0004_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("integrations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("custom_enc", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("integrations", schema=None) as batch_op:
        batch_op.drop_column("custom_enc")
