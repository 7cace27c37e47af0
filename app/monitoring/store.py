"""Store one fetch: bulk-upsert listings, record price changes, insert new matches and
write their alert outbox rows, all in the caller's transaction.

Every write is one statement per batch (ON CONFLICT on the natural keys), so a listing
is stored once per (marketplace, external id), a match once per (search, listing) and
an alert once per idempotency key, however many workers store the same results at once.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app import metrics
from app.db import dialect_insert
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
    """Upsert the listings, then match them against each search. Flushes, never commits."""
    stored = await upsert_listings(session, marketplace, listings, now=now)
    result = StoreResult(
        listings_new=sum(s.is_new for s in stored),
        listings_updated=sum(not s.is_new for s in stored),
    )
    for search in searches:
        matched = [s for s in stored if search.matcher.matches(s.listing)]
        if matched:
            await _record_matches(session, search, matched, now=now, result=result)
    metrics.record_stored(marketplace, result)
    return result


async def upsert_listings(
    session: AsyncSession, marketplace: str, listings: Sequence[Listing], *, now: datetime
) -> list[StoredListing]:
    """Insert new listings and refresh known ones, a batch per statement; keep price history."""
    unique = list({item.external_id: item for item in reversed(listings)}.values())[::-1]
    stored: list[StoredListing] = []
    for start in range(0, len(unique), BATCH_SIZE):
        stored.extend(
            await _upsert_batch(session, marketplace, unique[start : start + BATCH_SIZE], now)
        )
    return stored


async def _upsert_batch(
    session: AsyncSession, marketplace: str, batch: Sequence[Listing], now: datetime
) -> list[StoredListing]:
    external_ids = [item.external_id for item in batch]
    known = {
        row.external_id: row.price
        for row in await session.execute(
            select(ListingRow.external_id, ListingRow.price).where(
                ListingRow.marketplace == marketplace, ListingRow.external_id.in_(external_ids)
            )
        )
    }
    insert = dialect_insert(session)
    statement = insert(ListingRow).values(
        [_listing_values(item, marketplace, now) for item in batch]
    )
    refreshed = ("title", "price", "currency", "image_url", "location", "condition", "last_seen_at")
    statement = statement.on_conflict_do_update(
        index_elements=["marketplace", "external_id"],
        set_={name: statement.excluded[name] for name in refreshed},
    ).returning(ListingRow.id, ListingRow.external_id)
    ids = {row.external_id: row.id for row in await session.execute(statement)}

    stored = [
        StoredListing(
            id=ids[item.external_id],
            listing=item,
            is_new=item.external_id not in known,
            previous_price=known.get(item.external_id),
        )
        for item in batch
    ]
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
        await session.execute(insert(ListingPrice).values(history))
    return stored


async def _record_matches(
    session: AsyncSession,
    search: SearchToStore,
    matched: Sequence[StoredListing],
    *,
    now: datetime,
    result: StoreResult,
) -> None:
    insert = dialect_insert(session)
    statement = (
        insert(SearchMatch)
        .on_conflict_do_nothing(index_elements=["search_id", "listing_id"])
        .returning(SearchMatch.id, SearchMatch.listing_id)
    )
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
        for s in matched
    ]
    # Rows as parameters, not .values(): the statement compiles once and is cached, where a
    # fresh multi-row VALUES per search cost ~50 ms of CPU each (a group of a popular query,
    # hundreds of searches, outran the task's time limit).
    new_matches = {row.listing_id: row.id for row in await session.execute(statement, rows)}
    result.matches_new += len(new_matches)
    result.new_match_ids.extend(new_matches.values())

    channels = _channels(search)
    alerts: list[dict[str, Any]] = []
    fresh = [s for s in matched if s.id in new_matches]
    if fresh and not search.is_silent:
        if len(fresh) == 1:
            only = fresh[0]
            alerts += [
                _alert_values(
                    search, only, channel, AlertKind.NEW_LISTING, new_matches[only.id], now
                )
                for channel in channels
            ]
        else:
            # Several new listings from one check: one digest per channel, not a flood.
            alerts += [_digest_values(search, fresh, channel, now) for channel in channels]
    if search.alert_on_price_drop:
        dropped = [s for s in matched if s.price_dropped and s.id not in new_matches]
        match_ids = await _match_ids(session, search.id, [s.id for s in dropped])
        alerts += [
            _alert_values(search, s, channel, AlertKind.PRICE_DROP, match_ids.get(s.id), now)
            for s in dropped
            for channel in channels
        ]
    if alerts:
        created = await session.execute(
            insert(Alert)
            .values(alerts)
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(Alert.id)
        )
        result.alerts_created += len(created.all())


async def _match_ids(
    session: AsyncSession, search_id: uuid.UUID, listing_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID]:
    if not listing_ids:
        return {}
    rows = await session.execute(
        select(SearchMatch.listing_id, SearchMatch.id).where(
            tuple_(SearchMatch.search_id, SearchMatch.listing_id).in_(
                [(search_id, listing_id) for listing_id in listing_ids]
            )
        )
    )
    return {row.listing_id: row.id for row in rows}


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
    result = await session.execute(
        delete(ListingRow).where(ListingRow.last_seen_at < seen_before, ListingRow.id.not_in(saved))
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
