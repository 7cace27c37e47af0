"""Routes of /api/v1/billing: the signed-in user's plan, Stripe Checkout and Billing Portal."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.api.deps import CurrentUser, SessionDep, SettingsDep
from app.schemas.billing import BillingStatusOut, CheckoutIn, RedirectOut
from app.services import billing

router = APIRouter(prefix="/billing", tags=["billing"])

_AUTH: dict[int | str, dict[str, Any]] = {401: {"description": "Missing or invalid token"}}
_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"description": "Billing is not configured on this server, or Stripe is unavailable"}
}


@router.get("/", response_model=BillingStatusOut, responses=_AUTH)
async def read_billing(user: CurrentUser, settings: SettingsDep) -> BillingStatusOut:
    """Your plan, your subscription's status and period end, and what can be bought here."""
    return BillingStatusOut.model_validate(billing.status(user, settings))


@router.post(
    "/checkout",
    response_model=RedirectOut,
    responses={
        **_AUTH,
        409: {"description": "Already on that plan, or already subscribed (use the portal)"},
        422: {"description": "Unknown plan, or the free plan"},
        **_UNAVAILABLE,
    },
)
async def start_checkout(
    body: CheckoutIn, session: SessionDep, user: CurrentUser, settings: SettingsDep
) -> RedirectOut:
    """A Stripe Checkout page for a paid plan. The plan changes once Stripe confirms the
    subscription."""
    url = await billing.start_checkout(session, settings, user=user, plan=body.plan)
    return RedirectOut(url=url)


@router.post(
    "/portal",
    response_model=RedirectOut,
    responses={
        **_AUTH,
        409: {"description": "No billing account yet: subscribe with checkout first"},
        **_UNAVAILABLE,
    },
)
async def open_portal(session: SessionDep, user: CurrentUser, settings: SettingsDep) -> RedirectOut:
    """A Stripe Billing Portal page to change or cancel the subscription and update
    payment details."""
    url = await billing.open_portal(session, settings, user=user)
    return RedirectOut(url=url)
