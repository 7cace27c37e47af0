"""eBay on the official Browse API: an application token, then item_summary/search, newest first.

Wire format: `external-apis.md` sections 1-2. One token (client credentials) is shared by
every search of the adapter and renewed five minutes before it expires, or once when a
search is answered 401. Requests never follow redirects, and no error message carries
the client secret or a token.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import parse_qsl, quote, urlsplit

import httpx

from app.marketplaces import regions
from app.marketplaces.base import (
    Capabilities,
    Listing,
    MarketplaceError,
    MarketplaceOptions,
    Query,
    RateLimited,
)
from app.retry_after import parse_retry_after

if TYPE_CHECKING:
    from app.config import Settings
    from app.security.ssrf import Resolver

logger = logging.getLogger(__name__)

PRODUCTION_BASE_URL = "https://api.ebay.com"
SANDBOX_BASE_URL = "https://api.sandbox.ebay.com"
TOKEN_PATH = "/identity/v1/oauth2/token"
SEARCH_PATH = "/buy/browse/v1/item_summary/search"
# The sandbox uses the same scope URL as production.
API_SCOPE = "https://api.ebay.com/oauth/api_scope"

MAX_Q_CHARS = 100
MAX_PAGE_SIZE = 200
TOKEN_RENEW_MARGIN_S = 300.0
MAX_SERVER_ERROR_RETRIES = 2
MAX_ERROR_TEXT_CHARS = 300

# Without buyingOptions eBay returns fixed-price listings only.
BUYING_OPTIONS = "FIXED_PRICE|AUCTION|BEST_OFFER"
# Local matching counts "new" and "new other" as new and everything else as used, so the
# upstream filter asks for exactly those sets (never fewer listings than would match).
NEW_CONDITION_IDS = ("1000", "1500")
# fmt: off
USED_CONDITION_IDS = (
    "1750", "2000", "2010", "2020", "2030", "2500", "2750", "3000", "4000", "5000", "6000", "7000",
)
# fmt: on
# Characters that would break eBay's keyword syntax: "(a, b)" is OR and "*" is refused.
_Q_SYNTAX = str.maketrans({char: " " for char in '(),*"'})
_MONEY_LIMIT = Decimal(10) ** 10  # what the listings table's Numeric(12, 2) can hold


class EbayError(MarketplaceError):
    """eBay answered with an error, an unusable response, or not at all."""

    def __init__(
        self, message: str, *, status_code: int | None = None, error_id: int | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error_id = error_id


class EbayAuthError(EbayError):
    """Credentials missing or refused, or an access token eBay keeps rejecting."""


def base_urls(
    environment: Literal["production", "sandbox"], api_base_url: str = "", oauth_base_url: str = ""
) -> tuple[str, str]:
    """(API base URL, OAuth base URL): the explicit ones, else the environment's host."""
    default = SANDBOX_BASE_URL if environment == "sandbox" else PRODUCTION_BASE_URL
    return (api_base_url or default).rstrip("/"), (oauth_base_url or default).rstrip("/")


class EbayAdapter:
    name = "ebay"
    # The settings an operator sets before its searches can be checked.
    setup_hint: ClassVar[str] = "EBAY_APP_ID and EBAY_CERT_ID (a free eBay developer keyset)"
    # eBay's default quota is 5,000 Browse calls a day per application; this only caps
    # bursts, the daily budget depends on how many distinct queries are checked how often.
    capabilities = Capabilities(
        price_filter=True,
        condition_filter=True,
        location_filter=True,
        page_size=50,
        requests_per_minute=30,
    )
    options_model: ClassVar[type[MarketplaceOptions] | None] = None

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        api_base_url: str = PRODUCTION_BASE_URL,
        oauth_base_url: str = PRODUCTION_BASE_URL,
        app_id: str,
        cert_id: str,
        max_pages: int = 2,
        page_size: int = 50,
        default_country: str = "GB",
        timeout_s: float = 10.0,
        requests_per_minute: int = 30,
        retry_backoff_s: float = 0.5,
        max_retry_delay_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        if max_pages < 1:
            raise ValueError("max_pages must be at least 1")
        if default_country.upper() not in regions.COUNTRIES:
            known = ", ".join(sorted(regions.COUNTRIES))
            raise ValueError(f"DEFAULT_COUNTRY must be one of {known}")
        self.client = client
        self.api_base_url = api_base_url.rstrip("/")
        self.oauth_base_url = oauth_base_url.rstrip("/")
        self.app_id = app_id
        self._cert_id = cert_id
        self.max_pages = max_pages
        self.page_size = page_size
        self.default_country = default_country.upper()
        self.timeout_s = timeout_s
        self.retry_backoff_s = retry_backoff_s
        self.max_retry_delay_s = max_retry_delay_s
        self.capabilities = replace(
            type(self).capabilities, page_size=page_size, requests_per_minute=requests_per_minute
        )
        self._clock = clock
        self._token: str | None = None
        self._token_renew_at = 0.0
        # Concurrent searches wait for one mint instead of each spending the daily quota.
        self._token_lock = asyncio.Lock()

    @classmethod
    def from_settings(
        cls, client: httpx.AsyncClient, settings: Settings, _resolve: Resolver | None = None
    ) -> EbayAdapter:
        """The adapter as configured by EBAY_* settings (built even without credentials)."""
        api, oauth = base_urls(
            settings.ebay_environment, settings.ebay_api_base_url, settings.ebay_oauth_base_url
        )
        return cls(
            client,
            api_base_url=api,
            oauth_base_url=oauth,
            app_id=settings.ebay_app_id,
            cert_id=settings.ebay_cert_id.get_secret_value(),
            max_pages=settings.ebay_max_pages,
            page_size=settings.ebay_page_size,
            default_country=settings.default_country,
            timeout_s=settings.ebay_timeout_s,
            requests_per_minute=settings.ebay_requests_per_minute,
        )

    def is_configured(self) -> bool:
        return bool(self.app_id and self._cert_id)

    async def verify_credentials(self) -> None:
        """Ask eBay for a token (`marketmon doctor`); raises EbayAuthError when it refuses
        the credentials, EbayError when it cannot be reached."""
        await self._access_token()

    def currency_for(self, query: Query) -> str:
        if query.currency:
            return query.currency.upper()
        return regions.region(self._country(query)).currency

    async def search(self, query: Query) -> list[Listing]:
        """The newest listings for the query (up to `max_pages` pages), newest first.

        Raises RateLimited on 429, EbayAuthError when the credentials are missing or
        refused, EbayError for any other failure (after retrying 5xx twice).
        """
        if not self.is_configured():
            raise EbayAuthError("eBay is not configured: set EBAY_APP_ID and EBAY_CERT_ID")
        params = self._search_params(query)
        if "q" not in params and "category_ids" not in params:
            return []
        headers = self._search_headers(query)
        listings: list[Listing] = []
        seen: set[str] = set()
        may_remint = True
        for _ in range(self.max_pages):
            page, may_remint = await self._search_page(params, headers, may_remint=may_remint)
            items = page.get("itemSummaries") or []
            if not isinstance(items, list):
                raise EbayError("eBay sent a malformed search response (itemSummaries)")
            for item in items:
                listing = _listing(item) if isinstance(item, dict) else None
                # Listings shift between pages while new ones arrive; keep each once.
                if listing is not None and listing.external_id not in seen:
                    seen.add(listing.external_id)
                    listings.append(listing)
            next_params = _next_page_params(params, page.get("next"))
            if not items or next_params is None:
                break
            params = next_params
        return listings

    # --- the request ------------------------------------------------------------------

    def _country(self, query: Query) -> str:
        return regions.country_for(query.location, default_country=self.default_country)

    def _search_params(self, query: Query) -> dict[str, str]:
        params = {"sort": "newlyListed", "limit": str(self.page_size)}
        q = build_q(query.keywords)
        if q:
            params["q"] = q
        category = (query.category or "").strip()
        if category.isascii() and category.isdigit():
            params["category_ids"] = category
        params["filter"] = build_filter(
            query,
            country=self._country(query),
            currency=self.currency_for(query),
        )
        return params

    def _search_headers(self, query: Query) -> dict[str, str]:
        country = self._country(query)
        context = f"country={country}"
        postcode = regions.postcode_in(query.location)
        if postcode:
            context += f",zip={postcode}"
        return {
            "Accept": "application/json",
            "X-EBAY-C-MARKETPLACE-ID": regions.region(country).ebay_marketplace_id,
            # Shipping costs and delivery estimates are computed for this place.
            "X-EBAY-C-ENDUSERCTX": "contextualLocation=" + quote(context, safe=""),
        }

    async def _search_page(
        self, params: Mapping[str, str], headers: Mapping[str, str], *, may_remint: bool
    ) -> tuple[dict[str, Any], bool]:
        """One page of results, and whether a re-mint is still allowed in this search."""
        url = self.api_base_url + SEARCH_PATH
        while True:
            token = await self._access_token()
            response = await self._send(
                "GET", url, params=params, headers={**headers, "Authorization": f"Bearer {token}"}
            )
            if response.status_code != httpx.codes.UNAUTHORIZED:
                return self._search_body(response), may_remint
            if not may_remint:
                raise self._api_error(response, "eBay rejected the access token again")
            # 401/1001 also means "expired": mint a new token once, never in a loop.
            may_remint = False
            self._forget_token(token)

    def _search_body(self, response: httpx.Response) -> dict[str, Any]:
        status = response.status_code
        if status == httpx.codes.TOO_MANY_REQUESTS:
            retry_after_s = parse_retry_after(response.headers.get("Retry-After"))
            raise RateLimited(
                self._scrub(f"eBay rate limit reached ({_error_summary(response)})"),
                retry_after_s=retry_after_s,
            )
        if 300 <= status < 400:
            raise EbayError(f"eBay answered with a redirect ({status})", status_code=status)
        if status != httpx.codes.OK:
            raise self._api_error(response, "eBay search failed")
        body = _json_object(response)
        if body is None:
            raise EbayError("eBay sent a malformed search response (not a JSON object)")
        return body

    def _api_error(self, response: httpx.Response, what: str) -> EbayError:
        status = response.status_code
        error_id, message = _first_error(response)
        detail = f"{what} ({status}"
        detail += f", error {error_id})" if error_id is not None else ")"
        if message:
            detail += f": {message}"
        kind = EbayAuthError if status == httpx.codes.UNAUTHORIZED else EbayError
        return kind(self._scrub(detail), status_code=status, error_id=error_id)

    # --- the token --------------------------------------------------------------------

    async def _access_token(self) -> str:
        if self._token is not None and self._clock() < self._token_renew_at:
            return self._token
        async with self._token_lock:
            # Another search may have minted while this one waited for the lock.
            if self._token is not None and self._clock() < self._token_renew_at:
                return self._token
            token, expires_in_s = await self._mint_token()
            self._token = token
            renew_after_s = max(expires_in_s - TOKEN_RENEW_MARGIN_S, expires_in_s / 2)
            self._token_renew_at = self._clock() + renew_after_s
            return token

    def _forget_token(self, token: str) -> None:
        # Only the token that was refused: a concurrent search may already hold a new one.
        if self._token == token:
            self._token = None

    async def _mint_token(self) -> tuple[str, float]:
        response = await self._send(
            "POST",
            self.oauth_base_url + TOKEN_PATH,
            data={"grant_type": "client_credentials", "scope": API_SCOPE},
            auth=httpx.BasicAuth(self.app_id, self._cert_id),
            headers={"Accept": "application/json"},
        )
        status = response.status_code
        body = _json_object(response)
        if status == httpx.codes.TOO_MANY_REQUESTS:
            raise RateLimited(
                "eBay token requests are rate limited",
                retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
            )
        if status != httpx.codes.OK:
            error = _text(body.get("error")) if body else None
            description = _text(body.get("error_description")) if body else None
            detail = f"eBay refused the token request ({status}"
            detail += f" {error})" if error else ")"
            if description:
                detail += f": {description}"
            raise EbayAuthError(self._scrub(detail), status_code=status)
        token = body.get("access_token") if body else None
        expires_in = body.get("expires_in") if body else None
        if (
            not isinstance(token, str)
            or not token
            or not isinstance(expires_in, int | float)
            or isinstance(expires_in, bool)
            or expires_in <= 0
        ):
            raise EbayAuthError("eBay sent a malformed token response", status_code=status)
        return token, float(expires_in)

    # --- transport --------------------------------------------------------------------

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """The response, after retrying 5xx (honouring a short Retry-After) at most twice."""
        for attempt in range(MAX_SERVER_ERROR_RETRIES + 1):
            try:
                response = await self.client.request(
                    method, url, follow_redirects=False, timeout=self.timeout_s, **kwargs
                )
            except httpx.TimeoutException as exc:
                raise EbayError(f"eBay did not answer within {self.timeout_s:g} s") from exc
            except httpx.HTTPError as exc:
                raise EbayError(f"could not reach eBay ({type(exc).__name__})") from exc
            if response.status_code < 500 or attempt == MAX_SERVER_ERROR_RETRIES:
                return response
            delay_s = parse_retry_after(response.headers.get("Retry-After"))
            if delay_s is None:
                delay_s = self.retry_backoff_s * 2**attempt
            logger.info("eBay answered %s; retrying in %.2f s", response.status_code, delay_s)
            await asyncio.sleep(min(delay_s, self.max_retry_delay_s))
        raise AssertionError("unreachable")  # pragma: no cover

    def _scrub(self, text: str) -> str:
        """eBay's own words, shortened, with any secret that might be echoed removed."""
        for secret in (self._cert_id, self._token):
            if secret:
                text = text.replace(secret, "[redacted]")
        return text[:MAX_ERROR_TEXT_CHARS]


# --- the query ------------------------------------------------------------------------


def build_q(keywords: Sequence[str]) -> str:
    """eBay's `q` for any of the keywords: "iphone 13" -> `iphone 13`; several ->
    `(iphone 13, "galaxy s22")`. Quoted phrases stay quoted.

    Over 100 characters, the longest alternatives lose their last words first (a broader
    query still finds every match, local matching re-checks), then alternatives are dropped.
    """
    terms: list[tuple[list[str], bool]] = []
    for keyword in keywords:
        stripped = keyword.strip()
        is_phrase = len(stripped) >= 2 and stripped.startswith('"') and stripped.endswith('"')
        words = stripped.translate(_Q_SYNTAX).split()
        if words:
            terms.append((words, is_phrase))
    q = _render_q(terms)
    while len(q) > MAX_Q_CHARS:
        longest = max(terms, key=lambda term: len(term[0]))
        if len(longest[0]) > 1:
            longest[0].pop()
        else:
            terms.pop()
        q = _render_q(terms)
    return q


def build_filter(query: Query, *, country: str, currency: str) -> str:
    """The `filter` parameter: price range and currency, condition, buying options, country."""
    clauses: list[str] = []
    low, high = query.min_price, query.max_price
    if low is not None or high is not None:
        if low is not None and high is not None:
            price_range = f"{low:f}..{high:f}"
        elif high is not None:
            price_range = f"..{high:f}"
        else:
            price_range = f"{low:f}"
        clauses += [f"price:[{price_range}]", f"priceCurrency:{currency}"]
    condition = (query.condition or "").lower()
    if condition == "new":
        clauses.append("conditionIds:{" + "|".join(NEW_CONDITION_IDS) + "}")
    elif condition == "used":
        clauses.append("conditionIds:{" + "|".join(USED_CONDITION_IDS) + "}")
    clauses.append("buyingOptions:{" + BUYING_OPTIONS + "}")
    if query.location:
        clauses.append(f"itemLocationCountry:{country}")
    clauses.append(f"deliveryCountry:{country}")
    return ",".join(clauses)


def _render_q(terms: Sequence[tuple[list[str], bool]]) -> str:
    rendered: dict[str, str] = {}  # eBay matches keywords case-insensitively
    for words, is_phrase in terms:
        text = " ".join(words)
        text = f'"{text}"' if is_phrase and len(words) > 1 else text
        rendered.setdefault(text.casefold(), text)
    if len(rendered) <= 1:
        return "".join(rendered.values())
    return "(" + ", ".join(rendered.values()) + ")"


def _next_page_params(params: Mapping[str, str], next_url: object) -> dict[str, str] | None:
    """Our own parameters moved to the offset eBay's `next` link names, else None.

    Only the offset is taken: the token never goes to whatever host a link names.
    """
    if not isinstance(next_url, str) or not next_url:
        return None
    offset = dict(parse_qsl(urlsplit(next_url).query)).get("offset", "")
    if not offset.isdigit() or int(offset) <= int(params.get("offset", "0")):
        return None
    return {**params, "offset": offset}


# --- the response ---------------------------------------------------------------------


def _listing(item: dict[str, Any]) -> Listing | None:
    """A normalised listing, or None for an item without a usable id or title."""
    item_id = _text(item.get("itemId"))
    title = _text(item.get("title"))
    if not item_id or len(item_id) > 255 or not title or not title.strip():
        return None
    price, currency = _money(item.get("price"))
    if price is None:
        # Auctions without a Buy It Now price carry the current bid instead.
        price, currency = _money(item.get("currentBidPrice"))
    url = _text(item.get("itemWebUrl"))
    if not url or len(url) > 2048:
        legacy_id = item_id.split("|")[1] if item_id.count("|") == 2 else item_id
        url = f"https://www.ebay.com/itm/{quote(legacy_id, safe='')}"
    image = item.get("image")
    image_url = _text(image.get("imageUrl")) if isinstance(image, dict) else None
    seller = item.get("seller")
    username = _text(seller.get("username")) if isinstance(seller, dict) else None
    condition = _text(item.get("condition"))
    return Listing(
        marketplace="ebay",
        external_id=item_id,
        title=title.strip(),
        url=url,
        price=price,
        currency=currency,
        image_url=image_url if image_url and len(image_url) <= 2048 else None,
        location=_location(item.get("itemLocation")),
        condition=condition[:50] if condition else None,
        seller=username[:255] if username else None,
        description=_text(item.get("shortDescription")),
        posted_at=_datetime(item.get("itemOriginDate")) or _datetime(item.get("itemCreationDate")),
        raw=item,
    )


def _money(value: object) -> tuple[Decimal | None, str | None]:
    if not isinstance(value, dict):
        return None, None
    amount = value.get("value")
    currency = _text(value.get("currency"))
    try:
        price = Decimal(str(amount)) if isinstance(amount, str | int | float) else None
    except InvalidOperation:
        return None, None
    if price is None or not price.is_finite() or price < 0 or price >= _MONEY_LIMIT:
        return None, None
    return price, currency.upper() if currency and len(currency) == 3 else None


def _location(value: object) -> str | None:
    """A readable place ("London, SW1***, United Kingdom") from whichever parts eBay sent."""
    if not isinstance(value, dict):
        return None
    country = _text(value.get("country"))
    parts = [
        _text(value.get("city")),
        _text(value.get("stateOrProvince")),
        _text(value.get("postalCode")),
        regions.country_name(country) if country else None,
    ]
    text = ", ".join(part.strip() for part in parts if part and part.strip())
    return text[:255] or None


def _datetime(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _first_error(response: httpx.Response) -> tuple[int | None, str | None]:
    """(errorId, message) of eBay's first error, when the body has one."""
    body = _json_object(response)
    errors = body.get("errors") if body else None
    first = errors[0] if isinstance(errors, list) and errors else None
    if not isinstance(first, dict):
        return None, None
    error_id = first.get("errorId")
    message = _text(first.get("message")) or _text(first.get("longMessage"))
    return (error_id if isinstance(error_id, int) else None), message


def _error_summary(response: httpx.Response) -> str:
    error_id, message = _first_error(response)
    if error_id is None:
        return message or f"HTTP {response.status_code}"
    return f"error {error_id}: {message}" if message else f"error {error_id}"
