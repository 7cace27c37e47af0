"""Per-user feed versions: `users.feed_version` goes up with every change to what a user's
listing pages show, in the transaction that makes the change.

Whoever writes search_matches, or changes or deletes listings, calls `bump` (for users it
knows) or `bump_owners_of_listings` (for listings, whoever matched them) before
committing. The API's listing-page cache (`app/services/listing_pages.py`) keys its pages
on the version, so a page computed before a change is never served after it.

Lock order: PostgreSQL locks each bumped user row until the commit. Write the data rows
first and bump last where you can, so two transactions never hold a user row while
waiting for a match row the other holds; `bump` takes the user rows in id order.
Neither function commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import one_of
from app.models import SearchMatch, User

# Ids per statement: PostgreSQL (asyncpg) and SQLite both refuse more than 32,766 bound
# parameters, and a stale-listing cleanup can name more listings than that.
MAX_IDS_PER_STATEMENT = 10_000


async def bump(session: AsyncSession, user_ids: Iterable[uuid.UUID]) -> None:
    """Raise the feed version of each user, once each, in one UPDATE (per 10,000 users).

    The ids are de-duplicated, and on PostgreSQL the rows are locked in id order first, so
    concurrent bumps never deadlock on each other. Nothing happens for no ids.
    """
    for chunk in _chunks(sorted(set(user_ids))):
        await _bump_where(session, one_of(session, User.id, chunk))


async def bump_owners_of_listings(session: AsyncSession, listing_ids: Iterable[uuid.UUID]) -> None:
    """Raise the feed version of every user holding a match row of one of the listings,
    once each, through `bump` (so in its lock order). Call it before deleting listings:
    their match rows, which name the owners, go with them. Nothing happens for no ids."""
    await bump(session, await owners_of_listings(session, listing_ids))


async def owners_of_listings(
    session: AsyncSession, listing_ids: Iterable[uuid.UUID]
) -> set[uuid.UUID]:
    """The users holding a match row of one of the listings (a plain read, no lock)."""
    owners: set[uuid.UUID] = set()
    for chunk in _chunks(sorted(set(listing_ids))):
        owners.update(
            await session.scalars(
                select(SearchMatch.user_id)
                .where(one_of(session, SearchMatch.listing_id, chunk))
                .distinct()
            )
        )
    return owners


async def _bump_where(session: AsyncSession, condition: ColumnElement[bool]) -> None:
    bumped = update(User)
    if session.get_bind().dialect.name == "postgresql":
        # An UPDATE locks rows in whatever order its plan visits them, which need not be
        # the order of an IN list: two checks bumping overlapping users could each hold a
        # row the other waits for. Locking them in id order in a sub-select rules that
        # out, in the same round trip: these locks are held until the commit, and every
        # round trip before it makes the next bump of the same users wait longer.
        locked = (
            select(User.id)
            .where(condition)
            .order_by(User.id)
            .with_for_update(key_share=True)
            .subquery()
        )
        bumped = bumped.where(User.id == locked.c.id)
    else:
        bumped = bumped.where(condition)
    await session.execute(
        # updated_at is the user's own edits, not a side effect of new matches.
        bumped.values(
            feed_version=User.feed_version + 1, updated_at=User.updated_at
        ).execution_options(synchronize_session=False)
    )


def _chunks(ids: Sequence[uuid.UUID]) -> Iterable[Sequence[uuid.UUID]]:
    for start in range(0, len(ids), MAX_IDS_PER_STATEMENT):
        yield ids[start : start + MAX_IDS_PER_STATEMENT]
