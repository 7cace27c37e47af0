"""Plan and billing: limits and usage, upgrade through Stripe Checkout and manage through
the Billing Portal (both only when this server has Stripe set up)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from app.api.deps import SessionDep, SettingsDep
from app.errors import InvalidInput
from app.schemas.billing import CheckoutIn
from app.services import billing, users
from app.web import forms
from app.web.render import render
from app.web.session import CheckedForm, WebUser

router = APIRouter()


@router.get("/billing", name="billing")
async def billing_page(
    request: Request, session: SessionDep, user: WebUser, settings: SettingsDep
) -> Response:
    return render(
        request,
        "billing.html",
        status=billing.status(user, settings),
        limits=await users.limits(session, user),
    )


@router.post("/billing/checkout", name="checkout")
async def start_checkout(
    form: CheckedForm, session: SessionDep, user: WebUser, settings: SettingsDep
) -> Response:
    try:
        plan = CheckoutIn.model_validate({"plan": forms.text(form, "plan")}).plan
    except ValidationError as exc:
        raise InvalidInput("Choose one of the paid plans") from exc
    url = await billing.start_checkout(session, settings, user=user, plan=plan)
    return RedirectResponse(url, status_code=303)


@router.post("/billing/portal", name="billing_portal")
async def open_portal(
    _form: CheckedForm, session: SessionDep, user: WebUser, settings: SettingsDep
) -> Response:
    url = await billing.open_portal(session, settings, user=user)
    return RedirectResponse(url, status_code=303)
