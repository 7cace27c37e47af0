"""Plan and billing page: limits and usage; Checkout and Portal only when Stripe is set up."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import User
from tests.billing.conftest import billing_settings, subscribed_user
from tests.factories import make_search
from tests.fakes.stripe import StripeFake
from tests.web.conftest import csrf_in, notice_of, post_form


async def test_the_plan_page_shows_limits_and_usage_without_stripe_buttons(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    await make_search(session, owner=user)

    page = await signed_in.get("/app/billing")

    assert page.status_code == 200
    assert "<strong>FREE</strong> plan" in page.text
    assert '<th scope="row">Active searches</th><td>2</td><td>1</td><td>1</td>' in page.text
    assert "Upgrade to" not in page.text
    assert "Manage billing" not in page.text


async def test_checkout_without_stripe_is_refused_with_a_reason(
    signed_in: httpx.AsyncClient,
) -> None:
    response = await post_form(signed_in, "/app/billing", "/app/billing/checkout", {"plan": "pro"})

    assert response.status_code == 303
    assert "not configured" in notice_of(await signed_in.get("/app/billing"))


async def test_upgrading_goes_to_stripe_checkout(
    app: FastAPI, database_url: str, signed_in: httpx.AsyncClient
) -> None:
    with StripeFake() as stripe_fake:
        app.state.settings = billing_settings(database_url, stripe_fake)
        page = await signed_in.get("/app/billing")
        assert "Upgrade to PRO" in page.text
        assert "Manage billing" not in page.text

        response = await signed_in.post(
            "/app/billing/checkout", data={"plan": "pro", "csrf_token": csrf_in(page.text)}
        )

        (checkout_id,) = stripe_fake.checkout_sessions
    assert response.status_code == 303
    assert response.headers["location"] == f"https://checkout.stripe.com/c/pay/{checkout_id}"


async def test_subscribers_manage_billing_in_the_portal(
    app: FastAPI,
    database_url: str,
    signed_in: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
) -> None:
    with StripeFake() as stripe_fake:
        app.state.settings = billing_settings(database_url, stripe_fake)
        await subscribed_user(session, user, stripe_fake)
        page = await signed_in.get("/app/billing")
        assert "<strong>PRO</strong> plan" in page.text
        assert "Upgrade to PRO" not in page.text

        response = await signed_in.post(
            "/app/billing/portal", data={"csrf_token": csrf_in(page.text)}
        )

    assert response.status_code == 303
    assert response.headers["location"].startswith("https://billing.stripe.com/")
