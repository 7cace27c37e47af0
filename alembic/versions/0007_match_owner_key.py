"""search_matches: one key on (search_id, user_id) to the search and its owner

A match's user_id is its search's owner. Two keys (search_id to searches, user_id to
users) cost every inserted match row two lookups and two row locks; one composite key on
searches (id, owner_id) costs one, and also holds user_id to the search's owner, which
the two keys did not. Deleting a user still deletes their matches, through their searches.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 00:10:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("searches", schema=None) as batch_op:
        batch_op.create_index("ix_searches_id_owner", ["id", "owner_id"], unique=True)
    with op.batch_alter_table("search_matches", schema=None) as batch_op:
        batch_op.drop_constraint("fk_search_matches_user_id_users", type_="foreignkey")
        batch_op.drop_constraint("fk_search_matches_search_id_searches", type_="foreignkey")
        batch_op.create_foreign_key(
            "fk_search_matches_search_id_searches",
            "searches",
            ["search_id", "user_id"],
            ["id", "owner_id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    with op.batch_alter_table("search_matches", schema=None) as batch_op:
        batch_op.drop_constraint("fk_search_matches_search_id_searches", type_="foreignkey")
        batch_op.create_foreign_key(
            "fk_search_matches_search_id_searches",
            "searches",
            ["search_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_foreign_key(
            "fk_search_matches_user_id_users",
            "users",
            ["user_id"],
            ["id"],
            ondelete="CASCADE",
        )
    with op.batch_alter_table("searches", schema=None) as batch_op:
        batch_op.drop_index("ix_searches_id_owner")
