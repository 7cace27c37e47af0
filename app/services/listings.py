"""Listings as their owner sees them: only those their searches matched, with their own state.

A user's state of a listing (saved, hidden, viewed) lives on their match rows; a listing
two of their searches matched is one entry whose state folds those rows together: saved
or hidden if any row is, viewed since the earliest view, matched at the latest match.

A page is one query plus one count, selecting columns rather than ORM entities. Its
listings are picked from each listing's latest match row (an anti-join, which walks the
(user_id, matched_at) index and stops after the page), and only the page's rows are then
folded with GROUP BY, so a page costs the same for ten matches as for a hundred thousand.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    Select,
    and_,
    case,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import String

from app.db import utcnow
from app.errors import NotFound
from app.models import Listing, ListingPrice, Search, SearchMatch
from app.schemas.listings import (
    ListingDetail,
    ListingFilters,
    ListingOut,
    ListingPage,
    ListingSort,
    ListingStateUpdate,
    PricePoint,
)

MAX_PRICE_HISTORY = 100
LISTING_NOT_FOUND = "Listing not found"

_LISTING_COLUMNS = (
    Listing.id,
    Listing.marketplace,
    Listing.external_id,
    Listing.title,
    Listing.price,
    Listing.currency,
    Listing.url,
    Listing.image_url,
    Listing.location,
    Listing.condition,
    Listing.seller,
    Listing.posted_at,
    Listing.first_seen_at,
)
_DETAIL_COLUMNS = (Listing.description, Listing.last_seen_at)


async def list_listings(
    session: AsyncSession,
    *,
    owner_id: uuid.UUID,
    filters: ListingFilters,
    limit: int,
    offset: int,
) -> ListingPage:
    """One page of the listings the owner's searches matched, and the total.

    Raises NotFound when `filters.search_id` is not one of the owner's searches.
    """
    if filters.search_id is not None:
        await _check_search_owned(session, filters.search_id, owner_id)
    counted = _latest_matches(owner_id, filters).subquery()
    total = await session.scalar(select(func.count()).select_from(counted)) or 0
    candidates = _latest_matches(owner_id, filters, with_price=True)
    page = (
        candidates.order_by(*_order(candidates.selected_columns, filters.sort))
        .limit(limit)
        .offset(offset)
        .cte("page")
    )
    rows = await session.execute(_with_state(page, owner_id, filters.sort))
    return ListingPage(
        items=[ListingOut.model_validate(row) for row in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


async def list_recent(
    session: AsyncSession,
    *,
    owner_id: uuid.UUID,
    hours: int,
    limit: int,
    offset: int,
    now: datetime | None = None,
) -> ListingPage:
    """The owner's listings matched in the last `hours`, newest first, hidden ones left out."""
    since = (now or utcnow()) - timedelta(hours=hours)
    filters = ListingFilters(matched_since=since, sort=ListingSort.NEWEST)
    return await list_listings(
        session, owner_id=owner_id, filters=filters, limit=limit, offset=offset
    )


async def get_listing(
    session: AsyncSession, listing_id: uuid.UUID, *, owner_id: uuid.UUID
) -> ListingDetail:
    """The listing with the owner's state and its price history; NotFound unless one of
    the owner's searches matched it (hidden or not)."""
    filters = ListingFilters(include_hidden=True)
    page = _latest_matches(owner_id, filters, listing_id=listing_id, with_price=True).cte("page")
    statement = _with_state(page, owner_id, filters.sort, extra=_DETAIL_COLUMNS)
    row = (await session.execute(statement)).one_or_none()
    if row is None:
        raise NotFound(LISTING_NOT_FOUND)
    prices = await session.execute(
        select(ListingPrice.price, ListingPrice.currency, ListingPrice.observed_at)
        .where(ListingPrice.listing_id == listing_id)
        .order_by(ListingPrice.observed_at.desc(), ListingPrice.id.desc())
        .limit(MAX_PRICE_HISTORY)
    )
    history = [PricePoint.model_validate(price) for price in prices]
    history.reverse()
    return ListingDetail.model_validate({**row._mapping, "price_history": history})


async def update_state(
    session: AsyncSession,
    listing_id: uuid.UUID,
    change: ListingStateUpdate,
    *,
    owner_id: uuid.UUID,
    now: datetime | None = None,
) -> ListingDetail:
    """Set the owner's saved/hidden/viewed state on all their matches of the listing (never
    anyone else's) and return the listing. NotFound unless the owner matched it. Flushes."""
    owned = (SearchMatch.user_id == owner_id, SearchMatch.listing_id == listing_id)
    matched = await session.scalar(select(SearchMatch.id).where(*owned).limit(1))
    if matched is None:
        raise NotFound(LISTING_NOT_FOUND)
    values: dict[str, Any] = {}
    if change.is_saved is not None:
        values["is_saved"] = change.is_saved
    if change.is_hidden is not None:
        values["is_hidden"] = change.is_hidden
    if change.is_viewed is False:
        values["viewed_at"] = None
    no_sync = {"synchronize_session": False}
    if values:
        await session.execute(
            update(SearchMatch).where(*owned).values(values), execution_options=no_sync
        )
    if change.is_viewed:
        # Keep the first time it was viewed; only unviewed rows get `now`.
        await session.execute(
            update(SearchMatch)
            .where(*owned, SearchMatch.viewed_at.is_(None))
            .values(viewed_at=now or utcnow()),
            execution_options=no_sync,
        )
    await session.flush()
    return await get_listing(session, listing_id, owner_id=owner_id)


async def match_counts_since(
    session: AsyncSession, *, owner_id: uuid.UUID, since: datetime
) -> dict[uuid.UUID, int]:
    """How many matches each of the owner's searches made at or after `since` (searches
    without any are left out)."""
    rows = await session.execute(
        select(SearchMatch.search_id, func.count())
        .where(SearchMatch.user_id == owner_id, SearchMatch.matched_at >= since)
        .group_by(SearchMatch.search_id)
    )
    return {search_id: int(count) for search_id, count in rows}


class _joined_ids(FunctionElement[str]):
    """The group's ids as one comma-separated string (string_agg / group_concat)."""

    type = String()
    name = "joined_ids"
    inherit_cache = True


@compiles(_joined_ids)
def _joined_ids_default(element: _joined_ids, compiler: SQLCompiler, **kw: Any) -> str:
    return f"group_concat({compiler.process(element.clauses, **kw)}, ',')"


@compiles(_joined_ids, "postgresql")
def _joined_ids_postgresql(element: _joined_ids, compiler: SQLCompiler, **kw: Any) -> str:
    return f"string_agg(CAST({compiler.process(element.clauses, **kw)} AS TEXT), ',')"


def _latest_matches(
    owner_id: uuid.UUID,
    filters: ListingFilters,
    *,
    listing_id: uuid.UUID | None = None,
    with_price: bool = False,
) -> Select[*tuple[Any, ...]]:
    """(listing_id, matched_at[, price]) of the owner's latest match row of each listing
    that passes the filters: exactly one row per listing, unordered."""
    latest = aliased(SearchMatch, name="latest")
    other = aliased(SearchMatch, name="other")
    same_listing = and_(other.user_id == owner_id, other.listing_id == latest.listing_id)
    # Ties on matched_at are broken by id, so exactly one row per listing is the latest.
    newer = or_(
        other.matched_at > latest.matched_at,
        and_(other.matched_at == latest.matched_at, other.id > latest.id),
    )
    # A listing is hidden when any of its rows is, so a hidden row rules it out like a newer one.
    shadowing = newer if filters.include_hidden else or_(newer, other.is_hidden)
    statement = select(latest.listing_id, latest.matched_at).where(
        latest.user_id == owner_id, ~exists().where(same_listing, shadowing)
    )
    if listing_id is not None:
        statement = statement.where(latest.listing_id == listing_id)
    if filters.search_id is not None:
        statement = statement.where(
            exists().where(same_listing, other.search_id == filters.search_id)
        )
    if filters.saved is not None:
        any_saved = exists().where(same_listing, other.is_saved)
        statement = statement.where(any_saved if filters.saved else ~any_saved)
    if filters.matched_since is not None:
        statement = statement.where(latest.matched_at >= filters.matched_since)
    # The listings table is joined only when needed: counting a large history without it
    # reads one index instead of two tables.
    on_listing = _listing_conditions(filters)
    if with_price or on_listing:
        statement = statement.join(Listing, Listing.id == latest.listing_id).where(*on_listing)
    if with_price:
        statement = statement.add_columns(Listing.price)
    return statement


def _listing_conditions(filters: ListingFilters) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.marketplace is not None:
        conditions.append(Listing.marketplace == filters.marketplace.value)
    if filters.min_price is not None:
        conditions.append(Listing.price >= filters.min_price)
    if filters.max_price is not None:
        conditions.append(Listing.price <= filters.max_price)
    if filters.q:
        conditions.append(Listing.title.icontains(filters.q, autoescape=True))
    return conditions


def _with_state(
    page: CTE, owner_id: uuid.UUID, sort: ListingSort, *, extra: tuple[Any, ...] = ()
) -> Select[*tuple[Any, ...]]:
    """The page's listings with the owner's state folded over all their rows of each."""
    row = aliased(SearchMatch, name="row")
    listing_columns = (*_LISTING_COLUMNS, *extra)
    return (
        select(
            *listing_columns,
            func.max(case((row.is_saved, 1), else_=0)).label("is_saved"),
            func.max(case((row.is_hidden, 1), else_=0)).label("is_hidden"),
            func.min(row.viewed_at).label("viewed_at"),
            page.c.matched_at,
            _joined_ids(row.search_id).label("search_ids"),
        )
        .select_from(page)
        .join(Listing, Listing.id == page.c.listing_id)
        .join(row, and_(row.listing_id == page.c.listing_id, row.user_id == owner_id))
        .group_by(*listing_columns, *page.c)
        .order_by(*_order(page.c, sort))
    )


def _order(columns: Any, sort: ListingSort) -> list[Any]:
    """ORDER BY over (listing_id, matched_at, price) columns; ties broken by listing id."""
    newest = [columns.matched_at.desc(), columns.listing_id.desc()]
    if sort is ListingSort.OLDEST:
        return [columns.matched_at.asc(), columns.listing_id.asc()]
    if sort is ListingSort.PRICE_ASC:
        return [columns.price.asc().nulls_last(), *newest]
    if sort is ListingSort.PRICE_DESC:
        return [columns.price.desc().nulls_last(), *newest]
    return newest


async def _check_search_owned(
    session: AsyncSession, search_id: uuid.UUID, owner_id: uuid.UUID
) -> None:
    found = await session.scalar(
        select(Search.id).where(Search.id == search_id, Search.owner_id == owner_id)
    )
    if found is None:
        raise NotFound("Search not found")
