"""The distributed mode for real: PostgreSQL, Redis, a `celery worker` and a `celery beat`,
checking eBay searches against the fake eBay server.

A search created through the API is claimed by beat's tick and checked by the worker; its
matches and alert outbox rows land exactly once, through duplicates, exclusions and a
price change.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.models import Alert, Listing, Plan, Search, SearchMatch, User
from tests.celery_processes import clean_redis, start_celery, stop
from tests.fakes.ebay import EbayFake, item_summary

BROKER_URL = "redis://127.0.0.1:6379/14"
pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
def broker() -> Iterator[str]:
    with clean_redis(BROKER_URL) as url:
        yield url


@pytest.fixture
def ebay() -> Iterator[EbayFake]:
    with EbayFake() as fake:
        yield fake


@pytest.fixture
async def celery_processes(
    database_url: str, broker: str, ebay: EbayFake, tmp_path: Path
) -> AsyncIterator[list[subprocess.Popen[bytes]]]:
    env = {
        **os.environ,
        "EBAY_APP_ID": ebay.app_id,
        "EBAY_CERT_ID": ebay.cert_id,
        "EBAY_API_BASE_URL": ebay.base_url,
        "EBAY_OAUTH_BASE_URL": ebay.base_url,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker,
        "REDIS_URL": broker,
        "SCHEDULER_TICK_S": "1",
        # The test forces a re-check a moment after the first: it must not be served from cache.
        "FETCH_CACHE_TTL_S": "0",
        "DEBUG": "true",
        "SECRET_KEY": "e2e-secret-key-with-more-than-thirty-two-bytes",
    }
    processes = [
        start_celery(
            [
                "worker",
                "-Q",
                "marketplace_monitoring",
                "-c",
                "2",
                "-l",
                "info",
                "--without-mingle",
                "--without-gossip",
                "-n",
                "e2e-monitoring@%h",
            ],
            env,
            tmp_path / "worker.log",
        ),
        start_celery(
            ["beat", "-l", "info", "-s", str(tmp_path / "beat-schedule")],
            env,
            tmp_path / "beat.log",
        ),
    ]
    yield processes
    stop(processes)


async def wait_for(
    condition: Callable[[], Awaitable[bool]],
    processes: list[subprocess.Popen[bytes]],
    logs: Path,
    *,
    timeout_s: float = 60,
) -> None:
    """Poll until the condition holds; fail early with the logs if a process died."""
    for _ in range(int(timeout_s / 0.25)):
        if await condition():
            return
        if any(p.poll() is not None for p in processes):
            pytest.fail("a Celery process exited:\n" + _logs(logs))
        await asyncio.sleep(0.25)
    pytest.fail("timed out:\n" + _logs(logs))


def _logs(folder: Path) -> str:
    return "\n".join(f.read_text(errors="replace")[-4000:] for f in folder.glob("*.log"))


async def count(session: AsyncSession, model: type, *where: Any) -> int:
    session.expire_all()
    return await session.scalar(select(func.count()).select_from(model).where(*where)) or 0


async def test_ebay_search_flows_through_beat_and_worker_exactly_once(
    client: httpx.AsyncClient,
    session: AsyncSession,
    headers: dict[str, str],
    user: User,
    ebay: EbayFake,
    celery_processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    user.plan = Plan.BUSINESS.value  # one-minute checks
    await session.commit()
    ebay.set_items(
        [
            item_summary(1, "Apple iPhone 13 128GB Midnight", price="300.00"),
            item_summary(2, "iPhone 13 - broken screen", price="90.00"),
            item_summary(3, "Samsung Galaxy S23", price="350.00"),
            item_summary(4, "iPhone 14 Pro Max 1TB", price="900.00"),
        ]
    )
    created = await client.post(
        "/api/v1/searches/",
        headers=headers,
        json={
            "name": "iPhones under 400",
            "criteria": {
                "keywords": ["iPhone 13", "iPhone 14"],
                "max_price": 400,
                "exclude_keywords": ["broken", "faulty"],
                "location": "London",
            },
            "marketplaces": ["ebay"],
            "alert_channels": ["email"],
            "check_frequency_minutes": 1,
            "alert_on_price_drop": True,
        },
    )
    assert created.status_code == 201, created.text
    search_id = uuid.UUID(created.json()["id"])

    async def checked_once() -> bool:
        search = await session.scalar(
            select(Search).where(Search.id == search_id).execution_options(populate_existing=True)
        )
        return search is not None and search.last_checked_at is not None

    # First check: what is already listed is recorded silently.
    await wait_for(checked_once, celery_processes, tmp_path)
    assert await count(session, SearchMatch) == 1
    assert await count(session, Alert) == 0

    # New listings arrive: one matching, one excluded; the known one drops its price and
    # shows up twice on the page.
    ebay.set_items(
        [
            item_summary(5, "iPhone 14 128GB Blue", price="350.00"),
            item_summary(6, "iPhone 13 faulty - spares", price="40.00"),
            item_summary(1, "Apple iPhone 13 128GB Midnight", price="280.00"),
            item_summary(1, "Apple iPhone 13 128GB Midnight", price="280.00"),
            item_summary(3, "Samsung Galaxy S23", price="350.00"),
        ]
    )
    await session.execute(
        update(Search).where(Search.id == search_id).values(next_check_at=utcnow())
    )
    await session.commit()

    async def four_alerts() -> bool:
        return await count(session, Alert) >= 4

    await wait_for(four_alerts, celery_processes, tmp_path)
    await asyncio.sleep(3)  # more ticks: nothing is added twice
    assert await count(session, SearchMatch) == 2
    session.expire_all()
    alerts = (await session.execute(select(Alert.kind, Alert.channel, Alert.payload))).all()
    # Each on the chosen channel and in the in-app feed.
    assert sorted((a.kind, a.channel) for a in alerts) == [
        ("new_listing", "email"),
        ("new_listing", "in_app"),
        ("price_drop", "email"),
        ("price_drop", "in_app"),
    ]
    drop = next(a for a in alerts if a.kind == "price_drop")
    assert (drop.payload["previous_price"], drop.payload["price"]) == ("300.00", "280.00")
    assert await count(session, Listing) == 5  # 1-4, then 5 and 6; 1 stored once
    assert ebay.token_calls <= 2  # one token per worker process, cached after that


async def test_a_worker_killed_mid_check_loses_no_search(
    client: httpx.AsyncClient,
    session: AsyncSession,
    headers: dict[str, str],
    ebay: EbayFake,
    celery_processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    ebay.set_items([item_summary(1, "Canon EOS R6 body", price="900.00")])
    ebay.search_delay_s = 3.0  # long enough to kill the worker while it waits for eBay
    created = await client.post(
        "/api/v1/searches/",
        headers=headers,
        json={
            "name": "Canon R6",
            "criteria": {"keywords": ["Canon R6"]},
            "marketplaces": ["ebay"],
            "check_frequency_minutes": 30,
        },
    )
    assert created.status_code == 201, created.text
    search_id = uuid.UUID(created.json()["id"])

    async def search_in_flight() -> bool:
        return ebay.search_calls > 0

    await wait_for(search_in_flight, celery_processes, tmp_path)
    worker = psutil.Process(celery_processes[0].pid)
    children = worker.children()
    assert children
    for child in children:
        child.kill()  # SIGKILL: no cleanup, no ack
    ebay.search_delay_s = 0.0

    async def checked() -> bool:
        search = await session.scalar(
            select(Search).where(Search.id == search_id).execution_options(populate_existing=True)
        )
        return search is not None and search.last_checked_at is not None

    await wait_for(checked, celery_processes, tmp_path, timeout_s=90)
    assert await count(session, SearchMatch) == 1
    assert await count(session, Listing) == 1
