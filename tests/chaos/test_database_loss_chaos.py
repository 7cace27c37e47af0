"""Chaos: the network between the API and PostgreSQL fails, then comes back.

The app talks to PostgreSQL through a TCP relay the test controls. While the relay is cut
(connections reset and refused) or black-holed (accepted, never answered), readiness
answers 503 naming the database, within its own timeout, while liveness stays 200. Once
the relay is back, readiness is 200 again and API requests work: the pool throws away its
dead connections instead of handing them out. Bounded: a few seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from app.config import Settings
from app.services.health import CHECK_TIMEOUT_S
from tests.chaos.tcp_proxy import TcpProxy
from tests.conftest import make_settings

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
async def database_relay(database_url: str) -> AsyncIterator[TcpProxy]:
    url = make_url(database_url)
    async with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as relay:
        yield relay


@pytest.fixture
def settings(database_url: str, database_relay: TcpProxy) -> Settings:
    """The app (and every fixture built on it) reaches PostgreSQL through the relay."""
    relayed = make_url(database_url).set(host="127.0.0.1", port=database_relay.port)
    return make_settings(relayed.render_as_string(hide_password=False))


@pytest.fixture
async def relay(app: FastAPI, database_relay: TcpProxy) -> AsyncIterator[TcpProxy]:
    """The relay, restored after the test whatever happened, so the app's teardown can
    still empty the tables."""
    yield database_relay
    await database_relay.restore()


async def readiness(client: httpx.AsyncClient) -> tuple[int, dict[str, object], float]:
    started = time.monotonic()
    response = await client.get("/health/ready")
    return response.status_code, response.json(), time.monotonic() - started


async def test_readiness_fails_while_the_database_is_unreachable_and_the_api_recovers(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    relay: TcpProxy,
) -> None:
    # Warm the pool: several connections that the outage will kill under it.
    listed = await asyncio.gather(
        *(client.get("/api/v1/searches/", headers=headers) for _ in range(5))
    )
    assert [r.status_code for r in listed] == [200] * 5
    assert (await readiness(client))[:2] == (200, {"status": "ok", "checks": {"database": "ok"}})

    await relay.cut()
    status, body, refused_s = await readiness(client)
    assert status == 503
    assert body["status"] == "unavailable"
    checks = body["checks"]
    assert isinstance(checks, dict)
    assert checks["database"].startswith("unreachable")
    assert refused_s < CHECK_TIMEOUT_S + 1
    liveness = await client.get("/health")
    assert (liveness.status_code, liveness.json()) == (200, {"status": "ok"})
    # API requests fail fast with a retryable answer, not a 500 with a traceback.
    during = await client.get("/api/v1/searches/", headers=headers)
    assert during.status_code == 503, during.text
    assert during.json()["code"] == "service_unavailable"
    assert during.headers["retry-after"]

    # A partition, not a refusal: the check gives up after its own timeout.
    await relay.blackhole()
    status, body, partitioned_s = await readiness(client)
    assert status == 503
    checks = body["checks"]
    assert isinstance(checks, dict)
    assert checks["database"].startswith("unreachable")
    assert partitioned_s < CHECK_TIMEOUT_S + 2
    assert (await client.get("/health")).status_code == 200

    await relay.restore()
    status, body, _ = await readiness(client)
    assert (status, body) == (200, {"status": "ok", "checks": {"database": "ok"}})
    # Every pooled connection died in the outage; none of them may reach a request.
    listed = await asyncio.gather(
        *(client.get("/api/v1/searches/", headers=headers) for _ in range(8))
    )
    assert [r.status_code for r in listed] == [200] * 8
    created = await client.post(
        "/api/v1/searches/",
        headers=headers,
        json={
            "name": "After the outage",
            "criteria": {"keywords": ["lego"]},
            "marketplaces": ["demo"],
        },
    )
    assert created.status_code == 201, created.text
    print(  # noqa: T201  (the report; shown with -s)
        f"\ndatabase loss: readiness 503 in {refused_s:.2f} s (refused), "
        f"{partitioned_s:.2f} s (partitioned); API 503 during, 200 after"
    )
