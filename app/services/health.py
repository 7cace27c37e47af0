"""Dependency checks behind /health/ready and `marketmon doctor`, and the engine state that
/metrics reports."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from urllib.parse import urlsplit

import redis.asyncio as redis
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app import metrics
from app.alerts import outbox
from app.models import Alert, AlertStatus
from app.monitoring import scheduler

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 3.0


async def check_dependencies(engine: AsyncEngine, *, broker_url: str) -> dict[str, str]:
    """Map each dependency to "ok" or a short reason it is not."""
    checks = {"database": await check_database(engine)}
    if broker_url:
        checks["broker"] = await check_broker(broker_url)
    return checks


async def check_database(engine: AsyncEngine) -> str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        return f"unreachable: {type(exc).__name__}"
    return "ok"


async def check_broker(broker_url: str) -> str:
    """Whether the broker (or any Redis URL) answers: "ok", else a short reason."""
    if not broker_url.startswith(("redis://", "rediss://")):
        return await _check_tcp(broker_url)
    client = redis.from_url(broker_url, socket_connect_timeout=CHECK_TIMEOUT_S)
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            await client.ping()
    except (redis.RedisError, OSError, TimeoutError) as exc:
        return f"unreachable: {type(exc).__name__}"
    finally:
        await client.aclose()
    return "ok"


async def _check_tcp(url: str) -> str:
    """Other brokers (AMQP): a TCP connect proves the port answers."""
    parts = urlsplit(url)
    default_ports = {"amqp": 5672, "amqps": 5671}
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            _, writer = await asyncio.open_connection(
                parts.hostname or "localhost", parts.port or default_ports.get(parts.scheme, 5672)
            )
        writer.close()
        await writer.wait_closed()
    except (OSError, TimeoutError, ValueError) as exc:
        return f"unreachable: {type(exc).__name__}"
    return "ok"


async def schema_revision(engine: AsyncEngine) -> str | None:
    """The Alembic revision the database is at; None when it was never migrated.
    Raises SQLAlchemyError / OSError when the database cannot be reached."""
    async with asyncio.timeout(CHECK_TIMEOUT_S), engine.connect() as connection:
        table = await connection.run_sync(
            lambda sync: sync.dialect.has_table(sync, "alembic_version")
        )
        if not table:
            return None
        revision = await connection.scalar(text("SELECT version_num FROM alembic_version"))
    return None if revision is None else str(revision)


async def engine_state(
    session_factory: async_sessionmaker[AsyncSession], *, now: datetime
) -> metrics.EngineState | None:
    """The outbox backlog and the scheduler's lag, read from the database; None (and a
    warning) when it does not answer, so the rest of /metrics is still served."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S), session_factory() as session:
            pending = await session.scalar(
                select(func.count())
                .select_from(Alert)
                .where(Alert.status.in_([AlertStatus.PENDING.value, AlertStatus.SENDING.value]))
            )
            backlog = await outbox.inspect(session, now=now)
            oldest_due = await scheduler.oldest_due_at(session, now=now)
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        logger.warning("engine state for /metrics unavailable: %s", type(exc).__name__)
        return None
    return metrics.EngineState(
        outbox_pending=int(pending or 0),
        outbox_oldest_pending_age_s=max(0.0, backlog.oldest_pending_age_s or 0.0),
        scheduler_lag_s=0.0 if oldest_due is None else (now - oldest_due).total_seconds(),
    )
