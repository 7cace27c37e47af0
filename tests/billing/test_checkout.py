"""Checkout, Billing Portal and the billing status, against the fake Stripe."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Plan, StripeEvent, User
from tests.billing.conftest import billing_settings, deliver, fresh_user, subscribed_user
from tests.factories import make_user, token_headers
from tests.fakes.stripe import PRICES, StripeFake, stripe_event

CHECKOUT = "/api/v1/billing/checkout"
PORTAL = "/api/v1/billing/portal"
STATUS = "/api/v1/billing/"


def use_settings(app: FastAPI, database_url: str, fake: StripeFake, **overrides: object) -> None:
    app.state.settings = billing_settings(database_url, fake, **overrides)


async def test_checkout_creates_a_customer_and_a_subscription_checkout_session(
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    headers: dict[str, str],
    stripe_fake: StripeFake,
) -> None:
    response = await client.post(CHECKOUT, json={"plan": "pro"}, headers=headers)

    assert response.status_code == 200, response.text
    (checkout_id,) = stripe_fake.checkout_sessions
    assert response.json() == {"url": f"https://checkout.stripe.com/c/pay/{checkout_id}"}
    (customer_call,) = stripe_fake.calls("POST", "/v1/customers")
    assert customer_call.form["email"] == "owner@example.com"
    assert customer_call.form["metadata"] == {"user_id": str(user.id)}
    assert customer_call.headers["authorization"] == f"Bearer {stripe_fake.api_key}"
    assert customer_call.idempotency_key
    (checkout_call,) = stripe_fake.calls("POST", "/v1/checkout/sessions")
    form = checkout_call.form
    (customer_id,) = stripe_fake.customers
    assert form["mode"] == "subscription"
    assert form["line_items"] == [{"price": PRICES["pro"], "quantity": "1"}]
    assert form["customer"] == customer_id
    assert form["client_reference_id"] == str(user.id)
    assert form["subscription_data"]["metadata"] == {"user_id": str(user.id), "plan": "pro"}
    assert form["success_url"] == "https://app.example.com/billing/success"
    assert form["cancel_url"] == "https://app.example.com/billing/cancel"
    assert checkout_call.idempotency_key
    assert checkout_call.headers.get("stripe-version")
    refreshed = await fresh_user(session, user)
    assert refreshed.stripe_customer_id == customer_id
    # The plan changes only when Stripe confirms the subscription.
    assert refreshed.plan == "free"


async def test_a_second_checkout_reuses_the_stripe_customer(
    client: httpx.AsyncClient, headers: dict[str, str], stripe_fake: StripeFake
) -> None:
    first = await client.post(CHECKOUT, json={"plan": "PRO"}, headers=headers)
    second = await client.post(CHECKOUT, json={"plan": "business"}, headers=headers)

    assert first.status_code == second.status_code == 200
    assert first.json()["url"] != second.json()["url"]
    assert len(stripe_fake.calls("POST", "/v1/customers")) == 1
    checkouts = stripe_fake.calls("POST", "/v1/checkout/sessions")
    assert [c.form["line_items"][0]["price"] for c in checkouts] == [
        PRICES["pro"],
        PRICES["business"],
    ]
    assert len({c.form["customer"] for c in checkouts}) == 1
    assert len({c.idempotency_key for c in checkouts}) == 2


async def test_checkout_refuses_the_free_plan_unknown_plans_and_bad_bodies(
    client: httpx.AsyncClient, headers: dict[str, str], stripe_fake: StripeFake
) -> None:
    free = await client.post(CHECKOUT, json={"plan": "free"}, headers=headers)
    assert free.status_code == 422
    assert free.json()["code"] == "invalid_input"
    assert "portal" in free.json()["detail"]

    for body in ({"plan": "gold"}, {}, {"plan": "pro", "price": "price_x"}, {"plan": 3}):
        response = await client.post(CHECKOUT, json=body, headers=headers)
        assert response.status_code == 422, body
        assert response.json()["code"] == "validation_error"
    not_json = await client.post(
        CHECKOUT, content=b"plan=pro", headers={**headers, "Content-Type": "text/plain"}
    )
    assert not_json.status_code == 422
    assert stripe_fake.requests == []


async def test_checkout_for_the_plan_the_user_has_is_a_conflict(
    client: httpx.AsyncClient, app: FastAPI, session: AsyncSession, stripe_fake: StripeFake
) -> None:
    pro_user = await make_user(session, email="pro@example.com", plan=Plan.PRO)

    response = await client.post(
        CHECKOUT, json={"plan": "pro"}, headers=token_headers(app, pro_user)
    )

    assert response.status_code == 409
    assert response.json() == {"detail": "You are already on the PRO plan", "code": "conflict"}
    assert stripe_fake.requests == []


async def test_checkout_while_subscribed_points_to_the_billing_portal(
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    headers: dict[str, str],
    stripe_fake: StripeFake,
) -> None:
    await subscribed_user(session, user, stripe_fake, plan="starter")

    response = await client.post(CHECKOUT, json={"plan": "business"}, headers=headers)

    assert response.status_code == 409
    assert "/api/v1/billing/portal" in response.json()["detail"]
    assert stripe_fake.calls("POST", "/v1/checkout/sessions") == []


async def test_checkout_replaces_a_customer_deleted_at_stripe(
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    headers: dict[str, str],
    stripe_fake: StripeFake,
) -> None:
    gone = stripe_fake.add_customer(user.email)
    user.stripe_customer_id = gone
    await session.commit()
    stripe_fake.delete_customer(gone)

    response = await client.post(CHECKOUT, json={"plan": "starter"}, headers=headers)

    assert response.status_code == 200, response.text
    (replacement,) = stripe_fake.customers
    assert replacement != gone
    assert (await fresh_user(session, user)).stripe_customer_id == replacement
    assert stripe_fake.calls("POST", "/v1/checkout/sessions")[-1].form["customer"] == replacement


async def test_a_stripe_failure_is_503_and_a_retry_reuses_the_same_customer(
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    headers: dict[str, str],
    stripe_fake: StripeFake,
) -> None:
    stripe_fake.fail_rate_limited(path="/v1/checkout/sessions")

    refused = await client.post(CHECKOUT, json={"plan": "pro"}, headers=headers)

    assert refused.status_code == 503
    assert refused.json()["code"] == "service_unavailable"
    assert "too many requests" in refused.json()["detail"]
    # The request rolled back, customer id included ...
    assert (await fresh_user(session, user)).stripe_customer_id is None

    retried = await client.post(CHECKOUT, json={"plan": "pro"}, headers=headers)

    # ... and the retry's idempotency key gave back the customer Stripe already made.
    assert retried.status_code == 200, retried.text
    assert len(stripe_fake.customers) == 1
    customer_calls = stripe_fake.calls("POST", "/v1/customers")
    assert len(customer_calls) == 2
    assert customer_calls[0].idempotency_key == customer_calls[1].idempotency_key
    (customer_id,) = stripe_fake.customers
    assert (await fresh_user(session, user)).stripe_customer_id == customer_id


async def test_a_refused_api_key_is_503_with_a_clear_message(
    client: httpx.AsyncClient,
    app: FastAPI,
    database_url: str,
    user: User,
    headers: dict[str, str],
    stripe_fake: StripeFake,
) -> None:
    use_settings(app, database_url, stripe_fake, stripe_secret_key="sk_test_revoked_key")

    response = await client.post(CHECKOUT, json={"plan": "pro"}, headers=headers)

    assert response.status_code == 503
    assert response.json() == {
        "detail": "Billing is misconfigured on this server: Stripe refused its API key",
        "code": "service_unavailable",
    }


async def test_a_price_stripe_does_not_know_is_503(
    client: httpx.AsyncClient,
    app: FastAPI,
    database_url: str,
    headers: dict[str, str],
    stripe_fake: StripeFake,
) -> None:
    use_settings(app, database_url, stripe_fake, stripe_price_pro="price_deleted")

    response = await client.post(CHECKOUT, json={"plan": "pro"}, headers=headers)

    assert response.status_code == 503
    assert "PRO plan's price" in response.json()["detail"]


async def test_unconfigured_billing_answers_503_and_everything_else_works_on_free(
    client: httpx.AsyncClient,
    app: FastAPI,
    database_url: str,
    session: AsyncSession,
    user: User,
    headers: dict[str, str],
    stripe_fake: StripeFake,
) -> None:
    use_settings(app, database_url, stripe_fake, stripe_secret_key="", stripe_webhook_secret="")
    user.stripe_customer_id = "cus_from_before"
    await session.commit()
    unconfigured = {
        "detail": "Billing is not configured on this server",
        "code": "service_unavailable",
    }

    checkout = await client.post(CHECKOUT, json={"plan": "pro"}, headers=headers)
    portal = await client.post(PORTAL, headers=headers)
    webhook = await deliver(client, stripe_event("invoice.paid", {"customer": "cus_1"}))
    billing_status = await client.get(STATUS, headers=headers)
    search = await client.post(
        "/api/v1/searches/",
        json={"name": "Lenses", "criteria": {"keywords": ["canon 50mm"]}, "marketplaces": ["ebay"]},
        headers=headers,
    )

    assert (checkout.status_code, checkout.json()) == (503, unconfigured)
    assert (portal.status_code, portal.json()) == (503, unconfigured)
    assert webhook.status_code == 503
    assert webhook.json()["detail"].startswith("Billing is not configured on this server")
    assert billing_status.status_code == 200
    assert billing_status.json()["stripe_configured"] is False
    assert billing_status.json()["purchasable_plans"] == []
    assert billing_status.json()["plan"] == "free"
    assert search.status_code == 201, search.text
    assert stripe_fake.requests == []
    assert await session.scalar(select(func.count()).select_from(StripeEvent)) == 0


async def test_a_plan_without_a_price_answers_503(
    client: httpx.AsyncClient,
    app: FastAPI,
    database_url: str,
    headers: dict[str, str],
    stripe_fake: StripeFake,
) -> None:
    use_settings(app, database_url, stripe_fake, stripe_price_business="")

    business = await client.post(CHECKOUT, json={"plan": "business"}, headers=headers)
    billing_status = await client.get(STATUS, headers=headers)

    assert business.status_code == 503
    assert business.json()["detail"] == (
        "Billing is not configured on this server for the BUSINESS plan"
    )
    assert billing_status.json()["purchasable_plans"] == ["starter", "pro"]
    assert stripe_fake.requests == []


async def test_portal_returns_a_billing_portal_url_for_the_customer(
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    headers: dict[str, str],
    stripe_fake: StripeFake,
) -> None:
    await subscribed_user(session, user, stripe_fake)

    response = await client.post(PORTAL, headers=headers)

    assert response.status_code == 200, response.text
    assert response.json()["url"].startswith("https://billing.stripe.com/p/session/")
    (call,) = stripe_fake.calls("POST", "/v1/billing_portal/sessions")
    assert call.form == {
        "customer": user.stripe_customer_id,
        "return_url": "https://app.example.com/billing",
    }
    assert call.idempotency_key


async def test_portal_without_a_billing_account_is_a_conflict(
    client: httpx.AsyncClient, headers: dict[str, str], stripe_fake: StripeFake
) -> None:
    response = await client.post(PORTAL, headers=headers)

    assert response.status_code == 409
    assert response.json()["detail"] == (
        "You have no billing account yet: subscribe to a plan first (POST /api/v1/billing/checkout)"
    )
    assert stripe_fake.requests == []


async def test_portal_for_a_customer_deleted_at_stripe_is_a_conflict(
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    headers: dict[str, str],
    stripe_fake: StripeFake,
) -> None:
    await subscribed_user(session, user, stripe_fake)
    assert user.stripe_customer_id is not None
    stripe_fake.delete_customer(user.stripe_customer_id)

    response = await client.post(PORTAL, headers=headers)

    assert response.status_code == 409
    assert "no longer exists at Stripe" in response.json()["detail"]


async def test_billing_status_shows_plan_subscription_and_period_end(
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    headers: dict[str, str],
    stripe_fake: StripeFake,
) -> None:
    before = await client.get(STATUS, headers=headers)
    assert before.json() == {
        "plan": "free",
        "subscription_status": None,
        "current_period_end": None,
        "stripe_configured": True,
        "has_billing_account": False,
        "purchasable_plans": ["starter", "pro", "business"],
    }
    subscription = await subscribed_user(session, user, stripe_fake, period_end=1_900_000_000)
    await deliver(client, stripe_event("customer.subscription.updated", subscription))

    after = (await client.get(STATUS, headers=headers)).json()

    assert after["plan"] == "pro"
    assert after["subscription_status"] == "active"
    assert after["current_period_end"] == "2030-03-17T17:46:40Z"
    assert after["has_billing_account"] is True


async def test_billing_routes_need_a_token(client: httpx.AsyncClient) -> None:
    for method, url in (("GET", STATUS), ("POST", CHECKOUT), ("POST", PORTAL)):
        response = await client.request(method, url, json={"plan": "pro"})
        assert response.status_code == 401, url
        assert response.json()["code"] == "not_authenticated"
