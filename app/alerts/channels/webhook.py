"""The webhook channel: a signed JSON POST to the user's own URL (Standard Webhooks).

The body is serialised once and signed with every secret the user currently has (two
during a rotation). `webhook-id` is `msg_<alert id>`, the same on every retry, so
receivers can drop repeats; `webhook-timestamp` is fresh per attempt. The URL is sent
through `ssrf.post_json_safely` only: checked again now, dialled at the checked address,
redirects not followed. Only 2xx counts as delivered; 410 means "never call again".
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx

from app.alerts.channels.base import (
    AlertMessage,
    DeliveryResult,
    ListingInfo,
    Recipient,
    parse_retry_after,
)
from app.security import signing, ssrf

if TYPE_CHECKING:
    from app.config import Settings

DEFAULT_TIMEOUT_S = 15.0
USER_AGENT = "MarketplaceMonitor-Webhooks/1.0"

# AlertMessage.kind -> the payload's `type`.
EVENT_TYPES = {
    "new_listing": "listing.new",
    "price_drop": "listing.price_drop",
    "digest": "listings.digest",
    "test": "test",
    "system": "system",
}
_UNSAFE_SUFFIX = "; only public addresses are allowed"


class WebhookChannel:
    name = "webhook"

    def __init__(
        self,
        client: httpx.AsyncClient,
        policy: ssrf.URLPolicy,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        *,
        user_agent: str = USER_AGENT,
    ) -> None:
        if client.trust_env:
            # A proxy taken from the environment would resolve and connect on its own,
            # around every address check.
            raise ValueError("The webhook channel needs an httpx client with trust_env=False")
        self.client = client
        self.policy = policy
        self.timeout_s = timeout_s
        self.user_agent = user_agent

    @classmethod
    def from_settings(
        cls, client: httpx.AsyncClient, settings: Settings, resolve: ssrf.Resolver
    ) -> WebhookChannel:
        """The channel under the same URL policy the API applies when a URL is saved."""
        policy = ssrf.URLPolicy(
            resolve=resolve, allow_http=settings.debug, allow_loopback=settings.ssrf_allow_loopback
        )
        return cls(client, policy, timeout_s=settings.webhook_timeout_s)

    def is_configured(self) -> bool:
        return True  # needs nothing from the server's side

    def can_reach(self, recipient: Recipient) -> bool:
        return bool(recipient.webhook_url and recipient.webhook_secrets)

    async def send(self, recipient: Recipient, message: AlertMessage) -> DeliveryResult:
        """POST the signed message once; never raises for endpoint or network failures."""
        if not recipient.webhook_url:
            return DeliveryResult.permanent("no webhook URL set")
        if not recipient.webhook_secrets:
            return DeliveryResult.permanent("no webhook signing secret set")
        body = payload_bytes(message, now=datetime.now(UTC))
        msg_id = f"msg_{message.alert_id}"
        try:
            signature_headers = signing.headers(
                recipient.webhook_secrets, msg_id, int(time.time()), body
            )
        except ValueError:
            return DeliveryResult.permanent("the webhook signing secret is invalid")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": self.user_agent,
            **signature_headers,
        }
        try:
            response = await ssrf.post_json_safely(
                self.client,
                recipient.webhook_url,
                body,
                headers,
                policy=self.policy,
                timeout_s=self.timeout_s,
            )
        except ssrf.UnsafeURL as exc:
            return DeliveryResult.permanent(f"refused: {exc.detail.removesuffix(_UNSAFE_SUFFIX)}")
        except httpx.TimeoutException:
            return DeliveryResult.retry(f"timed out after {self.timeout_s:g} s")
        except httpx.ConnectError:
            return DeliveryResult.retry("could not connect")
        except httpx.TransportError:
            return DeliveryResult.retry("the connection broke before an answer")
        return _result(response)


def payload(message: AlertMessage, *, now: datetime) -> dict[str, Any]:
    """The JSON document a webhook receives for `message`, stamped with `now`."""
    # `url` opens the search in the dashboard, for a person reading what the receiver shows.
    search = (
        {"id": str(message.search_id), "name": message.search_name, "url": message.manage_url}
        if message.search_id is not None
        else None
    )
    return {
        "type": EVENT_TYPES.get(message.kind, "system"),
        "timestamp": now.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "data": {
            "search": search,
            "listings": [_listing(listing) for listing in message.listings],
            "more_count": message.more_count,
            "text": message.text,
        },
    }


def payload_bytes(message: AlertMessage, *, now: datetime) -> bytes:
    """`payload` serialised once, compactly: these exact bytes are signed and sent."""
    document = payload(message, now=now)
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _listing(listing: ListingInfo) -> dict[str, str | None]:
    return {
        "title": listing.title,
        "price": listing.price,
        "currency": listing.currency,
        "previous_price": listing.previous_price,
        "url": listing.url,
        "image_url": listing.image_url,
        "location": listing.location,
        "marketplace": listing.marketplace,
    }


def _result(response: ssrf.SafeResponse) -> DeliveryResult:
    """Judge the endpoint's answer; the error names the status only, never the body."""
    status = response.status_code
    if response.is_success:
        return DeliveryResult.delivered()
    if status == 410:
        return DeliveryResult.gone("HTTP 410: the endpoint asked not to be called again")
    error = f"HTTP {status}"
    if 300 <= status < 400:
        error += " (redirects are not followed)"
    # Everything else may be passing (a deploy, a full queue, a misrouted proxy): retry.
    return DeliveryResult.retry(
        error, retry_after_s=parse_retry_after(response.headers.get("retry-after"))
    )
