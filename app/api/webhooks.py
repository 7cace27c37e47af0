"""Routes of /api/v1/webhooks: events from providers, verified by their signatures."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request

from app.api.deps import SessionDep, SettingsDep
from app.schemas.billing import WebhookReceipt
from app.services import billing

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


@router.post(
    "/stripe",
    response_model=WebhookReceipt,
    responses={
        400: {"description": "Missing, wrong or stale Stripe-Signature, or a malformed event"},
        503: {"description": "Webhooks not configured, or Stripe unreachable (Stripe retries)"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def stripe_webhook(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    stripe_signature: Annotated[str | None, Header()] = None,
) -> WebhookReceipt:
    """A Stripe event. The signature is checked on the raw body; each event id takes
    effect once, however often it is delivered."""
    result = await billing.handle_webhook(
        session, settings, payload=await request.body(), signature=stripe_signature
    )
    return WebhookReceipt(event_id=result.event_id, outcome=result.outcome.value)
