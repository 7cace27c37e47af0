"""The seed's design, kept as the yardstick the engine is measured against (never used by the
app): beat's `check_all_active_searches` queues one Celery task per due search; each task
makes its own upstream call and stores every listing with its own SELECT, then INSERT or
UPDATE, and a commit.

    celery -A bench.baseline worker -Q bench_baseline -c 4

To compare designs and not incidental costs, each worker process gets what the engine's
workers get: one event loop, one database pool and one HTTP client (with one eBay token)
for its lifetime, the app's eBay adapter and the app's matching. Settings come from the
environment, like the app's workers.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx
from celery import Celery
from celery.signals import worker_process_init
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import db
from app.config import Settings
from app.marketplaces.base import Listing, MarketplaceError
from app.marketplaces.ebay import EbayAdapter
from app.models import Listing as ListingRow
from app.models import Search, SearchMatch
from app.monitoring import scheduler
from app.monitoring.matching import build_matcher

QUEUE = "bench_baseline"
T = TypeVar("T")

baseline_app = Celery("marketmon_baseline")
baseline_app.conf.update(
    broker_url=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/10"),
    task_default_queue=QUEUE,
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
)


class _Process:
    """What one worker process keeps between tasks."""

    loop: asyncio.AbstractEventLoop | None = None
    sessions: async_sessionmaker[AsyncSession] | None = None
    adapter: EbayAdapter | None = None


@worker_process_init.connect
def _on_process_init(**_kwargs: Any) -> None:
    _Process.loop = None


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    if _Process.loop is None:
        _Process.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(_Process.loop)
    return _Process.loop.run_until_complete(coroutine)


def _parts() -> tuple[async_sessionmaker[AsyncSession], EbayAdapter]:
    if _Process.sessions is None or _Process.adapter is None:
        settings = Settings()
        _Process.sessions = db.create_session_factory(db.create_engine(settings.database_url))
        client = httpx.AsyncClient(timeout=15.0, trust_env=False)
        _Process.adapter = EbayAdapter.from_settings(client, settings)
    return _Process.sessions, _Process.adapter


@baseline_app.task(name="baseline.check_all_active_searches")
def check_all_active_searches() -> int:
    """Queue one check per due search."""
    ids = _run(_due_search_ids())
    for search_id in ids:
        check_search.delay(str(search_id))
    return len(ids)


@baseline_app.task(name="baseline.check_search")
def check_search(search_id: str) -> int:
    """One upstream call for one search, then listing by listing; returns listings stored."""
    return _run(_check_search(uuid.UUID(search_id)))


async def _due_search_ids() -> list[uuid.UUID]:
    sessions, _ = _parts()
    async with sessions() as session:
        rows = await session.scalars(
            select(Search.id).where(Search.is_active.is_(True), Search.next_check_at <= db.utcnow())
        )
        return list(rows)


async def _check_search(search_id: uuid.UUID) -> int:
    sessions, adapter = _parts()
    async with sessions() as session:
        search = await session.get(Search, search_id)
        if search is None:
            return 0
        # Plain values: a rolled-back listing insert expires the ORM object.
        criteria, frequency, owner_id = (
            dict(search.criteria),
            search.check_frequency_minutes,
            search.owner_id,
        )
        query = scheduler.upstream_query(criteria, adapter.capabilities)
        try:
            listings = await adapter.search(query)
        except MarketplaceError as exc:
            search.last_error = str(exc)
            await session.commit()
            return 0
        matcher = build_matcher(criteria, currency=adapter.currency_for(query))
        now = db.utcnow()
        for item in listings:
            await _store_one(session, search_id, owner_id, item, matcher.matches(item), now)
        search = await session.get(Search, search_id)
        assert search is not None
        search.last_checked_at = now
        search.next_check_at = scheduler.next_check_at(now, frequency)
        await session.commit()
        return len(listings)


async def _store_one(
    session: AsyncSession,
    search_id: uuid.UUID,
    owner_id: uuid.UUID,
    item: Listing,
    is_match: bool,
    now: Any,
) -> None:
    """SELECT the listing, INSERT or UPDATE it, SELECT the match, INSERT it, commit."""
    for _attempt in range(2):
        try:
            row = await session.scalar(
                select(ListingRow).where(
                    ListingRow.marketplace == item.marketplace,
                    ListingRow.external_id == item.external_id,
                )
            )
            if row is None:
                row = ListingRow(
                    marketplace=item.marketplace,
                    external_id=item.external_id,
                    title=item.title[:500],
                    price=item.price,
                    currency=item.currency,
                    url=item.url,
                    image_url=item.image_url,
                    location=item.location,
                    condition=item.condition,
                    seller=item.seller,
                    posted_at=item.posted_at,
                    first_seen_at=now,
                    last_seen_at=now,
                    raw=item.raw,
                )
                session.add(row)
            else:
                row.title, row.price, row.last_seen_at = item.title[:500], item.price, now
            await session.flush()
            if is_match:
                match = await session.scalar(
                    select(SearchMatch.id).where(
                        SearchMatch.search_id == search_id, SearchMatch.listing_id == row.id
                    )
                )
                if match is None:
                    session.add(
                        SearchMatch(
                            search_id=search_id,
                            listing_id=row.id,
                            user_id=owner_id,
                            matched_at=now,
                            price_at_match=item.price,
                        )
                    )
            await session.commit()
            return
        except IntegrityError:
            # Another search's task inserted the same listing first: read it and go on.
            await session.rollback()
