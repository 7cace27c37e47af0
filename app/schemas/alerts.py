"""Alert feed and delivery log bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, model_validator

from app.models.enums import AlertChannel, AlertKind, AlertStatus
from app.schemas.common import MAX_PAGE_SIZE, InputModel, OutputModel


class AlertFilters(BaseModel):
    channel: AlertChannel | None = None
    status: AlertStatus | None = None
    kind: AlertKind | None = None
    search_id: uuid.UUID | None = None
    limit: int = Field(default=20, ge=1, le=MAX_PAGE_SIZE)
    offset: int = Field(default=0, ge=0, le=1_000_000)


class AlertListing(BaseModel):
    title: str
    url: str
    marketplace: str | None = None
    price: str | None = None
    previous_price: str | None = None
    currency: str | None = None
    image_url: str | None = None
    location: str | None = None


class AlertOut(OutputModel):
    """One alert as the user sees it: what it was about and how its delivery went (never a
    provider's raw response)."""

    id: uuid.UUID
    channel: str
    kind: str
    status: str
    attempts: int
    last_error: str | None
    subject: str | None = None
    text: str | None = None
    listings: list[AlertListing] = Field(default_factory=list)
    search_id: uuid.UUID | None
    listing_id: uuid.UUID | None
    created_at: datetime
    next_attempt_at: datetime | None
    sent_at: datetime | None

    @model_validator(mode="before")
    @classmethod
    def _from_payload(cls, data: Any) -> Any:
        payload = getattr(data, "payload", None)
        if payload is None:
            return data
        fields = {name: getattr(data, name) for name in cls.model_fields if hasattr(data, name)}
        listings = payload.get("listings") or ([payload] if payload.get("title") else [])
        return {
            **fields,
            "subject": payload.get("subject"),
            "text": payload.get("text"),
            "listings": [
                {k: v for k, v in item.items() if k in AlertListing.model_fields}
                for item in listings
            ],
        }


class UnreadAlerts(OutputModel):
    """Alerts that arrived since the alert log was last opened, each counted once however
    many channels it went out on."""

    unread: int


class TestAlertIn(InputModel):
    channel: AlertChannel


class TestAlertResult(BaseModel):
    delivered: bool
    alert: AlertOut
