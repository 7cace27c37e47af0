"""/api/v1/searches: saving, editing, pausing and checking searches, within the owner's plan."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.errors import PlanLimitExceeded
from app.models import ApiUsage, Listing, Plan, Search, SearchMatch, User
from app.schemas.searches import SearchCreate
from app.services import plans, searches
from tests.factories import make_listing, make_match, make_search, make_user, token_headers

URL = "/api/v1/searches/"
SEED_BODY: dict[str, Any] = {
    "name": "My First Search",
    "description": "Looking for iPhone deals",
    "criteria": {
        "keywords": ["iPhone 13", "iPhone 14"],
        "max_price": 400,
        "exclude_keywords": ["broken", "faulty"],
        "location": "London",
    },
    "marketplaces": ["ebay"],
    "alert_channels": ["email"],
    "check_frequency_minutes": 30,
}

# Craigslist needs a city of its own.
CRAIGSLIST_CRITERIA = {
    **SEED_BODY["criteria"],
    "marketplace_options": {"craigslist": {"city": "london"}},
}


def body(**overrides: Any) -> dict[str, Any]:
    return {**SEED_BODY, **overrides}


def with_criteria(**fields: Any) -> dict[str, Any]:
    return body(criteria={**SEED_BODY["criteria"], **fields})


async def create(client: httpx.AsyncClient, headers: dict[str, str], **overrides: Any) -> Any:
    response = await client.post(URL, json=body(**overrides), headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def reload(session: AsyncSession, search_id: str | uuid.UUID) -> Search | None:
    """The search as committed now (the test session may hold stale copies)."""
    await session.rollback()
    session.expire_all()
    return await session.scalar(select(Search).where(Search.id == uuid.UUID(str(search_id))))


async def user_on(
    session: AsyncSession, app: FastAPI, plan: Plan, **fields: Any
) -> tuple[User, dict[str, str]]:
    # make_user sets apprise_urls itself, so a list of them is filled in afterwards.
    apprise_urls = fields.pop("apprise_urls", [])
    email = f"{plan.value}-{uuid.uuid4().hex[:8]}@example.com"
    account = await make_user(session, email=email, plan=plan, **fields)
    if apprise_urls:
        account.apprise_urls = apprise_urls
        await session.commit()
    return account, token_headers(app, account)


async def count_searches(session: AsyncSession, owner: User) -> int:
    await session.rollback()
    total = await session.scalar(
        select(func.count()).select_from(Search).where(Search.owner_id == owner.id)
    )
    return total or 0


# --- create ---------------------------------------------------------------------------


async def test_seed_guide_body_creates_an_active_search_due_at_once(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    before = utcnow()
    response = await client.post(URL, json=SEED_BODY, headers=headers)
    assert response.status_code == 201, response.text
    search = response.json()
    assert search["name"] == "My First Search"
    assert search["description"] == "Looking for iPhone deals"
    assert search["criteria"]["keywords"] == ["iPhone 13", "iPhone 14"]
    assert search["criteria"]["exclude_keywords"] == ["broken", "faulty"]
    assert search["criteria"]["max_price"] == "400.00"
    assert search["criteria"]["location"] == "London"
    assert search["marketplaces"] == ["ebay"]
    assert search["alert_channels"] == ["email"]
    assert search["check_frequency_minutes"] == 30
    assert search["is_active"] is True
    # No eBay keys on this server: saved and due, shown as waiting for them.
    assert search["status"] == "needs_setup"
    assert search["paused_at"] is None
    assert search["last_checked_at"] is None
    assert search["consecutive_failures"] == 0
    assert before.isoformat() <= search["next_check_at"].replace("Z", "+00:00")
    uuid.UUID(search["id"])


async def test_search_output_shows_no_owner_internals(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    search = await create(client, headers)
    assert "owner_id" not in search
    assert set(search) == {
        "id", "name", "description", "criteria", "marketplaces", "alert_channels",
        "check_frequency_minutes", "alert_on_first_check", "alert_on_price_drop", "alert_mode",
        "is_active",
        "status", "paused_at", "paused_reason", "next_check_at", "last_checked_at",
        "last_error", "consecutive_failures", "created_at", "updated_at", "setup_needed",
    }  # fmt: skip


async def test_a_minimal_body_gets_in_app_alerts_every_thirty_minutes(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    minimal = {"name": "PS5", "criteria": {"keywords": ["ps5"]}, "marketplaces": ["ebay"]}
    response = await client.post(URL, json=minimal, headers=headers)
    assert response.status_code == 201, response.text
    search = response.json()
    # In-app works on every server; email needs a provider and a confirmed address.
    assert search["alert_channels"] == ["in_app"]
    assert search["check_frequency_minutes"] == 30
    assert search["alert_on_first_check"] is False
    assert search["alert_on_price_drop"] is False
    assert search["description"] is None


async def test_keywords_are_deduplicated_and_quoted_phrases_kept(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    search = await create(
        client,
        headers,
        criteria={"keywords": ["iPhone 13", "IPHONE 13", '"iphone 14 pro"'], "currency": "gbp"},
    )
    assert search["criteria"]["keywords"] == ["iPhone 13", '"iphone 14 pro"']
    assert search["criteria"]["currency"] == "GBP"


INVALID_BODIES: list[Any] = [
    pytest.param(body(name=""), id="empty name"),
    pytest.param(body(name="n" * 201), id="name too long"),
    pytest.param(body(description="d" * 2001), id="description too long"),
    pytest.param({k: v for k, v in SEED_BODY.items() if k != "criteria"}, id="no criteria"),
    pytest.param(body(criteria=None), id="null criteria"),
    pytest.param(with_criteria(keywords=[]), id="no keywords"),
    pytest.param(with_criteria(keywords=[f"k{n}" for n in range(21)]), id="21 keywords"),
    pytest.param(with_criteria(keywords=[""]), id="empty keyword"),
    pytest.param(with_criteria(keywords=["k" * 101]), id="keyword too long"),
    pytest.param(with_criteria(exclude_keywords=[f"x{n}" for n in range(51)]), id="51 excludes"),
    pytest.param(with_criteria(exclude_keywords=[" "]), id="blank exclude"),
    pytest.param(with_criteria(exclude_keywords=["x" * 101]), id="exclude too long"),
    pytest.param(with_criteria(min_price=-1), id="negative min price"),
    pytest.param(with_criteria(max_price=1_000_000_001), id="max price too high"),
    pytest.param(with_criteria(max_price=1.999), id="three decimal places"),
    pytest.param(with_criteria(min_price=500, max_price=400), id="min above max"),
    pytest.param(with_criteria(currency="POUNDS"), id="currency not ISO shaped"),
    pytest.param(with_criteria(location="l" * 201), id="location too long"),
    pytest.param(with_criteria(radius_km=0), id="radius zero"),
    pytest.param(with_criteria(radius_km=501), id="radius too large"),
    pytest.param(body(criteria={"keywords": ["ps5"], "radius_km": 10}), id="radius no location"),
    pytest.param(with_criteria(condition="mint"), id="unknown condition"),
    pytest.param(with_criteria(category="c" * 101), id="category too long"),
    pytest.param(with_criteria(colour="blue"), id="unknown criteria key"),
    pytest.param(body(marketplaces=[]), id="no marketplaces"),
    pytest.param(
        body(marketplaces=["ebay", "gumtree", "craigslist", "facebook", "demo"]),
        id="five marketplaces",
    ),
    pytest.param(body(marketplaces=["ebay", "ebay"]), id="duplicate marketplace"),
    pytest.param(body(marketplaces=["amazon"]), id="unknown marketplace"),
    pytest.param(body(alert_channels=["email", "email"]), id="duplicate channel"),
    pytest.param(body(alert_channels=["pigeon"]), id="unknown channel"),
    pytest.param(
        body(alert_channels=["email", "sms", "webhook", "apprise", "in_app", "email"]),
        id="six channels",
    ),
    pytest.param(body(check_frequency_minutes=0), id="frequency zero"),
    pytest.param(body(check_frequency_minutes=1441), id="frequency over a day"),
    pytest.param(body(alert_on_first_check="sometimes"), id="not a boolean"),
    pytest.param(body(owner_id=str(uuid.uuid4())), id="unknown top-level field"),
    pytest.param(body(name="iPhone\x00"), id="NUL in name"),
    pytest.param(with_criteria(keywords=["iphone\x00 13"]), id="NUL in keyword"),
]


@pytest.mark.parametrize("payload", INVALID_BODIES)
async def test_invalid_bodies_are_422_and_save_nothing(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    session: AsyncSession,
    user: User,
    payload: dict[str, Any],
) -> None:
    response = await client.post(URL, json=payload, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert await count_searches(session, user) == 0


async def test_an_unknown_marketplace_error_names_the_allowed_values(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.post(URL, json=body(marketplaces=["amazon"]), headers=headers)
    assert response.status_code == 422
    message = response.json()["detail"][0]["msg"]
    for allowed in ("ebay", "gumtree", "craigslist", "facebook", "demo"):
        assert allowed in message


async def test_searches_need_a_token(client: httpx.AsyncClient) -> None:
    assert (await client.post(URL, json=SEED_BODY)).status_code == 401
    assert (await client.get(URL)).status_code == 401


@pytest.mark.parametrize(
    ("channel", "setting", "value"),
    [
        ("sms", "phone_number", {"phone_number": "+447700900123"}),
        ("webhook", "webhook_url", {"webhook_url": "https://hooks.example.com/mm"}),
        ("apprise", "apprise_urls", {"apprise_urls": ["ntfy://example-topic"]}),
    ],
)
async def test_a_channel_needs_its_setting_on_the_users_profile(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    session: AsyncSession,
    app: FastAPI,
    user: User,
    channel: str,
    setting: str,
    value: dict[str, Any],
) -> None:
    refused = await client.post(URL, json=body(alert_channels=[channel]), headers=headers)
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "invalid_input"
    assert setting in refused.json()["detail"]
    assert "/users/me" in refused.json()["detail"]
    assert await count_searches(session, user) == 0

    _, ready_headers = await user_on(session, app, Plan.FREE, **value)
    accepted = await client.post(
        URL, json=body(alert_channels=["email", channel]), headers=ready_headers
    )
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["alert_channels"] == ["email", channel]


async def test_no_alert_channels_at_all_is_allowed(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    search = await create(client, headers, alert_channels=[])
    assert search["alert_channels"] == []


# --- plan limits ----------------------------------------------------------------------


async def test_free_plan_refuses_a_third_active_search(
    client: httpx.AsyncClient, headers: dict[str, str], session: AsyncSession, user: User
) -> None:
    await create(client, headers)
    await create(client, headers)
    response = await client.post(URL, json=SEED_BODY, headers=headers)
    assert response.status_code == 403
    assert response.json()["code"] == "plan_limit_exceeded"
    assert "FREE" in response.json()["detail"]
    assert "2" in response.json()["detail"]
    assert await count_searches(session, user) == 2


async def test_paused_searches_do_not_count_against_the_plan(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    first = await create(client, headers)
    await create(client, headers)
    assert (await client.post(f"{URL}{first['id']}/pause", headers=headers)).status_code == 200
    await create(client, headers)


async def test_free_plan_refuses_two_marketplaces_and_a_fifteen_minute_check(
    client: httpx.AsyncClient, headers: dict[str, str], session: AsyncSession, user: User
) -> None:
    two = await client.post(URL, json=body(marketplaces=["ebay", "gumtree"]), headers=headers)
    assert two.status_code == 403
    assert two.json()["detail"] == (
        "Your plan allows 1 marketplace per search: untick one, or upgrade in Plan"
    )
    assert two.json()["field"] == "marketplaces"
    fast = await client.post(URL, json=body(check_frequency_minutes=15), headers=headers)
    assert fast.status_code == 403
    assert fast.json()["detail"] == ("Your plan checks at most every 30 minutes: choose 30 or more")
    assert fast.json()["field"] == "check_frequency_minutes"
    assert await count_searches(session, user) == 0


async def test_pro_plan_allows_three_marketplaces_every_five_minutes_but_not_four(
    client: httpx.AsyncClient, session: AsyncSession, app: FastAPI
) -> None:
    _, pro_headers = await user_on(session, app, Plan.PRO)
    search = await create(
        client,
        pro_headers,
        criteria=CRAIGSLIST_CRITERIA,
        marketplaces=["ebay", "gumtree", "craigslist"],
        check_frequency_minutes=5,
    )
    assert search["marketplaces"] == ["ebay", "gumtree", "craigslist"]
    assert search["check_frequency_minutes"] == 5
    four = body(marketplaces=["ebay", "gumtree", "craigslist", "demo"])
    assert (await client.post(URL, json=four, headers=pro_headers)).status_code == 403
    faster = body(check_frequency_minutes=4)
    assert (await client.post(URL, json=faster, headers=pro_headers)).status_code == 403


async def test_business_plan_has_no_limit_on_active_searches(
    client: httpx.AsyncClient, session: AsyncSession, app: FastAPI
) -> None:
    business, business_headers = await user_on(session, app, Plan.BUSINESS)
    pro_limit = plans.limits_for(Plan.PRO).max_active_searches
    assert pro_limit is not None
    session.add_all(
        Search(
            owner_id=business.id,
            name=f"search {n}",
            criteria={"keywords": ["ps5"]},
            marketplaces=["ebay"],
            alert_channels=["email"],
            check_frequency_minutes=30,
            next_check_at=utcnow(),
        )
        for n in range(pro_limit + 5)
    )
    await session.commit()
    search = await create(
        client,
        business_headers,
        criteria=CRAIGSLIST_CRITERIA,
        marketplaces=["ebay", "gumtree", "craigslist", "demo"],
        check_frequency_minutes=1,
    )
    assert search["check_frequency_minutes"] == 1
    assert await count_searches(session, business) == pro_limit + 6


# --- list and get ---------------------------------------------------------------------


async def test_list_is_newest_first_paginated_and_filterable(
    client: httpx.AsyncClient, session: AsyncSession, app: FastAPI
) -> None:
    _, pro_headers = await user_on(session, app, Plan.PRO)
    ids = [(await create(client, pro_headers, name=f"search {n}"))["id"] for n in range(4)]
    await client.post(f"{URL}{ids[1]}/pause", headers=pro_headers)

    everything = (await client.get(URL, headers=pro_headers)).json()
    assert [item["id"] for item in everything["items"]] == ids[::-1]
    assert (everything["total"], everything["limit"], everything["offset"]) == (4, 20, 0)

    page = (await client.get(URL, params={"limit": 2, "offset": 1}, headers=pro_headers)).json()
    assert [item["id"] for item in page["items"]] == [ids[2], ids[1]]
    assert (page["total"], page["limit"], page["offset"]) == (4, 2, 1)

    paused = (await client.get(URL, params={"is_active": False}, headers=pro_headers)).json()
    assert [item["id"] for item in paused["items"]] == [ids[1]]
    assert paused["items"][0]["status"] == "paused"
    active = (await client.get(URL, params={"is_active": True}, headers=pro_headers)).json()
    assert active["total"] == 3


@pytest.mark.parametrize(
    "params",
    [{"limit": 101}, {"limit": 0}, {"offset": -1}, {"is_active": "maybe"}],
    ids=["limit over 100", "limit zero", "negative offset", "not a boolean"],
)
async def test_bad_list_parameters_are_422(
    client: httpx.AsyncClient, headers: dict[str, str], params: dict[str, Any]
) -> None:
    response = await client.get(URL, params=params, headers=headers)
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


async def test_get_returns_the_search_and_unknown_or_malformed_ids_fail_cleanly(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    created = await create(client, headers)
    fetched = await client.get(f"{URL}{created['id']}", headers=headers)
    assert fetched.status_code == 200
    assert fetched.json() == created
    missing = await client.get(f"{URL}{uuid.uuid4()}", headers=headers)
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
    assert (await client.get(f"{URL}not-a-uuid", headers=headers)).status_code == 422


# --- PUT and PATCH --------------------------------------------------------------------


async def mark_checked(session: AsyncSession, search_id: str) -> tuple[datetime, datetime]:
    """Give the search a check history, as the engine would; (last_checked_at, next_check_at)."""
    search = await reload(session, search_id)
    assert search is not None
    checked_at = utcnow() - timedelta(minutes=10)
    next_at = checked_at + timedelta(minutes=30)
    search.last_checked_at = checked_at
    search.next_check_at = next_at
    search.last_error = "ebay: timeout"
    search.consecutive_failures = 2
    await session.commit()
    return checked_at, next_at


async def test_put_replaces_every_setting_and_restarts_on_new_criteria(
    client: httpx.AsyncClient, headers: dict[str, str], session: AsyncSession
) -> None:
    created = await create(client, headers, alert_on_price_drop=True)
    await mark_checked(session, created["id"])
    before = utcnow()
    replacement = {
        "name": "PS5 deals",
        "criteria": {"keywords": ["ps5 slim"], "max_price": "350.5"},
        "marketplaces": ["gumtree"],
    }
    response = await client.put(f"{URL}{created['id']}", json=replacement, headers=headers)
    assert response.status_code == 200, response.text
    search = response.json()
    assert search["name"] == "PS5 deals"
    assert search["description"] is None
    assert search["criteria"]["keywords"] == ["ps5 slim"]
    assert search["criteria"]["max_price"] == "350.50"
    assert search["criteria"]["location"] is None
    assert search["marketplaces"] == ["gumtree"]
    assert search["alert_on_price_drop"] is False
    # New criteria: the next check is a fresh first check, due now.
    assert search["last_checked_at"] is None
    assert search["last_error"] is None
    assert search["consecutive_failures"] == 0
    assert before.isoformat() <= search["next_check_at"].replace("Z", "+00:00")


async def test_put_with_the_same_criteria_keeps_the_check_history(
    client: httpx.AsyncClient, headers: dict[str, str], session: AsyncSession
) -> None:
    created = await create(client, headers)
    checked_at, next_at = await mark_checked(session, created["id"])
    response = await client.put(f"{URL}{created['id']}", json=body(name="Renamed"), headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Renamed"
    assert response.json()["consecutive_failures"] == 2
    reloaded = await reload(session, created["id"])
    assert reloaded is not None
    assert reloaded.last_checked_at == checked_at
    assert reloaded.next_check_at == next_at


async def test_put_needs_a_full_valid_body_and_respects_the_plan(
    client: httpx.AsyncClient, headers: dict[str, str], session: AsyncSession
) -> None:
    created = await create(client, headers)
    partial = await client.put(f"{URL}{created['id']}", json={"name": "x"}, headers=headers)
    assert partial.status_code == 422
    over = await client.put(
        f"{URL}{created['id']}", json=body(marketplaces=["ebay", "demo"]), headers=headers
    )
    assert over.status_code == 403
    unchanged = await reload(session, created["id"])
    assert unchanged is not None
    assert unchanged.marketplaces == ["ebay"]


async def test_patch_changes_only_the_given_fields(
    client: httpx.AsyncClient, headers: dict[str, str], session: AsyncSession
) -> None:
    created = await create(client, headers)
    checked_at, next_at = await mark_checked(session, created["id"])
    response = await client.patch(
        f"{URL}{created['id']}",
        json={"name": "Cheap iPhones", "alert_on_price_drop": True, "description": None},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    search = response.json()
    assert search["name"] == "Cheap iPhones"
    assert search["alert_on_price_drop"] is True
    assert search["description"] is None
    assert search["criteria"] == created["criteria"]
    assert search["marketplaces"] == created["marketplaces"]
    assert search["check_frequency_minutes"] == 30
    reloaded = await reload(session, created["id"])
    assert reloaded is not None
    assert reloaded.next_check_at == next_at
    assert reloaded.last_checked_at == checked_at


async def test_patch_replaces_criteria_whole_and_restarts_the_search(
    client: httpx.AsyncClient, headers: dict[str, str], session: AsyncSession
) -> None:
    created = await create(client, headers)
    await mark_checked(session, created["id"])
    before = utcnow()
    response = await client.patch(
        f"{URL}{created['id']}", json={"criteria": {"keywords": ["pixel 8"]}}, headers=headers
    )
    assert response.status_code == 200, response.text
    criteria = response.json()["criteria"]
    assert criteria["keywords"] == ["pixel 8"]
    assert criteria["max_price"] is None
    assert criteria["exclude_keywords"] == []
    assert criteria["location"] is None
    assert response.json()["last_checked_at"] is None
    assert before.isoformat() <= response.json()["next_check_at"].replace("Z", "+00:00")


async def test_patch_of_marketplaces_restarts_the_search(
    client: httpx.AsyncClient, headers: dict[str, str], session: AsyncSession
) -> None:
    created = await create(client, headers)
    await mark_checked(session, created["id"])
    response = await client.patch(
        f"{URL}{created['id']}", json={"marketplaces": ["demo"]}, headers=headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["marketplaces"] == ["demo"]
    assert response.json()["last_checked_at"] is None
    assert response.json()["consecutive_failures"] == 0


async def test_changing_the_frequency_reschedules_from_the_last_check(
    client: httpx.AsyncClient, headers: dict[str, str], session: AsyncSession
) -> None:
    created = await create(client, headers)
    checked_at, _ = await mark_checked(session, created["id"])
    response = await client.patch(
        f"{URL}{created['id']}", json={"check_frequency_minutes": 120}, headers=headers
    )
    assert response.status_code == 200, response.text
    reloaded = await reload(session, created["id"])
    assert reloaded is not None
    assert reloaded.next_check_at == checked_at + timedelta(minutes=120)
    assert reloaded.last_checked_at == checked_at


@pytest.mark.parametrize(
    ("patch", "status"),
    [
        ({"name": None}, 422),
        ({"criteria": None}, 422),
        ({"criteria": {"keywords": []}}, 422),
        ({"criteria": {"keywords": ["ps5"], "min_price": 9, "max_price": 1}}, 422),
        ({"criteria": {"keywords": ["ps5"], "colour": "red"}}, 422),
        ({"marketplaces": ["ebay", "gumtree"]}, 403),
        ({"check_frequency_minutes": 15}, 403),
        ({"alert_channels": ["sms"]}, 422),
        ({"is_active": False}, 422),
        ({"name": "x\x00"}, 422),
    ],
    ids=[
        "null name",
        "null criteria",
        "no keywords",
        "min above max",
        "unknown criteria key",
        "two marketplaces on FREE",
        "fifteen minutes on FREE",
        "sms without a phone number",
        "state is not editable",
        "NUL byte",
    ],
)
async def test_refused_patches_change_nothing(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    session: AsyncSession,
    patch: dict[str, Any],
    status: int,
) -> None:
    created = await create(client, headers)
    response = await client.patch(f"{URL}{created['id']}", json=patch, headers=headers)
    assert response.status_code == status, response.text
    after = await client.get(f"{URL}{created['id']}", headers=headers)
    assert after.json() == created


async def test_criteria_equal_in_meaning_do_not_restart_the_search(
    client: httpx.AsyncClient, headers: dict[str, str], session: AsyncSession, user: User
) -> None:
    search = await make_search(session, owner=user, keywords=["iphone 13"])
    checked_at, _ = await mark_checked(session, str(search.id))
    same = {"keywords": ["iphone 13"], "max_price": "400.0"}
    response = await client.patch(f"{URL}{search.id}", json={"criteria": same}, headers=headers)
    assert response.status_code == 200, response.text
    reloaded = await reload(session, search.id)
    assert reloaded is not None
    assert reloaded.last_checked_at == checked_at


# --- delete ---------------------------------------------------------------------------


async def test_delete_removes_the_search_and_its_matches_but_not_the_listings(
    client: httpx.AsyncClient, headers: dict[str, str], session: AsyncSession, user: User
) -> None:
    search = await make_search(session, owner=user)
    listing = await make_listing(session)
    await make_match(session, search=search, listing=listing)
    response = await client.delete(f"{URL}{search.id}", headers=headers)
    assert response.status_code == 204
    assert response.content == b""
    assert (await client.get(f"{URL}{search.id}", headers=headers)).status_code == 404
    assert (await client.delete(f"{URL}{search.id}", headers=headers)).status_code == 404
    await session.rollback()
    assert await session.scalar(select(func.count()).select_from(SearchMatch)) == 0
    assert await session.scalar(select(func.count()).select_from(Listing)) == 1


# --- pause, resume --------------------------------------------------------------------


async def test_pause_stops_the_search_and_is_idempotent(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    created = await create(client, headers)
    paused = await client.post(f"{URL}{created['id']}/pause", headers=headers)
    assert paused.status_code == 200
    search = paused.json()
    assert search["is_active"] is False
    assert search["status"] == "paused"
    assert search["paused_at"] is not None
    assert search["paused_reason"]
    again = await client.post(f"{URL}{created['id']}/pause", headers=headers)
    assert again.status_code == 200
    assert again.json()["paused_at"] == search["paused_at"]


async def test_resume_makes_the_search_due_at_once_and_is_idempotent(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    created = await create(client, headers, marketplaces=["demo"])
    await client.post(f"{URL}{created['id']}/pause", headers=headers)
    before = utcnow()
    resumed = await client.post(f"{URL}{created['id']}/resume", headers=headers)
    assert resumed.status_code == 200
    search = resumed.json()
    assert search["is_active"] is True
    assert search["status"] == "active"
    assert search["paused_at"] is None
    assert search["paused_reason"] is None
    assert before.isoformat() <= search["next_check_at"].replace("Z", "+00:00")
    again = await client.post(f"{URL}{created['id']}/resume", headers=headers)
    assert again.status_code == 200
    assert again.json()["next_check_at"] == search["next_check_at"]


async def test_resume_is_refused_when_the_plans_active_searches_are_taken(
    client: httpx.AsyncClient, headers: dict[str, str], session: AsyncSession
) -> None:
    first = await create(client, headers)
    await client.post(f"{URL}{first['id']}/pause", headers=headers)
    await create(client, headers)
    await create(client, headers)
    response = await client.post(f"{URL}{first['id']}/resume", headers=headers)
    assert response.status_code == 403
    assert "FREE" in response.json()["detail"]
    still_paused = await reload(session, first["id"])
    assert still_paused is not None
    assert still_paused.is_active is False


async def test_resume_is_refused_for_a_search_over_the_plan_after_a_downgrade(
    client: httpx.AsyncClient, headers: dict[str, str], session: AsyncSession, user: User
) -> None:
    search = await make_search(
        session, owner=user, marketplaces=["ebay", "gumtree"], is_active=False
    )
    response = await client.post(f"{URL}{search.id}/resume", headers=headers)
    assert response.status_code == 403
    assert "marketplace" in response.json()["detail"]


# --- check now ------------------------------------------------------------------------


async def test_check_now_runs_the_check_and_reports_what_it_found(
    client: httpx.AsyncClient, headers: dict[str, str], session: AsyncSession
) -> None:
    created = await create(client, headers, marketplaces=["demo"])
    response = await client.post(f"{URL}{created['id']}/check", headers=headers)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["checked"] is True
    assert result["upstream_calls"] == 1
    assert result["listings_fetched"] > 0
    assert result["matches_new"] > 0
    # The first check records what is listed without alerting.
    assert result["alerts_created"] == 0
    assert result["errors"] == []
    assert result["search"]["last_checked_at"] is not None
    assert result["search"]["next_check_at"] > result["search"]["last_checked_at"]
    listed = await client.get(f"{URL}{created['id']}/listings", headers=headers)
    assert listed.json()["total"] == result["matches_new"]


async def test_a_search_on_a_marketplace_missing_its_software_is_refused(
    client: httpx.AsyncClient, headers: dict[str, str], session: AsyncSession, user: User
) -> None:
    refused = await client.post(URL, json=body(marketplaces=["facebook"]), headers=headers)
    assert refused.status_code == 422
    assert refused.json()["code"] == "invalid_input"
    assert "facebook is not available on this server" in refused.json()["detail"]
    existing = await make_search(session, owner=user)
    patched = await client.patch(
        f"{URL}{existing.id}", json={"marketplaces": ["facebook"]}, headers=headers
    )
    assert patched.status_code == 422
    assert (await client.get(f"{URL}{existing.id}", headers=headers)).json()["marketplaces"] == [
        "ebay"
    ]


async def test_check_now_on_an_unavailable_marketplace_says_what_it_needs(
    client: httpx.AsyncClient, headers: dict[str, str], session: AsyncSession, user: User
) -> None:
    # Saved while the server still had a browser for it.
    search = await make_search(session, owner=user, marketplaces=["facebook"])
    response = await client.post(f"{URL}{search.id}/check", headers=headers)
    assert response.status_code == 409, response.text
    assert "facebook is not set up on this server" in response.json()["detail"]
    shown = (await client.get(f"{URL}{search.id}", headers=headers)).json()
    assert shown["status"] == "needs_setup"
    assert shown["last_error"] is None
    assert shown["consecutive_failures"] == 0


async def test_check_now_on_a_paused_search_is_a_conflict_and_not_counted(
    client: httpx.AsyncClient, headers: dict[str, str], session: AsyncSession, user: User
) -> None:
    search = await make_search(session, owner=user, is_active=False)
    response = await client.post(f"{URL}{search.id}/check", headers=headers)
    assert response.status_code == 409
    assert response.json()["code"] == "conflict"
    await session.rollback()
    assert await session.scalar(select(func.count()).select_from(ApiUsage)) == 0


async def test_manual_checks_are_capped_per_utc_day_with_retry_after(
    client: httpx.AsyncClient, headers: dict[str, str], session: AsyncSession, user: User
) -> None:
    limit = plans.limits_for(Plan.FREE).manual_checks_per_day
    search = await make_search(session, owner=user, marketplaces=["demo"])
    for _ in range(limit):
        assert (await client.post(f"{URL}{search.id}/check", headers=headers)).status_code == 200
    refused = await client.post(f"{URL}{search.id}/check", headers=headers)
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert "FREE" in refused.json()["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 24 * 60 * 60
    await session.rollback()
    usage = await session.scalar(select(ApiUsage).where(ApiUsage.user_id == user.id))
    assert usage is not None
    assert (usage.kind, usage.count, usage.day) == ("manual_check", limit, utcnow().date())


async def test_yesterdays_manual_checks_do_not_count_today(
    client: httpx.AsyncClient, headers: dict[str, str], session: AsyncSession, user: User
) -> None:
    limit = plans.limits_for(Plan.FREE).manual_checks_per_day
    yesterday = (utcnow() - timedelta(days=1)).date()
    session.add(ApiUsage(user_id=user.id, day=yesterday, kind="manual_check", count=limit))
    session.add(ApiUsage(user_id=user.id, day=utcnow().date(), kind="test_alert", count=99))
    await session.commit()
    search = await make_search(session, owner=user, marketplaces=["demo"])
    assert (await client.post(f"{URL}{search.id}/check", headers=headers)).status_code == 200


async def test_another_users_checks_do_not_use_up_the_owners_allowance(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    session: AsyncSession,
    user: User,
    other_user: User,
) -> None:
    limit = plans.limits_for(Plan.FREE).manual_checks_per_day
    today = utcnow().date()
    session.add(ApiUsage(user_id=other_user.id, day=today, kind="manual_check", count=limit))
    await session.commit()
    search = await make_search(session, owner=user, marketplaces=["demo"])
    assert (await client.post(f"{URL}{search.id}/check", headers=headers)).status_code == 200


# --- ownership ------------------------------------------------------------------------

OWNED_ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "", None),
    ("PUT", "", SEED_BODY),
    ("PATCH", "", {"name": "mine now"}),
    ("DELETE", "", None),
    ("POST", "/pause", None),
    ("POST", "/resume", None),
    ("POST", "/check", None),
]


@pytest.mark.parametrize(("method", "suffix", "payload"), OWNED_ROUTES)
async def test_another_users_search_is_not_found_on_every_route_and_unchanged(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    other_headers: dict[str, str],
    method: str,
    suffix: str,
    payload: dict[str, Any] | None,
) -> None:
    created = await create(client, headers)
    if suffix == "/resume":
        await client.post(f"{URL}{created['id']}/pause", headers=headers)
    before = (await client.get(f"{URL}{created['id']}", headers=headers)).json()
    response = await client.request(
        method, f"{URL}{created['id']}{suffix}", json=payload, headers=other_headers
    )
    assert response.status_code == 404, response.text
    assert response.json() == {"detail": "Search not found", "code": "not_found"}
    after = await client.get(f"{URL}{created['id']}", headers=headers)
    assert after.json() == before


async def test_another_users_list_holds_none_of_the_owners_searches(
    client: httpx.AsyncClient, headers: dict[str, str], other_headers: dict[str, str]
) -> None:
    await create(client, headers)
    theirs = await create(client, other_headers, name="Their search")
    listing = (await client.get(URL, headers=other_headers)).json()
    assert listing["total"] == 1
    assert [item["id"] for item in listing["items"]] == [theirs["id"]]


async def test_a_concurrent_create_waits_and_cannot_take_the_last_free_slot_too(
    app: FastAPI, session: AsyncSession, user: User
) -> None:
    await make_search(session, owner=user)
    data = SearchCreate.model_validate(SEED_BODY)
    factory = app.state.session_factory
    async with factory() as first, factory() as second:
        await searches.create(first, data, owner=user)
        racing = asyncio.create_task(searches.create(second, data, owner=user))
        await asyncio.sleep(0.2)  # let the second reach its count while the first is open
        await first.commit()
        with pytest.raises(PlanLimitExceeded):
            await racing
    assert await count_searches(session, user) == 2


async def test_search_listings_lists_only_what_this_search_matched(
    client: httpx.AsyncClient, session: AsyncSession, user: User, headers: dict[str, str]
) -> None:
    phones = await make_search(session, owner=user, name="phones")
    consoles = await make_search(session, owner=user, name="consoles", keywords=["ps5"])
    phone = await make_listing(session, external_id="v1|1|0")
    console = await make_listing(session, external_id="v1|2|0", title="Sony PS5 Digital")
    await make_match(session, search=phones, listing=phone)
    await make_match(session, search=consoles, listing=console)

    response = await client.get(f"/api/v1/searches/{phones.id}/listings", headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [item["id"] for item in body["items"]] == [str(phone.id)]
    assert body["total"] == 1

    # A search_id in the query string cannot widen it to another search.
    widened = await client.get(
        f"/api/v1/searches/{phones.id}/listings",
        params={"search_id": str(consoles.id)},
        headers=headers,
    )
    assert [item["id"] for item in widened.json()["items"]] == [str(phone.id)]
    assert (
        await client.get(f"/api/v1/searches/{phones.id}/listings?limit=101", headers=headers)
    ).status_code == 422
