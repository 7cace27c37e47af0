"""The PostgreSQL pool's liveness check on checkout (app/db.py) and the autocommit
connections single reads use: a connection is pinged only after sitting idle, one that
fails its ping is replaced without an error, and autocommit never outlives the read."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app import db
from tests.conftest import ADMIN_POSTGRES_URL


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """One connection at most, so every checkout gets the same one (or its replacement)."""
    engine = db.create_engine(database_url, pool_size=1, max_overflow=0)
    yield engine
    await engine.dispose()


async def backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        pid: int = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    return pid


class Pings:
    """Stands in for the dialect's ping: counts the pings and fails them when told to."""

    def __init__(self, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
        self.dialect = engine.dialect
        self.real = engine.dialect.do_ping
        self.count = 0
        self.fail = False
        monkeypatch.setattr(engine.dialect, "do_ping", self)

    def __call__(self, dbapi_connection: Any) -> bool:
        self.count += 1
        if self.fail:
            raise self.dialect.loaded_dbapi.OperationalError("connection reset by peer")
        return bool(self.real(dbapi_connection))


postgresql_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@postgresql_only
async def test_a_connection_back_from_a_request_is_reused_without_a_ping(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = await backend_pid(engine)
    pings = Pings(engine, monkeypatch)

    assert [await backend_pid(engine) for _ in range(3)] == [pid] * 3
    assert pings.count == 0


@postgresql_only
async def test_a_connection_idle_for_long_is_pinged_before_reuse(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = await backend_pid(engine)
    pings = Pings(engine, monkeypatch)
    monkeypatch.setattr(db, "IDLE_PING_AFTER_S", 0.0)

    assert await backend_pid(engine) == pid
    assert pings.count == 1


@postgresql_only
async def test_a_connection_that_fails_its_ping_is_replaced_without_an_error(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = await backend_pid(engine)
    pings = Pings(engine, monkeypatch)
    monkeypatch.setattr(db, "IDLE_PING_AFTER_S", 0.0)
    pings.fail = True

    replaced = await backend_pid(engine)

    assert replaced != pid
    assert pings.count == 1  # the new connection is not pinged


@postgresql_only
async def test_a_connection_the_server_closed_is_replaced_on_checkout(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = await backend_pid(engine)
    pings = Pings(engine, monkeypatch)
    # What a restart does to a pooled connection: the server ends it.
    admin = await asyncpg.connect(ADMIN_POSTGRES_URL, timeout=5)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        deadline = time.monotonic() + 5
        while await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
            assert time.monotonic() < deadline, "the backend did not exit"
            await asyncio.sleep(0.02)
    finally:
        await admin.close()
    await asyncio.sleep(0.05)  # the event loop sees the socket close

    assert await backend_pid(engine) != pid
    assert pings.count == 0


async def test_an_autocommit_read_leaves_the_connection_transactional(
    engine: AsyncEngine,
) -> None:
    async with db.autocommit_connection(engine) as connection:
        # A temporary table lives on its connection: the session below must get this one.
        await connection.execute(text("CREATE TEMPORARY TABLE scratch (n integer)"))

    sessions = db.create_session_factory(engine)
    async with sessions() as session:
        await session.execute(text("INSERT INTO scratch VALUES (1)"))
        await session.rollback()
        assert (await session.execute(text("SELECT count(*) FROM scratch"))).scalar() == 0
        await session.execute(text("DROP TABLE scratch"))
        await session.commit()


async def test_an_autocommit_connection_commits_each_statement(
    engine: AsyncEngine,
) -> None:
    async with db.autocommit_connection(engine) as connection:
        await connection.execute(text("CREATE TEMPORARY TABLE scratch (n integer)"))
        await connection.execute(text("INSERT INTO scratch VALUES (1)"))
        await connection.rollback()  # nothing to roll back: the insert is committed
        assert (await connection.execute(text("SELECT count(*) FROM scratch"))).scalar() == 1
        await connection.execute(text("DROP TABLE scratch"))
