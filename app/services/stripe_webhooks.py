"""Stripe webhooks: signature check, event dedup, and the user's plan derived from the
subscription's current state at Stripe.

Stripe is the source of truth for paid plans. A webhook event only says *which*
subscription to look at: its current state is fetched from Stripe, so duplicate, late and
out-of-order events all converge on what Stripe says now. Each event id is recorded in
the same transaction as the change it causes, so an event changes state at most once.

Every function flushes and never commits.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import stripe
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts import outbox
from app.config import Settings
from app.db import dialect_insert, utcnow
from app.errors import DomainError, ServiceUnavailable
from app.models import Plan, StripeEvent, User
from app.services import plan_changes, stripe_client

logger = logging.getLogger(__name__)

WEBHOOK_TOLERANCE_S = 300

HANDLED_EVENTS = frozenset(
    {
        "checkout.session.completed",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "invoice.paid",
        "invoice.payment_failed",
    }
)
# Statuses that keep the paid plan. past_due is Stripe's retry period after a failed
# renewal: the customer keeps what they paid for until Stripe gives up.
PAID_STATUSES = frozenset({"active", "trialing", "past_due"})
# Statuses after which the subscription grants nothing any more.
ENDED_STATUSES = frozenset({"canceled", "unpaid", "incomplete_expired", "paused"})
# Anything else (incomplete: the first payment has not gone through) changes no plan.

PLAN_ORDER = (Plan.FREE, Plan.STARTER, Plan.PRO, Plan.BUSINESS)


class WebhookOutcome(StrEnum):
    """What a Stripe event did."""

    PLAN_CHANGED = "plan_changed"
    UPDATED = "updated"  # subscription state stored, plan unchanged
    DUPLICATE = "duplicate"
    IGNORED = "ignored"  # an event type we do not handle
    UNKNOWN_CUSTOMER = "unknown_customer"
    NO_SUBSCRIPTION = "no_subscription"
    UNKNOWN_SUBSCRIPTION = "unknown_subscription"
    STALE_SUBSCRIPTION = "stale_subscription"  # an old subscription; another one is current


@dataclass(frozen=True)
class WebhookResult:
    event_id: str
    event_type: str
    outcome: WebhookOutcome


async def handle_webhook(
    session: AsyncSession, settings: Settings, *, payload: bytes, signature: str | None
) -> WebhookResult:
    """Verify and apply one Stripe webhook delivery.

    Raises ServiceUnavailable when webhooks are not configured, or when Stripe cannot be
    asked for the subscription's state (the transaction rolls back and Stripe retries);
    DomainError (400) for a missing, wrong or stale signature or a malformed event, with
    nothing changed. An event id seen before changes nothing.
    """
    secret = settings.stripe_webhook_secret.get_secret_value()
    if not secret or not stripe_client.billing_configured(settings):
        raise ServiceUnavailable(stripe_client.NOT_CONFIGURED)
    event = _verified_event(payload, signature, secret)
    event_id, event_type = event["id"], event["type"]
    if event_type not in HANDLED_EVENTS:
        return _result(event_id, event_type, WebhookOutcome.IGNORED)
    customer_id, subscription_id, user_reference = _references(event_type, event["data"]["object"])

    # Read-only until the event is recorded, so an unknown customer leaves no trace.
    user = await _find_user(session, customer_id, user_reference)
    if user is None:
        logger.warning(
            "Stripe event %s (%s) names customer %s, who is not a user here",
            event_id,
            event_type,
            customer_id,
        )
        return _result(event_id, event_type, WebhookOutcome.UNKNOWN_CUSTOMER)
    # The first write: on PostgreSQL a concurrent copy of this event waits here until this
    # transaction ends, then finds the id taken.
    if not await _record_event(session, event_id, event_type):
        return _result(event_id, event_type, WebhookOutcome.DUPLICATE)

    # Fetched under the user's row lock, so the last writer always wrote the newest state.
    user = await plan_changes.locked_user(session, user.id)
    if customer_id is not None and user.stripe_customer_id is None:
        # A checkout whose customer Stripe made itself (found by our user id): remember it.
        user.stripe_customer_id = customer_id
        await session.flush()
    if subscription_id is None:
        return _result(event_id, event_type, WebhookOutcome.NO_SUBSCRIPTION)
    async with stripe_client.open_client(settings) as client:
        try:
            subscription = await stripe_client.call(
                client.v1.subscriptions.retrieve_async(subscription_id)
            )
        except stripe_client.ResourceMissing:
            logger.warning(
                "Stripe event %s names unknown subscription %s", event_id, subscription_id
            )
            return _result(event_id, event_type, WebhookOutcome.UNKNOWN_SUBSCRIPTION)
    state = subscription.to_dict()
    if _object_id(state.get("customer")) != user.stripe_customer_id:
        logger.warning(
            "Stripe event %s: subscription %s belongs to another customer",
            event_id,
            subscription_id,
        )
        return _result(event_id, event_type, WebhookOutcome.UNKNOWN_SUBSCRIPTION)
    outcome = await _apply_subscription(session, settings, user, state, event_id=event_id)
    return _result(event_id, event_type, outcome)


def _result(event_id: str, event_type: str, outcome: WebhookOutcome) -> WebhookResult:
    logger.info("Stripe event %s (%s): %s", event_id, event_type, outcome.value)
    return WebhookResult(event_id, event_type, outcome)


def _verified_event(payload: bytes, signature: str | None, secret: str) -> dict[str, Any]:
    try:
        event = stripe.Webhook.construct_event(
            payload, signature, secret, tolerance=WEBHOOK_TOLERANCE_S
        )
    except stripe.SignatureVerificationError as exc:
        raise DomainError(
            f"Invalid Stripe-Signature: {exc.user_message or exc}", code="invalid_signature"
        ) from exc
    except (ValueError, TypeError, AttributeError) as exc:
        # Signed but not a JSON object (the library parses after verifying).
        raise DomainError("The event is not a JSON object", code="invalid_event") from exc
    data: dict[str, Any] = event.to_dict()
    inner = data.get("data")
    if (
        not isinstance(data.get("id"), str)
        or not isinstance(data.get("type"), str)
        or not isinstance(inner, dict)
        or not isinstance(inner.get("object"), dict)
    ):
        raise DomainError("The event lacks an id, a type or a data.object", code="invalid_event")
    return data


async def _record_event(session: AsyncSession, event_id: str, event_type: str) -> bool:
    """Insert the event id; False when it was there already."""
    insert = dialect_insert(session)
    inserted = await session.scalar(
        insert(StripeEvent)
        .values(id=event_id, type=event_type[:100], received_at=utcnow())
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(StripeEvent.id)
    )
    return inserted is not None


def _references(
    event_type: str, obj: Mapping[str, Any]
) -> tuple[str | None, str | None, str | None]:
    """(customer id, subscription id, our user id if the object names one)."""
    customer = _object_id(obj.get("customer"))
    if event_type.startswith("customer.subscription."):
        return customer, _object_id(obj.get("id")), None
    if event_type == "checkout.session.completed":
        reference = obj.get("client_reference_id") or _mapping(obj.get("metadata")).get("user_id")
        subscription = (
            _object_id(obj.get("subscription")) if obj.get("mode") == "subscription" else None
        )
        return customer, subscription, reference if isinstance(reference, str) else None
    # Invoices: basil moved the subscription under parent.subscription_details.
    details = _mapping(_mapping(obj.get("parent")).get("subscription_details"))
    subscription = _object_id(details.get("subscription")) or _object_id(obj.get("subscription"))
    return customer, subscription, None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _object_id(value: Any) -> str | None:
    """An id that Stripe sends either as a string or as an expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


async def _find_user(
    session: AsyncSession, customer_id: str | None, user_reference: str | None
) -> User | None:
    """The user whose Stripe customer this is; or, for a customer we have not seen, the
    user the object names (client_reference_id) if they have no customer yet."""
    if customer_id is not None:
        user = await session.scalar(select(User).where(User.stripe_customer_id == customer_id))
        if user is not None:
            return user
    if user_reference is None:
        return None
    try:
        user_id = uuid.UUID(user_reference)
    except ValueError:
        return None
    user = await session.get(User, user_id)
    if user is None or user.stripe_customer_id is not None:
        return None
    return user


async def _apply_subscription(
    session: AsyncSession,
    settings: Settings,
    user: User,
    subscription: dict[str, Any],
    *,
    event_id: str,
) -> WebhookOutcome:
    """Store the subscription's current state and derive the user's plan from it."""
    subscription_id = str(subscription.get("id"))
    sub_status = str(subscription.get("status"))
    is_current = user.stripe_subscription_id in (None, subscription_id)
    current_is_paid = user.subscription_status in PAID_STATUSES
    if not is_current and current_is_paid and sub_status not in PAID_STATUSES:
        # An old or abandoned subscription; the user's paid one decides.
        return WebhookOutcome.STALE_SUBSCRIPTION

    was_paid_by_this = is_current and current_is_paid
    previous_status = user.subscription_status if is_current else None
    user.stripe_subscription_id = subscription_id
    user.subscription_status = sub_status
    user.current_period_end = _period_end(subscription)
    await session.flush()

    target: Plan | None = None
    if sub_status in PAID_STATUSES:
        target = _plan_of(subscription, settings)
        if target is None:
            logger.error(
                "subscription %s has no price of a configured plan; plan left unchanged",
                subscription_id,
            )
    elif sub_status in ENDED_STATUSES and was_paid_by_this:
        # Only the end of what paid for the plan takes it away (not an abandoned checkout
        # of someone whose plan an administrator set).
        target = Plan.FREE

    now = utcnow()
    if sub_status == "past_due" and previous_status != "past_due":
        await _tell_payment_failed(session, user, subscription_id, event_id=event_id, now=now)
    if target is None or target.value == user.plan:
        return WebhookOutcome.UPDATED
    await plan_changes.change_plan(
        session,
        user,
        target,
        source=plan_changes.PlanSource.STRIPE,
        details={"stripe_event_id": event_id, "subscription_id": subscription_id},
        now=now,
    )
    return WebhookOutcome.PLAN_CHANGED


def _plan_of(subscription: Mapping[str, Any], settings: Settings) -> Plan | None:
    """The highest configured plan among the subscription's prices."""
    by_price = {price: plan for plan, price in stripe_client.plan_prices(settings).items()}
    found: list[Plan] = []
    for item in _items(subscription):
        price = _object_id(item.get("price"))
        if price in by_price:
            found.append(by_price[price])
    legacy_plan = _object_id(subscription.get("plan"))
    if legacy_plan in by_price:
        found.append(by_price[legacy_plan])
    return max(found, key=PLAN_ORDER.index) if found else None


def _period_end(subscription: Mapping[str, Any]) -> datetime | None:
    """The current period's end: per item since API version 2025-03-31.basil, at the top
    level before it."""
    ends = [item.get("current_period_end") for item in _items(subscription)]
    ends.append(subscription.get("current_period_end"))
    stamps = [end for end in ends if isinstance(end, int) and not isinstance(end, bool)]
    return datetime.fromtimestamp(max(stamps), UTC) if stamps else None


def _items(subscription: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    data = _mapping(subscription.get("items")).get("data")
    return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []


async def _tell_payment_failed(
    session: AsyncSession,
    user: User,
    subscription_id: str,
    *,
    event_id: str,
    now: datetime,
) -> None:
    await outbox.enqueue_notice(
        session,
        user_id=user.id,
        key=f"payment_failed:{subscription_id}:{event_id}",
        subject="Your payment did not go through",
        text=(
            f"We could not take the payment for your {Plan(user.plan).name} plan. Stripe "
            "will try again over the next days and your plan stays as it is meanwhile. "
            "Please update your payment details in the billing portal; if the payment "
            "keeps failing, your account moves to the FREE plan (nothing is deleted)."
        ),
        now=now,
    )
