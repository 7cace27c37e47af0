"""One group -> one upstream call (through cache, rate limit and circuit breaker) -> stored.

`check_group` is what a Celery task and the embedded runner both call for a group.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import httpx
from limits import RateLimitItemPerMinute
from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import metrics
from app.alerts import outbox
from app.db import one_of, utcnow
from app.marketplaces.base import Listing, MarketplaceAdapter, MarketplaceError, Query, RateLimited
from app.models import Search
from app.monitoring import scheduler
from app.monitoring.cache import ResponseCache
from app.monitoring.matching import build_matcher
from app.monitoring.store import SearchToStore, StoreResult, store_fetch
from app.ratelimit import SharedLimiter

logger = logging.getLogger(__name__)

MAX_RATE_WAIT_S = 10.0
# After this many failed checks in a row the owner is told (and again on recovery).
FAILING_NOTICE_AFTER = 3
FAILURE_BACKOFF_CAP = timedelta(hours=1)


class CircuitOpen(MarketplaceError):
    """The marketplace failed repeatedly; calls are skipped until the cool-down ends."""


@dataclass
class CircuitBreaker:
    """Per-process breaker: after `threshold` consecutive failures, skip calls for `cooldown_s`;
    after a 429 with Retry-After, skip calls until that moment."""

    threshold: int = 5
    cooldown_s: float = 60.0
    failures: int = 0
    opened_at: float | None = None
    # The marketplace named a time before which it wants no request from us (monotonic).
    resume_at: float = 0.0

    def before_call(self) -> None:
        wait_s = self.resume_at - time.monotonic()
        if wait_s > 0:
            raise RateLimited(
                f"rate limited upstream; calls resume in {wait_s:.1f} s", retry_after_s=wait_s
            )
        if self.opened_at is not None and time.monotonic() - self.opened_at < self.cooldown_s:
            raise CircuitOpen("marketplace temporarily skipped after repeated failures")

    def record(self, *, ok: bool, retry_after_s: float | None = None) -> None:
        if retry_after_s:
            self.resume_at = max(self.resume_at, time.monotonic() + retry_after_s)
        if ok:
            self.failures, self.opened_at = 0, None
            return
        self.failures += 1
        if self.failures >= self.threshold:
            self.opened_at = time.monotonic()


class UpstreamRateLimiter:
    """A shared per-marketplace budget (memory:// in one process, redis:// across workers)."""

    def __init__(self, storage_url: str) -> None:
        self._shared = SharedLimiter(storage_url)
        self._limiter = self._shared.limiter

    async def aclose(self) -> None:
        await self._shared.aclose()

    async def acquire(self, marketplace: str, per_minute: int) -> None:
        """Wait for a slot (bounded); raise RateLimited when none comes in time."""
        item = RateLimitItemPerMinute(per_minute)
        deadline = time.monotonic() + MAX_RATE_WAIT_S
        while not await self._limiter.hit(item, "upstream", marketplace):
            stats = await self._limiter.get_window_stats(item, "upstream", marketplace)
            wait_s = max(0.05, stats.reset_time - time.time())
            if time.monotonic() + wait_s > deadline:
                raise RateLimited(f"{marketplace} rate budget spent", retry_after_s=wait_s)
            await asyncio.sleep(wait_s)


@dataclass
class MonitoringRuntime:
    """What checking needs, built once per process (a worker process or the embedded app)."""

    session_factory: async_sessionmaker[AsyncSession]
    adapters: dict[str, MarketplaceAdapter]
    cache: ResponseCache
    limiter: UpstreamRateLimiter
    http_client: httpx.AsyncClient
    cache_ttl_s: float = 10.0
    breakers: dict[str, CircuitBreaker] = field(default_factory=dict)
    claim_lease: timedelta = scheduler.CLAIM_LEASE
    # How soon a search's second check follows its first.
    first_follow_up: timedelta = timedelta(seconds=30)
    # Whether searches waiting for setup were looked at since this runtime started.
    setup_waits_reviewed: bool = False
    # Groups storing at once, at most the connections the pool keeps: many more groups may
    # wait on marketplaces at the same time, but one storing beyond the pool would open an
    # overflow connection and close it again (a connect, type introspection and fresh
    # statement preparation for every group).
    store_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(10))


@dataclass
class GroupOutcome:
    marketplace: str
    upstream_calls: int = 0
    listings_fetched: int = 0
    error: str | None = None
    stored: StoreResult = field(default_factory=StoreResult)


async def fetch_group(
    runtime: MonitoringRuntime, marketplace: str, query: Query
) -> tuple[list[Listing], bool]:
    """The listings for a query and whether an upstream call was made (False = cache hit)."""
    key = f"{marketplace}:{query!r}"
    cached = await runtime.cache.get(key)
    if cached is not None:
        return cached, False
    adapter = runtime.adapters[marketplace]
    breaker = runtime.breakers.setdefault(marketplace, CircuitBreaker())
    breaker.before_call()
    await runtime.limiter.acquire(marketplace, adapter.capabilities.requests_per_minute)
    try:
        with metrics.upstream_call(marketplace):
            listings = await adapter.search(query)
    except MarketplaceError as exc:
        breaker.record(ok=False, retry_after_s=_retry_after_s(exc))
        raise
    breaker.record(ok=True)
    if runtime.cache_ttl_s > 0:
        await runtime.cache.set(key, listings, runtime.cache_ttl_s)
    return listings, True


async def check_group(
    runtime: MonitoringRuntime, group: scheduler.CheckGroup, *, now: datetime | None = None
) -> GroupOutcome:
    """Fetch a group's query once, store and match for every search in it, record the outcome
    on each search. A failure is recorded on the group's searches and never raised."""
    outcome = GroupOutcome(marketplace=group.marketplace)
    try:
        listings, called = await fetch_group(runtime, group.marketplace, group.query)
    except MarketplaceError as exc:
        outcome.error = f"{group.marketplace}: {exc}"
        logger.warning("check of %s failed: %s", group.marketplace, exc)
        metrics.record_checks(group.marketplace, len(group.search_ids), ok=False)
        async with runtime.session_factory() as session:
            await record_failure(
                session,
                group.search_ids,
                outcome.error,
                now or utcnow(),
                retry_after_s=_retry_after_s(exc),
            )
            await session.commit()
        return outcome
    outcome.upstream_calls = int(called)
    outcome.listings_fetched = len(listings)
    now = now or utcnow()
    adapter = runtime.adapters[group.marketplace]
    async with runtime.store_slots, runtime.session_factory() as session:
        searches = (
            await session.execute(
                select(*_STORING_COLUMNS).where(
                    one_of(session, Search.id, group.search_ids), Search.is_active.is_(True)
                )
            )
        ).all()
        to_store = [
            SearchToStore(
                id=s.id,
                owner_id=s.owner_id,
                matcher=build_matcher(
                    s.criteria,
                    currency=s.criteria.get("currency") or adapter.currency_for(group.query),
                ),
                alert_channels=tuple(s.alert_channels),
                is_silent=s.id in group.first_check_ids and not s.alert_on_first_check,
                alert_on_price_drop=s.alert_on_price_drop,
                alert_mode=s.alert_mode,
            )
            for s in searches
        ]
        recovered = [s.id for s in searches if s.consecutive_failures >= FAILING_NOTICE_AFTER]
        for search in await _active_searches(session, recovered) if recovered else ():
            await _tell_owner(session, search, now, recovered=True)
        await _record_success(
            session, searches, now, follow_ups=group.first_check_ids, runtime=runtime
        )
        # Last, so that the user rows it locks (feed versions) are held the shortest time.
        outcome.stored = await store_fetch(session, group.marketplace, listings, to_store, now=now)
        metrics.record_checks(group.marketplace, len(searches), ok=True)
        await session.commit()
    return outcome


# What storing a check needs of each search, read as plain rows: a popular query's group
# has hundreds of searches, and ORM objects for them cost more than the rest of the check.
_STORING_COLUMNS = (
    Search.id,
    Search.owner_id,
    Search.criteria,
    Search.alert_channels,
    Search.alert_on_first_check,
    Search.alert_on_price_drop,
    Search.alert_mode,
    Search.consecutive_failures,
    Search.check_frequency_minutes,
)
# The table, not the entity: an executemany UPDATE by id, not an ORM bulk update.
_searches = cast(Table, Search.__table__)


async def _record_success(
    session: AsyncSession,
    searches: Sequence[Any],
    now: datetime,
    *,
    follow_ups: frozenset[uuid.UUID],
    runtime: MonitoringRuntime,
) -> None:
    """Mark the searches checked and schedule each one's next check (one statement).
    A first check is followed by a second one soon (`runtime.first_follow_up`): the owner
    of a new search sees it work, and hears of what was listed meanwhile, in a minute
    instead of a whole period later."""
    if not searches:
        return

    def next_check(search: Any) -> datetime:
        regular = scheduler.next_check_at(now, search.check_frequency_minutes)
        if search.id in follow_ups:
            return min(regular, now + runtime.first_follow_up)
        return regular

    await session.execute(
        update(_searches)
        .where(_searches.c.id == bindparam("search_id"))
        .values(
            last_checked_at=now,
            last_error=None,
            consecutive_failures=0,
            next_check_at=bindparam("next_check_at"),
        ),
        [
            {
                "search_id": s.id,
                "next_check_at": next_check(s),
            }
            # In id order: a search on two marketplaces is in two groups, maybe stored at once.
            for s in sorted(searches, key=lambda s: s.id)
        ],
    )


async def _active_searches(session: AsyncSession, ids: Sequence[object]) -> list[Search]:
    # A search paused or deleted since it was claimed is simply left out.
    result = await session.scalars(
        select(Search).where(Search.id.in_(ids), Search.is_active.is_(True))
    )
    return list(result.all())


async def record_failure(
    session: AsyncSession,
    ids: Sequence[object],
    error: str,
    now: datetime,
    *,
    retry_after_s: float | None = None,
) -> None:
    """Record a failed check on the searches and back them off (never sooner than the
    marketplace's Retry-After); the owner is told when a search has just failed
    FAILING_NOTICE_AFTER times in a row. Flushes, never commits."""
    for search in await _active_searches(session, ids):
        search.last_error = error[:2000]
        search.consecutive_failures += 1
        # Back off: the frequency times the failures, capped at an hour (or at the
        # frequency itself, for searches checked less often than that).
        frequency = timedelta(minutes=search.check_frequency_minutes)
        backoff = min(frequency * search.consecutive_failures, max(FAILURE_BACKOFF_CAP, frequency))
        search.next_check_at = now + max(backoff, timedelta(seconds=retry_after_s or 0))
        if search.consecutive_failures == FAILING_NOTICE_AFTER:
            await _tell_owner(session, search, now, recovered=False)


def _retry_after_s(exc: MarketplaceError) -> float | None:
    return exc.retry_after_s if isinstance(exc, RateLimited) else None


async def _tell_owner(
    session: AsyncSession, search: Search, now: datetime, *, recovered: bool
) -> None:
    # Keyed by the moment, so each failing episode (and its recovery) is told once.
    if recovered:
        subject = f"Your search '{search.name}' works again"
        text = (
            f"'{search.name}' is being checked again "
            f"after {search.consecutive_failures} failed checks."
        )
    else:
        subject = f"Your search '{search.name}' keeps failing"
        text = (
            f"The last {search.consecutive_failures} checks of '{search.name}' failed: "
            f"{search.last_error}. We keep trying and will tell you when it works again."
        )
    await outbox.enqueue_notice(
        session,
        user_id=search.owner_id,
        key=f"search_{'recovered' if recovered else 'failing'}:{search.id}:{now.isoformat()}",
        subject=subject,
        text=text,
        now=now,
    )
