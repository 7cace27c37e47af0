"""drop ix_search_matches_search_id: the unique (search_id, listing_id) index covers it

Every check inserts match rows; one index fewer makes each insert cheaper, and lookups by
search use the leading column of the unique index.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 21:10:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("search_matches", schema=None) as batch_op:
        batch_op.drop_index("ix_search_matches_search_id")


def downgrade() -> None:
    with op.batch_alter_table("search_matches", schema=None) as batch_op:
        batch_op.create_index("ix_search_matches_search_id", ["search_id"], unique=False)
