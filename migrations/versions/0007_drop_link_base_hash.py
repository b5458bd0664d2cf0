"""links: drop base_hash (never written or read; the merge base itself is in ``base``)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sync_link", schema=None) as batch_op:
        batch_op.drop_column("base_hash")


def downgrade() -> None:
    with op.batch_alter_table("sync_link", schema=None) as batch_op:
        batch_op.add_column(sa.Column("base_hash", sa.String(length=64), nullable=True))
