"""What every marketplace without an official API shares: polite fetching and page parsing.

`PageFetcher` sends browser-like requests with a descriptive User-Agent, gzip, timeouts and
an optional outbound proxy; it waits out 429/503 answers that name a short Retry-After and
turns longer ones into RateLimited, and a 403, a challenge page or a login redirect into
Blocked. The parsers read the prices ("£1,250", "12,50 €", "Free") and relative times
("2 mins ago") that listing pages show, and `CardParser` parses a page card by card, so
one card the source changed cannot hide the others.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, TypeVar

import httpx
from selectolax.lexbor import LexborHTMLParser

from app import metrics
from app.marketplaces.base import (
    Blocked,
    Listing,
    MarketplaceError,
    PageLayoutChanged,
    Query,
    RateLimited,
)
from app.retry_after import parse_retry_after

if TYPE_CHECKING:
    from app.config import Settings

logger = logging.getLogger(__name__)

HTML_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
JSON_ACCEPT = "application/json, text/plain, */*"
# httpx decodes these itself; "br" would need an extra package to read.
ACCEPT_ENCODING = "gzip, deflate"
MAX_KEYWORD_QUERIES = 5
MONEY_LIMIT = Decimal(10) ** 10  # what the listings table's Numeric(12, 2) can hold

T = TypeVar("T")


@dataclass(frozen=True)
class FetchPolicy:
    """How politely and how long to ask: one value for every scraped marketplace."""

    user_agent: str
    accept_language: str = "en-GB,en;q=0.9"
    timeout_s: float = 15.0
    # 429/503 answers retried within one check, and the longest Retry-After waited out;
    # beyond either the check fails as RateLimited and the search backs off.
    max_retries: int = 2
    max_retry_wait_s: float = 10.0
    backoff_s: float = 1.0

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchPolicy:
        return cls(
            user_agent=settings.scraper_user_agent,
            timeout_s=settings.scraper_timeout_s,
            max_retries=settings.scraper_max_retries,
            max_retry_wait_s=settings.scraper_max_retry_wait_s,
        )


class PageFetcher:
    """GET requests to one marketplace, with its headers, retries and block detection."""

    def __init__(
        self,
        site: str,
        client: httpx.AsyncClient,
        policy: FetchPolicy,
        *,
        owns_client: bool = False,
    ) -> None:
        self.site = site
        self.client = client
        self.policy = policy
        self._owns_client = owns_client

    @classmethod
    def for_marketplace(
        cls,
        site: str,
        shared_client: httpx.AsyncClient,
        settings: Settings,
        *,
        proxy_url: str,
        user_agent: str | None = None,
    ) -> PageFetcher:
        """The shared client, or a client of its own when the marketplace goes via a proxy
        (`proxy_url`, else HTTP_PROXY_URL)."""
        policy = FetchPolicy.from_settings(settings)
        if user_agent:
            policy = replace(policy, user_agent=user_agent)
        proxy_url = proxy_url or settings.http_proxy_url
        if not proxy_url:
            return cls(site, shared_client, policy)
        client = httpx.AsyncClient(
            proxy=proxy_url,
            # Only the configured proxy, never one from the environment.
            trust_env=False,
            follow_redirects=False,
            timeout=httpx.Timeout(policy.timeout_s, connect=min(5.0, policy.timeout_s)),
            limits=httpx.Limits(max_connections=10),
        )
        return cls(site, client, policy, owns_client=True)

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()

    def headers(self, accept: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {
            "User-Agent": self.policy.user_agent,
            "Accept": accept,
            "Accept-Language": self.policy.accept_language,
            "Accept-Encoding": ACCEPT_ENCODING,
            **(extra or {}),
        }

    async def get(
        self,
        url: str,
        *,
        params: Mapping[str, str | Sequence[str]] | None = None,
        accept: str = HTML_ACCEPT,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """The answer to a GET, redirects followed. Statuses below 500 other than 403 and
        429 come back for the caller to judge.

        Raises Blocked (403, a challenge page with 503, a redirect to a login page),
        RateLimited (429/503 still refused after the retries, or asking for a longer wait
        than `max_retry_wait_s`), MarketplaceError (5xx after retries, timeout, no
        connection).
        """
        request_headers = self.headers(accept, headers)
        for attempt in range(self.policy.max_retries + 1):
            response = await self._send(url, params, request_headers)
            status = response.status_code
            if _is_login_redirect(response):
                raise Blocked(f"redirected to a login page, {response.url.path}")
            if status == httpx.codes.FORBIDDEN:
                reason = block_reason(response.text)
                raise Blocked(f"HTTP 403, {reason}" if reason else "HTTP 403")
            if status == httpx.codes.SERVICE_UNAVAILABLE:
                reason = block_reason(response.text)
                if reason:
                    raise Blocked(f"HTTP 503, {reason}")
            is_throttled = status in (
                httpx.codes.TOO_MANY_REQUESTS,
                httpx.codes.SERVICE_UNAVAILABLE,
            )
            if status < 500 and not is_throttled:
                return response
            wait_s = parse_retry_after(response.headers.get("Retry-After"))
            can_wait = wait_s is None or wait_s <= self.policy.max_retry_wait_s
            if attempt < self.policy.max_retries and can_wait:
                delay_s = wait_s if wait_s is not None else self.policy.backoff_s * 2**attempt
                logger.info("%s answered %s; retrying in %.2f s", self.site, status, delay_s)
                await asyncio.sleep(delay_s)
                continue
            if is_throttled:
                raise RateLimited(f"{self.site} answered {status}", retry_after_s=wait_s)
            raise MarketplaceError(f"{self.site} answered {status}")
        raise AssertionError("unreachable")  # pragma: no cover

    async def get_json(
        self,
        url: str,
        *,
        params: Mapping[str, str | Sequence[str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[httpx.Response, object]:
        """`get` asking for JSON: (response, decoded body, or None when it is not JSON).
        A 200 HTML page where JSON was expected is checked for a block first."""
        response = await self.get(url, params=params, accept=JSON_ACCEPT, headers=headers)
        try:
            return response, response.json()
        except ValueError:
            if response.status_code == httpx.codes.OK:
                reason = block_reason(response.text)
                if reason:
                    raise Blocked(reason) from None
            return response, None

    async def _send(
        self, url: str, params: Mapping[str, str | Sequence[str]] | None, headers: dict[str, str]
    ) -> httpx.Response:
        try:
            return await self.client.get(
                url,
                params=params,
                headers=headers,
                timeout=self.policy.timeout_s,
                follow_redirects=True,
            )
        except httpx.TimeoutException as exc:
            raise MarketplaceError(
                f"{self.site} did not answer within {self.policy.timeout_s:g} s"
            ) from exc
        except httpx.HTTPError as exc:
            raise MarketplaceError(f"could not reach {self.site} ({type(exc).__name__})") from exc


def unexpected_status(site: str, response: httpx.Response) -> MarketplaceError:
    return MarketplaceError(f"{site} answered {response.status_code}")


# --- block pages ----------------------------------------------------------------------

# Lower-case phrases of the pages served instead of results. Only consulted when a page
# has no listings (or with 403/503): a normal page may well load a CAPTCHA script.
_BLOCK_MARKERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "a bot challenge page",
        ("cf-chl", "challenge-platform", "just a moment...", "checking your browser"),
    ),
    (
        "a CAPTCHA page",
        ("captcha", "are you a robot", "verify you are human", "unusual traffic"),
    ),
    (
        "an access-denied page",
        ("access denied", "request blocked", "you have been blocked", "pardon our interruption"),
    ),
    (
        "a login wall",
        ("log in to continue", "sign in to continue", "please log in", "login required"),
    ),
)
_LOGIN_PATH = re.compile(r"/(?:log-?in|sign-?in|account/login|auth)(?:/|$|\?)", re.IGNORECASE)


def block_reason(page: str) -> str | None:
    """What kind of block page `page` is ("a CAPTCHA page", ...), or None."""
    text = page[:200_000].casefold()
    for reason, markers in _BLOCK_MARKERS:
        if any(marker in text for marker in markers):
            return reason
    return None


def page_without_listings(site: str, html: str, *, no_results_phrases: Sequence[str]) -> None:
    """Judge a page where no listing card was found: return when it says there are no
    results; raise Blocked for a block page, PageLayoutChanged for anything else (a page
    we can no longer read must not pass for an empty one)."""
    reason = block_reason(html)
    if reason:
        raise Blocked(reason)
    body = LexborHTMLParser(html).body
    text = " ".join((body.text(separator=" ") if body is not None else "").casefold().split())
    if not any(phrase in text for phrase in no_results_phrases):
        raise PageLayoutChanged(f"{site}: no listings and no 'no results' notice on the page")


def _is_login_redirect(response: httpx.Response) -> bool:
    return bool(response.history) and bool(_LOGIN_PATH.search(response.url.path))


# --- cards ----------------------------------------------------------------------------


class SiteAdapter:
    """What the adapters of sites without an API share: a card parser whose failures are
    counted, nothing to configure, and prices compared in the search's currency or else in
    the site's (`default_currency`)."""

    cards: CardParser
    default_currency: str = "GBP"

    @property
    def cards_failed(self) -> int:
        """Cards skipped because they did not parse, since the adapter was built."""
        return self.cards.cards_failed

    def is_configured(self) -> bool:
        return True

    def currency_for(self, query: Query) -> str:
        return query.currency.upper() if query.currency else self.default_currency


class CardError(ValueError):
    """A card lacks something every listing needs (an id, a title, a link)."""


# What a card that changed shape raises while being read; anything else is a bug.
CARD_PARSE_ERRORS = (ValueError, KeyError, IndexError, TypeError, AttributeError, ArithmeticError)


@dataclass
class CardParser:
    """Parses cards one by one and counts the ones that fail (exposed as `cards_failed`)."""

    site: str
    cards_failed: int = 0
    cards_parsed: int = 0

    def parse(self, cards: Sequence[T], parse_card: Callable[[T], Listing | None]) -> list[Listing]:
        """The listings of the cards that parse; a card for which `parse_card` returns None
        (a promoted ad) is left out on purpose. A card that raises is skipped, logged and
        counted; when every card of a non-empty page fails, PageLayoutChanged."""
        listings: list[Listing] = []
        failed = 0
        for index, card in enumerate(cards):
            try:
                listing = parse_card(card)
            except CARD_PARSE_ERRORS as exc:
                failed += 1
                logger.warning("%s: skipped card %d that did not parse: %r", self.site, index, exc)
                continue
            if listing is not None:
                listings.append(listing)
        self.cards_failed += failed
        self.cards_parsed += len(cards) - failed
        if failed:
            metrics.record_cards_skipped(self.site, failed)
        if cards and failed == len(cards):
            raise PageLayoutChanged(
                f"{self.site}: none of the {len(cards)} listings on the page could be read; "
                "the page layout may have changed"
            )
        return listings


def unique(listings: Iterable[Listing]) -> list[Listing]:
    """Each external id once, first occurrence kept (listings shift between pages)."""
    seen: set[str] = set()
    kept: list[Listing] = []
    for listing in listings:
        if listing.external_id not in seen:
            seen.add(listing.external_id)
            kept.append(listing)
    return kept


def keyword_terms(keywords: Sequence[str], *, limit: int = MAX_KEYWORD_QUERIES) -> list[str]:
    """Search terms for sites without an OR syntax: one per keyword, quotes dropped (the
    phrase is re-checked locally), at most `limit` (further keywords are still matched
    locally among what the first ones return)."""
    terms: list[str] = []
    for keyword in keywords:
        term = " ".join(keyword.replace('"', " ").split())
        if term and term not in terms:
            terms.append(term)
    return terms[:limit]


def absolute_url(base_url: str, href: str) -> str:
    """`href` as an absolute http(s) URL against the site's base URL; CardError if not one."""
    if href.startswith(("https://", "http://")):
        return href
    if href.startswith("//"):
        return "https:" + href
    if href.startswith("/"):
        return base_url.rstrip("/") + href
    raise CardError(f"not a link: {href[:80]!r}")


def clip(text: str | None, limit: int) -> str | None:
    """Whitespace collapsed and cut to the column's size; None when nothing is left."""
    if text is None:
        return None
    text = " ".join(text.split())
    return text[:limit] or None


# --- prices ---------------------------------------------------------------------------

_NUMBER = r"\d{1,3}(?:[,.'\u00a0\u202f]\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?"
# Before a suffixed currency a plain space groups thousands too ("1 250,00 €"); elsewhere
# it separates numbers ("$200 500GB").
_SPACED_NUMBER = r"\d{1,3}(?:[ ,.'\u00a0\u202f]\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?"
# Symbols and codes written before the amount ("£20", "US$ 5", "EUR 12") ...
_PREFIX_CURRENCIES = {
    "£": "GBP",
    "us$": "USD",
    "c$": "CAD",
    "ca$": "CAD",
    "a$": "AUD",
    "au$": "AUD",
    "$": "USD",
    "€": "EUR",
    "gbp": "GBP",
    "usd": "USD",
    "eur": "EUR",
    "cad": "CAD",
    "aud": "AUD",
    "chf": "CHF",
}
# ... and after it ("12,50 €", "100 zł", "250 Kč").
_SUFFIX_CURRENCIES = {
    "€": "EUR",
    "£": "GBP",
    "zł": "PLN",
    "kč": "CZK",
    "eur": "EUR",
    "gbp": "GBP",
    "usd": "USD",
    "pln": "PLN",
    "czk": "CZK",
    "sek": "SEK",
    "dkk": "DKK",
    "huf": "HUF",
    "ron": "RON",
    "chf": "CHF",
}


def _alternatives(symbols: Iterable[str]) -> str:
    # Longest first, so "us$" wins over "$".
    return "|".join(re.escape(s) for s in sorted(symbols, key=len, reverse=True))


_PREFIXED = re.compile(
    rf"(?<![a-z])(?P<cur>{_alternatives(_PREFIX_CURRENCIES)})\s*(?P<num>{_NUMBER})(?!\d)"
)
_SUFFIXED = re.compile(
    rf"(?<![\d.,])(?P<num>{_SPACED_NUMBER})\s*(?P<cur>{_alternatives(_SUFFIX_CURRENCIES)})"
    r"(?![a-z])"
)
_BARE = re.compile(rf"(?<![\d.,])(?P<num>{_NUMBER})(?![\d])")
_FREE = re.compile(r"^\s*(?:free|gratis|free to (?:a )?good home)\s*[.!]?\s*$")


def parse_price(
    text: str | None, *, default_currency: str | None = None, needs_currency: bool = False
) -> tuple[Decimal | None, str | None]:
    """(amount, ISO currency) of a price as listing pages write it.

    "£1,250" -> (1250, GBP); "£20 ono" -> (20, GBP); "12,50 €" -> (12.50, EUR);
    "1.250,00 €" -> (1250.00, EUR); "$5" -> (5, USD); "Free" -> (0, default_currency).
    A bare number takes `default_currency`, or is refused with `needs_currency` (titles
    are full of numbers that are not prices). (None, None) when there is no price ("POA",
    "Swap", empty). Never raises.
    """
    if not text:
        return None, None
    lowered = text.casefold()
    if _FREE.match(lowered):
        return Decimal("0.00"), default_currency
    candidates = [
        (match.start(), match.group("num"), _PREFIX_CURRENCIES[match.group("cur")])
        for match in _PREFIXED.finditer(lowered)
    ][:1] + [
        (match.start(), match.group("num"), _SUFFIX_CURRENCIES[match.group("cur")])
        for match in _SUFFIXED.finditer(lowered)
    ][:1]
    if candidates:
        _, number, currency = min(candidates)
        amount = _amount(number)
        return (amount, currency) if amount is not None else (None, None)
    if needs_currency:
        return None, None
    bare = _BARE.search(lowered)
    amount = _amount(bare.group("num")) if bare else None
    return (amount, default_currency) if amount is not None else (None, None)


def _amount(number: str) -> Decimal | None:
    """A decimal from digits with either convention of separators."""
    compact = re.sub(r"[ '\u00a0\u202f]", "", number)
    last_comma, last_dot = compact.rfind(","), compact.rfind(".")
    if last_comma >= 0 and last_dot >= 0:
        decimal_mark = "," if last_comma > last_dot else "."
        grouping = "." if decimal_mark == "," else ","
        compact = compact.replace(grouping, "").replace(decimal_mark, ".")
    elif last_comma >= 0 or last_dot >= 0:
        mark = "," if last_comma >= 0 else "."
        groups = compact.split(mark)
        # "1,250" and "1.250.000" group thousands; "12,50" and "12.5" have decimals.
        if len(groups) > 2 or len(groups[-1]) == 3:
            compact = compact.replace(mark, "")
        else:
            compact = compact.replace(mark, ".")
    try:
        amount = Decimal(compact)
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount < 0 or amount >= MONEY_LIMIT:
        return None
    return amount.quantize(Decimal("0.01"))


# --- relative times -------------------------------------------------------------------

_UNIT_SECONDS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hr": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
    "w": 7 * 86400,
    "wk": 7 * 86400,
    "week": 7 * 86400,
    "month": 30 * 86400,
    "mo": 30 * 86400,
    "year": 365 * 86400,
    "yr": 365 * 86400,
}
_RELATIVE = re.compile(
    r"^(?P<count>\d+|an?|one)\s*"
    r"(?P<unit>seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h|days?|d|weeks?|wks?|w|"
    r"months?|mos?|years?|yrs?)\s+ago$"
)
_NOW_WORDS = frozenset({"just now", "now", "moments ago", "a moment ago", "today", "just listed"})
_MAX_AGE = timedelta(days=3650)


def parse_relative_time(text: str | None, *, now: datetime) -> datetime | None:
    """The moment a listing page means by "2 mins ago", "an hour ago", "3d ago",
    "Yesterday" or "Just now", relative to `now`; None when it means nothing we read.
    Months are 30 days and years 365. Never raises."""
    if not text:
        return None
    phrase = " ".join(text.casefold().split())
    phrase = phrase.removeprefix("posted ").removeprefix("listed ")
    if phrase in _NOW_WORDS:
        return now
    if phrase == "yesterday":
        return now - timedelta(days=1)
    match = _RELATIVE.match(phrase)
    if not match:
        return None
    count = match.group("count")
    amount = 1 if count in ("a", "an", "one") else int(count)
    unit = match.group("unit")
    seconds = amount * (_UNIT_SECONDS.get(unit) or _UNIT_SECONDS[unit.rstrip("s")])
    if seconds > _MAX_AGE.total_seconds():
        return None
    return now - timedelta(seconds=seconds)
