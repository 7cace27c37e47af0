"""search alert mode and digest bookkeeping

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 18:05:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("searches", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("alert_mode", sa.String(length=16), server_default="instant", nullable=False)
        )
        batch_op.add_column(
            sa.Column("last_digest_at", app.db.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("searches", schema=None) as batch_op:
        batch_op.drop_column("last_digest_at")
        batch_op.drop_column("alert_mode")
