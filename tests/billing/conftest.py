"""Billing fixtures: the app talks to a fake Stripe, and helpers deliver signed events."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import Alert, AuditLog, User
from tests.conftest import make_settings
from tests.fakes.stripe import PRICES, WEBHOOK_SECRET, StripeFake, sign, stripe_event

WEBHOOK_URL = "/api/v1/webhooks/stripe"


@pytest.fixture
def stripe_fake() -> Iterator[StripeFake]:
    with StripeFake() as fake:
        yield fake


def billing_settings(database_url: str, fake: StripeFake, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "stripe_secret_key": fake.api_key,
        "stripe_webhook_secret": WEBHOOK_SECRET,
        "stripe_api_base": fake.base_url,
        "stripe_price_starter": PRICES["starter"],
        "stripe_price_pro": PRICES["pro"],
        "stripe_price_business": PRICES["business"],
        "billing_success_url": "https://app.example.com/billing/success",
        "billing_cancel_url": "https://app.example.com/billing/cancel",
        "billing_portal_return_url": "https://app.example.com/billing",
    }
    values.update(overrides)
    return make_settings(database_url, **values)


@pytest.fixture
def settings(database_url: str, stripe_fake: StripeFake) -> Settings:
    return billing_settings(database_url, stripe_fake)


async def deliver(
    client: httpx.AsyncClient,
    payload: bytes,
    *,
    header: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST a webhook body as Stripe does, signed with the test secret unless a header
    (or a full header set) is given."""
    sent = {"Content-Type": "application/json; charset=utf-8"}
    if headers is not None:
        sent.update(headers)
    else:
        sent["Stripe-Signature"] = header if header is not None else sign(payload)
    return await client.post(WEBHOOK_URL, content=payload, headers=sent)


async def send_event(
    client: httpx.AsyncClient, event_type: str, obj: dict[str, Any], **kwargs: Any
) -> httpx.Response:
    response = await deliver(client, stripe_event(event_type, obj, **kwargs))
    assert response.status_code == 200, response.text
    return response


async def subscribed_user(
    session: AsyncSession, user: User, fake: StripeFake, *, plan: str = "pro", **fields: Any
) -> dict[str, Any]:
    """Make `user` a Stripe customer with a live subscription to `plan`, as the webhooks
    would have left them. Returns the subscription."""
    customer = fake.add_customer(user.email)
    subscription = fake.set_subscription(customer=customer, price=PRICES[plan], **fields)
    user.stripe_customer_id = customer
    user.stripe_subscription_id = subscription["id"]
    user.subscription_status = subscription["status"]
    user.plan = plan
    await session.commit()
    return subscription


async def fresh_user(session: AsyncSession, user: User) -> User:
    await session.refresh(user)
    return user


async def count_audit(session: AsyncSession, user: User) -> int:
    total = await session.scalar(
        select(func.count()).select_from(AuditLog).where(AuditLog.user_id == user.id)
    )
    return total or 0


async def notices(session: AsyncSession, user: User) -> list[Alert]:
    rows = await session.scalars(
        select(Alert).where(Alert.user_id == user.id).order_by(Alert.channel)
    )
    return list(rows)
