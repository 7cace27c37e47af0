"""Chaos: eBay answers 429 with Retry-After, 500s and hangs, while the demo marketplace keeps
answering. Whole cycles run in-process (`cycle.run_cycle`) against the fake eBay.

- Retry-After is honoured for the whole marketplace: after a 429 no request reaches eBay
  before the moment it named, from any search, and the rate-limited search is not due
  again before then either.
- The circuit breaker opens after repeated failures and then lets a single call probe per
  cool-down, so the requests a failing marketplace receives stay bounded.
- Searches on the healthy marketplace are checked and get their matches in every cycle;
  failing searches show `last_error` and `consecutive_failures` in the API, and recover.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.marketplaces.demo import DemoAdapter
from app.marketplaces.ebay import MAX_SERVER_ERROR_RETRIES, EbayAdapter
from app.models import Search, SearchMatch, User
from app.monitoring import cycle
from app.monitoring.cache import MemoryCache
from app.monitoring.fetch import CircuitBreaker, MonitoringRuntime, UpstreamRateLimiter
from tests.fakes.ebay import SEARCH_PATH, EbayFake, ebay_error, item_summary
from tests.fakes.server import Reply

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

EBAY_TIMEOUT_S = 0.5
CONCURRENCY = 4


class TimedEbayFake(EbayFake):
    """The fake eBay, noting when each search request arrived (time.monotonic())."""

    def __init__(self) -> None:
        super().__init__()
        self.search_arrivals: list[float] = []

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        if target.startswith(SEARCH_PATH):
            with self._lock:
                self.search_arrivals.append(time.monotonic())
        return super().handle(method, target, headers, body)

    def stop_failing(self) -> None:
        """Forget the scripted failures still queued."""
        with self._lock:
            self._search_script.clear()


@pytest.fixture
def ebay() -> Iterator[TimedEbayFake]:
    with TimedEbayFake() as fake:
        yield fake


def runtime_for(app: FastAPI, ebay: EbayFake, breaker: CircuitBreaker) -> MonitoringRuntime:
    adapter = EbayAdapter(
        app.state.monitoring_runtime.http_client,
        api_base_url=ebay.base_url,
        oauth_base_url=ebay.base_url,
        app_id=ebay.app_id,
        cert_id=ebay.cert_id,
        max_pages=1,
        timeout_s=EBAY_TIMEOUT_S,
        requests_per_minute=100_000,
        retry_backoff_s=0.01,
    )
    return MonitoringRuntime(
        session_factory=app.state.session_factory,
        adapters={"ebay": adapter, "demo": DemoAdapter(interval_s=60)},
        cache=MemoryCache(),
        limiter=UpstreamRateLimiter("memory://"),
        http_client=app.state.monitoring_runtime.http_client,
        cache_ttl_s=0,
        breakers={"ebay": breaker},
    )


def cool_down(breaker: CircuitBreaker) -> None:
    """Let the breaker's cool-down run out now rather than in a minute."""
    assert breaker.opened_at is not None
    breaker.opened_at = time.monotonic() - breaker.cooldown_s


async def add_searches(
    session: AsyncSession, owner: User, marketplace: str, keywords: Sequence[str]
) -> list[uuid.UUID]:
    """One search per keyword, checked every minute, due now; their ids."""
    searches = [
        Search(
            owner_id=owner.id,
            name=f"{marketplace} {keyword}",
            criteria={"keywords": [keyword]},
            marketplaces=[marketplace],
            alert_channels=["email"],
            check_frequency_minutes=1,
            next_check_at=utcnow(),
        )
        for keyword in keywords
    ]
    session.add_all(searches)
    await session.commit()
    return [s.id for s in searches]


async def make_due(session: AsyncSession, ids: Sequence[uuid.UUID]) -> None:
    await session.execute(update(Search).where(Search.id.in_(ids)).values(next_check_at=utcnow()))
    await session.commit()


async def searches_by_id(
    session: AsyncSession, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Search]:
    rows = await session.scalars(
        select(Search).where(Search.id.in_(ids)).execution_options(populate_existing=True)
    )
    return {s.id: s for s in rows}


async def assert_healthy_marketplace_unaffected(
    session: AsyncSession, ids: Sequence[uuid.UUID], checked_after: object
) -> None:
    """Every demo search was checked in the last cycle, cleanly, and has its matches."""
    for search in (await searches_by_id(session, ids)).values():
        assert search.last_error is None
        assert search.consecutive_failures == 0
        assert search.last_checked_at is not None
        assert search.last_checked_at >= checked_after
    matched = await session.scalar(
        select(func.count(func.distinct(SearchMatch.search_id))).where(
            SearchMatch.search_id.in_(ids)
        )
    )
    assert matched == len(ids)


async def test_retry_after_holds_back_every_search_on_that_marketplace(
    app: FastAPI,
    session: AsyncSession,
    user: User,
    ebay: TimedEbayFake,
) -> None:
    for n in range(6):
        ebay.set_items([item_summary(n, f"Camera{n} body")], q=f"camera{n}")
    breaker = CircuitBreaker()
    runtime = runtime_for(app, ebay, breaker)
    demo_ids = await add_searches(session, user, "demo", [f"lego set {n}" for n in range(4)])
    [first] = await add_searches(session, user, "ebay", ["camera0"])

    # eBay says: not before two seconds from now.
    ebay.fail_search(2001, retry_after="2")
    started = utcnow()
    report = await cycle.run_cycle(runtime, concurrency=20)
    refused_at = ebay.search_arrivals[0]
    assert len(ebay.search_arrivals) == 1
    assert len(report.errors) == 1
    assert "rate limit" in report.errors[0]
    await assert_healthy_marketplace_unaffected(session, demo_ids, started)

    # Other eBay searches fall due at once: none of them may call eBay yet.
    others = await add_searches(session, user, "ebay", [f"camera{n}" for n in range(1, 6)])
    await make_due(session, demo_ids)
    started = utcnow()
    await cycle.run_cycle(runtime, concurrency=20)
    assert len(ebay.search_arrivals) == 1
    for search in (await searches_by_id(session, [first, *others])).values():
        assert search.consecutive_failures == 1
        assert search.last_error is not None
        assert "rate limit" in search.last_error
        assert search.last_checked_at is None
    await assert_healthy_marketplace_unaffected(session, demo_ids, started)

    # Once the moment has passed, eBay is called again and every search recovers.
    # (The client's two seconds start when it read the answer, a moment after it arrived.)
    assert breaker.resume_at >= refused_at + 2.0
    await asyncio.sleep(breaker.resume_at - time.monotonic() + 0.01)
    await make_due(session, [first, *others, *demo_ids])
    report = await cycle.run_cycle(runtime, concurrency=20)
    assert report.errors == []
    assert len(ebay.search_arrivals) == 1 + 6
    assert min(ebay.search_arrivals[1:]) >= refused_at + 2.0
    for search in (await searches_by_id(session, [first, *others])).values():
        assert (search.last_error, search.consecutive_failures) == (None, 0)
        assert search.last_checked_at is not None

    # A Retry-After longer than the search's own backoff wins over it.
    ebay.fail_search(2001, retry_after="3600")
    await make_due(session, [first])
    before = utcnow()
    await cycle.run_cycle(runtime, concurrency=20)
    [held] = (await searches_by_id(session, [first])).values()
    assert held.next_check_at is not None
    assert held.next_check_at >= before + timedelta(seconds=3600)


async def test_breaker_bounds_requests_to_a_failing_marketplace_and_others_carry_on(
    app: FastAPI,
    session: AsyncSession,
    client: httpx.AsyncClient,
    headers: dict[str, str],
    user: User,
    ebay: TimedEbayFake,
) -> None:
    queries = [f"guitar{n}" for n in range(30)]
    for n, q in enumerate(queries):
        ebay.set_items([item_summary(n, f"Guitar{n} Stratocaster")], q=q)
    breaker = CircuitBreaker()  # the defaults: five failures, a minute's cool-down
    runtime = runtime_for(app, ebay, breaker)
    ebay_ids = await add_searches(session, user, "ebay", queries)
    demo_ids = await add_searches(session, user, "demo", [f"vinyl record {n}" for n in range(10)])
    status, body = ebay_error(12000)
    ebay.respond_to_search(status, body, times=10_000)

    # 500s: each call is retried twice by the adapter, and the breaker opens after five
    # failed calls; only the calls already in flight then still go out.
    started = utcnow()
    report = await cycle.run_cycle(runtime, concurrency=CONCURRENCY)
    calls_bound = breaker.threshold - 1 + CONCURRENCY
    first_requests = len(ebay.search_arrivals)
    assert first_requests <= calls_bound * (1 + MAX_SERVER_ERROR_RETRIES)
    assert len(report.errors) == len(queries)
    assert sum("500" in e for e in report.errors) <= calls_bound
    assert sum("temporarily skipped" in e for e in report.errors) >= len(queries) - calls_bound
    await assert_healthy_marketplace_unaffected(session, demo_ids, started)

    # While the breaker is open, eBay gets nothing at all.
    await make_due(session, [*ebay_ids, *demo_ids])
    started = utcnow()
    await cycle.run_cycle(runtime, concurrency=CONCURRENCY)
    assert len(ebay.search_arrivals) == first_requests
    await assert_healthy_marketplace_unaffected(session, demo_ids, started)

    # eBay now hangs instead. After the cool-down the calls that start before the first
    # timeout comes back go out (at most one per concurrent check), then the breaker
    # opens again and the rest are skipped.
    ebay.stop_failing()
    ebay.search_delay_s = 5 * EBAY_TIMEOUT_S
    cool_down(breaker)
    await make_due(session, [*ebay_ids, *demo_ids])
    started = utcnow()
    report = await cycle.run_cycle(runtime, concurrency=CONCURRENCY)
    hung_requests = len(ebay.search_arrivals) - first_requests
    assert 1 <= hung_requests <= CONCURRENCY
    assert sum("did not answer" in e for e in report.errors) == hung_requests
    await assert_healthy_marketplace_unaffected(session, demo_ids, started)

    # The API shows what went wrong, and how often.
    shown = await client.get(f"/api/v1/searches/{ebay_ids[-1]}", headers=headers)
    assert shown.status_code == 200
    assert shown.json()["consecutive_failures"] == 3
    assert shown.json()["last_error"].startswith("ebay: ")
    assert shown.json()["last_checked_at"] is None

    # eBay is back: after the next cool-down the probe succeeds and everything recovers.
    ebay.search_delay_s = 0
    cool_down(breaker)
    await make_due(session, [*ebay_ids, *demo_ids])
    report = await cycle.run_cycle(runtime, concurrency=CONCURRENCY)
    assert report.errors == []
    assert len(ebay.search_arrivals) == first_requests + hung_requests + len(queries)
    for search in (await searches_by_id(session, ebay_ids)).values():
        assert (search.last_error, search.consecutive_failures) == (None, 0)
    matched = await session.scalar(
        select(func.count()).select_from(SearchMatch).where(SearchMatch.search_id.in_(ebay_ids))
    )
    assert matched == len(queries)
    print(  # noqa: T201  (the report; shown with -s)
        f"\nmarketplace failures: {len(ebay.search_arrivals)} eBay search requests over "
        f"4 cycles of {len(queries)} failing searches (first cycle {first_requests})"
    )
