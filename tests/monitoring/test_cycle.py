"""Scheduling cycles: claim, group by upstream query, fetch once per group, store, record."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.marketplaces.base import Capabilities, Listing, MarketplaceError, Query
from app.marketplaces.demo import DemoAdapter
from app.marketplaces.ebay import EbayAdapter
from app.models import Alert, Plan, Search, SearchMatch, User
from app.models import Listing as ListingRow
from app.monitoring import cycle, scheduler, store
from app.monitoring.cache import MemoryCache
from app.monitoring.fetch import MonitoringRuntime, UpstreamRateLimiter
from tests.factories import make_listing, make_match, make_search, make_user
from tests.fakes.ebay import EbayFake, item_summary


class CountingAdapter:
    """A stand-in marketplace that records every query it is asked."""

    name = "demo"
    capabilities = Capabilities(price_filter=True, requests_per_minute=10_000)

    def __init__(self, fail_for: set[str] | None = None) -> None:
        self.queries: list[Query] = []
        self.fail_for = fail_for or set()

    def is_configured(self) -> bool:
        return True

    def currency_for(self, query: Query) -> str:
        return "GBP"

    async def search(self, query: Query) -> list[Listing]:
        self.queries.append(query)
        if set(query.keywords) & self.fail_for:
            raise MarketplaceError("upstream said 500")
        return [
            Listing(
                marketplace="demo",
                external_id=f"{query.keywords[0]}-{n}",
                title=f"{query.keywords[0]} number {n}",
                url=f"https://example.com/{n}",
                price=Decimal("10"),
                currency="GBP",
            )
            for n in range(3)
        ]


def runtime_for(app: FastAPI, adapter: object, *, cache_ttl_s: float = 0.0) -> MonitoringRuntime:
    return MonitoringRuntime(
        session_factory=app.state.session_factory,
        adapters={adapter.name: adapter},  # type: ignore[attr-defined,dict-item]
        cache=MemoryCache(),
        limiter=UpstreamRateLimiter("memory://"),
        http_client=app.state.monitoring_runtime.http_client,
        cache_ttl_s=cache_ttl_s,
    )


async def test_fifty_searches_over_five_queries_cost_five_upstream_calls(
    app: FastAPI, session: AsyncSession
) -> None:
    adapter = CountingAdapter()
    owners = [await make_user(session, email=f"u{n}@example.com") for n in range(10)]
    for n in range(50):
        await make_search(
            session,
            owner=owners[n % 10],
            keywords=[f"query{n % 5}"],
            marketplaces=["demo"],
        )
    report = await cycle.run_cycle(runtime_for(app, adapter))
    assert report.searches == 50
    assert report.groups == 5
    assert report.upstream_calls == 5
    assert sorted(q.keywords[0] for q in adapter.queries) == [f"query{n}" for n in range(5)]
    # Every search got its 3 matches, silently: these were first checks.
    assert await session.scalar(select(func.count()).select_from(SearchMatch)) == 150
    assert await session.scalar(select(func.count()).select_from(Alert)) == 0


async def test_equivalent_criteria_share_one_query(app: FastAPI, session: AsyncSession) -> None:
    adapter = CountingAdapter()
    owner = await make_user(session, email="a@example.com", plan=Plan.BUSINESS)
    for keywords in (["PS5", "xbox"], ["xbox ", "ps5"]):
        await make_search(session, owner=owner, keywords=keywords, marketplaces=["demo"])
    report = await cycle.run_cycle(runtime_for(app, adapter))
    assert report.upstream_calls == 1


async def test_only_due_active_searches_of_active_users_are_claimed(
    app: FastAPI, session: AsyncSession, user: User
) -> None:
    inactive = await make_user(session, email="gone@example.com", is_active=False)
    due = await make_search(session, owner=user, marketplaces=["demo"])
    await make_search(session, owner=user, marketplaces=["demo"], is_active=False)
    await make_search(session, owner=inactive, marketplaces=["demo"])
    later = await make_search(session, owner=user, marketplaces=["demo"])
    await session.execute(
        update(Search)
        .where(Search.id == later.id)
        .values(next_check_at=utcnow() + timedelta(minutes=5))
    )
    await session.commit()

    claimed = await scheduler.claim_due_searches(session, now=utcnow())
    assert [s.id for s in claimed] == [due.id]
    # The claim leases the search: a second scheduler finds nothing to do.
    assert await scheduler.claim_due_searches(session, now=utcnow()) == []


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_concurrent_schedulers_never_claim_the_same_search(
    app: FastAPI, session: AsyncSession, user: User
) -> None:
    for n in range(40):
        await make_search(session, owner=user, keywords=[f"k{n}"], marketplaces=["demo"])

    async def claim() -> list[scheduler.DueSearch]:
        async with app.state.session_factory() as own_session:
            return await scheduler.claim_due_searches(own_session, now=utcnow(), limit=15)

    batches = await asyncio.gather(*(claim() for _ in range(4)))
    ids = [s.id for batch in batches for s in batch]
    assert len(ids) == len(set(ids)) == 40


async def test_a_failing_query_is_recorded_and_does_not_stop_the_others(
    app: FastAPI, session: AsyncSession, user: User
) -> None:
    adapter = CountingAdapter(fail_for={"bad"})
    bad = await make_search(session, owner=user, keywords=["bad"], marketplaces=["demo"])
    good = await make_search(session, owner=user, keywords=["good"], marketplaces=["demo"])
    report = await cycle.run_cycle(runtime_for(app, adapter))
    assert report.errors == ["demo: upstream said 500"]
    await session.refresh(bad)
    await session.refresh(good)
    bad_row, good_row = bad, good
    assert (bad_row.last_error, bad_row.consecutive_failures) == ("demo: upstream said 500", 1)
    assert bad_row.last_checked_at is None
    assert bad_row.next_check_at is not None
    assert bad_row.next_check_at > utcnow()
    assert (good_row.last_error, good_row.consecutive_failures) == (None, 0)
    assert good_row.last_checked_at is not None


class UnstorableAdapter(CountingAdapter):
    """Answers "broken" with a listing the database refuses (no URL)."""

    async def search(self, query: Query) -> list[Listing]:
        listings = await super().search(query)
        if "broken" in query.keywords:
            return [replace(listing, url=None) for listing in listings]  # type: ignore[arg-type]
        return listings


async def test_a_group_that_cannot_be_stored_does_not_stop_the_others(
    app: FastAPI, session: AsyncSession, user: User
) -> None:
    broken = await make_search(session, owner=user, keywords=["broken"], marketplaces=["demo"])
    good = await make_search(session, owner=user, keywords=["good"], marketplaces=["demo"])
    report = await cycle.run_cycle(runtime_for(app, UnstorableAdapter()))
    assert report.errors == ["demo: storing the check failed (IntegrityError)"]
    assert report.matches_new == 3
    await session.refresh(broken)
    await session.refresh(good)
    # Nothing of the broken group was written; it stays claimed until its lease ends.
    assert broken.last_checked_at is None
    assert broken.next_check_at is not None
    assert broken.next_check_at > utcnow()
    assert good.last_checked_at is not None
    matched = await session.scalars(select(SearchMatch.search_id).distinct())
    assert set(matched) == {good.id}


async def test_recent_responses_are_reused_within_the_cache_ttl(
    app: FastAPI, session: AsyncSession, user: User
) -> None:
    adapter = CountingAdapter()
    runtime = runtime_for(app, adapter, cache_ttl_s=60)
    await make_search(session, owner=user, keywords=["same"], marketplaces=["demo"])
    await cycle.run_cycle(runtime)
    other = await make_user(session, email="second@example.com")
    await make_search(session, owner=other, keywords=["same"], marketplaces=["demo"])
    report = await cycle.run_cycle(runtime)
    assert report.searches == 1
    assert report.upstream_calls == 0
    assert len(adapter.queries) == 1


async def test_second_check_alerts_only_listings_new_since_the_first(
    app: FastAPI, session: AsyncSession, user: User
) -> None:
    clock = [1_000_000.0]
    adapter = DemoAdapter(interval_s=60, clock=lambda: clock[0])
    runtime = runtime_for(app, adapter)
    search = await make_search(
        session, owner=user, keywords=["Lego"], marketplaces=["demo"], check_frequency_minutes=1
    )
    await session.execute(
        update(Search).where(Search.id == search.id).values(criteria={"keywords": ["Lego"]})
    )
    await session.commit()
    first = await cycle.run_cycle(runtime)
    assert first.matches_new == DemoAdapter.capabilities.page_size
    assert first.alerts_created == 0

    clock[0] += 180  # three new listings appear
    await session.execute(
        update(Search).where(Search.id == search.id).values(next_check_at=utcnow())
    )
    await session.commit()
    second = await cycle.run_cycle(runtime)
    assert second.matches_new == 3
    digests = (await session.scalars(select(Alert).where(Alert.kind == "digest"))).all()
    # One digest per channel (email, and the in-app feed every alert lands in).
    assert sorted(a.channel for a in digests) == ["email", "in_app"]
    assert all(len(a.payload["listings"]) == 3 for a in digests)
    assert await session.scalar(select(func.count()).select_from(Alert)) == 2


async def test_cleanup_deletes_stale_listings_nobody_saved(
    session: AsyncSession, user: User, other_user: User
) -> None:
    long_ago = utcnow() - timedelta(days=60)
    search = await make_search(session, owner=user)
    stale = await make_listing(session, external_id="old", first_seen_at=long_ago)
    kept = await make_listing(session, external_id="saved", first_seen_at=long_ago)
    fresh = await make_listing(session, external_id="new")
    await make_match(session, search=search, listing=stale)
    await make_match(session, search=search, listing=kept, is_saved=True)

    versions = {u.id: u.feed_version for u in (user, other_user)}

    deleted = await store.delete_stale_listings(session, seen_before=utcnow() - timedelta(days=30))
    await session.commit()
    assert deleted == 1
    remaining = set((await session.scalars(select(ListingRow.id))).all())
    assert remaining == {kept.id, fresh.id}
    # The owner's listing pages lost a listing; the other user's did not change.
    for u in (user, other_user):
        await session.refresh(u)
    assert user.feed_version == versions[user.id] + 1
    assert other_user.feed_version == versions[other_user.id]


async def test_a_marketplace_without_credentials_is_never_called(
    app: FastAPI, session: AsyncSession, user: User
) -> None:
    # The app's own runtime: eBay is registered but has no EBAY_APP_ID / EBAY_CERT_ID here.
    runtime = app.state.monitoring_runtime
    assert not runtime.adapters["ebay"].is_configured()
    search = await make_search(session, owner=user, marketplaces=["ebay"])
    report = await cycle.run_cycle(runtime)
    assert report.upstream_calls == 0
    assert report.errors == [
        "ebay is not set up on this server: the operator sets EBAY_APP_ID and EBAY_CERT_ID "
        "(a free eBay developer keyset)"
    ]
    await session.refresh(search)
    # Nothing the owner could fix: no error on the search, it waits for the operator.
    assert search.last_error is None
    assert search.waiting_for_setup is True


async def test_owner_is_told_once_when_a_search_keeps_failing_and_once_when_it_recovers(
    app: FastAPI, session: AsyncSession, user: User
) -> None:
    adapter = CountingAdapter(fail_for={"flaky"})
    runtime = runtime_for(app, adapter)
    search = await make_search(session, owner=user, keywords=["flaky"], marketplaces=["demo"])

    async def check_now() -> None:
        await session.execute(
            update(Search).where(Search.id == search.id).values(next_check_at=utcnow())
        )
        await session.commit()
        await cycle.run_cycle(runtime)

    async def notices() -> list[str]:
        rows = await session.scalars(
            select(Alert).where(Alert.kind == "system").order_by(Alert.created_at)
        )
        return [f"{a.channel}:{a.payload['subject']}" for a in rows]

    for _ in range(4):
        await check_now()
    failing = "Your search 'iPhone deals' keeps failing"
    assert sorted(await notices()) == [f"email:{failing}", f"in_app:{failing}"]

    adapter.fail_for = set()
    await check_now()
    await check_now()
    recovered = "Your search 'iPhone deals' works again"
    assert sorted(await notices()) == sorted(
        [f"email:{failing}", f"in_app:{failing}", f"email:{recovered}", f"in_app:{recovered}"]
    )


async def test_fifty_ebay_searches_over_five_queries_make_five_search_calls(
    app: FastAPI, session: AsyncSession
) -> None:
    with EbayFake() as fake:
        fake.set_items([item_summary(n, f"Nintendo Switch OLED {n}") for n in range(3)])
        adapter = EbayAdapter(
            app.state.monitoring_runtime.http_client,
            api_base_url=fake.base_url,
            oauth_base_url=fake.base_url,
            app_id=fake.app_id,
            cert_id=fake.cert_id,
        )
        owners = [await make_user(session, email=f"e{n}@example.com") for n in range(10)]
        for n in range(50):
            await make_search(
                session, owner=owners[n % 10], keywords=[f"switch {n % 5}"], marketplaces=["ebay"]
            )
        report = await cycle.run_cycle(runtime_for(app, adapter))
        assert report.searches == 50
        assert report.errors == []
        assert fake.search_calls == 5
        assert fake.token_calls == 1


def _group(name: str, searches: int) -> scheduler.CheckGroup:
    return scheduler.CheckGroup(
        marketplace="demo",
        query=Query(keywords=(name,)),
        search_ids=tuple(uuid.uuid4() for _ in range(searches)),
    )


def test_groups_are_batched_largest_first_within_both_limits() -> None:
    groups = [_group(f"q{n}", size) for n, size in enumerate([1, 7, 2, 30, 3, 3, 1, 1])]
    batches = scheduler.batch_groups(groups, max_groups=3, max_searches=10)
    sizes = [[len(g.search_ids) for g in batch] for batch in batches]
    # 30 is over the search limit: a batch of its own, first.
    assert sizes == [[30], [7, 3], [3, 2, 1], [1, 1]]
    assert sorted(id(g) for batch in batches for g in batch) == sorted(id(g) for g in groups)


def test_no_groups_make_no_batches() -> None:
    assert scheduler.batch_groups([], max_groups=8, max_searches=1_000) == []


class SlowAdapter(CountingAdapter):
    """Answers after a pause, counting the calls in flight at once."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0
        self.most_in_flight = 0

    async def search(self, query: Query) -> list[Listing]:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.05)
            return await super().search(query)
        finally:
            self.in_flight -= 1


async def test_groups_wait_on_marketplaces_together_but_store_within_the_pool(
    app: FastAPI, session: AsyncSession, user: User
) -> None:
    user.plan = Plan.BUSINESS.value
    for n in range(8):
        await make_search(session, owner=user, keywords=[f"query{n}"], marketplaces=["demo"])
    await session.commit()
    adapter = SlowAdapter()
    runtime = runtime_for(app, adapter)
    runtime.store_slots = asyncio.Semaphore(2)
    sessions_open = most_sessions_open = 0
    factory = runtime.session_factory

    class CountingSession:
        async def __aenter__(self) -> AsyncSession:
            nonlocal sessions_open, most_sessions_open
            sessions_open += 1
            most_sessions_open = max(most_sessions_open, sessions_open)
            self.inner = factory()
            return await self.inner.__aenter__()

        async def __aexit__(self, *exc: object) -> None:
            nonlocal sessions_open
            sessions_open -= 1
            await self.inner.__aexit__(*exc)

    runtime.session_factory = CountingSession  # type: ignore[assignment]
    report = await cycle.check_groups(
        runtime,
        await cycle.claim_and_group(runtime),
        concurrency=8,
    )
    assert [o.error for o in report] == [None] * 8
    assert adapter.most_in_flight == 8
    assert most_sessions_open <= 2
