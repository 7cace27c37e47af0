"""Dependency checks behind /health/ready."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import redis.asyncio as redis
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

CHECK_TIMEOUT_S = 3.0


async def check_dependencies(engine: AsyncEngine, *, broker_url: str) -> dict[str, str]:
    """Map each dependency to "ok" or a short reason it is not."""
    checks = {"database": await _check_database(engine)}
    if broker_url:
        checks["broker"] = await _check_broker(broker_url)
    return checks


async def _check_database(engine: AsyncEngine) -> str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        return f"unreachable: {type(exc).__name__}"
    return "ok"


async def _check_broker(broker_url: str) -> str:
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
