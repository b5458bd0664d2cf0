"""conflicts: every held MESSAGE_ID, last seen, who resolved, when released; errors: seen/resolved

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sync_conflict", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "message_ids",
                sa.JSON(),
                nullable=True,
                comment="every queue MESSAGE_ID this conflict holds in the portal",
            )
        )
        batch_op.add_column(sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column(
                "times",
                sa.JSON(),
                nullable=True,
                comment="each side's last modification: {portal, erp} (ISO 8601)",
            )
        )
        batch_op.add_column(sa.Column("resolved_by", sa.String(255), nullable=True))
        batch_op.add_column(
            sa.Column(
                "released_at",
                sa.DateTime(timezone=True),
                nullable=True,
                comment="when its held queue records were released after the resolution",
            )
        )
    with op.batch_alter_table("sync_record_error", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column(
                "released_at",
                sa.DateTime(timezone=True),
                nullable=True,
                comment="when its held queue record was released after it synced",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("sync_record_error", schema=None) as batch_op:
        batch_op.drop_column("released_at")
        batch_op.drop_column("resolved_at")
        batch_op.drop_column("last_seen_at")
    with op.batch_alter_table("sync_conflict", schema=None) as batch_op:
        batch_op.drop_column("released_at")
        batch_op.drop_column("resolved_by")
        batch_op.drop_column("times")
        batch_op.drop_column("last_seen_at")
        batch_op.drop_column("message_ids")
