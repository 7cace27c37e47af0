"""Periodic digests: an hourly or daily search alerts in-app at once and sends one digest
per channel when its period ends, once, however many sweepers run."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts.delivery import DeliveryRuntime, build_message
from app.alerts.digests import period_end, write_due_digests
from app.marketplaces.base import Listing
from app.models import Alert, Search, User
from app.monitoring.matching import build_matcher
from app.monitoring.store import SearchToStore, store_fetch
from tests.factories import make_search

T0 = datetime(2026, 11, 25, 9, 10, tzinfo=UTC)


def item(n: int, price: str = "300") -> Listing:
    return Listing(
        marketplace="ebay",
        external_id=f"v1|{n}|0",
        title=f"Apple iPhone 13 number {n}",
        url=f"https://www.ebay.co.uk/itm/{n}",
        price=Decimal(price),
        currency="GBP",
    )


async def periodic_search(session: AsyncSession, owner: User, mode: str) -> Search:
    return await make_search(
        session,
        owner=owner,
        alert_mode=mode,
        alert_channels=["email", "webhook"],
        last_digest_at=T0 - timedelta(minutes=5),
    )


def to_store(search: Search) -> SearchToStore:
    return SearchToStore(
        id=search.id,
        owner_id=search.owner_id,
        matcher=build_matcher({"keywords": ["iphone 13"], "max_price": 400}, currency="GBP"),
        alert_channels=tuple(search.alert_channels),
        is_silent=False,
        alert_on_price_drop=True,
        alert_mode=search.alert_mode,
    )


async def alerts(session: AsyncSession) -> list[Alert]:
    session.expire_all()
    return list((await session.scalars(select(Alert).order_by(Alert.created_at))).all())


def test_period_ends_at_the_hour_or_at_the_daily_hour_in_the_owners_time_zone() -> None:
    now = datetime(2026, 11, 25, 9, 10, tzinfo=UTC)
    assert period_end("hourly", now, timezone="UTC", daily_hour=8) == datetime(
        2026, 11, 25, 9, 0, tzinfo=UTC
    )
    assert period_end("daily", now, timezone="UTC", daily_hour=8) == datetime(
        2026, 11, 25, 8, 0, tzinfo=UTC
    )
    # 09:10 UTC is 01:10 in Los Angeles: the last 08:00 there was yesterday, 16:00 UTC.
    assert period_end("daily", now, timezone="America/Los_Angeles", daily_hour=8) == datetime(
        2026, 11, 24, 16, 0, tzinfo=UTC
    )
    # An unknown zone falls back to UTC rather than failing the sweep.
    assert period_end("daily", now, timezone="Mars/Olympus", daily_hour=8) == datetime(
        2026, 11, 25, 8, 0, tzinfo=UTC
    )


async def test_hourly_search_alerts_in_app_now_and_once_per_channel_after_the_hour(
    session: AsyncSession, user: User
) -> None:
    search = await periodic_search(session, user, "hourly")
    search_id, spec = search.id, to_store(search)
    await store_fetch(session, "ebay", [item(1)], [spec], now=T0)
    await store_fetch(session, "ebay", [item(2), item(3)], [spec], now=T0 + timedelta(minutes=20))
    # A price drop in the same hour replaces the listing's earlier entry.
    await store_fetch(session, "ebay", [item(1, "250")], [spec], now=T0 + timedelta(minutes=30))
    await session.commit()
    assert {a.channel for a in await alerts(session)} == {"in_app"}

    # Before the hour has ended (and settled) nothing is sent.
    assert await write_due_digests(session, now=T0 + timedelta(minutes=49), daily_hour=8) == 0
    await session.commit()

    later = T0 + timedelta(minutes=52)  # 10:02: the 09:00-10:00 period is closed
    assert await write_due_digests(session, now=later, daily_hour=8) == 2
    # A second sweeper (or the same one again) writes nothing more.
    assert await write_due_digests(session, now=later, daily_hour=8) == 0
    assert await write_due_digests(session, now=later + timedelta(minutes=5), daily_hour=8) == 0
    await session.commit()

    digests = [a for a in await alerts(session) if a.channel != "in_app"]
    assert sorted(a.channel for a in digests) == ["email", "webhook"]
    for digest in digests:
        assert (digest.kind, digest.status) == ("digest", "pending")
        assert digest.payload["total"] == 3
        assert digest.payload["subject"] == "Your hourly digest for 'iPhone deals': 3 new matches"
        listed = {entry["title"]: entry for entry in digest.payload["listings"]}
        assert sorted(listed) == [f"Apple iPhone 13 number {n}" for n in (1, 2, 3)]
        assert listed["Apple iPhone 13 number 1"]["price"] == "250"
        assert listed["Apple iPhone 13 number 1"]["previous_price"] == "300.00"
    session.expire_all()
    refreshed = await session.get(Search, search_id)
    assert refreshed is not None
    assert refreshed.last_digest_at == datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


async def test_a_match_after_the_period_goes_into_the_next_digest_not_this_one(
    session: AsyncSession, user: User
) -> None:
    search = await periodic_search(session, user, "hourly")
    spec = to_store(search)
    await store_fetch(session, "ebay", [item(1)], [spec], now=T0)
    await store_fetch(session, "ebay", [item(2)], [spec], now=T0 + timedelta(minutes=51))
    await session.commit()
    await write_due_digests(session, now=T0 + timedelta(minutes=52), daily_hour=8)
    await write_due_digests(session, now=T0 + timedelta(minutes=112), daily_hour=8)
    await session.commit()
    digests = [a for a in await alerts(session) if a.channel == "email"]
    assert [[e["title"] for e in d.payload["listings"]] for d in digests] == [
        ["Apple iPhone 13 number 1"],
        ["Apple iPhone 13 number 2"],
    ]


async def test_a_quiet_period_sends_nothing_and_instant_searches_are_left_alone(
    session: AsyncSession, user: User
) -> None:
    await periodic_search(session, user, "daily")
    instant = await make_search(session, owner=user, name="instant")
    await store_fetch(session, "ebay", [item(1)], [to_store(instant)], now=T0)
    await session.commit()
    assert await write_due_digests(session, now=T0 + timedelta(days=2), daily_hour=8) == 0
    assert sorted(a.channel for a in await alerts(session)) == ["email", "in_app"]


@pytest.mark.parametrize("mode", ["hourly", "daily"])
async def test_switching_mode_starts_a_new_period(
    client: AsyncClient, headers: dict[str, str], mode: str
) -> None:
    body = {
        "name": "Switch",
        "criteria": {"keywords": ["iphone"]},
        "marketplaces": ["demo"],
        "alert_channels": ["email"],
        "check_frequency_minutes": 30,
    }
    created = await client.post("/api/v1/searches/", json=body, headers=headers)
    assert created.status_code == 201, created.text
    assert created.json()["alert_mode"] == "instant"
    search_id = created.json()["id"]
    patched = await client.patch(
        f"/api/v1/searches/{search_id}", json={"alert_mode": mode}, headers=headers
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["alert_mode"] == mode
    bad = await client.patch(
        f"/api/v1/searches/{search_id}", json={"alert_mode": "weekly"}, headers=headers
    )
    assert bad.status_code == 422
    assert bad.json()["code"] == "validation_error"


async def test_digest_message_counts_what_it_leaves_out(session: AsyncSession, user: User) -> None:
    search = await periodic_search(session, user, "hourly")
    spec = replace(to_store(search), alert_on_price_drop=False)
    await store_fetch(session, "ebay", [item(n) for n in range(15)], [spec], now=T0)
    await session.commit()
    await write_due_digests(session, now=T0 + timedelta(hours=1), daily_hour=8)
    await session.commit()
    runtime = DeliveryRuntime(
        session_factory=None,  # type: ignore[arg-type]  (build_message reads no database)
        channels={},
        http_client=None,  # type: ignore[arg-type]
        policy=None,  # type: ignore[arg-type]
        lease=timedelta(seconds=60),
        worker_id="w",
        public_base_url="http://localhost:8000",
        digest_max_listings=10,
    )
    email = next(a for a in await alerts(session) if a.channel == "email")
    await session.refresh(search)
    message = build_message(email, search, runtime)
    assert (len(message.listings), message.more_count) == (10, 5)
    assert message.subject == "Your hourly digest for 'iPhone deals': 15 new matches"
