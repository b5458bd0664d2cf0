"""outbox: status, the portal's refusal, the values in flight; sync_echo, SQLite's guard

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sync_outbox", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "status",
                sa.String(16),
                nullable=False,
                server_default="pending",
                comment="pending | done | failed | held",
            )
        )
        batch_op.add_column(
            sa.Column("error_code", sa.String(64), nullable=True, comment="the portal's code")
        )
        batch_op.add_column(
            sa.Column("note", sa.Text(), nullable=True, comment="what the pusher did, in words")
        )
        batch_op.add_column(
            sa.Column(
                "sent",
                sa.JSON(),
                nullable=True,
                comment="what the pusher is about to send (read after a crash mid-push)",
            )
        )
        batch_op.create_index("ix_sync_outbox_status", ["status", "id"])
    op.create_table(
        "sync_echo",
        sa.Column("marker", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("marker", name=op.f("pk_sync_echo")),
        comment=(
            "SQLite only: a row here, written and removed inside the connector's own "
            "transaction, tells the outbox triggers to stay quiet"
        ),
    )


def downgrade() -> None:
    op.drop_table("sync_echo")
    with op.batch_alter_table("sync_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_sync_outbox_status")
        batch_op.drop_column("sent")
        batch_op.drop_column("note")
        batch_op.drop_column("error_code")
        batch_op.drop_column("status")
