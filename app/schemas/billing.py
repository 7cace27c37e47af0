"""Billing bodies: checkout, portal, the billing status, Stripe webhook receipts and the
administrators' plan override."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

from app.models.enums import Plan
from app.schemas.common import InputModel, OutputModel


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


class CheckoutIn(InputModel):
    """The paid plan to subscribe to."""

    plan: Plan

    _plan_case = field_validator("plan", mode="before")(_lower)


class RedirectOut(BaseModel):
    """A Stripe-hosted page to send the user to."""

    url: str


class BillingStatusOut(OutputModel):
    plan: str
    subscription_status: str | None
    current_period_end: datetime | None
    # False when this server has no Stripe key: everyone stays on the FREE plan.
    stripe_configured: bool
    has_billing_account: bool
    purchasable_plans: list[str]


class WebhookReceipt(BaseModel):
    received: bool = True
    event_id: str
    outcome: str


class AdminPlanIn(InputModel):
    plan: Plan
    reason: str | None = Field(default=None, max_length=500)

    _plan_case = field_validator("plan", mode="before")(_lower)


class PlanChangeOut(BaseModel):
    user_id: uuid.UUID
    previous_plan: str
    plan: str
    changed: bool
    paused_search_ids: list[uuid.UUID]
    adjusted_search_ids: list[uuid.UUID]

    @classmethod
    def of(cls, change: Any) -> PlanChangeOut:
        return cls(
            user_id=change.user_id,
            previous_plan=change.previous_plan,
            plan=change.plan,
            changed=change.changed,
            paused_search_ids=[search.id for search in change.paused],
            adjusted_search_ids=[search.id for search in change.adjusted],
        )
