"""rate bucket: double-precision columns (MariaDB's FLOAT rounded unix seconds to minutes)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COLUMNS = {
    "level": None,
    "updated_at": "unix seconds of the last leak computation",
    "slowdown_until": None,
}


def upgrade() -> None:
    with op.batch_alter_table("sync_rate_bucket", schema=None) as batch_op:
        for name, comment in COLUMNS.items():
            batch_op.alter_column(
                name,
                existing_type=sa.Float(),
                type_=sa.Double(),
                existing_nullable=False,
                existing_server_default="0",
                existing_comment=comment,
            )


def downgrade() -> None:
    with op.batch_alter_table("sync_rate_bucket", schema=None) as batch_op:
        for name, comment in COLUMNS.items():
            batch_op.alter_column(
                name,
                existing_type=sa.Double(),
                type_=sa.Float(),
                existing_nullable=False,
                existing_server_default="0",
                existing_comment=comment,
            )
