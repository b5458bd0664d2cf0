"""journal: the MESSAGE_IDs to flag with event.offline.error after the commit

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sync_journal", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "flagged",
                sa.JSON(),
                nullable=True,
                comment="MESSAGE_IDs to flag with event.offline.error once applied",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("sync_journal", schema=None) as batch_op:
        batch_op.drop_column("flagged")
