"""Benchmark data: Zipf-distributed queries, users and searches, listings and matches,
written with bulk Core inserts on the app's own tables."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import Base
from app.models import Alert, Listing, ListingPrice, Plan, Search, SearchMatch

INSERT_BATCH = 2_000
# Words for readable, distinct queries: "<brand> <product> <n>".
_BRANDS = ("canon", "nikon", "sony", "apple", "lego", "fender", "dyson", "omega", "bose", "leica")
_PRODUCTS = ("lens", "camera", "guitar", "watch", "iphone", "set", "amp", "vacuum", "tripod")


@dataclass(frozen=True)
class SearchSpec:
    id: uuid.UUID
    owner_id: uuid.UUID
    query: str


def distinct_queries(count: int) -> list[str]:
    return [
        f"{_BRANDS[n % len(_BRANDS)]} {_PRODUCTS[n // len(_BRANDS) % len(_PRODUCTS)]} {n}"
        for n in range(count)
    ]


def zipf_choices(rng: random.Random, population: Sequence[str], k: int, s: float) -> list[str]:
    """`k` draws where the item of rank r is drawn with probability proportional to 1/r^s."""
    weights = [1 / (rank**s) for rank in range(1, len(population) + 1)]
    return rng.choices(population, weights=weights, k=k)


def user_rows(count: int, *, plan: Plan = Plan.BUSINESS, **extra: Any) -> list[dict[str, Any]]:
    # The password hash is never checked: benchmark tokens are minted, not logged in for.
    return [
        {
            "id": uuid.uuid4(),
            "email": f"bench-{n}-{uuid.uuid4().hex[:6]}@example.com",
            "password_hash": "!",
            "plan": plan.value,
            "is_active": True,
            **extra,
        }
        for n in range(count)
    ]


def search_rows(
    specs: Sequence[SearchSpec],
    *,
    channels: Sequence[str],
    frequency_minutes: int,
    next_check_at: Sequence[datetime],
    alert_on_first_check: bool = False,
) -> list[dict[str, Any]]:
    return [
        {
            "id": spec.id,
            "owner_id": spec.owner_id,
            "name": f"Bench {spec.query}",
            "criteria": {"keywords": [spec.query]},
            "marketplaces": ["ebay"],
            "alert_channels": list(channels),
            "check_frequency_minutes": frequency_minutes,
            "alert_on_first_check": alert_on_first_check,
            "is_active": True,
            "next_check_at": due,
        }
        for spec, due in zip(specs, next_check_at, strict=True)
    ]


async def insert_rows(
    engine: AsyncEngine, model: type[Base], rows: Sequence[dict[str, Any]]
) -> None:
    async with engine.begin() as connection:
        for start in range(0, len(rows), INSERT_BATCH):
            await connection.execute(insert(model), list(rows[start : start + INSERT_BATCH]))


async def reset_checks(
    engine: AsyncEngine, *, due_at: datetime, only: Sequence[uuid.UUID] = ()
) -> None:
    """Forget every check: no listings, matches or alerts; every search (or only those in
    `only`) due at `due_at`, the rest not due for a day."""
    tables = (Alert, SearchMatch, ListingPrice, Listing)
    async with engine.begin() as connection:
        names = ", ".join(model.__tablename__ for model in tables)
        await connection.exec_driver_sql(f"TRUNCATE {names} CASCADE")
        await connection.execute(
            update(Search).values(
                last_checked_at=None,
                last_error=None,
                consecutive_failures=0,
                next_check_at=due_at if not only else due_at + timedelta(days=1),
            )
        )
        if only:
            ids = list(only)
            for start in range(0, len(ids), INSERT_BATCH):
                await connection.execute(
                    update(Search)
                    .where(Search.id.in_(ids[start : start + INSERT_BATCH]))
                    .values(next_check_at=due_at)
                )


async def count_checked(engine: AsyncEngine) -> int:
    """Searches whose check finished, well or not."""
    async with engine.connect() as connection:
        return int(
            await connection.scalar(
                select(func.count())
                .select_from(Search)
                .where(or_(Search.last_checked_at.is_not(None), Search.last_error.is_not(None)))
            )
            or 0
        )


async def table_counts(engine: AsyncEngine) -> dict[str, Any]:
    """Listings and matches stored, failed checks and (up to three of) their errors."""
    async with engine.connect() as connection:
        errors = await connection.scalars(
            select(Search.last_error).where(Search.last_error.is_not(None)).distinct().limit(3)
        )
        return {
            "errors": list(errors),
            "listings": int(
                await connection.scalar(select(func.count()).select_from(Listing)) or 0
            ),
            "matches": int(
                await connection.scalar(select(func.count()).select_from(SearchMatch)) or 0
            ),
            "failed_checks": int(
                await connection.scalar(
                    select(func.count()).select_from(Search).where(Search.last_error.is_not(None))
                )
                or 0
            ),
        }


def listing_rows(count: int, *, now: datetime) -> list[dict[str, Any]]:
    return [
        {
            "id": uuid.uuid4(),
            "marketplace": "ebay",
            "external_id": f"v1|{500_000_000_000 + n}|0",
            "title": f"{_BRANDS[n % len(_BRANDS)]} {_PRODUCTS[n % len(_PRODUCTS)]} listing {n}",
            "description": None,
            "price": Decimal(10 + n % 490),
            "currency": "GBP",
            "url": f"https://www.ebay.co.uk/itm/{500_000_000_000 + n}",
            "image_url": f"https://i.ebayimg.com/images/g/{n}/s-l225.jpg",
            "location": "London, SW1***, United Kingdom",
            "condition": "Used",
            "seller": f"seller_{n % 997}",
            "posted_at": now - timedelta(minutes=n),
            "first_seen_at": now - timedelta(minutes=n),
            "last_seen_at": now,
            "raw": None,
        }
        for n in range(count)
    ]


def match_rows(
    search_ids: Sequence[uuid.UUID],
    owner_id: uuid.UUID,
    listings: Sequence[dict[str, Any]],
    *,
    now: datetime,
) -> list[dict[str, Any]]:
    return [
        {
            "id": uuid.uuid4(),
            "search_id": search_ids[n % len(search_ids)],
            "listing_id": listing["id"],
            "user_id": owner_id,
            "matched_at": now - timedelta(seconds=n),
            "price_at_match": listing["price"],
            "is_saved": n % 50 == 0,
            "is_hidden": n % 97 == 0,
        }
        for n, listing in enumerate(listings)
    ]
