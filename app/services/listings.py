"""Listings as their owner sees them: only those their searches matched, with their own state.

A user's state of a listing (saved, hidden, viewed) lives on their match rows; a listing
two of their searches matched is one entry whose state folds those rows together: saved
or hidden if any row is, viewed since the earliest view, matched at the latest match.

A page is one query plus one count, selecting table columns (Core, no ORM entities). Its
listings are picked from each listing's latest match row (an anti-join, which walks the
(user_id, matched_at) index and stops after the page), and only the page's rows are then
folded with GROUP BY, so a page costs the same for ten matches as for a hundred thousand.
The total groups the owner's match rows by listing once, the filters on their state
becoming aggregates in HAVING, instead of anti-joining every row against the others.

The statements are built once for each combination of filters in use and reused with
bound values: building SQLAlchemy expressions costs more Python time than running them.
Anything that changes what these pages show bumps the owner's feed version
(`app/monitoring/feed_versions.py`) in the same transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    case,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import String

from app.db import utcnow
from app.errors import NotFound
from app.models import Listing, ListingPrice, Search, SearchMatch
from app.monitoring import feed_versions
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
# The escape character of the title filter's LIKE pattern (what `autoescape` would use).
LIKE_ESCAPE = "/"

_MATCHES = SearchMatch.__table__
_LISTINGS = Listing.__table__
_PRICES = ListingPrice.__table__
# Each listing's latest match row, the owner's other rows of the same listing, and the rows
# a page folds together.
_latest = _MATCHES.alias("latest")
_other = _MATCHES.alias("other")
_row = _MATCHES.alias("row")

_OWNER = bindparam("owner_id", type_=_MATCHES.c.user_id.type)
_LISTING_ID = bindparam("listing_id", type_=_MATCHES.c.listing_id.type)
_SEARCH_ID = bindparam("search_id", type_=_MATCHES.c.search_id.type)
_MATCHED_SINCE = bindparam("matched_since", type_=_MATCHES.c.matched_at.type)
_MARKETPLACE = bindparam("marketplace", type_=_LISTINGS.c.marketplace.type)
_MIN_PRICE = bindparam("min_price", type_=_LISTINGS.c.price.type)
_MAX_PRICE = bindparam("max_price", type_=_LISTINGS.c.price.type)
_TITLE_PATTERN = bindparam("title_pattern", type_=_LISTINGS.c.title.type)
_LIMIT = bindparam("limit", type_=Integer())
_OFFSET = bindparam("offset", type_=Integer())

_LISTING_COLUMNS = tuple(
    _LISTINGS.c[name]
    for name in (
        "id",
        "marketplace",
        "external_id",
        "title",
        "price",
        "currency",
        "url",
        "image_url",
        "location",
        "condition",
        "seller",
        "posted_at",
        "first_seen_at",
    )
)
_DETAIL_COLUMNS = (_LISTINGS.c.description, _LISTINGS.c.last_seen_at)


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
    shape = _Shape.of(filters)
    params = _parameters(owner_id, filters)
    total = await session.scalar(_count_statement(shape), params) or 0
    rows = await session.execute(
        _page_statement(shape, filters.sort), {**params, "limit": limit, "offset": offset}
    )
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
    params = {"owner_id": owner_id, "listing_id": listing_id}
    row = (await session.execute(_DETAIL, params)).one_or_none()
    if row is None:
        raise NotFound(LISTING_NOT_FOUND)
    prices = await session.execute(_PRICE_HISTORY, {"listing_id": listing_id})
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
    anyone else's), bump their feed version and return the listing. NotFound unless the
    owner matched it. Flushes."""
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
    # After the match rows, as every writer orders its locks (see feed_versions).
    await feed_versions.bump(session, [owner_id])
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


@dataclass(frozen=True)
class _Shape:
    """Which filters are in use (their values are bound at execution): one set of
    statements per shape."""

    include_hidden: bool
    search: bool
    saved: bool | None
    matched_since: bool
    marketplace: bool
    min_price: bool
    max_price: bool
    title: bool

    @classmethod
    def of(cls, filters: ListingFilters) -> _Shape:
        return cls(
            include_hidden=filters.include_hidden,
            search=filters.search_id is not None,
            saved=filters.saved,
            matched_since=filters.matched_since is not None,
            marketplace=filters.marketplace is not None,
            min_price=filters.min_price is not None,
            max_price=filters.max_price is not None,
            title=bool(filters.q),
        )


def _parameters(owner_id: uuid.UUID, filters: ListingFilters) -> dict[str, Any]:
    """The bound values of the filters `_Shape.of(filters)` says are in use."""
    params: dict[str, Any] = {"owner_id": owner_id}
    if filters.search_id is not None:
        params["search_id"] = filters.search_id
    if filters.matched_since is not None:
        params["matched_since"] = filters.matched_since
    if filters.marketplace is not None:
        params["marketplace"] = filters.marketplace.value
    if filters.min_price is not None:
        params["min_price"] = filters.min_price
    if filters.max_price is not None:
        params["max_price"] = filters.max_price
    if filters.q:
        params["title_pattern"] = _escape_like(filters.q)
    return params


def _escape_like(text: str) -> str:
    """The text as a LIKE operand matching itself literally: wildcards escaped."""
    for special in (LIKE_ESCAPE, "%", "_"):
        text = text.replace(special, LIKE_ESCAPE + special)
    return text


@cache
def _count_statement(shape: _Shape) -> Select[int]:
    """How many listings pass the filters: the owner's match rows grouped by listing, the
    conditions on their state as aggregates over each group."""
    rows = _MATCHES
    grouped = select(rows.c.listing_id).where(rows.c.user_id == _OWNER)
    # The listings table is joined only when needed: counting a large history without it
    # reads one table instead of two.
    on_listing = _listing_conditions(shape)
    if on_listing:
        grouped = grouped.join(_LISTINGS, _LISTINGS.c.id == rows.c.listing_id).where(*on_listing)
    having: list[ColumnElement[bool]] = []
    if not shape.include_hidden:
        having.append(_any(rows.c.is_hidden) == 0)
    if shape.search:
        having.append(_any(rows.c.search_id == _SEARCH_ID) == 1)
    if shape.saved is not None:
        having.append(_any(rows.c.is_saved) == (1 if shape.saved else 0))
    if shape.matched_since:
        having.append(func.max(rows.c.matched_at) >= _MATCHED_SINCE)
    grouped = grouped.group_by(rows.c.listing_id)
    if having:
        grouped = grouped.having(and_(*having))
    return select(func.count()).select_from(grouped.subquery("listed"))


@cache
def _page_statement(shape: _Shape, sort: ListingSort) -> Select[Any]:
    """One page (`limit`, `offset`) of the listings passing the filters, with the owner's
    state folded over all their rows of each."""
    candidates = _latest_matches(shape)
    page = (
        candidates.order_by(*_order(candidates.selected_columns, sort))
        .limit(_LIMIT)
        .offset(_OFFSET)
        .cte("page")
    )
    return _with_state(page, sort)


def _any(condition: ColumnElement[Any]) -> ColumnElement[int]:
    """1 when the condition holds for any row of the group, else 0 (no bool_or in SQLite)."""
    return func.max(case((condition, 1), else_=0))


def _latest_matches(shape: _Shape) -> Select[Any]:
    """(listing_id, matched_at, price, posted_at) of the owner's latest match row of each
    listing that passes the filters: exactly one row per listing, unordered."""
    same_listing = and_(_other.c.user_id == _OWNER, _other.c.listing_id == _latest.c.listing_id)
    # Ties on matched_at are broken by id, so exactly one row per listing is the latest.
    newer = or_(
        _other.c.matched_at > _latest.c.matched_at,
        and_(_other.c.matched_at == _latest.c.matched_at, _other.c.id > _latest.c.id),
    )
    # A listing is hidden when any of its rows is, so a hidden row rules it out like a newer one.
    shadowing = newer if shape.include_hidden else or_(newer, _other.c.is_hidden)
    statement = (
        select(_latest.c.listing_id, _latest.c.matched_at, _LISTINGS.c.price, _LISTINGS.c.posted_at)
        .join(_LISTINGS, _LISTINGS.c.id == _latest.c.listing_id)
        .where(_latest.c.user_id == _OWNER, ~exists().where(same_listing, shadowing))
    )
    if shape.search:
        statement = statement.where(exists().where(same_listing, _other.c.search_id == _SEARCH_ID))
    if shape.saved is not None:
        any_saved = exists().where(same_listing, _other.c.is_saved)
        statement = statement.where(any_saved if shape.saved else ~any_saved)
    if shape.matched_since:
        statement = statement.where(_latest.c.matched_at >= _MATCHED_SINCE)
    return statement.where(*_listing_conditions(shape))


def _listing_conditions(shape: _Shape) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if shape.marketplace:
        conditions.append(_LISTINGS.c.marketplace == _MARKETPLACE)
    if shape.min_price:
        conditions.append(_LISTINGS.c.price >= _MIN_PRICE)
    if shape.max_price:
        conditions.append(_LISTINGS.c.price <= _MAX_PRICE)
    if shape.title:
        conditions.append(_LISTINGS.c.title.icontains(_TITLE_PATTERN, escape=LIKE_ESCAPE))
    return conditions


def _state_columns() -> tuple[ColumnElement[Any], ...]:
    """The owner's state folded over the `_row` rows of a listing."""
    return (
        _any(_row.c.is_saved).label("is_saved"),
        _any(_row.c.is_hidden).label("is_hidden"),
        func.min(_row.c.viewed_at).label("viewed_at"),
    )


def _with_state(page: CTE, sort: ListingSort) -> Select[Any]:
    """The page's listings with the owner's state folded over all their rows of each."""
    return (
        select(
            *_LISTING_COLUMNS,
            *_state_columns(),
            page.c.matched_at,
            _joined_ids(_row.c.search_id).label("search_ids"),
        )
        .select_from(page)
        .join(_LISTINGS, _LISTINGS.c.id == page.c.listing_id)
        .join(_row, and_(_row.c.listing_id == page.c.listing_id, _row.c.user_id == _OWNER))
        .group_by(*_LISTING_COLUMNS, *page.c)
        .order_by(*_order(page.c, sort))
    )


def _order(columns: Any, sort: ListingSort) -> list[Any]:
    """ORDER BY over (listing_id, matched_at, price, posted_at) columns; a total order, so
    offset pages neither repeat nor skip a listing."""
    # One check stores all it found at one matched_at: within it, the order the
    # marketplace posted them (unknown times last), then the listing id.
    newest = [
        columns.matched_at.desc(),
        columns.posted_at.desc().nulls_last(),
        columns.listing_id.desc(),
    ]
    if sort is ListingSort.OLDEST:
        return [
            columns.matched_at.asc(),
            columns.posted_at.asc().nulls_last(),
            columns.listing_id.asc(),
        ]
    if sort is ListingSort.PRICE_ASC:
        return [columns.price.asc().nulls_last(), *newest]
    if sort is ListingSort.PRICE_DESC:
        return [columns.price.desc().nulls_last(), *newest]
    return newest


# One listing (hidden or not) with the owner's state folded over all their rows of it.
_DETAIL = (
    select(
        *_LISTING_COLUMNS,
        *_DETAIL_COLUMNS,
        *_state_columns(),
        func.max(_row.c.matched_at).label("matched_at"),
        _joined_ids(_row.c.search_id).label("search_ids"),
    )
    .select_from(_row)
    .join(_LISTINGS, _LISTINGS.c.id == _row.c.listing_id)
    .where(_row.c.user_id == _OWNER, _row.c.listing_id == _LISTING_ID)
    .group_by(*_LISTING_COLUMNS, *_DETAIL_COLUMNS)
)
_PRICE_HISTORY = (
    select(_PRICES.c.price, _PRICES.c.currency, _PRICES.c.observed_at)
    .where(_PRICES.c.listing_id == _LISTING_ID)
    .order_by(_PRICES.c.observed_at.desc(), _PRICES.c.id.desc())
    .limit(MAX_PRICE_HISTORY)
)


async def _check_search_owned(
    session: AsyncSession, search_id: uuid.UUID, owner_id: uuid.UUID
) -> None:
    found = await session.scalar(
        select(Search.id).where(Search.id == search_id, Search.owner_id == owner_id)
    )
    if found is None:
        raise NotFound("Search not found")
