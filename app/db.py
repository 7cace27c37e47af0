"""Engine, session factory, declarative Base and the column types every model shares."""

from __future__ import annotations

import time
import uuid
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import DateTime, MetaData, any_, bindparam, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection
from sqlalchemy.types import TypeDecorator

if TYPE_CHECKING:
    from app.config import Settings

# Named constraints keep migrations identical on PostgreSQL and SQLite (batch mode needs names).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every database (SQLite returns naive values otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def create_engine(
    database_url: str, *, echo: bool = False, pool_size: int = 10, max_overflow: int = 10
) -> AsyncEngine:
    """An async engine; SQLite gets foreign keys, WAL and a busy timeout so cascades and
    concurrent readers behave like PostgreSQL. The pool sizes apply to PostgreSQL."""
    if database_url.startswith("sqlite"):
        engine = create_async_engine(
            database_url, echo=echo, connect_args={"timeout": 30, "check_same_thread": False}
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    on_asyncpg = make_url(database_url).get_driver_name() == "asyncpg"
    engine = create_async_engine(
        database_url,
        echo=echo,
        pool_pre_ping=not on_asyncpg,
        pool_size=pool_size,
        max_overflow=max_overflow,
    )
    if on_asyncpg:
        _check_liveness_on_checkout(engine)
    return engine


# A pooled connection idle for longer than this gets a real ping before it is handed out.
IDLE_PING_AFTER_S = 60.0
_IDLE_SINCE = "marketmon_idle_since"


def _check_liveness_on_checkout(engine: AsyncEngine) -> None:
    """What pool_pre_ping is for, at no round trip on a busy pool.

    pool_pre_ping costs three round trips on every checkout with asyncpg (SQLAlchemy wraps
    its ping in BEGIN and ROLLBACK), more than a short request needs for its own work (a
    cached page of GET /listings/ needs one). But asyncpg marks a connection closed as soon
    as the server or the network closes it (a restart, a terminated backend, a reset):
    checking that flag finds those for free, and raising DisconnectionError makes the pool
    replace the connection before anyone uses it. A connection idle for a while is pinged
    for real, as a NAT or a firewall can drop it without a word, which only a round trip
    reveals. What still slips through (the database going away between this check and the
    query) fails that one request with a disconnect error, which makes SQLAlchemy
    invalidate the whole pool; the app answers it with 503 and Retry-After, and later
    requests get new connections.
    """
    dialect = engine.dialect
    pool = engine.sync_engine.pool

    def on_checkin(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        # `info` lives as long as the DBAPI connection: a replaced one starts without it
        # (None here: invalidated, to be replaced on its next checkout).
        if dbapi_connection is not None:
            record.info[_IDLE_SINCE] = time.monotonic()

    def on_checkout(
        dbapi_connection: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection
    ) -> None:
        driver = proxy.driver_connection
        if driver is None or driver.is_closed():
            raise DisconnectionError("the connection was closed while in the pool")
        idle_since = record.info.get(_IDLE_SINCE)
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_AFTER_S:
            return
        try:
            dialect.do_ping(dbapi_connection)
        # OSError too: the adapter passes a socket error through untranslated.
        except (dialect.loaded_dbapi.Error, OSError) as exc:
            raise DisconnectionError("the connection failed its ping") from exc

    event.listen(pool, "checkin", on_checkin)
    event.listen(pool, "checkout", on_checkout)


def engine_from_settings(settings: Settings) -> AsyncEngine:
    """The engine the settings describe (URL, echo, pool sizes)."""
    return create_engine(
        settings.database_url,
        echo=settings.database_echo,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def session_scope(
    factory: async_sessionmaker[AsyncSession],
) -> AsyncGenerator[AsyncSession, None]:
    """One unit of work: commit when the caller finishes, roll back on any error."""
    async with factory() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


_autocommit_engines: weakref.WeakKeyDictionary[AsyncEngine, AsyncEngine] = (
    weakref.WeakKeyDictionary()
)


@asynccontextmanager
async def autocommit_connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A pooled connection on which every statement commits on its own: for reads that
    need no transaction, a lone SELECT is one round trip instead of BEGIN, SELECT and
    COMMIT. Never for writes, which belong to a session's unit of work. The pool puts the
    connection back to the default isolation level when it is returned."""
    autocommit = _autocommit_engines.get(engine)
    if autocommit is None:
        autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        _autocommit_engines[engine] = autocommit
    async with autocommit.connect() as connection:
        yield connection


def ensure_sqlite_directory(database_url: str) -> None:
    """Create the folder of a SQLite file (./data by default) so a first run just works."""
    if not database_url.startswith("sqlite"):
        return
    path = database_url.split("///", 1)[-1].split("?", 1)[0]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def dialect_insert(session: AsyncSession) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT (PostgreSQL, and SQLite >= 3.35)."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def one_of(session: AsyncSession, column: Any, values: Sequence[Any]) -> Any:
    """`column IN values`; on PostgreSQL `column = ANY(:array)`, one statement text whatever
    the number of values, so asyncpg prepares it once rather than once per length (each
    preparation is a round trip and a plan, and busy workers thrashed the statement cache)."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))
    return column.in_(values)
