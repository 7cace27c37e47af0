"""Periodic digests: a search in hourly or daily mode gets one message per channel when its
period ends, listing what reached its in-app feed during the period.

Runs with every outbox sweep (Celery beat) and in the embedded loop. A digest row's
idempotency key names the search, the period's end and the channel, and the search's
period mark moves in the same transaction, so two sweepers at once still write one digest
and a crash between the two writes neither.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import dialect_insert
from app.models import Alert, AlertChannel, AlertKind, AlertMode, AlertStatus, Search, User

# A check's matches are stamped when it starts storing and committed a moment later: a
# period is closed only this long after it ends, so no late commit falls between periods.
SETTLE = timedelta(minutes=1)
# What a digest row keeps; the message shows fewer (ALERT_DIGEST_MAX_LISTINGS) and
# counts the rest as "and K more".
MAX_LISTINGS_KEPT = 100
_FEED_KINDS = (AlertKind.NEW_LISTING.value, AlertKind.DIGEST.value, AlertKind.PRICE_DROP.value)


def period_end(mode: str, now: datetime, *, timezone: str | None, daily_hour: int) -> datetime:
    """The end of the latest period that has ended by `now`: the top of the hour (hourly) or
    the last `daily_hour`:00 in the owner's time zone (daily)."""
    if mode == AlertMode.HOURLY.value:
        return now.replace(minute=0, second=0, microsecond=0)
    local = now.astimezone(_zone(timezone))
    end = local.replace(hour=daily_hour, minute=0, second=0, microsecond=0)
    if end > local:
        end -= timedelta(days=1)
    return end.astimezone(now.tzinfo)


async def write_due_digests(session: AsyncSession, *, now: datetime, daily_hour: int) -> int:
    """Write the digest rows of every periodic search whose period has ended; returns how
    many rows were written. Flushes, never commits."""
    settled = now - SETTLE
    rows = await session.execute(
        select(Search, User.timezone)
        .join(User, User.id == Search.owner_id)
        .where(Search.alert_mode != AlertMode.INSTANT.value)
    )
    written = 0
    for search, timezone in rows:
        end = period_end(search.alert_mode, settled, timezone=timezone, daily_hour=daily_hour)
        start = search.last_digest_at or search.created_at
        if start >= end:
            continue
        listings = await _feed_listings(session, search.id, after=start, until=end)
        channels = [c for c in search.alert_channels if c != AlertChannel.IN_APP.value]
        if listings and channels:
            written += await _insert_digests(session, search, listings, channels, end, now)
        search.last_digest_at = end
    await session.flush()
    return written


async def _feed_listings(
    session: AsyncSession, search_id: uuid.UUID, *, after: datetime, until: datetime
) -> list[dict[str, Any]]:
    """The listings the search's in-app feed received in the period, once each (a later
    price drop replaces the earlier entry), oldest first."""
    payloads = await session.scalars(
        select(Alert.payload)
        .where(
            Alert.search_id == search_id,
            Alert.channel == AlertChannel.IN_APP.value,
            Alert.kind.in_(_FEED_KINDS),
            Alert.created_at > after,
            Alert.created_at <= until,
        )
        .order_by(Alert.created_at)
    )
    by_listing: dict[str, dict[str, Any]] = {}
    for payload in payloads:
        for item in (payload or {}).get("listings") or [payload or {}]:
            key = str(item.get("listing_id") or item.get("url") or "")
            if key:
                by_listing.pop(key, None)
                by_listing[key] = item
    return list(by_listing.values())


async def _insert_digests(
    session: AsyncSession,
    search: Search,
    listings: Sequence[dict[str, Any]],
    channels: Sequence[str],
    end: datetime,
    now: datetime,
) -> int:
    period = "hourly" if search.alert_mode == AlertMode.HOURLY.value else "daily"
    count = len(listings)
    subject = (
        f"Your {period} digest for '{search.name}': "
        f"{count} new {'match' if count == 1 else 'matches'}"
    )
    insert = dialect_insert(session)
    statement = (
        insert(Alert)
        .values(
            [
                {
                    "id": uuid.uuid4(),
                    "user_id": search.owner_id,
                    "search_id": search.id,
                    "channel": channel,
                    "kind": AlertKind.DIGEST.value,
                    "idempotency_key": f"periodic:{search.id}:{end.isoformat()}:{channel}",
                    "payload": {
                        "subject": subject,
                        "listings": list(listings[-MAX_LISTINGS_KEPT:]),
                        "total": count,
                    },
                    "status": AlertStatus.PENDING.value,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for channel in channels
            ]
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(Alert.id)
    )
    return len((await session.execute(statement)).all())


def _zone(name: str | None) -> tzinfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")
