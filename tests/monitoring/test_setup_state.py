"""Searches on marketplaces this server cannot check wait for the operator instead of
failing; new searches get a second look soon after their first; new accounts start on
the operator's plan."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.marketplaces.ebay import EbayAdapter
from app.models import Alert, Plan, Search, User
from app.monitoring import cycle
from app.services import availability, plans
from tests.conftest import make_settings
from tests.factories import make_search
from tests.fakes.ebay import EbayFake, item_summary
from tests.monitoring.test_cycle import CountingAdapter, runtime_for

URL = "/api/v1/searches/"
EBAY_SETTINGS = "EBAY_APP_ID and EBAY_CERT_ID"
README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def readme_search(**changes: object) -> dict[str, object]:
    """The search of README's "Try the API" (eBay, email), as a newcomer sends it."""
    return {
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
        **changes,
    }


async def system_notices(session: AsyncSession) -> int:
    return (
        await session.scalar(select(func.count()).select_from(Alert).where(Alert.kind == "system"))
        or 0
    )


async def test_a_search_on_an_unconfigured_marketplace_is_saved_as_needing_setup(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    created = await client.post(URL, json=readme_search(), headers=headers)
    assert created.status_code == 201, created.text
    shown = created.json()
    assert shown["status"] == "needs_setup"
    needed = {(item["kind"], item["name"]): item for item in shown["setup_needed"]}
    assert EBAY_SETTINGS in needed[("marketplace", "ebay")]["settings"]
    # No email provider in the test settings either: named, but the search still saves.
    assert needed[("channel", "email")]["settings"] == "SENDGRID_API_KEY or SMTP_URL"
    assert "the operator sets" in needed[("marketplace", "ebay")]["message"]
    listed = await client.get(URL, headers=headers)
    assert [item["status"] for item in listed.json()["items"]] == ["needs_setup"]


async def test_a_search_needing_setup_is_never_checked_and_nobody_is_told_it_fails(
    app: FastAPI, session: AsyncSession, user: User
) -> None:
    runtime = app.state.monitoring_runtime
    search = await make_search(session, owner=user, marketplaces=["ebay"])
    for _ in range(5):
        # Even when forced due, it is not claimed again once it waits.
        await session.execute(
            update(Search).where(Search.id == search.id).values(next_check_at=utcnow())
        )
        await session.commit()
        report = await cycle.run_cycle(runtime)
        assert report.upstream_calls == 0
    await session.refresh(search)
    assert search.waiting_for_setup is True
    assert search.last_checked_at is None
    assert search.last_error is None
    assert search.consecutive_failures == 0
    assert await system_notices(session) == 0


async def test_check_now_on_a_search_needing_setup_says_what_is_missing_and_counts_nothing(
    client: httpx.AsyncClient, headers: dict[str, str], session: AsyncSession, user: User
) -> None:
    search = await make_search(session, owner=user, marketplaces=["ebay"])
    refused = await client.post(f"{URL}{search.id}/check", headers=headers)
    assert refused.status_code == 409
    assert EBAY_SETTINGS in refused.json()["detail"]
    usage = await client.get("/api/v1/users/me/limits", headers=headers)
    assert usage.status_code == 200
    assert usage.json()["usage"]["manual_checks_today"] == 0


async def test_a_waiting_search_starts_by_itself_once_its_marketplace_is_configured(
    app: FastAPI, session: AsyncSession, user: User
) -> None:
    search = await make_search(session, owner=user, keywords=["switch"], marketplaces=["ebay"])
    await cycle.run_cycle(app.state.monitoring_runtime)
    await session.refresh(search)
    assert search.waiting_for_setup is True

    with EbayFake() as fake:
        fake.set_items([item_summary(n, f"Nintendo Switch {n}") for n in range(3)])
        # The operator adds the keys and restarts: a new runtime with eBay configured.
        configured = EbayAdapter(
            app.state.monitoring_runtime.http_client,
            api_base_url=fake.base_url,
            oauth_base_url=fake.base_url,
            app_id=fake.app_id,
            cert_id=fake.cert_id,
        )
        report = await cycle.run_cycle(runtime_for(app, configured))
        assert report.errors == []
        assert fake.search_calls == 1
    await session.refresh(search)
    assert search.waiting_for_setup is False
    assert search.last_checked_at is not None
    assert await system_notices(session) == 0


async def test_a_search_with_one_usable_marketplace_is_checked_on_it_without_failures(
    app: FastAPI, session: AsyncSession, user: User
) -> None:
    owner = user
    owner.plan = Plan.BUSINESS.value
    await session.commit()
    adapter = CountingAdapter()
    runtime = runtime_for(app, adapter)
    runtime.adapters["ebay"] = app.state.monitoring_runtime.adapters["ebay"]
    search = await make_search(session, owner=owner, marketplaces=["demo", "ebay"])
    report = await cycle.run_cycle(runtime)
    assert report.upstream_calls == 1
    await session.refresh(search)
    assert search.waiting_for_setup is False
    assert search.last_checked_at is not None
    assert search.consecutive_failures == 0


async def test_a_first_check_is_followed_by_a_second_within_the_follow_up(
    app: FastAPI, session: AsyncSession, user: User
) -> None:
    runtime = runtime_for(app, CountingAdapter())
    runtime.first_follow_up = timedelta(seconds=30)
    search = await make_search(
        session, owner=user, marketplaces=["demo"], check_frequency_minutes=30
    )
    before = utcnow()
    await cycle.run_cycle(runtime)
    await session.refresh(search)
    assert search.next_check_at is not None
    assert search.next_check_at - before <= timedelta(seconds=31)
    # The second check goes back to the search's own frequency.
    await session.execute(
        update(Search).where(Search.id == search.id).values(next_check_at=utcnow())
    )
    await session.commit()
    second = utcnow()
    await cycle.run_cycle(runtime)
    await session.refresh(search)
    assert search.next_check_at - second >= timedelta(minutes=28)


def test_new_accounts_start_on_business_without_billing_and_on_free_with_it() -> None:
    url = "sqlite+aiosqlite:///:memory:"
    assert plans.signup_plan(make_settings(url, default_plan="auto")) == Plan.BUSINESS
    with_stripe = make_settings(url, default_plan="auto", stripe_secret_key="sk_test_x")
    assert plans.signup_plan(with_stripe) == Plan.FREE
    chosen = make_settings(url, default_plan="pro", stripe_secret_key="sk_test_x")
    assert plans.signup_plan(chosen) == Plan.PRO


async def test_sign_up_uses_the_default_plan(app: FastAPI, client: httpx.AsyncClient) -> None:
    app.state.settings = app.state.settings.model_copy(update={"default_plan": "starter"})
    created = await client.post(
        "/api/v1/auth/register",
        json={"email": "new@example.com", "password": "a long password 1"},
    )
    assert created.status_code == 201, created.text
    assert created.json()["plan"] == "starter"


def test_a_template_starts_on_its_marketplaces_this_server_can_check(app: FastAPI) -> None:
    adapters = dict(app.state.monitoring_runtime.adapters)
    # eBay has no keys here; gumtree needs none.
    assert availability.starting_marketplaces(["ebay", "gumtree"], adapters, limit=4) == ["gumtree"]
    assert availability.starting_marketplaces(["ebay"], adapters, limit=1) == ["demo"]
    assert availability.starting_marketplaces(["gumtree", "reddit"], adapters, limit=1) == [
        "gumtree"
    ]
    del adapters["demo"]
    # Nothing usable at all: the template's own, and the search will wait for setup.
    assert availability.starting_marketplaces(["ebay"], adapters, limit=1) == ["ebay"]
    assert availability.marketplace_setup("demo", adapters) is not None


async def test_readmes_create_a_search_example_answers_201_and_active(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    section = README[README.index("### Create a search") :]
    example = re.search(r"-d '(\{.*?\})'", section, re.DOTALL)
    assert example is not None
    created = await client.post(URL, json=json.loads(example.group(1)), headers=headers)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "active"
    assert created.json()["setup_needed"] == []
