"""What an authenticated request costs the database, counted on the wire: the app reaches
PostgreSQL through a relay that counts the round trips (a simple query, or an extended
query batch ending in Sync), and the statements are counted on the engine.

A page of GET /listings/ served from the cache costs one round trip: no liveness ping on
checkout (pool_pre_ping costs three with asyncpg), no BEGIN or COMMIT, no ORM user. And
no request fails after PostgreSQL closed every pooled connection (a restart): the pool
finds them closed on checkout and connects again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import User
from tests.conftest import ADMIN_POSTGRES_URL, make_settings
from tests.factories import make_listing, make_match, make_search
from tests.statements import statements_run

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

LISTINGS = "/api/v1/listings/"
ME = "/api/v1/users/me"
# The protocol version of a StartupMessage; SSLRequest and GSSENCRequest (other codes)
# may come before it, and every message after it starts with a type byte.
_STARTUP_CODE = 196608


class _ClientStream:
    """Counts the round trips in what one client connection sends: each simple query
    ("Q") and each extended query batch, which ends with Sync ("S"), waits for one answer."""

    def __init__(self) -> None:
        self._buffer = b""
        self._started = False

    def feed(self, data: bytes) -> int:
        self._buffer += data
        trips = 0
        while True:
            if not self._started:
                if len(self._buffer) < 8:
                    return trips
                length = int.from_bytes(self._buffer[:4], "big")
                if len(self._buffer) < length:
                    return trips
                self._started = int.from_bytes(self._buffer[4:8], "big") == _STARTUP_CODE
                self._buffer = self._buffer[length:]
            else:
                if len(self._buffer) < 5:
                    return trips
                length = int.from_bytes(self._buffer[1:5], "big")
                if len(self._buffer) < 1 + length:
                    return trips
                trips += self._buffer[:1] in (b"Q", b"S")
                self._buffer = self._buffer[1 + length :]


class WireCounter:
    """A TCP relay to PostgreSQL counting the round trips of every connection through it."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.target_port = port
        self.port = 0
        self.round_trips = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> WireCounter:
        await self.restore()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.cut()

    async def cut(self) -> None:
        """The database unreachable: every connection reset, none accepted."""
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()

    async def restore(self) -> None:
        """Accepting again, on the same port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            self.host, self.target_port
        )
        self._writers.update((writer, upstream_writer))
        stream = _ClientStream()
        await asyncio.gather(
            self._pump(reader, upstream_writer, stream), self._pump(upstream_reader, writer, None)
        )

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        stream: _ClientStream | None,
    ) -> None:
        try:
            while data := await reader.read(64 * 1024):
                if stream is not None:
                    self.round_trips += stream.feed(data)
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.transport.abort()
            self._writers.discard(writer)


@pytest.fixture
async def wire(database_url: str) -> AsyncIterator[WireCounter]:
    url = make_url(database_url)
    async with WireCounter(url.host or "127.0.0.1", url.port or 5432) as counter:
        yield counter


@pytest.fixture
def settings(database_url: str, wire: WireCounter) -> Settings:
    # ssl=disable: the relay reads the protocol, which TLS would hide.
    relayed = make_url(database_url).set(host="127.0.0.1", port=wire.port, query={"ssl": "disable"})
    return make_settings(relayed.render_as_string(hide_password=False))


@contextmanager
def counted(app: FastAPI, wire: WireCounter) -> Iterator[list[str]]:
    """The statements run while the block runs; wire.round_trips counts from zero in it."""
    with statements_run(app.state.engine) as statements:
        wire.round_trips = 0
        yield statements


@pytest.fixture
async def matched(session: AsyncSession, user: User) -> None:
    search = await make_search(session, owner=user)
    for n in range(3):
        listing = await make_listing(session, external_id=f"item-{n}", title=f"Item {n}")
        await make_match(session, search=search, listing=listing)


async def test_a_cached_listings_page_costs_one_round_trip_and_no_statement_on_the_engine(
    app: FastAPI,
    client: httpx.AsyncClient,
    headers: dict[str, str],
    matched: None,
    wire: WireCounter,
) -> None:
    computed = await client.get(LISTINGS, headers=headers)
    assert computed.status_code == 200, computed.text
    # The shortcut's first answer opens its connection and prepares its statement.
    assert (await client.get(LISTINGS, headers=headers)).content == computed.content

    with counted(app, wire) as statements:
        cached = await client.get(LISTINGS, headers=headers)

    assert cached.status_code == 200
    assert cached.content == computed.content
    assert app.state.listing_shortcut.answered == 2
    assert statements == [], "the version is read on the shortcut's own connection"
    assert wire.round_trips == 1


async def test_a_cached_page_from_the_route_costs_one_round_trip_and_one_statement(
    app: FastAPI,
    client: httpx.AsyncClient,
    headers: dict[str, str],
    matched: None,
    wire: WireCounter,
) -> None:
    # A spelling of the query the route has not answered yet: the route serves it, from
    # the page cached for the first one.
    assert (await client.get(LISTINGS, headers=headers)).status_code == 200

    with counted(app, wire) as statements:
        cached = await client.get(LISTINGS, params={"limit": 20}, headers=headers)

    assert cached.status_code == 200
    assert app.state.listing_shortcut.answered == 0
    assert app.state.listing_pages.hits == 1
    assert len(statements) == 1
    assert " ".join(statements[0].split()) == (
        "SELECT users.feed_version FROM users WHERE users.id = $1::UUID AND users.is_active "
        "AND users.credentials_version = $2::INTEGER"
    )
    assert wire.round_trips == 1


async def test_a_route_on_the_session_pays_begin_select_commit_and_no_ping(
    app: FastAPI, client: httpx.AsyncClient, headers: dict[str, str], wire: WireCounter
) -> None:
    assert (await client.get(ME, headers=headers)).status_code == 200

    with counted(app, wire) as statements:
        response = await client.get(ME, headers=headers)

    assert response.status_code == 200
    assert len(statements) == 1
    assert wire.round_trips == 3


async def _terminate_backends(database: str) -> None:
    """What a PostgreSQL restart does to the app's connections: closed by the server."""
    admin = await asyncpg.connect(ADMIN_POSTGRES_URL, timeout=5)
    try:
        pids = await admin.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            database,
        )
        assert pids, "the pool holds connections to terminate"
        deadline = time.monotonic() + 5
        while await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", database
        ):
            assert time.monotonic() < deadline, "the backends did not exit"
            await asyncio.sleep(0.02)
    finally:
        await admin.close()


async def test_no_request_fails_after_the_database_closed_every_pooled_connection(
    app: FastAPI,
    client: httpx.AsyncClient,
    headers: dict[str, str],
    matched: None,
    database_url: str,
) -> None:
    async def burst() -> list[int]:
        responses = await asyncio.gather(
            *(client.get(LISTINGS, headers=headers) for _ in range(4)),
            *(client.get(ME, headers=headers) for _ in range(4)),
        )
        return [r.status_code for r in responses]

    assert await burst() == [200] * 8
    assert app.state.engine.pool.checkedin() > 1
    assert (await client.get(LISTINGS, headers=headers)).status_code == 200
    answered = app.state.listing_shortcut.answered
    assert answered == 1, "the shortcut has a connection of its own to lose"

    await _terminate_backends(make_url(database_url).database or "")
    await asyncio.sleep(0.05)  # the event loop sees the sockets close

    assert await burst() == [200] * 8
    # The shortcut's pool found its connection closed and opened another.
    assert app.state.listing_shortcut.answered == answered + 4
    created = await client.post(
        "/api/v1/searches/",
        headers=headers,
        json={"name": "After", "criteria": {"keywords": ["lego"]}, "marketplaces": ["demo"]},
    )
    assert created.status_code == 201, created.text


async def test_with_the_database_unreachable_a_remembered_request_gets_the_routes_503(
    app: FastAPI,
    client: httpx.AsyncClient,
    headers: dict[str, str],
    matched: None,
    wire: WireCounter,
) -> None:
    assert (await client.get(LISTINGS, headers=headers)).status_code == 200
    assert (await client.get(LISTINGS, headers=headers)).status_code == 200
    assert app.state.listing_shortcut.answered == 1

    await wire.cut()
    await asyncio.sleep(0.05)  # the event loop sees the sockets close
    response = await client.get(LISTINGS, headers=headers)
    await wire.restore()

    assert response.status_code == 503
    assert response.json()["code"] == "service_unavailable"
    assert response.headers["retry-after"] == "5"
    assert app.state.listing_shortcut.answered == 1
    again = await client.get(LISTINGS, headers=headers)
    assert again.status_code == 200
