"""GET /listings/ pages as JSON, kept in a bounded in-process LRU cache keyed on the
owner's feed version.

Why a cached page is never stale: every change to what a user's listing pages show (a new
or changed match row, a listing changed or deleted, a search deleted, a listing saved or
hidden) raises `users.feed_version` in the same transaction as the change
(`app/monitoring/feed_versions.py`). A request reads the version from the user row it
reads to authenticate (`read_owner`), then, if the page is not cached, runs the page's
queries: later statements, whose snapshots hold at least what the version's did (at any
isolation level, as they start after it returned). Whatever was committed before the
version it read is therefore in the page it computes, so a page stored under version v
shows every change up to v (and perhaps a few later ones, never fewer). A request that
reads v finds either that page or nothing; once a change commits, requests read v + 1 and
miss. No time-to-live is involved. The one way to break this is to move the version
backwards (restoring an older database backup under running API processes): restart
them after a restore.

Each process has its own cache; processes never share pages, only the version in the
database. Entries are keyed by (user, filters, limit, offset) and hold the version they
were computed at, so a user's newer page replaces the older one instead of sitting beside
it until evicted. Only GET /listings/ is cached: /listings/recent depends on the clock and
a single listing is cheap.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db import autocommit_connection
from app.models import User
from app.schemas.listings import ListingFilters, ListingPage
from app.services import listings

# What FastAPI would use to serialise a `response_model=ListingPage` route, so the cached
# bytes are the ones the route produced before it had a cache.
_PAGE_JSON = TypeAdapter(ListingPage)

PageKey = tuple[Any, ...]
_FILTER_FIELDS = tuple(ListingFilters.model_fields)


@dataclass(frozen=True, slots=True)
class PageOwner:
    """All a page needs of its owner: who they are and their feed version right now."""

    id: uuid.UUID
    feed_version: int


# Built once, not per request: building it costs some 20 us of CPU each time.
# A user whose credentials version moved on (password changed, logged out everywhere)
# has none either, for a token issued before.
OWNER_VERSION = select(User.feed_version).where(
    User.id == bindparam("id"),
    User.is_active,
    User.credentials_version == bindparam("credentials_version"),
)


async def read_owner(
    engine: AsyncEngine, user_id: uuid.UUID, credentials_version: int
) -> PageOwner | None:
    """The active user's current feed version; None for a user deleted or deactivated, or
    whose credentials version is no longer `credentials_version`.

    One column, no ORM object and no transaction: a cached page is served on this one
    round trip, where loading the whole `User` in the request's session costs BEGIN, the
    SELECT and COMMIT, and the CPU of building the object."""
    async with autocommit_connection(engine) as connection:
        parameters = {"id": user_id, "credentials_version": credentials_version}
        version = (await connection.execute(OWNER_VERSION, parameters)).scalar()
    return None if version is None else PageOwner(user_id, version)


class PageCache:
    """At most `max_entries` pages of JSON, least recently used evicted first; a size of
    0 stores nothing. Not thread-safe: one per process, used from its event loop."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._pages: OrderedDict[PageKey, tuple[int, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pages)

    def get(self, key: PageKey, version: int, *, record_miss: bool = True) -> bytes | None:
        """The page stored under `key` at exactly this feed version, or None."""
        entry = self._pages.get(key)
        if entry is None or entry[0] != version:
            if record_miss:
                self.misses += 1
            return None
        self._pages.move_to_end(key)
        self.hits += 1
        return entry[1]

    def put(self, key: PageKey, version: int, body: bytes) -> None:
        if self.max_entries <= 0:
            return
        stored = self._pages.get(key)
        # A slower request that read an older version must not replace a newer page.
        if stored is not None and stored[0] > version:
            return
        self._pages[key] = (version, body)
        self._pages.move_to_end(key)
        while len(self._pages) > self.max_entries:
            self._pages.popitem(last=False)

    def clear(self) -> None:
        self._pages.clear()


async def page_json(
    sessions: async_sessionmaker[AsyncSession],
    cache: PageCache,
    *,
    owner: PageOwner,
    filters: ListingFilters,
    limit: int,
    offset: int,
) -> tuple[PageKey, bytes]:
    """The page's cache key, and the JSON of `listings.list_listings(...)` for the owner:
    from the cache when it holds the page at the owner's feed version (read by
    `read_owner` before anything else of the request, see above); otherwise computed in a
    session of its own, opened only then. Raises what `list_listings` raises; errors are
    never cached."""
    key = page_key(owner.id, filters, limit=limit, offset=offset)
    version = owner.feed_version
    body = cache.get(key, version)
    if body is not None:
        return key, body
    async with sessions() as session:
        page = await listings.list_listings(
            session, owner_id=owner.id, filters=filters, limit=limit, offset=offset
        )
    body = _PAGE_JSON.dump_json(page, by_alias=True)
    cache.put(key, version, body)
    return key, body


def page_key(owner_id: uuid.UUID, filters: ListingFilters, *, limit: int, offset: int) -> PageKey:
    """What makes two requests the same page: the owner, every filter, limit and offset
    (equal prices compare equal whatever their digits: 200 and 200.00 are one key)."""
    return (owner_id, tuple(getattr(filters, name) for name in _FILTER_FIELDS), limit, offset)
