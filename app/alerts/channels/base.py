"""What every alert channel takes and returns: plain data, no database.

A channel turns one `AlertMessage` for one `Recipient` into one provider call and reports a
`DeliveryResult`: delivered, retry later (429, 5xx, timeout), permanent (other 4xx, bad
address), gone (410: the endpoint asked never to be called again), or misconfigured (the
provider refused this server's own credentials: no fault of the user's, so the message
waits, undiminished, for the operator to fix the configuration).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from app.retry_after import parse_retry_after

__all__ = ["parse_retry_after"]  # channels import it from here


@dataclass(frozen=True)
class ListingInfo:
    title: str
    url: str
    marketplace: str
    price: str | None = None  # a decimal string, e.g. "349.99"
    currency: str | None = None
    previous_price: str | None = None  # set on price drops
    image_url: str | None = None
    location: str | None = None


@dataclass(frozen=True)
class AlertMessage:
    """One message to one user on one channel; it may carry several listings (a digest)."""

    alert_id: uuid.UUID  # the outbox row: Message-ID, webhook-id (msg_<id>), idempotency
    idempotency_key: str
    kind: str  # new_listing | price_drop | digest | test | system
    subject: str
    listings: tuple[ListingInfo, ...] = ()
    more_count: int = 0  # listings left out of a digest: "and K more"
    search_id: uuid.UUID | None = None
    search_name: str | None = None
    manage_url: str | None = None  # where the user manages the search
    # One-click link that stops this search's email alerts (List-Unsubscribe, RFC 8058).
    unsubscribe_url: str | None = None
    text: str | None = None  # the body of test and system messages


@dataclass(frozen=True)
class Recipient:
    user_id: uuid.UUID
    email: str
    full_name: str | None = None
    phone_number: str | None = None
    webhook_url: str | None = None
    # Every secret currently valid; during a rotation both sign each message.
    webhook_secrets: tuple[str, ...] = ()
    apprise_urls: tuple[str, ...] = field(default_factory=tuple)
    # Whether the owner proved the address and the number are theirs: nothing is sent to
    # one they have not (anyone can type someone else's address at sign-up).
    email_verified: bool = False
    phone_verified: bool = False


class DeliveryStatus(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    PERMANENT = "permanent"
    GONE = "gone"
    MISCONFIGURED = "misconfigured"


@dataclass(frozen=True)
class DeliveryResult:
    status: DeliveryStatus
    provider_message_id: str | None = None
    # Short and safe to show the user: a status and a reason, never a raw provider body.
    error: str | None = None
    retry_after_s: float | None = None

    @classmethod
    def delivered(cls, provider_message_id: str | None = None) -> DeliveryResult:
        return cls(DeliveryStatus.DELIVERED, provider_message_id=provider_message_id)

    @classmethod
    def retry(cls, error: str, *, retry_after_s: float | None = None) -> DeliveryResult:
        return cls(DeliveryStatus.RETRY, error=error, retry_after_s=retry_after_s)

    @classmethod
    def permanent(cls, error: str) -> DeliveryResult:
        return cls(DeliveryStatus.PERMANENT, error=error)

    @classmethod
    def gone(cls, error: str) -> DeliveryResult:
        return cls(DeliveryStatus.GONE, error=error)

    @classmethod
    def misconfigured(cls, error: str) -> DeliveryResult:
        return cls(DeliveryStatus.MISCONFIGURED, error=error)


class AlertChannelSender(Protocol):
    name: str

    def is_configured(self) -> bool:
        """Whether the server has what this channel needs (API keys, SMTP URL, ...)."""
        ...

    def can_reach(self, recipient: Recipient) -> bool:
        """Whether the recipient has set this channel up (a phone number, a URL, ...)."""
        ...

    async def send(self, recipient: Recipient, message: AlertMessage) -> DeliveryResult:
        """Deliver once. Never raises for provider or network failures: reports them."""
        ...
