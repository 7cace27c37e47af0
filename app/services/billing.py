"""Billing: the signed-in user's billing status, Stripe Checkout and the Billing Portal;
the public face of billing for routes and the CLI.

The Stripe client lives in `stripe_client`, webhook handling in `stripe_webhooks` and
plan changes in `plan_changes`; their public names are re-exported here.

Every function flushes and never commits.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

import stripe
from sqlalchemy.ext.asyncio import AsyncSession
from stripe.params import CustomerCreateParams

from app.config import Settings
from app.errors import Conflict, InvalidInput, ServiceUnavailable
from app.models import Plan, User
from app.services import plan_changes, stripe_client
from app.services.plan_changes import PlanChange, PlanSource, admin_set_plan, change_plan
from app.services.stripe_client import (
    MISCONFIGURED,
    NOT_CONFIGURED,
    billing_configured,
    plan_prices,
)
from app.services.stripe_webhooks import (
    PAID_STATUSES,
    WebhookOutcome,
    WebhookResult,
    handle_webhook,
)

__all__ = [
    "BillingStatus",
    "PlanChange",
    "PlanSource",
    "WebhookOutcome",
    "WebhookResult",
    "admin_set_plan",
    "billing_configured",
    "change_plan",
    "handle_webhook",
    "open_portal",
    "plan_prices",
    "start_checkout",
    "status",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BillingStatus:
    plan: str
    subscription_status: str | None
    current_period_end: datetime | None
    stripe_configured: bool
    has_billing_account: bool
    purchasable_plans: list[str]


def status(user: User, settings: Settings) -> BillingStatus:
    """The user's plan and subscription, and which plans can be bought here."""
    configured = billing_configured(settings)
    return BillingStatus(
        plan=user.plan,
        subscription_status=user.subscription_status,
        current_period_end=user.current_period_end,
        stripe_configured=configured,
        has_billing_account=user.stripe_customer_id is not None,
        purchasable_plans=[plan.value for plan in plan_prices(settings)] if configured else [],
    )


# --- checkout and portal ----------------------------------------------------------------


async def start_checkout(
    session: AsyncSession, settings: Settings, *, user: User, plan: Plan
) -> str:
    """The URL of a new subscription-mode Stripe Checkout Session for `plan`.

    Creates the user's Stripe customer on first use (and stores its id). The plan itself
    changes only when Stripe reports the subscription (webhook).
    Raises InvalidInput (the free plan), ServiceUnavailable (billing or the plan's price
    not configured, Stripe unreachable or refusing), Conflict (already on that plan, or
    already subscribed: plan changes then go through the billing portal).
    """
    plan = Plan(plan)
    if plan is Plan.FREE:
        raise InvalidInput(
            "The free plan needs no checkout: cancel your subscription in the billing "
            "portal (POST /api/v1/billing/portal) to return to it"
        )
    stripe_client.require_configured(settings)
    price = plan_prices(settings).get(plan)
    if price is None:
        raise ServiceUnavailable(f"{NOT_CONFIGURED} for the {plan.name} plan")
    # Serialise a user's billing requests: one customer, one decision.
    user = await plan_changes.locked_user(session, user.id)
    if user.plan == plan.value:
        raise Conflict(f"You are already on the {plan.name} plan")
    if user.stripe_subscription_id and user.subscription_status in PAID_STATUSES:
        raise Conflict(
            "You already have a subscription: change or cancel it in the billing portal "
            "(POST /api/v1/billing/portal)"
        )
    async with stripe_client.open_client(settings) as client:
        customer_id = user.stripe_customer_id or await _create_customer(session, client, user)
        try:
            checkout = await _create_checkout(client, settings, user, plan, price, customer_id)
        except stripe_client.ResourceMissing as missing:
            if missing.param != "customer":
                logger.error("Stripe does not know the price %s of the %s plan", price, plan)
                raise ServiceUnavailable(
                    f"{MISCONFIGURED}: Stripe does not know the {plan.name} plan's price"
                ) from missing
            # The customer was deleted at Stripe: start over with a new one.
            customer_id = await _create_customer(session, client, user, replaces=customer_id)
            checkout = await _create_checkout(client, settings, user, plan, price, customer_id)
    url = checkout.url
    if not url:
        raise ServiceUnavailable("Stripe returned a checkout session without a URL")
    return url


async def open_portal(session: AsyncSession, settings: Settings, *, user: User) -> str:
    """The URL of a Stripe Billing Portal session, where the user changes or cancels the
    subscription and updates payment details.

    Raises ServiceUnavailable (billing not configured, Stripe unreachable or refusing)
    and Conflict (no Stripe customer yet, or it no longer exists at Stripe).
    """
    stripe_client.require_configured(settings)
    if not user.stripe_customer_id:
        raise Conflict(
            "You have no billing account yet: subscribe to a plan first "
            "(POST /api/v1/billing/checkout)"
        )
    async with stripe_client.open_client(settings) as client:
        try:
            portal = await stripe_client.call(
                client.v1.billing_portal.sessions.create_async(
                    params={
                        "customer": user.stripe_customer_id,
                        "return_url": settings.billing_portal_return_url,
                    },
                    options={"idempotency_key": f"portal:{user.id}:{uuid.uuid4().hex}"},
                )
            )
        except stripe_client.ResourceMissing as missing:
            raise Conflict(
                "Your billing account no longer exists at Stripe: subscribe again "
                "(POST /api/v1/billing/checkout)"
            ) from missing
    return portal.url


async def _create_customer(
    session: AsyncSession,
    client: stripe.StripeClient,
    user: User,
    *,
    replaces: str | None = None,
) -> str:
    # Keyed by user and address, so a retried or concurrent request gets the same customer.
    email_digest = hashlib.sha256(user.email.encode()).hexdigest()[:16]
    key = f"customer:{user.id}:{email_digest}" + (f":{replaces}" if replaces else "")
    params: CustomerCreateParams = {"email": user.email, "metadata": {"user_id": str(user.id)}}
    if user.full_name:
        params["name"] = user.full_name
    customer = await stripe_client.call(
        client.v1.customers.create_async(params=params, options={"idempotency_key": key})
    )
    user.stripe_customer_id = customer.id
    await session.flush()
    return customer.id


async def _create_checkout(
    client: stripe.StripeClient,
    settings: Settings,
    user: User,
    plan: Plan,
    price: str,
    customer_id: str,
) -> stripe.checkout.Session:
    metadata = {"user_id": str(user.id), "plan": plan.value}
    return await stripe_client.call(
        client.v1.checkout.sessions.create_async(
            params={
                "mode": "subscription",
                "customer": customer_id,
                "line_items": [{"price": price, "quantity": 1}],
                "client_reference_id": str(user.id),
                "metadata": metadata,
                "subscription_data": {"metadata": metadata},
                "success_url": settings.billing_success_url,
                "cancel_url": settings.billing_cancel_url,
            },
            options={"idempotency_key": f"checkout:{user.id}:{plan.value}:{uuid.uuid4().hex}"},
        )
    )
