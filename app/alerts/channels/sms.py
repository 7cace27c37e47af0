"""The SMS channel: Twilio's Messages API, one short text per alert.

Wire format: `external-apis.md` section 4 (form-encoded POST, Basic `AccountSid:AuthToken`,
201 with the message `sid`). The text is made here from the AlertMessage and kept within
one 160-character segment where the link allows; the glue between fields sticks to the
GSM-7 alphabet, since one character outside it halves the segment to 70.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from app.alerts.channels.base import (
    AlertMessage,
    DeliveryResult,
    ListingInfo,
    Recipient,
    parse_retry_after,
)

if TYPE_CHECKING:
    from app.config import Settings

DEFAULT_BASE_URL = "https://api.twilio.com"
DEFAULT_TIMEOUT_S = 15.0
CONNECT_TIMEOUT_S = 5.0
SMS_CHARS = 160
MAX_BODY_CHARS = 1600  # Twilio refuses longer bodies (21617)
MIN_TITLE_CHARS = 12
DIGEST_TITLE_CHARS = 28
MAX_LOCATION_CHARS = 30
MAX_SEARCH_NAME_CHARS = 30
E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")

CURRENCY_SYMBOLS = {"GBP": "£", "EUR": "€", "USD": "$", "AUD": "A$", "CAD": "C$"}
# Twilio error code -> what the user is told; every one of them will fail again as is.
PERMANENT_ERRORS = {
    21211: "invalid phone number",
    21408: "SMS to this country is not enabled",
    21606: "the sending number cannot send SMS",
    21608: "the number is not verified for this trial account",
    21610: "the number has opted out of SMS (replied STOP)",
    21614: "the number cannot receive SMS (not a mobile number)",
}
RATE_LIMITED = 20429
AUTHENTICATION_FAILED = 20003


class SmsChannel:
    name = "sms"
    setup_hint = "TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_FROM_NUMBER"

    def __init__(
        self,
        client: httpx.AsyncClient,
        account_sid: str,
        auth_token: str,
        from_number: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.client = client
        self.account_sid = account_sid
        self._auth_token = auth_token
        self.from_number = from_number
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    @classmethod
    def from_settings(cls, client: httpx.AsyncClient, settings: Settings) -> SmsChannel:
        """The channel as configured by TWILIO_* settings (built even without credentials)."""
        return cls(
            client,
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token.get_secret_value(),
            from_number=settings.twilio_from_number,
            base_url=settings.twilio_base_url,
        )

    def is_configured(self) -> bool:
        return bool(self.account_sid and self._auth_token and self.from_number)

    def can_reach(self, recipient: Recipient) -> bool:
        return bool(recipient.phone_number)

    async def send(self, recipient: Recipient, message: AlertMessage) -> DeliveryResult:
        """Ask Twilio to send the text once; never raises for provider or network failures.

        Twilio takes no idempotency key, so a repeat after an accepted send is a second
        SMS: the caller should record `delivered` as soon as this returns.
        """
        if not self.is_configured():
            return DeliveryResult.permanent("SMS is not configured on this server")
        phone = recipient.phone_number
        if not phone:
            return DeliveryResult.permanent("no phone number set")
        return await self.send_text(phone, sms_text(message))

    async def send_text(self, phone: str, text: str) -> DeliveryResult:
        """Ask Twilio to send `text`, as it is, to `phone` (E.164) once: for texts that are
        not alerts, such as a verification code. Never raises for provider or network
        failures; the same results as `send`."""
        if not self.is_configured():
            return DeliveryResult.permanent("SMS is not configured on this server")
        if not E164.match(phone):
            return DeliveryResult.permanent("the phone number is not in +<country><number> form")
        account = quote(self.account_sid, safe="")
        url = f"{self.base_url}/2010-04-01/Accounts/{account}/Messages.json"
        form = {"To": phone, "From": self.from_number, "Body": text}
        try:
            response = await self.client.post(
                url,
                data=form,
                auth=httpx.BasicAuth(self.account_sid, self._auth_token),
                headers={"Accept": "application/json"},
                timeout=httpx.Timeout(
                    self.timeout_s, connect=min(CONNECT_TIMEOUT_S, self.timeout_s)
                ),
                follow_redirects=False,
            )
        except httpx.TimeoutException:
            return DeliveryResult.retry(f"timed out after {self.timeout_s:g} s")
        except httpx.TransportError:
            return DeliveryResult.retry("could not reach Twilio")
        return _result(response)


def sms_text(message: AlertMessage, *, limit: int = SMS_CHARS) -> str:
    """The SMS body for `message`: within `limit` characters unless a link alone is longer.

    One listing: "New: £45 Canon 50mm f/1.8 - Leeds <url>" (price drops show the old price).
    Several: "12 new matches for 'canon': £45 Canon 50mm; £30 Nikon... +10 more <link>".
    """
    if message.kind in ("test", "system") or not message.listings:
        return _fit(" ".join((message.text or message.subject).split()), limit)
    if len(message.listings) == 1 and message.more_count == 0:
        return _single(message.listings[0], price_drop=message.kind == "price_drop", limit=limit)
    return _digest(message, limit=limit)


def _single(listing: ListingInfo, *, price_drop: bool, limit: int) -> str:
    price = _money(listing.price, listing.currency)
    if price and price_drop and listing.previous_price:
        price += f" (was {_money(listing.previous_price, listing.currency)})"
    head = ("Price drop: " if price_drop else "New: ") + (f"{price} " if price else "")
    tail = f" {listing.url}"
    location = _fit(listing.location or "", MAX_LOCATION_CHARS)
    # The link is never cut; the location goes before the title is cut below its minimum.
    if location and limit - len(head) - len(tail) - len(location) - 3 >= MIN_TITLE_CHARS:
        tail = f" - {location}{tail}"
    budget = max(limit - len(head) - len(tail), MIN_TITLE_CHARS)
    return _cap(head + _fit(listing.title, budget) + tail)


def _digest(message: AlertMessage, *, limit: int) -> str:
    total = len(message.listings) + message.more_count
    name = _fit(message.search_name or "your search", MAX_SEARCH_NAME_CHARS)
    noun = "match" if total == 1 else "matches"
    header = f"{total} new {noun} for '{name}':"
    link = f" {message.manage_url}" if message.manage_url else ""
    items = [_digest_item(listing) for listing in message.listings]
    shown: list[str] = []
    for item in items:
        candidate = [*shown, item]
        if shown and len(_digest_text(header, candidate, total, link)) > limit:
            break
        shown = candidate
    if len(_digest_text(header, shown, total, link)) > limit:
        # Even one listing does not fit: shorten it rather than send a second segment.
        spare = len(_digest_text(header, shown, total, link)) - limit
        shown = [_fit(shown[0], max(MIN_TITLE_CHARS, len(shown[0]) - spare))]
    return _cap(_digest_text(header, shown, total, link))


def _digest_item(listing: ListingInfo) -> str:
    price = _money(listing.price, listing.currency)
    title = _fit(listing.title, DIGEST_TITLE_CHARS)
    return f"{price} {title}" if price else title


def _digest_text(header: str, shown: list[str], total: int, link: str) -> str:
    more = total - len(shown)
    return f"{header} {'; '.join(shown)}" + (f" +{more} more" if more > 0 else "") + link


def _money(amount: str | None, currency: str | None) -> str:
    if not amount:
        return ""
    try:
        value = Decimal(amount)
    except InvalidOperation:
        text = amount
    else:
        text = f"{value:.0f}" if value == value.to_integral_value() else f"{value:.2f}"
    code = (currency or "").upper()
    symbol = CURRENCY_SYMBOLS.get(code)
    if symbol is not None:
        return f"{symbol}{text}"
    return f"{text} {code}" if code else text


def _fit(text: str, width: int) -> str:
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    if width < 4:
        return text[:width]
    return text[: width - 3].rstrip() + "..."


def _cap(text: str) -> str:
    return text[:MAX_BODY_CHARS]


def _result(response: httpx.Response) -> DeliveryResult:
    """Judge Twilio's answer; the error is a short reason with Twilio's code, never its text."""
    status = response.status_code
    document = _json_object(response)
    if 200 <= status < 300:
        sid = document.get("sid")
        return DeliveryResult.delivered(sid if isinstance(sid, str) else None)
    raw_code = document.get("code")
    code = raw_code if isinstance(raw_code, int) else None
    retry_after_s = parse_retry_after(response.headers.get("retry-after"))
    if status == 429 or code == RATE_LIMITED:
        return DeliveryResult.retry(
            f"Twilio is rate limiting (HTTP {status})", retry_after_s=retry_after_s
        )
    if status >= 500 or status == 408:
        return DeliveryResult.retry(f"Twilio HTTP {status}", retry_after_s=retry_after_s)
    if status in (401, 403) or code == AUTHENTICATION_FAILED:
        return DeliveryResult.misconfigured(
            f"Twilio refused the account credentials (HTTP {status})"
        )
    if code in PERMANENT_ERRORS:
        return DeliveryResult.permanent(f"{PERMANENT_ERRORS[code]} (Twilio {code})")
    if status < 400:
        # A redirect or an odd 1xx/3xx: a proxy or base URL problem, not the recipient.
        return DeliveryResult.retry(f"Twilio HTTP {status}")
    detail = f", error {code}" if code is not None else ""
    return DeliveryResult.permanent(f"Twilio HTTP {status}{detail}")


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        document = response.json()
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}
