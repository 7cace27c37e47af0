"""Plan changes: upgrades lift limits at once; downgrades pause the newest searches, trim
the rest to fit, tell the user and delete nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.models import AuditLog, Plan, Search, User
from app.services import billing
from app.services.searches import PAUSED_BY_OWNER
from tests.billing.conftest import count_audit, notices, send_event, subscribed_user
from tests.factories import make_search, make_user
from tests.fakes.stripe import PRICES, StripeFake


async def searches_of(session: AsyncSession, user: User) -> dict[str, Search]:
    rows = await session.scalars(
        select(Search).where(Search.owner_id == user.id).execution_options(populate_existing=True)
    )
    return {search.name: search for search in rows}


async def make_searches(
    session: AsyncSession, user: User, count: int, **fields: Any
) -> list[Search]:
    """`count` active searches named s0 (oldest) .. s{count-1} (newest)."""
    start = utcnow() - timedelta(days=count)
    return [
        await make_search(
            session, owner=user, name=f"s{n}", created_at=start + timedelta(days=n), **fields
        )
        for n in range(count)
    ]


async def test_a_downgrade_pauses_the_newest_searches_beyond_the_limit(
    session: AsyncSession,
) -> None:
    user = await make_user(session, email="pro@example.com", plan=Plan.PRO)
    await make_searches(session, user, 5)
    await make_search(
        session,
        owner=user,
        name="paused by owner",
        is_active=False,
        paused_reason=PAUSED_BY_OWNER,
        created_at=utcnow(),
    )

    change = await billing.change_plan(session, user, Plan.FREE, source=billing.PlanSource.ADMIN)
    await session.commit()

    assert sorted(search.name for search in change.paused) == ["s2", "s3", "s4"]
    searches = await searches_of(session, user)
    assert len(searches) == 6  # nothing deleted
    assert {name for name, s in searches.items() if s.is_active} == {"s0", "s1"}
    for name in ("s2", "s3", "s4"):
        assert searches[name].paused_reason == "Paused: over the FREE plan's limit"
        assert searches[name].paused_at is not None
        assert searches[name].next_check_at is None
    assert searches["paused by owner"].paused_reason == PAUSED_BY_OWNER


async def test_an_upgrade_resumes_what_a_downgrade_paused_as_far_as_its_limit_allows(
    session: AsyncSession,
) -> None:
    user = await make_user(session, email="pro@example.com", plan=Plan.PRO)
    await make_searches(session, user, 7)
    await make_search(
        session,
        owner=user,
        name="paused by owner",
        is_active=False,
        paused_reason=PAUSED_BY_OWNER,
        created_at=utcnow() - timedelta(days=30),
    )
    down = await billing.change_plan(session, user, Plan.FREE, source=billing.PlanSource.ADMIN)
    await session.commit()
    assert len(down.paused) == 5  # FREE keeps 2 active

    # STARTER allows 5 active: three of the five come back, the oldest first.
    up = await billing.change_plan(session, user, Plan.STARTER, source=billing.PlanSource.ADMIN)
    await session.commit()
    assert [search.name for search in up.resumed] == ["s2", "s3", "s4"]
    searches = await searches_of(session, user)
    assert {name for name, s in searches.items() if s.is_active} == {"s0", "s1", "s2", "s3", "s4"}
    for name in ("s2", "s3", "s4"):
        assert searches[name].paused_reason is None
        assert searches[name].paused_at is None
        assert searches[name].next_check_at is not None
    assert searches["s5"].paused_reason == "Paused: over the FREE plan's limit"
    assert searches["paused by owner"].paused_reason == PAUSED_BY_OWNER

    # No limit on BUSINESS: the rest come back, the owner's own pause stays.
    top = await billing.change_plan(session, user, Plan.BUSINESS, source=billing.PlanSource.ADMIN)
    await session.commit()
    assert sorted(search.name for search in top.resumed) == ["s5", "s6"]
    searches = await searches_of(session, user)
    assert not searches["paused by owner"].is_active
    told = [n for n in await notices(session, user) if "'s5', 's6'" in n.payload["text"]]
    assert sorted(n.channel for n in told) == ["email", "in_app"]
    assert "We resumed the searches an earlier plan had paused" in told[0].payload["text"]
    audit = await session.scalar(
        select(AuditLog).where(AuditLog.user_id == user.id).order_by(AuditLog.created_at.desc())
    )
    assert audit is not None
    assert len(audit.details["resumed_searches"]) == 2


async def test_a_downgrade_trims_marketplaces_and_frequency_of_the_remaining_searches(
    session: AsyncSession,
) -> None:
    user = await make_user(session, email="pro@example.com", plan=Plan.PRO)
    checked = utcnow() - timedelta(minutes=2)
    await make_search(
        session,
        owner=user,
        name="wide",
        marketplaces=["ebay", "gumtree", "craigslist"],
        check_frequency_minutes=5,
        last_checked_at=checked,
    )
    await make_search(session, owner=user, name="fits", check_frequency_minutes=30)
    await make_search(
        session,
        owner=user,
        name="paused wide",
        marketplaces=["gumtree", "ebay"],
        check_frequency_minutes=5,
        is_active=False,
    )

    change = await billing.change_plan(session, user, Plan.STARTER, source=billing.PlanSource.ADMIN)
    await session.commit()

    assert [search.name for search in change.adjusted] == ["wide"]
    assert change.paused == []
    searches = await searches_of(session, user)
    assert searches["wide"].marketplaces == ["ebay"]  # the first one is kept
    assert searches["wide"].check_frequency_minutes == 15
    assert searches["wide"].next_check_at == checked + timedelta(minutes=15)
    assert searches["wide"].is_active
    assert searches["fits"].check_frequency_minutes == 30
    # A paused search keeps its settings; resuming it checks them against the plan.
    assert searches["paused wide"].marketplaces == ["gumtree", "ebay"]
    assert searches["paused wide"].check_frequency_minutes == 5


async def test_a_plan_change_tells_the_user_by_email_and_in_app_and_is_audited(
    session: AsyncSession,
) -> None:
    user = await make_user(session, email="pro@example.com", plan=Plan.PRO)
    await make_searches(session, user, 3)
    admin = await make_user(session, email="admin@example.com", is_admin=True)

    change = await billing.change_plan(
        session,
        user,
        Plan.FREE,
        source=billing.PlanSource.ADMIN,
        actor_id=admin.id,
        details={"reason": "refund"},
    )
    await session.commit()

    email, in_app = await notices(session, user)
    assert (email.channel, in_app.channel) == ("email", "in_app")
    assert email.kind == in_app.kind == "system"
    assert email.payload == in_app.payload
    assert email.payload["subject"] == "Your plan is now FREE"
    assert "changed from PRO to FREE" in email.payload["text"]
    assert "'s2'" in email.payload["text"]
    assert "Nothing was deleted" in email.payload["text"]
    (audit,) = await session.scalars(select(AuditLog).where(AuditLog.user_id == user.id))
    assert audit.action == "plan_changed"
    assert audit.actor_id == admin.id
    assert audit.details == {
        "from": "pro",
        "to": "free",
        "source": "admin",
        "paused_searches": [str(change.paused[0].id)],
        "adjusted_searches": [],
        "resumed_searches": [],
        "reason": "refund",
    }
    assert email.idempotency_key == f"system:plan_changed:{audit.id}:email"


async def test_an_upgrade_lifts_the_limits_at_once_and_pauses_nothing(
    client: httpx.AsyncClient, session: AsyncSession, user: User, headers: dict[str, str]
) -> None:
    await make_searches(session, user, 2)
    body = {
        "name": "Fast and wide",
        "criteria": {"keywords": ["gameboy"]},
        "marketplaces": ["ebay", "gumtree", "demo"],
        "check_frequency_minutes": 5,
    }
    refused = await client.post("/api/v1/searches/", json=body, headers=headers)
    assert refused.status_code == 403

    change = await billing.change_plan(session, user, Plan.PRO, source=billing.PlanSource.ADMIN)
    await session.commit()
    created = await client.post("/api/v1/searches/", json=body, headers=headers)

    assert (change.paused, change.adjusted) == ([], [])
    assert created.status_code == 201, created.text
    (notice, _) = await notices(session, user)
    assert "25 active searches" in notice.payload["text"]


async def test_changing_to_the_current_plan_changes_nothing(
    session: AsyncSession, user: User
) -> None:
    change = await billing.change_plan(session, user, Plan.FREE, source=billing.PlanSource.ADMIN)
    await session.commit()

    assert not change.changed
    assert await count_audit(session, user) == 0
    assert await notices(session, user) == []


async def test_a_cancelled_subscription_pauses_the_newest_searches_and_tells_the_user(
    client: httpx.AsyncClient, session: AsyncSession, user: User, stripe_fake: StripeFake
) -> None:
    subscription = await subscribed_user(session, user, stripe_fake, plan="pro")
    await make_searches(session, user, 4, marketplaces=["ebay", "gumtree"])
    canceled = stripe_fake.set_subscription(
        subscription["id"],
        customer=subscription["customer"],
        price=PRICES["pro"],
        status="canceled",
    )

    response = await send_event(client, "customer.subscription.deleted", canceled)

    assert response.json()["outcome"] == "plan_changed"
    searches = await searches_of(session, user)
    assert {name for name, s in searches.items() if s.is_active} == {"s0", "s1"}
    assert searches["s0"].marketplaces == ["ebay"]
    assert searches["s3"].marketplaces == ["ebay", "gumtree"]  # paused, left as it was
    assert searches["s3"].paused_reason == "Paused: over the FREE plan's limit"
    (audit,) = await session.scalars(select(AuditLog).where(AuditLog.user_id == user.id))
    assert audit.details["source"] == "stripe"
    assert audit.details["subscription_id"] == subscription["id"]
    assert sorted(audit.details["paused_searches"]) == sorted(
        str(searches[name].id) for name in ("s2", "s3")
    )
    assert [n.payload["subject"] for n in await notices(session, user)] == [
        "Your plan is now FREE"
    ] * 2


async def test_a_search_paused_by_a_downgrade_resumes_only_after_an_upgrade(
    client: httpx.AsyncClient, session: AsyncSession, headers: dict[str, str], user: User
) -> None:
    user.plan = Plan.PRO.value
    await session.commit()
    await make_searches(session, user, 3)
    change = await billing.change_plan(session, user, Plan.FREE, source=billing.PlanSource.ADMIN)
    await session.commit()
    (paused,) = change.paused

    refused = await client.post(f"/api/v1/searches/{paused.id}/resume", headers=headers)
    await billing.change_plan(session, user, Plan.STARTER, source=billing.PlanSource.ADMIN)
    await session.commit()
    resumed = await client.post(f"/api/v1/searches/{paused.id}/resume", headers=headers)

    assert refused.status_code == 403
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["is_active"] is True
    assert await session.scalar(select(func.count()).select_from(Search)) == 3
