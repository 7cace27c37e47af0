"""Due searches -> claimed -> grouped by identical upstream query, so each group is fetched once."""

from __future__ import annotations

import random
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.marketplaces.base import Capabilities, Query
from app.models import Search, User

# A claimed search is not due again until the lease runs out: if the worker checking it
# dies, a later cycle picks it up instead of losing it.
CLAIM_LEASE = timedelta(minutes=3)
JITTER_FRACTION = 0.05


@dataclass(frozen=True)
class DueSearch:
    id: uuid.UUID
    marketplaces: tuple[str, ...]
    criteria: Mapping[str, Any]
    is_first_check: bool


@dataclass(frozen=True)
class CheckGroup:
    """Searches that share one upstream query on one marketplace."""

    marketplace: str
    query: Query
    search_ids: tuple[uuid.UUID, ...]
    # Searches on their first check store what is listed without alerting.
    first_check_ids: frozenset[uuid.UUID] = frozenset()


async def claim_due_searches(
    session: AsyncSession,
    *,
    now: datetime,
    limit: int = 10_000,
    only_ids: Sequence[uuid.UUID] | None = None,
    lease: timedelta = CLAIM_LEASE,
) -> list[DueSearch]:
    """Claim active searches of active users that are due, oldest first, and lease them.
    With `only_ids`, claim exactly those (if active), due or not: a "check now".

    Concurrent schedulers never claim the same search (FOR UPDATE SKIP LOCKED on
    PostgreSQL; SQLite runs a single scheduler). Commits the claim before returning.
    """
    statement = (
        select(Search.id, Search.marketplaces, Search.criteria, Search.last_checked_at)
        .join(User, User.id == Search.owner_id)
        .where(Search.is_active.is_(True), User.is_active.is_(True))
        .order_by(Search.next_check_at)
        .limit(limit)
    )
    if only_ids is None:
        statement = statement.where(
            Search.next_check_at <= now, Search.waiting_for_setup.is_(False)
        )
    else:
        statement = statement.where(Search.id.in_(only_ids))
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(of=Search, skip_locked=True)
    rows = (await session.execute(statement)).all()
    if rows:
        await session.execute(
            update(Search)
            .where(Search.id.in_([row.id for row in rows]))
            .values(next_check_at=now + lease)
        )
    await session.commit()
    return [
        DueSearch(
            id=row.id,
            marketplaces=tuple(row.marketplaces),
            criteria=row.criteria,
            is_first_check=row.last_checked_at is None,
        )
        for row in rows
    ]


async def oldest_due_at(session: AsyncSession, *, now: datetime) -> datetime | None:
    """When the most overdue claimable search fell due (None: nothing is due): how far
    behind the scheduler runs."""
    return await session.scalar(
        select(func.min(Search.next_check_at))
        .join(User, User.id == Search.owner_id)
        .where(
            Search.is_active.is_(True),
            User.is_active.is_(True),
            Search.next_check_at <= now,
            Search.waiting_for_setup.is_(False),
        )
    )


async def release_claims(
    session: AsyncSession, search_ids: Sequence[uuid.UUID], *, now: datetime
) -> None:
    """Make claimed searches due again at once (their check was cut short by a shutdown),
    instead of when their lease runs out. Flushes, never commits."""
    if search_ids:
        await session.execute(
            update(Search).where(Search.id.in_(search_ids)).values(next_check_at=now)
        )


async def wait_for_setup(
    session: AsyncSession, search_ids: Sequence[uuid.UUID], *, now: datetime
) -> None:
    """Leave these searches out of the schedule until one of their marketplaces can be
    checked here; they are due at once when it can (`resume_set_up`). Flushes."""
    if search_ids:
        await session.execute(
            update(Search)
            .where(Search.id.in_(search_ids))
            .values(waiting_for_setup=True, next_check_at=now)
        )


async def resume_set_up(
    session: AsyncSession, usable: Collection[str], *, now: datetime
) -> list[uuid.UUID]:
    """Searches waiting for setup that this server can now check (the operator has added
    a marketplace's settings and restarted): due at once. Flushes; returns their ids."""
    waiting = (
        await session.execute(
            select(Search.id, Search.marketplaces).where(
                Search.waiting_for_setup.is_(True), Search.is_active.is_(True)
            )
        )
    ).all()
    ready = [row.id for row in waiting if set(row.marketplaces) & set(usable)]
    if ready:
        await session.execute(
            update(Search)
            .where(Search.id.in_(ready))
            .values(waiting_for_setup=False, next_check_at=now)
        )
    return ready


def unavailable_marketplaces(
    due: Sequence[DueSearch], capabilities: Mapping[str, Capabilities]
) -> dict[str, list[uuid.UUID]]:
    """Marketplace -> the due searches on it, for marketplaces this server cannot check."""
    missing: dict[str, list[uuid.UUID]] = {}
    for search in due:
        for marketplace in search.marketplaces:
            if marketplace not in capabilities:
                missing.setdefault(marketplace, []).append(search.id)
    return missing


def group_by_query(
    due: Sequence[DueSearch], capabilities: Mapping[str, Capabilities]
) -> list[CheckGroup]:
    """One group per (marketplace, upstream query); marketplaces without an adapter are left
    out (see `unavailable_marketplaces`)."""
    members: dict[tuple[str, Query], list[DueSearch]] = {}
    for search in due:
        for marketplace in search.marketplaces:
            if marketplace in capabilities:
                query = upstream_query(search.criteria, capabilities[marketplace], marketplace)
                members.setdefault((marketplace, query), []).append(search)
    return [
        CheckGroup(
            marketplace=marketplace,
            query=query,
            search_ids=tuple(s.id for s in searches),
            first_check_ids=frozenset(s.id for s in searches if s.is_first_check),
        )
        for (marketplace, query), searches in members.items()
    ]


def batch_groups(
    groups: Sequence[CheckGroup], *, max_groups: int, max_searches: int
) -> list[list[CheckGroup]]:
    """The groups packed into batches of at most `max_groups` groups and `max_searches`
    searches (a larger group is a batch of its own), largest groups first so the longest
    checks start earliest. One task per batch lets a worker process check several groups at
    once instead of waiting on one marketplace call at a time."""
    batches: list[list[CheckGroup]] = []
    batch: list[CheckGroup] = []
    searches = 0
    for group in sorted(groups, key=lambda g: len(g.search_ids), reverse=True):
        size = len(group.search_ids)
        if batch and (len(batch) >= max_groups or searches + size > max_searches):
            batches.append(batch)
            batch, searches = [], 0
        batch.append(group)
        searches += size
    if batch:
        batches.append(batch)
    return batches


def upstream_query(
    criteria: Mapping[str, Any], capabilities: Capabilities, marketplace: str = ""
) -> Query:
    """The query sent upstream: only what the marketplace filters server-side, plus its own
    options (`criteria.marketplace_options.<marketplace>`), normalised so that equivalent
    searches produce equal queries. Everything is re-checked locally."""
    keywords = tuple(sorted({k.strip().casefold() for k in criteria.get("keywords", ())}))
    if not capabilities.keyword_filter:
        # The source lists its newest items whatever the keywords: one fetch serves all.
        keywords = ()
    prices = capabilities.price_filter
    options = (criteria.get("marketplace_options") or {}).get(marketplace) or {}
    return Query(
        keywords=keywords,
        min_price=_decimal(criteria.get("min_price")) if prices else None,
        max_price=_decimal(criteria.get("max_price")) if prices else None,
        currency=(criteria.get("currency") or None) if prices else None,
        location=(criteria.get("location") or "").strip().casefold() or None
        if capabilities.location_filter
        else None,
        radius_km=criteria.get("radius_km") if capabilities.location_filter else None,
        condition=criteria.get("condition") if capabilities.condition_filter else None,
        category=criteria.get("category") if capabilities.keyword_filter else None,
        options=tuple(sorted((str(k), str(v)) for k, v in options.items())),
    )


def next_check_at(now: datetime, frequency_minutes: int) -> datetime:
    """Now plus the frequency, with a little jitter so equal searches spread out over time."""
    period = timedelta(minutes=frequency_minutes)
    return now + period * (1 - JITTER_FRACTION * random.random())


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def group_to_payload(group: CheckGroup) -> dict[str, Any]:
    """A JSON-safe form of a group, for a task message."""
    query = asdict(group.query)
    for key in ("min_price", "max_price"):
        if query[key] is not None:
            query[key] = str(query[key])
    query["keywords"] = list(query["keywords"])
    query["exclude_keywords"] = list(query["exclude_keywords"])
    query["options"] = [list(pair) for pair in query["options"]]
    return {
        "marketplace": group.marketplace,
        "query": query,
        "search_ids": [str(i) for i in group.search_ids],
        "first_check_ids": sorted(str(i) for i in group.first_check_ids),
    }


def group_from_payload(payload: Mapping[str, Any]) -> CheckGroup:
    query = dict(payload["query"])
    query["keywords"] = tuple(query["keywords"])
    query["exclude_keywords"] = tuple(query["exclude_keywords"])
    query["min_price"] = _decimal(query["min_price"])
    query["max_price"] = _decimal(query["max_price"])
    # Messages queued before options existed carry none.
    query["options"] = tuple((str(k), str(v)) for k, v in query.get("options", ()))
    return CheckGroup(
        marketplace=payload["marketplace"],
        query=Query(**query),
        search_ids=tuple(uuid.UUID(i) for i in payload["search_ids"]),
        first_check_ids=frozenset(uuid.UUID(i) for i in payload["first_check_ids"]),
    )
