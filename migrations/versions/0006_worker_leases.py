"""workers: identities with heartbeat leases; application_token wide enough to be sealed

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_worker",
        sa.Column(
            "id",
            sa.String(96),
            nullable=False,
            comment="host-pid-random, stamped on journal rows",
        ),
        sa.Column("connector_id", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "lease_until",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="past this, the worker is dead: its reservations may be adopted",
        ),
        sa.Column("listener", sa.Boolean(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_worker")),
        comment="running workers and their heartbeat leases",
    )
    op.create_index("ix_sync_worker_connector_id", "sync_worker", ["connector_id"])
    with op.batch_alter_table("sync_token", schema=None) as batch_op:
        batch_op.alter_column(
            "application_token",
            existing_type=sa.String(255),
            type_=sa.Text(),
            existing_nullable=True,
        )


def downgrade() -> None:
    with op.batch_alter_table("sync_token", schema=None) as batch_op:
        batch_op.alter_column(
            "application_token",
            existing_type=sa.Text(),
            type_=sa.String(255),
            existing_nullable=True,
        )
    op.drop_index("ix_sync_worker_connector_id", table_name="sync_worker")
    op.drop_table("sync_worker")
