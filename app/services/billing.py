"""Billing: Stripe Checkout and Billing Portal, verified Stripe webhooks, and the one
function that changes a user's plan (for Stripe, an administrator or the CLI alike).

Stripe is the source of truth for paid plans. A webhook event only says *which*
subscription to look at: its current state is fetched from Stripe, so duplicate, late and
out-of-order events all converge on what Stripe says now. Each event id is recorded in
the same transaction as the change it causes, so an event changes state at most once.

Every function flushes and never commits.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

import httpx
import stripe
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from stripe.params import CustomerCreateParams

from app.alerts import outbox
from app.config import Settings
from app.db import dialect_insert, new_id, utcnow
from app.errors import Conflict, DomainError, InvalidInput, NotFound, ServiceUnavailable
from app.models import AuditLog, Plan, Search, StripeEvent, User
from app.services import plans

logger = logging.getLogger(__name__)

T = TypeVar("T")

NOT_CONFIGURED = "Billing is not configured on this server"
MISCONFIGURED = "Billing is misconfigured on this server"
WEBHOOK_TOLERANCE_S = 300
STRIPE_TIMEOUT_S = 20.0
# The library retries connection errors, 409 and 5xx with the same idempotency key.
STRIPE_NETWORK_RETRIES = 2
PLAN_CHANGED = "plan_changed"

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


class PlanSource(StrEnum):
    """Who changed a plan; stored in the audit trail."""

    STRIPE = "stripe"
    ADMIN = "admin"
    CLI = "cli"


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
class PlanChange:
    """The result of `change_plan`: searches paused and searches adjusted to fit."""

    user_id: uuid.UUID
    previous_plan: str
    plan: str
    paused: list[Search] = field(default_factory=list)
    adjusted: list[Search] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.previous_plan != self.plan


@dataclass(frozen=True)
class BillingStatus:
    plan: str
    subscription_status: str | None
    current_period_end: datetime | None
    stripe_configured: bool
    has_billing_account: bool
    purchasable_plans: list[str]


@dataclass(frozen=True)
class WebhookResult:
    event_id: str
    event_type: str
    outcome: WebhookOutcome


# --- configuration ----------------------------------------------------------------------


def billing_configured(settings: Settings) -> bool:
    """Whether this server can talk to Stripe at all (a secret key is set)."""
    return bool(settings.stripe_secret_key.get_secret_value())


def plan_prices(settings: Settings) -> dict[Plan, str]:
    """The Stripe price id of each paid plan that has one configured."""
    prices = {
        Plan.STARTER: settings.stripe_price_starter,
        Plan.PRO: settings.stripe_price_pro,
        Plan.BUSINESS: settings.stripe_price_business,
    }
    return {plan: price for plan, price in prices.items() if price}


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
    _require_configured(settings)
    price = plan_prices(settings).get(plan)
    if price is None:
        raise ServiceUnavailable(f"{NOT_CONFIGURED} for the {plan.name} plan")
    # Serialise a user's billing requests: one customer, one decision.
    user = await _locked_user(session, user.id)
    if user.plan == plan.value:
        raise Conflict(f"You are already on the {plan.name} plan")
    if user.stripe_subscription_id and user.subscription_status in PAID_STATUSES:
        raise Conflict(
            "You already have a subscription: change or cancel it in the billing portal "
            "(POST /api/v1/billing/portal)"
        )
    async with _stripe_client(settings) as client:
        customer_id = user.stripe_customer_id or await _create_customer(session, client, user)
        try:
            checkout = await _create_checkout(client, settings, user, plan, price, customer_id)
        except _StripeResourceMissing as missing:
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
    _require_configured(settings)
    if not user.stripe_customer_id:
        raise Conflict(
            "You have no billing account yet: subscribe to a plan first "
            "(POST /api/v1/billing/checkout)"
        )
    async with _stripe_client(settings) as client:
        try:
            portal = await _call(
                client.v1.billing_portal.sessions.create_async(
                    params={
                        "customer": user.stripe_customer_id,
                        "return_url": settings.billing_portal_return_url,
                    },
                    options={"idempotency_key": f"portal:{user.id}:{uuid.uuid4().hex}"},
                )
            )
        except _StripeResourceMissing as missing:
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
    customer = await _call(
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
    return await _call(
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


# --- webhooks ---------------------------------------------------------------------------


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
    if not secret or not billing_configured(settings):
        raise ServiceUnavailable(NOT_CONFIGURED)
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
    user = await _locked_user(session, user.id)
    if customer_id is not None and user.stripe_customer_id is None:
        # A checkout whose customer Stripe made itself (found by our user id): remember it.
        user.stripe_customer_id = customer_id
        await session.flush()
    if subscription_id is None:
        return _result(event_id, event_type, WebhookOutcome.NO_SUBSCRIPTION)
    async with _stripe_client(settings) as client:
        try:
            subscription = await _call(client.v1.subscriptions.retrieve_async(subscription_id))
        except _StripeResourceMissing:
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
    await change_plan(
        session,
        user,
        target,
        source=PlanSource.STRIPE,
        details={"stripe_event_id": event_id, "subscription_id": subscription_id},
        now=now,
    )
    return WebhookOutcome.PLAN_CHANGED


def _plan_of(subscription: Mapping[str, Any], settings: Settings) -> Plan | None:
    """The highest configured plan among the subscription's prices."""
    by_price = {price: plan for plan, price in plan_prices(settings).items()}
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


# --- plan changes -----------------------------------------------------------------------


async def change_plan(
    session: AsyncSession,
    user: User,
    plan: Plan,
    *,
    source: PlanSource,
    actor_id: uuid.UUID | None = None,
    details: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> PlanChange:
    """Put the user on `plan`: the one way a plan changes.

    A higher plan's limits apply at once. To fit a lower plan, the newest active searches
    beyond its limit are paused, and the remaining ones lose the marketplaces beyond its
    limit (the first ones are kept) and are checked no more often than it allows. Nothing
    is deleted. The user is told (email and in-app) and the change is audited. Changing
    to the current plan does nothing.
    """
    plan = Plan(plan)
    now = now or utcnow()
    user = await _locked_user(session, user.id)
    previous = user.plan
    if previous == plan.value:
        return PlanChange(user.id, previous, previous)
    user.plan = plan.value
    paused, adjusted = await _fit_searches(session, user.id, plan, now)
    audit = AuditLog(
        id=new_id(),
        actor_id=actor_id,
        user_id=user.id,
        action=PLAN_CHANGED,
        details={
            "from": previous,
            "to": plan.value,
            "source": source.value,
            "paused_searches": [str(search.id) for search in paused],
            "adjusted_searches": [str(search.id) for search in adjusted],
            **(details or {}),
        },
        created_at=now,
    )
    session.add(audit)
    change = PlanChange(user.id, previous, plan.value, paused, adjusted)
    # Keyed by the audit row: one notice per change, written in the same transaction.
    await outbox.enqueue_notice(
        session,
        user_id=user.id,
        key=f"{PLAN_CHANGED}:{audit.id}",
        subject=f"Your plan is now {plan.name}",
        text=_plan_change_text(change),
        now=now,
    )
    await session.flush()
    logger.info(
        "plan of user %s changed from %s to %s by %s", user.id, previous, plan.value, source
    )
    return change


async def admin_set_plan(
    session: AsyncSession,
    user_id: uuid.UUID,
    plan: Plan,
    *,
    actor_id: uuid.UUID | None,
    source: PlanSource,
    reason: str | None = None,
) -> PlanChange:
    """Set a user's plan by hand (support cases), audited with the actor and reason.

    A later Stripe event about the user's subscription sets the plan from Stripe again.
    Raises NotFound for an unknown user.
    """
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("User not found")
    details = {"reason": reason} if reason else None
    return await change_plan(session, user, plan, source=source, actor_id=actor_id, details=details)


async def _fit_searches(
    session: AsyncSession, owner_id: uuid.UUID, plan: Plan, now: datetime
) -> tuple[list[Search], list[Search]]:
    """Pause and adjust the owner's active searches to the plan's limits."""
    limits = plans.limits_for(plan)
    active = list(
        await session.scalars(
            select(Search)
            .where(Search.owner_id == owner_id, Search.is_active.is_(True))
            .order_by(Search.created_at.desc(), Search.id.desc())
        )
    )
    excess = (
        max(0, len(active) - limits.max_active_searches)
        if limits.max_active_searches is not None
        else 0
    )
    paused, kept = active[:excess], active[excess:]
    for search in paused:
        search.is_active = False
        search.paused_at = now
        search.paused_reason = f"Paused: over the {plan.name} plan's limit"
        search.next_check_at = None
        search.updated_at = now
    adjusted: list[Search] = []
    for search in kept:
        changed = False
        if len(search.marketplaces) > limits.max_marketplaces_per_search:
            search.marketplaces = list(search.marketplaces[: limits.max_marketplaces_per_search])
            changed = True
        if search.check_frequency_minutes < limits.min_check_frequency_minutes:
            search.check_frequency_minutes = limits.min_check_frequency_minutes
            if search.last_checked_at is not None:
                search.next_check_at = search.last_checked_at + timedelta(
                    minutes=search.check_frequency_minutes
                )
            changed = True
        if changed:
            search.updated_at = now
            adjusted.append(search)
    await session.flush()
    return paused, adjusted


def _plan_change_text(change: PlanChange) -> str:
    plan = Plan(change.plan)
    limits = plans.limits_for(plan)
    searches = (
        "unlimited active searches"
        if limits.max_active_searches is None
        else f"{limits.max_active_searches} active searches"
    )
    lines = [
        f"Your Marketplace Monitor plan changed from {Plan(change.previous_plan).name} to "
        f"{plan.name}: {searches}, {limits.max_marketplaces_per_search} marketplace(s) per "
        f"search, checks at most every {limits.min_check_frequency_minutes} minutes."
    ]
    if change.paused:
        names = ", ".join(f"'{search.name}'" for search in change.paused)
        lines.append(f"To fit it we paused your newest searches: {names}.")
    if change.adjusted:
        names = ", ".join(f"'{search.name}'" for search in change.adjusted)
        lines.append(f"We reduced the marketplaces or the check frequency of: {names}.")
    if change.paused or change.adjusted:
        lines.append(
            "Nothing was deleted: after an upgrade you can resume paused searches and widen "
            "the others again."
        )
    return "\n\n".join(lines)


# --- shared -----------------------------------------------------------------------------


def _require_configured(settings: Settings) -> None:
    if not billing_configured(settings):
        raise ServiceUnavailable(NOT_CONFIGURED)


async def _locked_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    """The user row, locked for this transaction and freshly read.

    A no-op UPDATE takes PostgreSQL's row lock and SQLite's write lock (as searches do
    before counting), so billing changes and plan-limited writes of one user serialise.
    """
    await session.execute(
        update(User)
        .where(User.id == user_id)
        .values(updated_at=User.updated_at)
        .execution_options(synchronize_session=False)
    )
    user = await session.scalar(
        select(User).where(User.id == user_id).execution_options(populate_existing=True)
    )
    if user is None:
        raise NotFound("User not found")
    return user


class _StripeResourceMissing(Exception):
    """Stripe answered resource_missing; `param` names what is missing."""

    def __init__(self, param: str | None) -> None:
        super().__init__(param)
        self.param = param


class _StripeHTTPClient(stripe.HTTPClient):
    """The stripe library's HTTP interface on httpx. (Its bundled httpx client posts the
    encoded form as `data=`, which httpx deprecates; this one sends it as `content`.)
    The library's own retry loop calls `request_async` and `sleep_async`."""

    name = "httpx"

    def __init__(self, *, timeout_s: float) -> None:
        super().__init__()
        self._http = httpx.AsyncClient(timeout=timeout_s)

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        try:
            response = await self._http.request(
                method, url, headers=dict(headers), content=post_data or None
            )
        except httpx.HTTPError as exc:
            raise stripe.APIConnectionError(  # type: ignore[no-untyped-call]
                f"Could not reach Stripe ({type(exc).__name__})", should_retry=True
            ) from exc
        return response.content, response.status_code, response.headers

    async def close_async(self) -> None:
        await self._http.aclose()

    def sleep_async(self, secs: float) -> Awaitable[None]:
        return asyncio.sleep(secs)


@asynccontextmanager
async def _stripe_client(settings: Settings) -> AsyncIterator[stripe.StripeClient]:
    # One HTTP client per use: billing calls are rare, and a client never outlives the
    # event loop it was made on.
    http_client = _StripeHTTPClient(timeout_s=STRIPE_TIMEOUT_S)
    client = stripe.StripeClient(
        settings.stripe_secret_key.get_secret_value(),
        base_addresses={"api": settings.stripe_api_base},
        http_client=http_client,
        max_network_retries=STRIPE_NETWORK_RETRIES,
    )
    try:
        yield client
    finally:
        await http_client.close_async()


async def _call(request: Awaitable[T]) -> T:
    """Await a Stripe request; its failures become domain errors (503: the user cannot fix
    them) except resource_missing, which callers decide about."""
    try:
        return await request
    except stripe.InvalidRequestError as exc:
        if exc.code == "resource_missing":
            raise _StripeResourceMissing(exc.param) from exc
        logger.error("Stripe refused a request: %s", exc)
        raise ServiceUnavailable(
            "Stripe refused the request; the server's billing settings may be wrong"
        ) from exc
    except (stripe.AuthenticationError, stripe.PermissionError) as exc:
        logger.error("Stripe refused the API key: %s", exc)
        raise ServiceUnavailable(f"{MISCONFIGURED}: Stripe refused its API key") from exc
    except stripe.RateLimitError as exc:
        raise ServiceUnavailable(
            "Stripe is receiving too many requests; try again in a minute"
        ) from exc
    except stripe.StripeError as exc:
        logger.warning("Stripe request failed: %s", exc)
        raise ServiceUnavailable("Stripe could not be reached; try again shortly") from exc
