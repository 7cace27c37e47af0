"""Store one fetch: bulk-upsert listings, record price changes, insert new matches and
write their alert outbox rows, all in the caller's transaction.

Every write is one statement per batch (ON CONFLICT on the natural keys), so a listing
is stored once per (marketplace, external id), a match once per (search, listing) and
an alert once per idempotency key, however many workers store the same results at once.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, delete, select, text, tuple_
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app import metrics
from app.db import UTCDateTime, dialect_insert
from app.marketplaces.base import Listing
from app.models import (
    Alert,
    AlertChannel,
    AlertKind,
    AlertMode,
    AlertStatus,
    ListingPrice,
    SearchMatch,
)
from app.models import Listing as ListingRow
from app.monitoring import feed_versions
from app.monitoring.matching import Matcher

BATCH_SIZE = 500


@dataclass(frozen=True)
class SearchToStore:
    """What storing needs to know about one search that took part in a fetch."""

    id: uuid.UUID
    owner_id: uuid.UUID
    matcher: Matcher
    alert_channels: tuple[str, ...]
    # The first check records what is already listed without alerting, unless opted in.
    is_silent: bool
    alert_on_price_drop: bool
    # Periodic searches (hourly/daily) alert in-app now; app.alerts.digests sends the rest.
    alert_mode: str = AlertMode.INSTANT.value


@dataclass(frozen=True)
class StoredListing:
    id: uuid.UUID
    listing: Listing
    is_new: bool
    previous_price: Decimal | None
    # A known listing whose shown fields (title, price, image...) are not what they were.
    changed: bool = False

    @property
    def price_dropped(self) -> bool:
        return (
            not self.is_new
            and self.previous_price is not None
            and self.listing.price is not None
            and self.listing.price < self.previous_price
        )


@dataclass
class StoreResult:
    listings_new: int = 0
    listings_updated: int = 0
    matches_new: int = 0
    alerts_created: int = 0
    new_match_ids: list[uuid.UUID] = field(default_factory=list)


async def store_fetch(
    session: AsyncSession,
    marketplace: str,
    listings: Sequence[Listing],
    searches: Iterable[SearchToStore],
    *,
    now: datetime,
) -> StoreResult:
    """Upsert the listings, then match them against each search. Flushes, never commits.

    A group's matches and alerts are written together, a few statements for the whole
    group rather than a few per search: a popular query has hundreds of searches.
    """
    stored = await upsert_listings(session, marketplace, listings, now=now)
    result = StoreResult(
        listings_new=sum(s.is_new for s in stored),
        listings_updated=sum(not s.is_new for s in stored),
    )
    matched_by_search = _match(stored, searches)
    new_matches = await _insert_matches(session, matched_by_search, now)
    result.matches_new = len(new_matches)
    result.new_match_ids = list(new_matches.values())
    dropped = [
        (search, [s for s in matched if s.price_dropped and (search.id, s.id) not in new_matches])
        for search, matched in matched_by_search
        if search.alert_on_price_drop
    ]
    earlier_matches = await _match_ids(
        session, [(search.id, s.id) for search, cheaper in dropped for s in cheaper]
    )
    alerts = [
        alert
        for search, matched in matched_by_search
        for alert in _new_listing_alerts(search, matched, new_matches, now)
    ]
    for search, cheaper in dropped:
        for s in cheaper:
            match_id = earlier_matches.get((search.id, s.id))
            alerts += [
                _alert_values(search, s, channel, AlertKind.PRICE_DROP, match_id, now)
                for channel in _channels(search)
            ]
    result.alerts_created = await _insert_alerts(session, alerts)
    await _bump_feed_versions(session, matched_by_search, new_matches, stored)
    metrics.record_stored(marketplace, result)
    return result


async def _bump_feed_versions(
    session: AsyncSession,
    matched_by_search: Sequence[tuple[SearchToStore, Sequence[StoredListing]]],
    new_matches: dict[MatchKey, uuid.UUID],
    stored: Sequence[StoredListing],
) -> None:
    """New feed versions for the users whose listing pages this store changed: owners of
    new matches and of changed listings, in one statement (see app.monitoring.feed_versions)."""
    owner_of = {search.id: search.owner_id for search, _ in matched_by_search}
    owners = {owner_of[search_id] for search_id, _ in new_matches}
    owners |= await feed_versions.owners_of_listings(session, [s.id for s in stored if s.changed])
    await feed_versions.bump(session, owners)


async def upsert_listings(
    session: AsyncSession, marketplace: str, listings: Sequence[Listing], *, now: datetime
) -> list[StoredListing]:
    """Insert new listings and refresh known ones, a batch per statement; keep price history."""
    unique = list({item.external_id: item for item in reversed(listings)}.values())[::-1]
    # Written in external id order: two checks storing overlapping listings at once then
    # lock the rows in the same order, and one waits for the other instead of deadlocking.
    in_lock_order = sorted(unique, key=lambda item: item.external_id)
    stored: dict[str, StoredListing] = {}
    for start in range(0, len(in_lock_order), BATCH_SIZE):
        batch = in_lock_order[start : start + BATCH_SIZE]
        for s in await _upsert_batch(session, marketplace, batch, now):
            stored[s.listing.external_id] = s
    return [stored[item.external_id] for item in unique]


# Refreshed on every sighting of a known listing; all but last_seen_at show on its page.
_SHOWN_FIELDS = ("title", "price", "currency", "image_url", "location", "condition")


async def _upsert_batch(
    session: AsyncSession, marketplace: str, batch: Sequence[Listing], now: datetime
) -> list[StoredListing]:
    if session.get_bind().dialect.name == "postgresql":
        return await _upsert_batch_postgresql(session, marketplace, batch, now)
    external_ids = [item.external_id for item in batch]
    known = {
        row.external_id: row
        for row in await session.execute(
            select(
                ListingRow.external_id, *(getattr(ListingRow, name) for name in _SHOWN_FIELDS)
            ).where(ListingRow.marketplace == marketplace, ListingRow.external_id.in_(external_ids))
        )
    }
    insert = dialect_insert(session)
    statement = insert(ListingRow)
    statement = statement.on_conflict_do_update(
        index_elements=["marketplace", "external_id"],
        set_={name: statement.excluded[name] for name in (*_SHOWN_FIELDS, "last_seen_at")},
    ).returning(ListingRow.id, ListingRow.external_id)
    # Rows as parameters, not .values(rows): a multi-row VALUES is compiled afresh on every
    # call (tens of ms of CPU for 50 rows), a parameterised statement once per process.
    rows = [_listing_values(item, marketplace, now) for item in batch]
    ids = {row.external_id: row.id for row in await session.execute(statement, rows)}

    stored = []
    for item, values in zip(batch, rows, strict=True):
        before = known.get(item.external_id)
        stored.append(
            StoredListing(
                id=ids[item.external_id],
                listing=item,
                is_new=before is None,
                previous_price=None if before is None else before.price,
                changed=before is not None
                and any(getattr(before, name) != values[name] for name in _SHOWN_FIELDS),
            )
        )
    history = [
        {
            "id": uuid.uuid4(),
            "listing_id": s.id,
            "price": s.listing.price,
            "currency": s.listing.currency or "",
            "observed_at": now,
        }
        for s in stored
        if s.listing.price is not None and (s.is_new or s.previous_price != s.listing.price)
    ]
    if history:
        await session.execute(insert(ListingPrice), history)
    return stored


# The same in one PostgreSQL statement, a batch's columns as arrays: the snapshot the
# statement starts from still holds each listing as it was (`known`), so the upsert, the
# price history and what changed come out of one round trip.
_UPSERT_LISTINGS_POSTGRESQL = text(
    """
    WITH incoming AS (
        SELECT * FROM unnest(
            CAST(:ids AS UUID[]), CAST(:external_ids AS VARCHAR[]), CAST(:titles AS VARCHAR[]),
            CAST(:descriptions AS TEXT[]), CAST(:prices AS NUMERIC[]),
            CAST(:currencies AS VARCHAR[]), CAST(:urls AS VARCHAR[]),
            CAST(:image_urls AS VARCHAR[]), CAST(:locations AS VARCHAR[]),
            CAST(:conditions AS VARCHAR[]), CAST(:sellers AS VARCHAR[]),
            CAST(:posted_ats AS TIMESTAMPTZ[]), CAST(:raws AS JSON[])
        ) AS incoming(id, external_id, title, description, price, currency, url, image_url,
                      location, condition, seller, posted_at, raw)
    ), known AS (
        SELECT external_id, title, price, currency, image_url, location, condition
        FROM listings
        WHERE marketplace = :marketplace
          AND external_id IN (SELECT external_id FROM incoming)
    ), upserted AS (
        INSERT INTO listings (id, marketplace, external_id, title, description, price,
                              currency, url, image_url, location, condition, seller,
                              posted_at, first_seen_at, last_seen_at, raw)
        SELECT id, :marketplace, external_id, title, description, price, currency, url,
               image_url, location, condition, seller, posted_at, :now, :now, raw
        FROM incoming
        ON CONFLICT (marketplace, external_id) DO UPDATE SET
            title = excluded.title, price = excluded.price, currency = excluded.currency,
            image_url = excluded.image_url, location = excluded.location,
            condition = excluded.condition, last_seen_at = excluded.last_seen_at
        RETURNING id, external_id, title, price, currency, image_url, location, condition
    ), history AS (
        INSERT INTO listing_prices (id, listing_id, price, currency, observed_at)
        SELECT gen_random_uuid(), upserted.id, upserted.price,
               coalesce(upserted.currency, ''), :now
        FROM upserted LEFT JOIN known USING (external_id)
        WHERE upserted.price IS NOT NULL
          AND (known.external_id IS NULL OR known.price IS DISTINCT FROM upserted.price)
    )
    SELECT upserted.id, upserted.external_id, known.external_id IS NULL AS is_new,
           known.price AS previous_price,
           (known.external_id IS NOT NULL
            AND (known.title, known.price, known.currency, known.image_url, known.location,
                 known.condition)
                IS DISTINCT FROM (upserted.title, upserted.price, upserted.currency,
                                  upserted.image_url, upserted.location, upserted.condition)
           ) AS changed
    FROM upserted LEFT JOIN known USING (external_id)
    """
).bindparams(bindparam("now", type_=UTCDateTime()))


async def _upsert_batch_postgresql(
    session: AsyncSession, marketplace: str, batch: Sequence[Listing], now: datetime
) -> list[StoredListing]:
    columns: dict[str, list[Any]] = {
        "ids": [uuid.uuid4() for _ in batch],
        "external_ids": [item.external_id for item in batch],
        "titles": [item.title[:500] for item in batch],
        "descriptions": [item.description for item in batch],
        "prices": [item.price for item in batch],
        "currencies": [item.currency for item in batch],
        "urls": [item.url for item in batch],
        "image_urls": [item.image_url for item in batch],
        "locations": [item.location for item in batch],
        "conditions": [item.condition for item in batch],
        "sellers": [item.seller for item in batch],
        "posted_ats": [item.posted_at for item in batch],
        "raws": [json.dumps(item.raw, default=str) for item in batch],
    }
    rows = await session.execute(
        _UPSERT_LISTINGS_POSTGRESQL, {**columns, "marketplace": marketplace, "now": now}
    )
    by_external_id = {row.external_id: row for row in rows}
    return [
        StoredListing(
            id=(row := by_external_id[item.external_id]).id,
            listing=item,
            is_new=row.is_new,
            previous_price=row.previous_price,
            changed=row.changed,
        )
        for item in batch
    ]


MatchKey = tuple[uuid.UUID, uuid.UUID]  # (search id, listing id)


def _match(
    stored: Sequence[StoredListing], searches: Iterable[SearchToStore]
) -> list[tuple[SearchToStore, list[StoredListing]]]:
    """Each search with the listings it matched (searches matching nothing left out).

    Searches with equal criteria share one list, computed once: in a group, most do.
    """
    by_matcher: dict[Matcher, list[StoredListing]] = {}
    matched_by_search = []
    for search in searches:
        matched = by_matcher.get(search.matcher)
        if matched is None:
            matched = [s for s in stored if search.matcher.matches(s.listing)]
            by_matcher[search.matcher] = matched
        if matched:
            matched_by_search.append((search, matched))
    return matched_by_search


# PostgreSQL gets a group's matches as two sets of arrays and builds the rows itself: the
# searches, each with the number of its list of matched listings, and those lists. A popular
# query's group (a thousand searches sharing 50 listings) is then a thousand plus fifty
# array elements, not fifty thousand parameter rows, and a row per search comes back.
_INSERT_MATCHES_POSTGRESQL = text(
    """
    WITH matched AS (
        SELECT searches.search_id, searches.user_id, listings.listing_id, listings.price
        FROM unnest(
            CAST(:search_ids AS UUID[]), CAST(:user_ids AS UUID[]), CAST(:search_lists AS INT[])
        ) AS searches(search_id, user_id, list_number)
        JOIN unnest(
            CAST(:listing_ids AS UUID[]), CAST(:prices AS NUMERIC[]), CAST(:listing_lists AS INT[])
        ) AS listings(listing_id, price, list_number) USING (list_number)
    ), inserted AS (
        INSERT INTO search_matches
            (id, search_id, listing_id, user_id, matched_at, price_at_match, is_saved, is_hidden)
        SELECT gen_random_uuid(), search_id, listing_id, user_id, :matched_at, price, false, false
        FROM matched
        ON CONFLICT (search_id, listing_id) DO NOTHING
        RETURNING id, search_id, listing_id
    )
    SELECT search_id, array_agg(listing_id) AS listing_ids, array_agg(id) AS ids
    FROM inserted
    GROUP BY search_id
    """
).bindparams(bindparam("matched_at", type_=UTCDateTime()))
SEARCHES_PER_STATEMENT = 2_000


async def _insert_matches(
    session: AsyncSession,
    matched_by_search: Sequence[tuple[SearchToStore, Sequence[StoredListing]]],
    now: datetime,
) -> dict[MatchKey, uuid.UUID]:
    """Insert the match rows that do not exist yet; returns the new ones' ids."""
    if session.get_bind().dialect.name != "postgresql":
        return await _insert_match_rows(session, matched_by_search, now)
    new: dict[MatchKey, uuid.UUID] = {}
    for start in range(0, len(matched_by_search), SEARCHES_PER_STATEMENT):
        chunk = matched_by_search[start : start + SEARCHES_PER_STATEMENT]
        list_numbers: dict[int, int] = {}
        searches: dict[str, list[Any]] = {"search_ids": [], "user_ids": [], "search_lists": []}
        listings: dict[str, list[Any]] = {"listing_ids": [], "prices": [], "listing_lists": []}
        for search, matched in chunk:
            number = list_numbers.get(id(matched))
            if number is None:
                number = list_numbers[id(matched)] = len(list_numbers)
                listings["listing_ids"] += [s.id for s in matched]
                listings["prices"] += [s.listing.price for s in matched]
                listings["listing_lists"] += [number] * len(matched)
            searches["search_ids"].append(search.id)
            searches["user_ids"].append(search.owner_id)
            searches["search_lists"].append(number)
        inserted = await session.execute(
            _INSERT_MATCHES_POSTGRESQL, {**searches, **listings, "matched_at": now}
        )
        for row in inserted:
            new.update(
                ((row.search_id, listing_id), match_id)
                for listing_id, match_id in zip(row.listing_ids, row.ids, strict=True)
            )
    return new


async def _insert_match_rows(
    session: AsyncSession,
    matched_by_search: Sequence[tuple[SearchToStore, Sequence[StoredListing]]],
    now: datetime,
) -> dict[MatchKey, uuid.UUID]:
    """The same for SQLite, a parameter row per match."""
    rows = [
        {
            "id": uuid.uuid4(),
            "search_id": search.id,
            "listing_id": s.id,
            "user_id": search.owner_id,
            "matched_at": now,
            "price_at_match": s.listing.price,
            "is_saved": False,
            "is_hidden": False,
        }
        for search, matched in matched_by_search
        for s in matched
    ]
    if not rows:
        return {}
    statement = (
        sqlite.insert(SearchMatch)
        .on_conflict_do_nothing(index_elements=["search_id", "listing_id"])
        .returning(SearchMatch.id, SearchMatch.search_id, SearchMatch.listing_id)
    )
    inserted = await session.execute(statement, rows)
    return {(row.search_id, row.listing_id): row.id for row in inserted}


def _new_listing_alerts(
    search: SearchToStore,
    matched: Sequence[StoredListing],
    new_matches: dict[MatchKey, uuid.UUID],
    now: datetime,
) -> list[dict[str, Any]]:
    fresh = [s for s in matched if (search.id, s.id) in new_matches]
    if not fresh or search.is_silent:
        return []
    channels = _channels(search)
    if len(fresh) == 1:
        only = fresh[0]
        match_id = new_matches[(search.id, only.id)]
        return [
            _alert_values(search, only, channel, AlertKind.NEW_LISTING, match_id, now)
            for channel in channels
        ]
    # Several new listings from one check: one digest per channel, not a flood.
    return [_digest_values(search, fresh, channel, now) for channel in channels]


async def _insert_alerts(session: AsyncSession, alerts: Sequence[dict[str, Any]]) -> int:
    """Write the outbox rows whose idempotency key is new; returns how many were written."""
    if not alerts:
        return 0
    statement = (
        dialect_insert(session)(Alert)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(Alert.id)
    )
    created = await session.execute(statement, list(alerts))
    return len(created.all())


async def _match_ids(session: AsyncSession, keys: Sequence[MatchKey]) -> dict[MatchKey, uuid.UUID]:
    if not keys:
        return {}
    rows = await session.execute(
        select(SearchMatch.search_id, SearchMatch.listing_id, SearchMatch.id).where(
            tuple_(SearchMatch.search_id, SearchMatch.listing_id).in_(keys)
        )
    )
    return {(row.search_id, row.listing_id): row.id for row in rows}


def _listing_values(item: Listing, marketplace: str, now: datetime) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "marketplace": marketplace,
        "external_id": item.external_id,
        "title": item.title[:500],
        "description": item.description,
        "price": item.price,
        "currency": item.currency,
        "url": item.url,
        "image_url": item.image_url,
        "location": item.location,
        "condition": item.condition,
        "seller": item.seller,
        "posted_at": item.posted_at,
        "first_seen_at": now,
        "last_seen_at": now,
        "raw": item.raw,
    }


def _channels(search: SearchToStore) -> tuple[str, ...]:
    """The search's channels plus the in-app feed, which every alert lands in; only the
    in-app feed for a periodic search (its digest goes out when the period ends)."""
    if search.alert_mode != AlertMode.INSTANT.value:
        return (AlertChannel.IN_APP.value,)
    chosen = tuple(dict.fromkeys(search.alert_channels))
    return chosen if AlertChannel.IN_APP.value in chosen else (*chosen, AlertChannel.IN_APP.value)


def _listing_payload(stored: StoredListing) -> dict[str, Any]:
    item = stored.listing
    return {
        "listing_id": str(stored.id),
        "marketplace": item.marketplace,
        "title": item.title,
        "price": None if item.price is None else str(item.price),
        "previous_price": None if stored.previous_price is None else str(stored.previous_price),
        "currency": item.currency,
        "url": item.url,
        "image_url": item.image_url,
        "location": item.location,
    }


def _digest_values(
    search: SearchToStore, fresh: Sequence[StoredListing], channel: str, now: datetime
) -> dict[str, Any]:
    # The same new listings always make the same key, so a re-run check adds no second digest.
    listing_ids = sorted(str(s.id) for s in fresh)
    digest = hashlib.sha256(",".join(listing_ids).encode()).hexdigest()[:24]
    return {
        **_outbox_defaults(now),
        "user_id": search.owner_id,
        "search_id": search.id,
        "match_id": None,
        "listing_id": None,
        "channel": channel,
        "kind": AlertKind.DIGEST.value,
        "idempotency_key": f"digest:{search.id}:{digest}:{channel}",
        "payload": {"listings": [_listing_payload(s) for s in fresh]},
    }


def _outbox_defaults(now: datetime) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "status": AlertStatus.PENDING.value,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def _alert_values(
    search: SearchToStore,
    stored: StoredListing,
    channel: str,
    kind: AlertKind,
    match_id: uuid.UUID | None,
    now: datetime,
) -> dict[str, Any]:
    # A price drop alerts once per new price; a new listing once ever.
    suffix = f":{stored.listing.price}" if kind is AlertKind.PRICE_DROP else ""
    return {
        **_outbox_defaults(now),
        "user_id": search.owner_id,
        "search_id": search.id,
        "match_id": match_id,
        "listing_id": stored.id,
        "channel": channel,
        "kind": kind.value,
        "idempotency_key": f"{kind.value}:{search.id}:{stored.id}:{channel}{suffix}",
        "payload": _listing_payload(stored),
    }


async def delete_stale_listings(session: AsyncSession, *, seen_before: datetime) -> int:
    """Delete listings last seen before the cut-off that no user saved; their matches go too.

    Flushes, never commits. Returns how many listings were deleted.
    """
    saved = select(SearchMatch.listing_id).where(SearchMatch.is_saved.is_(True))
    stale = (ListingRow.last_seen_at < seen_before, ListingRow.id.not_in(saved))
    # Their owners' listing pages change: new feed versions. The owners are read before the
    # rows go, and bumped after, as every writer bumps last (see feed_versions).
    owners = await session.scalars(
        select(SearchMatch.user_id)
        .where(SearchMatch.listing_id.in_(select(ListingRow.id).where(*stale)))
        .distinct()
    )
    owner_ids = list(owners)
    result = await session.execute(delete(ListingRow).where(*stale))
    await feed_versions.bump(session, owner_ids)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
