"""A shortcut for GET /api/v1/listings/ requests the route has already answered.

Why: a page from the cache (`app/services/listing_pages.py`) needs one SELECT of its
owner's feed version, yet reaching it through routing, FastAPI's dependencies, the query
model, the JWT check and SQLAlchemy's async layer costs several times that SELECT: the
shortcut serves the same page at about six times the rate (`bench/`, API scenario).

What it serves: only what the route itself produced for the very same request. Each time
the route answers a page, it records the exact Authorization header and query string it
accepted, with the owner, the page's cache key and when the token expires
(`ServedRequests`). When that same pair comes again before the token expires, the
shortcut reads the owner's feed version exactly as the route does (a deactivated or
deleted user has none) and sends the page cached at that version, with the route's
headers. Anything else goes on to the route, which decides as it always does: another
path or method, a pair never answered, an expired token, no page at that version, or any
error reading the version (the route then answers 503, or reads it on a fresh
connection). So the shortcut can make an answer faster, never different.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Receive, Scope, Send

from app.services import listing_pages
from app.services.listing_pages import PageCache, PageKey

logger = logging.getLogger(__name__)

LISTINGS_PATH = "/api/v1/listings/"

# (the Authorization header, the query string), byte for byte as the client sent them.
RequestKey = tuple[bytes, bytes]

# Short, as the route is the fallback: a shortcut must not hold a request long when the
# database is unwell.
VERSION_READ_TIMEOUT_S = 2.0


def request_key(scope: Scope) -> RequestKey | None:
    """What identifies a request to the shortcut; None when it has no single
    Authorization header (FastAPI reads the first of several, so two are never matched)."""
    authorizations = [value for name, value in scope["headers"] if name == b"authorization"]
    if len(authorizations) != 1:
        return None
    return authorizations[0], scope["query_string"]


@dataclass(frozen=True, slots=True)
class ServedRequest:
    """A page the route answered: whose it was, its cache key, and until when (epoch
    seconds, the token's `exp`) the token that asked for it is valid."""

    owner_id: uuid.UUID
    page_key: PageKey
    token_expires_at: float
    credentials_version: int


class ServedRequests:
    """The requests the route answered, at most `max_entries` of them, least recently used
    forgotten first. One per process, used from its event loop."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._served: OrderedDict[RequestKey, ServedRequest] = OrderedDict()

    def __len__(self) -> int:
        return len(self._served)

    def remember(self, scope: Scope, served: ServedRequest) -> None:
        key = request_key(scope)
        if key is None or self.max_entries <= 0:
            return
        self._served[key] = served
        self._served.move_to_end(key)
        while len(self._served) > self.max_entries:
            self._served.popitem(last=False)

    def recall(self, key: RequestKey, *, now: float) -> ServedRequest | None:
        """What the route answered to this request, if its token is still valid at `now`
        (without the route's leeway: near the end, the route decides)."""
        served = self._served.get(key)
        if served is None:
            return None
        if now >= served.token_expires_at:
            del self._served[key]
            return None
        self._served.move_to_end(key)
        return served


class OwnerVersions:
    """An active user's feed version, in one round trip. On asyncpg the SELECT goes
    straight to a pool of the driver's own, as SQLAlchemy's async layer costs more CPU
    than the SELECT; on any other driver (SQLite) it goes through the engine."""

    def __init__(self, engine: AsyncEngine, max_connections: int) -> None:
        self._engine = engine
        self._max_connections = max_connections
        self._on_asyncpg = engine.dialect.driver == "asyncpg"
        self._sql = str(listing_pages.OWNER_VERSION.compile(dialect=engine.dialect))
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def read(self, user_id: uuid.UUID, credentials_version: int) -> int | None:
        if not self._on_asyncpg:
            owner = await listing_pages.read_owner(self._engine, user_id, credentials_version)
            return None if owner is None else owner.feed_version
        pool = self._pool or await self._open_pool()
        # Parameters in the order the compiled statement numbers them ($1 id, $2 version).
        version: int | None = await pool.fetchval(self._sql, user_id, credentials_version)
        return version

    async def _open_pool(self) -> asyncpg.Pool:
        async with self._opening:
            if self._pool is None:
                _, connect_args = self._engine.dialect.create_connect_args(self._engine.url)
                # Options of SQLAlchemy's adapter, not of asyncpg.
                connect_args.pop("prepared_statement_cache_size", None)
                connect_args.pop("prepared_statement_name_func", None)
                self._pool = await asyncpg.create_pool(
                    min_size=0,
                    max_size=self._max_connections,
                    timeout=VERSION_READ_TIMEOUT_S,
                    command_timeout=VERSION_READ_TIMEOUT_S,
                    reset=_nothing_to_reset,
                    **connect_args,
                )
            return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


async def _nothing_to_reset(connection: asyncpg.Connection) -> None:
    """The pool's default reset (advisory unlocks, CLOSE ALL, UNLISTEN, RESET ALL) costs a
    second round trip on every release; these connections only ever run one SELECT
    outside a transaction, which leaves no session state behind."""


class ListingShortcut:
    """The shortcut's state in a process: the pages, the requests the route answered, and
    the reader of versions; `answered` counts the requests it answered itself."""

    def __init__(self, pages: PageCache, engine: AsyncEngine, max_connections: int) -> None:
        self.pages = pages
        self.served = ServedRequests(pages.max_entries)
        # As many connections as the engine's pool: under load, requests queue for the
        # reads, and with fewer (4 measured against 10) the slowest hundredth wait twice
        # as long. Idle ones are closed after a while (asyncpg's default, 5 minutes).
        self.versions = OwnerVersions(engine, max_connections)
        self.answered = 0

    async def cached_answer(self, scope: Scope) -> bytes | None:
        """The body to answer this request with, or None to leave it to the route."""
        if not _is_listings_get(scope):
            return None
        key = request_key(scope)
        served = None if key is None else self.served.recall(key, now=time.time())
        if served is None:
            return None
        try:
            version = await self.versions.read(served.owner_id, served.credentials_version)
        except Exception as exc:
            # Whatever went wrong, the route reads the version again and answers (503 if
            # the database is down): the shortcut never answers with an error of its own.
            logger.debug("listing shortcut: version read failed: %r", exc)
            return None
        if version is None:
            return None
        # No miss recorded: the route looks again, and counts it.
        body = self.pages.get(served.page_key, version, record_miss=False)
        if body is not None:
            self.answered += 1
        return body

    async def close(self) -> None:
        await self.versions.close()


class ListingShortcutMiddleware:
    """Pure ASGI middleware answering what `ListingShortcut` can. Installed inside the
    request-id and CORS middleware, so its answers carry the same headers as the route's."""

    def __init__(self, app: ASGIApp, shortcut: ListingShortcut) -> None:
        self.app = app
        self.shortcut = shortcut

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await self.shortcut.cached_answer(scope)
        if body is None:
            await self.app(scope, receive, send)
            return
        headers = [(b"content-length", str(len(body)).encode()), _JSON]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


_JSON = (b"content-type", b"application/json")


def _is_listings_get(scope: Scope) -> bool:
    return bool(
        scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == LISTINGS_PATH
    )
