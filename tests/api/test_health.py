"""/health (liveness) and /health/ready (the database, and the broker when configured)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from app.main import create_app
from tests.conftest import make_settings

UNREACHABLE_DATABASE = "postgresql+asyncpg://postgres@127.0.0.1:1/x"  # port 1: refused
REACHABLE_BROKER = "redis://127.0.0.1:6379/15"
UNREACHABLE_BROKER = "redis://127.0.0.1:1/0"


@asynccontextmanager
async def client_for(database_url: str, **overrides: object) -> AsyncIterator[httpx.AsyncClient]:
    """A client on an app built with these settings; no startup work, so a dead database
    only shows in the probes."""
    app = create_app(make_settings(database_url, load_templates_on_startup=False, **overrides))
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http
    finally:
        await app.state.engine.dispose()


async def test_liveness_is_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readiness_is_ok_when_the_database_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/ready")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok"}}


async def test_liveness_stays_up_while_the_database_is_down() -> None:
    async with client_for(UNREACHABLE_DATABASE) as http:
        response = await http.get("/health")

    assert response.status_code == 200


async def test_readiness_is_503_when_the_database_is_unreachable() -> None:
    async with client_for(UNREACHABLE_DATABASE) as http:
        response = await http.get("/health/ready")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"].startswith("unreachable")
    assert "127.0.0.1" not in response.text  # the reason names an error type, not the DSN


async def test_readiness_checks_a_configured_broker(database_url: str) -> None:
    async with client_for(database_url, redis_url=REACHABLE_BROKER) as http:
        response = await http.get("/health/ready")

    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}


async def test_readiness_is_503_naming_the_broker_when_it_is_unreachable(
    database_url: str,
) -> None:
    async with client_for(database_url, celery_broker_url=UNREACHABLE_BROKER) as http:
        response = await http.get("/health/ready")

    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"] == "ok"
    assert checks["broker"].startswith("unreachable")


async def test_readiness_is_503_for_an_unreachable_non_redis_broker(database_url: str) -> None:
    async with client_for(database_url, celery_broker_url="amqp://guest@127.0.0.1:1//") as http:
        response = await http.get("/health/ready")

    assert response.status_code == 503
    assert response.json()["checks"]["broker"].startswith("unreachable")
