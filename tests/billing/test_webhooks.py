"""Stripe webhooks: signatures on the raw body, once per event id, state from Stripe."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

import httpx
import pytest
import stripe
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import AuditLog, Plan, StripeEvent, User
from tests.billing.conftest import (
    WEBHOOK_URL,
    count_audit,
    deliver,
    fresh_user,
    notices,
    send_event,
    subscribed_user,
)
from tests.factories import make_search, make_user
from tests.fakes.stripe import (
    PRICES,
    WEBHOOK_SECRET,
    StripeFake,
    invoice_object,
    sign,
    signature,
    stripe_event,
)


async def customer_of(session: AsyncSession, user: User, fake: StripeFake) -> str:
    customer = fake.add_customer(user.email)
    user.stripe_customer_id = customer
    await session.commit()
    return customer


async def event_rows(session: AsyncSession) -> int:
    return await session.scalar(select(func.count()).select_from(StripeEvent)) or 0


def test_signatures_match_the_documented_vector_and_the_library() -> None:
    body = b'{"id":"evt_test_1","object":"event","type":"customer.subscription.updated"}'

    assert signature(body, "whsec_test_secret", 1700000000) == (
        "6d1695090a29031f4a635fba8776b80e9058dddec671fd5bdf1d7c278222cf63"
    )
    assert sign(body, "whsec_test_secret", timestamp=1700000000) == (
        stripe.WebhookSignature.generate_signature_header(
            body.decode(), "whsec_test_secret", timestamp=1700000000
        )
    )


async def test_a_subscription_event_sets_the_plan_from_stripe(
    client: httpx.AsyncClient, session: AsyncSession, user: User, stripe_fake: StripeFake
) -> None:
    customer = await customer_of(session, user, stripe_fake)
    subscription = stripe_fake.set_subscription(
        customer=customer, price=PRICES["pro"], period_end=1_900_000_000
    )

    response = await send_event(client, "customer.subscription.created", subscription)

    assert response.json()["outcome"] == "plan_changed"
    assert response.json()["received"] is True
    refreshed = await fresh_user(session, user)
    assert refreshed.plan == "pro"
    assert refreshed.stripe_subscription_id == subscription["id"]
    assert refreshed.subscription_status == "active"
    assert refreshed.current_period_end == datetime.fromtimestamp(1_900_000_000, UTC)
    assert [call.path for call in stripe_fake.calls("GET", "/v1/subscriptions")] == [
        f"/v1/subscriptions/{subscription['id']}"
    ]
    (audit,) = await session.scalars(select(AuditLog).where(AuditLog.user_id == user.id))
    assert audit.action == "plan_changed"
    assert audit.actor_id is None
    assert audit.details["from"] == "free"
    assert audit.details["to"] == "pro"
    assert audit.details["source"] == "stripe"
    assert audit.details["stripe_event_id"] == response.json()["event_id"]
    assert [(n.channel, n.kind) for n in await notices(session, user)] == [
        ("email", "system"),
        ("in_app", "system"),
    ]


async def test_the_older_payload_shape_with_a_top_level_period_end_is_understood(
    client: httpx.AsyncClient, session: AsyncSession, user: User, stripe_fake: StripeFake
) -> None:
    customer = await customer_of(session, user, stripe_fake)
    subscription = stripe_fake.set_subscription(
        customer=customer, price=PRICES["starter"], period_end=1_800_000_000, shape="legacy"
    )

    await send_event(
        client, "customer.subscription.updated", subscription, api_version="2024-06-20"
    )

    refreshed = await fresh_user(session, user)
    assert refreshed.plan == "starter"
    assert refreshed.current_period_end == datetime.fromtimestamp(1_800_000_000, UTC)


async def test_checkout_completed_after_a_real_checkout_sets_the_plan(
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    headers: dict[str, str],
    stripe_fake: StripeFake,
) -> None:
    started = await client.post("/api/v1/billing/checkout", json={"plan": "pro"}, headers=headers)
    assert started.status_code == 200
    (session_id,) = stripe_fake.checkout_sessions
    checkout, subscription = stripe_fake.complete_checkout(session_id)

    response = await send_event(client, "checkout.session.completed", checkout)

    assert response.json()["outcome"] == "plan_changed"
    refreshed = await fresh_user(session, user)
    assert (refreshed.plan, refreshed.stripe_subscription_id) == ("pro", subscription["id"])
    assert subscription["metadata"] == {"user_id": str(user.id), "plan": "pro"}


async def test_checkout_completed_for_a_customer_stripe_made_finds_the_user_by_reference(
    client: httpx.AsyncClient, session: AsyncSession, user: User, stripe_fake: StripeFake
) -> None:
    customer = stripe_fake.add_customer(user.email)
    subscription = stripe_fake.set_subscription(customer=customer, price=PRICES["business"])
    checkout = {
        "id": "cs_test_external",
        "object": "checkout.session",
        "mode": "subscription",
        "status": "complete",
        "payment_status": "paid",
        "customer": customer,
        "subscription": subscription["id"],
        "client_reference_id": str(user.id),
        "metadata": {},
    }

    await send_event(client, "checkout.session.completed", checkout)

    refreshed = await fresh_user(session, user)
    assert (refreshed.plan, refreshed.stripe_customer_id) == ("business", customer)


SIGNATURE_PROBLEMS = {
    "wrong secret": lambda body: sign(body, "whsec_someone_else"),
    "stale timestamp": lambda body: sign(body, timestamp=int(time.time()) - 301),
    "only v0": lambda body: sign(body).split(",v1=")[0] + ",v0=" + signature(body, "x", 1),
    "tampered body": lambda body: sign(body.replace(b"pro", b"business")),
    "not a signature header": lambda body: "definitely-not-stripe",
    "empty header": lambda body: "",
    "no timestamp": lambda body: "v1=" + signature(body, WEBHOOK_SECRET, 1),
}


@pytest.mark.parametrize("problem", list(SIGNATURE_PROBLEMS))
async def test_a_bad_signature_is_refused_and_changes_nothing(
    problem: str,
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    stripe_fake: StripeFake,
) -> None:
    customer = await customer_of(session, user, stripe_fake)
    subscription = stripe_fake.set_subscription(customer=customer, price=PRICES["pro"])
    body = stripe_event("customer.subscription.created", subscription)

    response = await deliver(client, body, header=SIGNATURE_PROBLEMS[problem](body))

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_signature"
    assert response.json()["detail"].startswith("Invalid Stripe-Signature")
    assert (await fresh_user(session, user)).plan == "free"
    assert await event_rows(session) == 0
    assert stripe_fake.calls("GET", "/v1/subscriptions") == []


async def test_a_missing_signature_header_is_refused(
    client: httpx.AsyncClient, session: AsyncSession, user: User, stripe_fake: StripeFake
) -> None:
    customer = await customer_of(session, user, stripe_fake)
    subscription = stripe_fake.set_subscription(customer=customer, price=PRICES["pro"])

    response = await deliver(
        client,
        stripe_event("customer.subscription.created", subscription),
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_signature"
    assert (await fresh_user(session, user)).plan == "free"
    assert await event_rows(session) == 0


async def test_a_reserialised_body_no_longer_matches_its_signature(
    client: httpx.AsyncClient, session: AsyncSession, user: User, stripe_fake: StripeFake
) -> None:
    customer = await customer_of(session, user, stripe_fake)
    subscription = stripe_fake.set_subscription(customer=customer, price=PRICES["pro"])
    body = stripe_event("customer.subscription.created", subscription)
    pretty = json.dumps(json.loads(body), indent=2).encode()

    response = await deliver(client, pretty, header=sign(body))

    assert response.status_code == 400
    assert (await fresh_user(session, user)).plan == "free"


async def test_rotation_signatures_and_a_test_v0_are_accepted(
    client: httpx.AsyncClient, session: AsyncSession, user: User, stripe_fake: StripeFake
) -> None:
    customer = await customer_of(session, user, stripe_fake)
    subscription = stripe_fake.set_subscription(customer=customer, price=PRICES["pro"])
    body = stripe_event("customer.subscription.created", subscription)
    # A v1 by the old secret first, then ours; plus the v0 that test events carry.
    header = sign(body, "whsec_old_secret", extra_secrets=(WEBHOOK_SECRET,), with_v0=True)

    response = await deliver(client, body, header=header)

    assert response.status_code == 200, response.text
    assert (await fresh_user(session, user)).plan == "pro"


@pytest.mark.parametrize(
    "body", [b"[]", b'"event"', b"{}", b'{"id": "evt_1", "type": "invoice.paid"}', b"\xff\xfe"]
)
async def test_a_signed_body_that_is_not_an_event_is_refused(
    body: bytes, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    header = f"t={int(time.time())},v1={signature(body, WEBHOOK_SECRET, int(time.time()))}"

    response = await deliver(client, body, header=header)

    assert response.status_code == 400
    assert response.json()["code"] in {"invalid_event", "invalid_signature"}
    assert await event_rows(session) == 0


async def test_a_repeated_event_changes_state_once(
    client: httpx.AsyncClient, session: AsyncSession, user: User, stripe_fake: StripeFake
) -> None:
    customer = await customer_of(session, user, stripe_fake)
    subscription = stripe_fake.set_subscription(customer=customer, price=PRICES["pro"])
    body = stripe_event("customer.subscription.created", subscription, event_id="evt_once")

    first = await deliver(client, body)
    # Even if Stripe's state moved on, a replay of the same event does nothing.
    stripe_fake.set_subscription(subscription["id"], customer=customer, price=PRICES["business"])
    again = await deliver(client, body)

    assert first.json()["outcome"] == "plan_changed"
    assert (again.status_code, again.json()["outcome"]) == (200, "duplicate")
    assert (await fresh_user(session, user)).plan == "pro"
    assert await count_audit(session, user) == 1
    assert len(stripe_fake.calls("GET", "/v1/subscriptions")) == 1


async def test_the_same_event_delivered_ten_times_concurrently_changes_state_once(
    app: FastAPI, session: AsyncSession, user: User, stripe_fake: StripeFake
) -> None:
    customer = await customer_of(session, user, stripe_fake)
    subscription = stripe_fake.set_subscription(customer=customer, price=PRICES["pro"])
    body = stripe_event("customer.subscription.created", subscription)
    header = sign(body)

    async def deliver_once() -> httpx.Response:
        # One client each, like ten separate deliveries.
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await http.post(
                WEBHOOK_URL,
                content=body,
                headers={"Stripe-Signature": header, "Content-Type": "application/json"},
            )

    responses = await asyncio.gather(*(deliver_once() for _ in range(10)))

    assert [r.status_code for r in responses] == [200] * 10
    outcomes = sorted(r.json()["outcome"] for r in responses)
    assert outcomes == ["duplicate"] * 9 + ["plan_changed"]
    assert (await fresh_user(session, user)).plan == "pro"
    assert await count_audit(session, user) == 1
    assert len(await notices(session, user)) == 2
    assert await event_rows(session) == 1
    assert len(stripe_fake.calls("GET", "/v1/subscriptions")) == 1


async def test_out_of_order_events_converge_on_stripes_current_state(
    client: httpx.AsyncClient, session: AsyncSession, user: User, stripe_fake: StripeFake
) -> None:
    customer = await customer_of(session, user, stripe_fake)
    sub_id = "sub_out_of_order"
    created = stripe_fake.set_subscription(sub_id, customer=customer, price=PRICES["pro"])
    upgraded = stripe_fake.set_subscription(sub_id, customer=customer, price=PRICES["business"])

    # Stripe sent created, then updated; they arrive the other way round.
    await send_event(client, "customer.subscription.updated", upgraded)
    late = await send_event(client, "customer.subscription.created", created)

    assert late.json()["outcome"] == "updated"
    assert (await fresh_user(session, user)).plan == "business"

    deleted = stripe_fake.set_subscription(
        sub_id, customer=customer, price=PRICES["business"], status="canceled"
    )
    await send_event(client, "customer.subscription.deleted", deleted)
    # A late copy of "updated" (a new delivery of an old change) cannot revive it.
    await send_event(client, "customer.subscription.updated", upgraded)

    refreshed = await fresh_user(session, user)
    assert (refreshed.plan, refreshed.subscription_status) == ("free", "canceled")
    audits = await session.scalars(
        select(AuditLog).where(AuditLog.user_id == user.id).order_by(AuditLog.created_at)
    )
    assert [(a.details["from"], a.details["to"]) for a in audits] == [
        ("free", "business"),
        ("business", "free"),
    ]


async def test_deleted_before_created_leaves_the_user_free(
    client: httpx.AsyncClient, session: AsyncSession, user: User, stripe_fake: StripeFake
) -> None:
    customer = await customer_of(session, user, stripe_fake)
    active = stripe_fake.set_subscription("sub_short", customer=customer, price=PRICES["pro"])
    canceled = stripe_fake.set_subscription(
        "sub_short", customer=customer, price=PRICES["pro"], status="canceled"
    )

    await send_event(client, "customer.subscription.deleted", canceled)
    await send_event(client, "customer.subscription.created", active)

    refreshed = await fresh_user(session, user)
    assert (refreshed.plan, refreshed.subscription_status) == ("free", "canceled")
    assert await count_audit(session, user) == 0


async def test_a_failed_payment_keeps_the_plan_until_stripe_gives_up(
    client: httpx.AsyncClient, session: AsyncSession, user: User, stripe_fake: StripeFake
) -> None:
    subscription = await subscribed_user(session, user, stripe_fake, plan="pro")
    customer, sub_id = subscription["customer"], subscription["id"]
    for n in range(3):
        await make_search(session, owner=user, name=f"search {n}")

    stripe_fake.set_subscription(sub_id, customer=customer, price=PRICES["pro"], status="past_due")
    failed = await send_event(
        client,
        "invoice.payment_failed",
        invoice_object(customer=customer, subscription=sub_id, status="open"),
    )

    assert failed.json()["outcome"] == "updated"
    refreshed = await fresh_user(session, user)
    assert (refreshed.plan, refreshed.subscription_status) == ("pro", "past_due")
    (email, in_app) = await notices(session, user)
    assert email.payload["subject"] == "Your payment did not go through"
    assert in_app.payload["subject"] == "Your payment did not go through"

    # Stripe's retries failed too: the subscription is unpaid (older invoice shape).
    stripe_fake.set_subscription(sub_id, customer=customer, price=PRICES["pro"], status="unpaid")
    await send_event(
        client,
        "invoice.payment_failed",
        invoice_object(customer=customer, subscription=sub_id, status="open", shape="legacy"),
        api_version="2024-06-20",
    )

    refreshed = await fresh_user(session, user)
    assert (refreshed.plan, refreshed.subscription_status) == ("free", "unpaid")
    searches = await session.scalars(select(AuditLog.details).where(AuditLog.user_id == user.id))
    (details,) = list(searches)
    assert len(details["paused_searches"]) == 1


async def test_a_paid_invoice_after_a_failure_restores_the_status(
    client: httpx.AsyncClient, session: AsyncSession, user: User, stripe_fake: StripeFake
) -> None:
    subscription = await subscribed_user(session, user, stripe_fake, plan="starter")
    customer, sub_id = subscription["customer"], subscription["id"]
    user.subscription_status = "past_due"
    await session.commit()

    await send_event(client, "invoice.paid", invoice_object(customer=customer, subscription=sub_id))

    refreshed = await fresh_user(session, user)
    assert (refreshed.plan, refreshed.subscription_status) == ("starter", "active")


async def test_an_event_for_an_unknown_customer_changes_nothing(
    client: httpx.AsyncClient, session: AsyncSession, user: User, stripe_fake: StripeFake
) -> None:
    subscription = stripe_fake.set_subscription(customer="cus_stranger", price=PRICES["pro"])

    response = await send_event(client, "customer.subscription.created", subscription)

    assert response.json()["outcome"] == "unknown_customer"
    assert (await fresh_user(session, user)).plan == "free"
    assert await event_rows(session) == 0
    assert stripe_fake.calls("GET", "/v1/subscriptions") == []


async def test_a_subscription_of_another_customer_changes_nothing(
    client: httpx.AsyncClient, session: AsyncSession, user: User, stripe_fake: StripeFake
) -> None:
    customer = await customer_of(session, user, stripe_fake)
    foreign = stripe_fake.set_subscription(customer="cus_someone_else", price=PRICES["pro"])

    response = await send_event(
        client, "invoice.paid", invoice_object(customer=customer, subscription=foreign["id"])
    )

    assert response.json()["outcome"] == "unknown_subscription"
    refreshed = await fresh_user(session, user)
    assert (refreshed.plan, refreshed.stripe_subscription_id) == ("free", None)


async def test_an_unhandled_event_type_is_acknowledged_and_ignored(
    client: httpx.AsyncClient, session: AsyncSession, stripe_fake: StripeFake
) -> None:
    response = await send_event(client, "customer.created", {"id": "cus_1", "object": "customer"})

    assert response.json()["outcome"] == "ignored"
    assert await event_rows(session) == 0
    assert stripe_fake.requests == []


async def test_an_invoice_without_a_subscription_changes_nothing(
    client: httpx.AsyncClient, session: AsyncSession, user: User, stripe_fake: StripeFake
) -> None:
    customer = await customer_of(session, user, stripe_fake)

    response = await send_event(
        client, "invoice.paid", invoice_object(customer=customer, subscription=None)
    )

    assert response.json()["outcome"] == "no_subscription"
    assert (await fresh_user(session, user)).plan == "free"


async def test_when_stripe_cannot_be_asked_the_event_fails_and_its_retry_applies_it(
    client: httpx.AsyncClient, session: AsyncSession, user: User, stripe_fake: StripeFake
) -> None:
    customer = await customer_of(session, user, stripe_fake)
    subscription = stripe_fake.set_subscription(customer=customer, price=PRICES["pro"])
    body = stripe_event("customer.subscription.created", subscription)
    stripe_fake.fail_rate_limited(path="/v1/subscriptions")

    refused = await deliver(client, body)

    assert refused.status_code == 503
    assert await event_rows(session) == 0
    assert (await fresh_user(session, user)).plan == "free"

    retried = await deliver(client, body)

    assert retried.json()["outcome"] == "plan_changed"
    assert (await fresh_user(session, user)).plan == "pro"


async def test_an_event_about_an_old_subscription_does_not_downgrade(
    client: httpx.AsyncClient, session: AsyncSession, user: User, stripe_fake: StripeFake
) -> None:
    current = await subscribed_user(session, user, stripe_fake, plan="business")
    old = stripe_fake.set_subscription(
        customer=current["customer"], price=PRICES["pro"], status="canceled"
    )

    response = await send_event(client, "customer.subscription.deleted", old)

    assert response.json()["outcome"] == "stale_subscription"
    refreshed = await fresh_user(session, user)
    assert (refreshed.plan, refreshed.stripe_subscription_id) == ("business", current["id"])


async def test_an_abandoned_checkout_keeps_a_plan_an_administrator_set(
    client: httpx.AsyncClient, session: AsyncSession, stripe_fake: StripeFake
) -> None:
    user = await make_user(session, email="vip@example.com", plan=Plan.PRO)
    customer = await customer_of(session, user, stripe_fake)
    expired = stripe_fake.set_subscription(
        customer=customer, price=PRICES["business"], status="incomplete_expired"
    )

    await send_event(client, "customer.subscription.deleted", expired)

    refreshed = await fresh_user(session, user)
    assert (refreshed.plan, refreshed.subscription_status) == ("pro", "incomplete_expired")


async def test_a_subscription_stripe_does_not_know_changes_nothing(
    client: httpx.AsyncClient, session: AsyncSession, user: User, stripe_fake: StripeFake
) -> None:
    customer = await customer_of(session, user, stripe_fake)

    response = await send_event(
        client,
        "customer.subscription.updated",
        {"id": "sub_vanished", "object": "subscription", "customer": customer},
    )

    assert response.json()["outcome"] == "unknown_subscription"
    assert (await fresh_user(session, user)).plan == "free"


async def test_a_price_of_no_configured_plan_keeps_the_plan(
    client: httpx.AsyncClient, session: AsyncSession, user: User, stripe_fake: StripeFake
) -> None:
    customer = await customer_of(session, user, stripe_fake)
    subscription = stripe_fake.set_subscription(customer=customer, price="price_legacy_gold")

    await send_event(client, "customer.subscription.created", subscription)

    refreshed = await fresh_user(session, user)
    assert (refreshed.plan, refreshed.subscription_status) == ("free", "active")
