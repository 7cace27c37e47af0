"""A fake eBay on 127.0.0.1: the OAuth token endpoint and Browse `item_summary/search`.

Speaks the wire format of `external-apis.md` sections 1-2 and checks requests the way eBay
does (Basic credentials, grant type and scope; Bearer token, limit, offset, q or
category), plus one thing eBay forgives and we do not: a missing marketplace header.

It is a threaded HTTP server, independent of any event loop, so it serves pytest-asyncio
tests and other processes (a Celery worker started by a test) alike:

    with EbayFake() as fake:
        fake.set_items([item_summary(1, "Canon 50mm f/1.8")], q="canon 50mm")
        settings = make_settings(..., ebay_api_base_url=fake.base_url,
                                 ebay_oauth_base_url=fake.base_url,
                                 ebay_app_id=fake.app_id, ebay_cert_id=fake.cert_id)
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from tests.fakes.server import FakeHTTPServer, Reply, basic_credentials, json_reply

TOKEN_PATH = "/identity/v1/oauth2/token"
SEARCH_PATH = "/buy/browse/v1/item_summary/search"
API_SCOPE = "https://api.ebay.com/oauth/api_scope"
KNOWN_SCOPES = frozenset({API_SCOPE, "https://api.ebay.com/oauth/api_scope/buy.item.feed"})
MARKETPLACES = frozenset(
    {
        "EBAY_AT",
        "EBAY_AU",
        "EBAY_BE",
        "EBAY_CA",
        "EBAY_CH",
        "EBAY_DE",
        "EBAY_ES",
        "EBAY_FR",
        "EBAY_GB",
        "EBAY_HK",
        "EBAY_IE",
        "EBAY_IT",
        "EBAY_MY",
        "EBAY_NL",
        "EBAY_PH",
        "EBAY_PL",
        "EBAY_SG",
        "EBAY_US",
        "EBAY_MOTORS_US",
    }
)
MAX_LIMIT = 200
MAX_OFFSET = 10_000

# errorId -> (HTTP status, domain, category, message), as eBay sends them.
ERRORS: dict[int, tuple[int, str, str, str]] = {
    1001: (401, "OAuth", "REQUEST", "Invalid access token"),
    1002: (400, "OAuth", "REQUEST", "Missing access token"),
    1100: (403, "ACCESS", "REQUEST", "Access denied"),
    2001: (429, "ACCESS", "REQUEST", "Too many requests."),
    12000: (
        500,
        "API_BROWSE",
        "APPLICATION",
        "There was a problem with an eBay internal system or process. "
        "Contact eBay developer support for assistance.",
    ),
    12001: (
        400,
        "API_BROWSE",
        "REQUEST",
        "The call must have a valid 'q', 'category_ids', 'epid' or 'gtin' query parameter.",
    ),
    12004: (400, "API_BROWSE", "REQUEST", "The 'offset' value cannot be negative."),
    12005: (400, "API_BROWSE", "REQUEST", "The 'offset' value must be an integer."),
    12006: (400, "API_BROWSE", "REQUEST", "The 'limit' value should be between 1 and 200."),
    12007: (400, "API_BROWSE", "REQUEST", "The 'limit' value must be an integer."),
    12013: (
        409,
        "API_BROWSE",
        "REQUEST",
        "A top-level category ID cannot be used without a keyword.",
    ),
    12019: (409, "API_BROWSE", "REQUEST", "The marketplace is not supported."),
    12029: (400, "API_BROWSE", "REQUEST", "The 'offset' value must be less than 10,000."),
    12515: (400, "API_BROWSE", "REQUEST", "The 'offset' value must be a multiple of 'limit'."),
}


@dataclass(frozen=True)
class TokenRequest:
    headers: dict[str, str]
    form: dict[str, str]


@dataclass(frozen=True)
class SearchRequest:
    """What one search call carried; header names are lower case."""

    params: dict[str, str]
    headers: dict[str, str]
    filters: dict[str, str]

    @property
    def marketplace_id(self) -> str | None:
        return self.headers.get("x-ebay-c-marketplace-id")


def item_summary(
    n: int,
    title: str | None = None,
    *,
    price: str | None = "10.00",
    currency: str = "GBP",
    buying_options: Iterable[str] = ("FIXED_PRICE",),
    condition: str = "Used",
    condition_id: str = "3000",
    country: str = "GB",
    created: str = "2025-05-01T09:15:02.000Z",
    **extra: Any,
) -> dict[str, Any]:
    """An itemSummaries entry as eBay sends it; `extra` adds or replaces fields."""
    item: dict[str, Any] = {
        "itemId": f"v1|{100000000000 + n}|0",
        "title": title or f"Listing {n}",
        "itemHref": f"https://api.ebay.com/buy/browse/v1/item/v1%7C{100000000000 + n}%7C0",
        "image": {"imageUrl": f"https://i.ebayimg.com/images/g/{n}/s-l225.jpg"},
        "itemWebUrl": f"https://www.ebay.co.uk/itm/{100000000000 + n}",
        "condition": condition,
        "conditionId": condition_id,
        "seller": {"username": f"seller_{n}", "feedbackPercentage": "99.8", "feedbackScore": 150},
        "itemLocation": {"postalCode": "SW1***", "country": country},
        "buyingOptions": list(buying_options),
        "itemCreationDate": created,
        "itemOriginDate": created,
    }
    if price is not None:
        item["price"] = {"value": price, "currency": currency}
    item.update(extra)
    return item


def ebay_error(error_id: int, message: str | None = None) -> tuple[int, dict[str, Any]]:
    """(status, body) of an eBay error response."""
    status, domain, category, default_message = ERRORS[error_id]
    text = message or default_message
    error = {
        "errorId": error_id,
        "domain": domain,
        "category": category,
        "message": text,
        "longMessage": text,
    }
    return status, {"errors": [error]}


class EbayFake(FakeHTTPServer):
    """The fake server. Configure items and failures from the test; read what it received.

    `base_url` is both the API and the OAuth base URL. Thread-safe: requests are served on
    their own threads while the test changes settings.
    """

    def __init__(
        self,
        *,
        app_id: str = "fake-app-id",
        cert_id: str = "fake-cert-secret",
        token_ttl_s: int = 7200,
    ) -> None:
        super().__init__()
        self.app_id = app_id
        self.cert_id = cert_id
        self.token_ttl_s = token_ttl_s
        # Seconds each search waits before answering (to provoke client timeouts).
        self.search_delay_s = 0.0
        self._items: dict[str | None, list[Any]] = {}
        self._tokens: dict[str, float] = {}
        self._token_script: deque[Reply] = deque()
        self._search_script: deque[Reply] = deque()
        self.token_requests: list[TokenRequest] = []
        self.search_requests: list[SearchRequest] = []

    # --- configuring ------------------------------------------------------------------

    def set_items(self, items: Iterable[Any], *, q: str | None = None) -> None:
        """Items served, newest first, for searches whose `q` is exactly `q` (None = any q
        without items of its own, including category-only searches)."""
        with self._lock:
            self._items[q] = list(items)

    def add_items(self, items: Iterable[Any], *, q: str | None = None) -> None:
        """New listings: they go on top, as `sort=newlyListed` shows them."""
        with self._lock:
            self._items[q] = [*items, *self._items.get(q, [])]

    def expire_tokens(self) -> None:
        """Every token minted so far is now expired: searches get 401/1001."""
        with self._lock:
            self._tokens.clear()

    def fail_search(
        self,
        error_id: int,
        *,
        times: int = 1,
        retry_after: str | None = None,
        message: str | None = None,
    ) -> None:
        """The next `times` searches get eBay's error `error_id` (status from ERRORS)."""
        status, body = ebay_error(error_id, message)
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        self.respond_to_search(status, body, headers=headers, times=times)

    def respond_to_search(
        self,
        status: int,
        body: bytes | str | dict[str, Any],
        *,
        headers: Mapping[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """The next `times` searches get this exact reply (JSON content type by default)."""
        reply = json_reply(status, body, headers)
        with self._lock:
            self._search_script.extend([reply] * times)

    def fail_token(
        self,
        status: int = 401,
        error: str = "invalid_client",
        description: str = "client authentication failed",
        *,
        times: int = 1,
    ) -> None:
        """The next `times` token requests get an OAuth error."""
        reply = json_reply(status, {"error": error, "error_description": description})
        with self._lock:
            self._token_script.extend([reply] * times)

    # --- what was received ------------------------------------------------------------

    @property
    def token_calls(self) -> int:
        with self._lock:
            return len(self.token_requests)

    @property
    def search_calls(self) -> int:
        with self._lock:
            return len(self.search_requests)

    def searches_for(self, q: str) -> list[SearchRequest]:
        with self._lock:
            return [r for r in self.search_requests if r.params.get("q") == q]

    def reset_counts(self) -> None:
        with self._lock:
            self.token_requests.clear()
            self.search_requests.clear()

    # --- serving ----------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        url = urlsplit(target)
        if url.path == TOKEN_PATH:
            if method != "POST":
                return json_reply(405, {"error": "invalid_request"})
            return self._token(headers, body)
        if url.path == SEARCH_PATH:
            if method != "GET":
                return json_reply(
                    405, {"errors": [{"errorId": 0, "message": "Method not allowed"}]}
                )
            return self._search(dict(parse_qsl(url.query, keep_blank_values=True)), headers)
        return json_reply(404, {"errors": [{"errorId": 0, "message": "Resource not found"}]})

    def crash_reply(self, exc: Exception) -> Reply:
        return json_reply(599, {"errors": [{"errorId": 0, "message": f"fake crashed: {exc!r}"}]})

    def _token(self, headers: dict[str, str], body: bytes) -> Reply:
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        with self._lock:
            self.token_requests.append(TokenRequest(headers, form))
            if self._token_script:
                return self._token_script.popleft()
        content_type = headers.get("content-type", "").split(";")[0].strip()
        if content_type != "application/x-www-form-urlencoded":
            return _oauth_error(400, "invalid_request", "request body must be form-encoded")
        if basic_credentials(headers.get("authorization", "")) != (self.app_id, self.cert_id):
            return _oauth_error(401, "invalid_client", "client authentication failed")
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(
                400, "unsupported_grant_type", "grant type in request is not supported"
            )
        scopes = form.get("scope", "").split()
        if not scopes or not set(scopes) <= KNOWN_SCOPES:
            return _oauth_error(
                400,
                "invalid_scope",
                "The requested scope is invalid, unknown, malformed, or exceeds the scope "
                "granted to the client",
            )
        token = f"v^1.1#i^1#f^0#r^0#I^3#p^1#t^{secrets.token_urlsafe(24)}"
        with self._lock:
            self._tokens[token] = time.monotonic() + self.token_ttl_s
        return json_reply(
            200,
            {
                "access_token": token,
                "expires_in": self.token_ttl_s,
                "token_type": "Application Access Token",
            },
        )

    def _search(self, params: dict[str, str], headers: dict[str, str]) -> Reply:
        filters = parse_filter(params.get("filter", ""))
        with self._lock:
            self.search_requests.append(SearchRequest(params, headers, filters))
            scripted = self._search_script.popleft() if self._search_script else None
        self.pause(self.search_delay_s)
        if scripted is not None:
            return scripted
        problem = self._search_problem(params, headers)
        if problem is not None:
            return problem
        limit = int(params.get("limit", "50"))
        offset = int(params.get("offset", "0"))
        with self._lock:
            items = self._items.get(params.get("q"), self._items.get(None, []))
        # Anything that is not an object is served as is: tests use it for broken items.
        items = [item for item in items if not isinstance(item, dict) or _passes(item, filters)]
        page = items[offset : offset + limit]
        path = f"{self.base_url}{SEARCH_PATH}"
        body: dict[str, Any] = {
            "href": f"{path}?{urlencode(params)}",
            "total": len(items),
            "limit": limit,
            "offset": offset,
        }
        if page:
            body["itemSummaries"] = page
        if offset + limit < len(items):
            body["next"] = f"{path}?{urlencode({**params, 'offset': offset + limit})}"
        if offset > 0:
            body["prev"] = f"{path}?{urlencode({**params, 'offset': max(0, offset - limit)})}"
        return json_reply(200, body)

    def _search_problem(self, params: dict[str, str], headers: dict[str, str]) -> Reply | None:
        """eBay's answer to an invalid search, or None when the request is fine."""
        authorization = headers.get("authorization", "")
        if not authorization:
            return _error_reply(1002)
        token = authorization.removeprefix("Bearer ")
        with self._lock:
            expires_at = self._tokens.get(token)
        if not authorization.startswith("Bearer ") or expires_at is None:
            return _error_reply(1001)
        if time.monotonic() >= expires_at:
            return _error_reply(1001)
        marketplace = headers.get("x-ebay-c-marketplace-id")
        if marketplace is None:
            # eBay would quietly use EBAY_US; for us a missing header is a bug.
            missing = "fake eBay: the X-EBAY-C-MARKETPLACE-ID header is missing"
            return json_reply(400, {"errors": [{"errorId": 0, "message": missing}]})
        if marketplace not in MARKETPLACES:
            return _error_reply(12019)
        limit_text, offset_text = params.get("limit", "50"), params.get("offset", "0")
        if not limit_text.lstrip("-").isdigit():
            return _error_reply(12007)
        if not 1 <= int(limit_text) <= MAX_LIMIT:
            return _error_reply(12006)
        if not offset_text.lstrip("-").isdigit():
            return _error_reply(12005)
        offset, limit = int(offset_text), int(limit_text)
        if offset < 0:
            return _error_reply(12004)
        if offset >= MAX_OFFSET:
            return _error_reply(12029)
        if offset % limit:
            return _error_reply(12515)
        if not params.get("q") and not params.get("category_ids"):
            return _error_reply(12001)
        return None


def parse_filter(value: str) -> dict[str, str]:
    """`price:[..400],priceCurrency:GBP,conditionIds:{1000|3000}` -> field -> value."""
    clauses: list[str] = []
    depth, current = 0, ""
    for char in value:
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        if char == "," and depth == 0:
            clauses.append(current)
            current = ""
        else:
            current += char
    if current:
        clauses.append(current)
    parsed: dict[str, str] = {}
    for clause in clauses:
        name, _, clause_value = clause.partition(":")
        parsed[name.strip()] = clause_value.strip()
    return parsed


def _passes(item: dict[str, Any], filters: Mapping[str, str]) -> bool:
    """Whether eBay would return the item under these filters (the ones we send)."""
    wanted_options = _set(filters.get("buyingOptions")) or {"FIXED_PRICE"}
    if not wanted_options & set(item.get("buyingOptions") or ["FIXED_PRICE"]):
        return False
    if "price" in filters:
        low, high = _range(filters["price"])
        money = item.get("price") or item.get("currentBidPrice")
        if not isinstance(money, dict):
            return False
        price = Decimal(money["value"])
        if (low is not None and price < low) or (high is not None and price > high):
            return False
    condition_ids = _set(filters.get("conditionIds"))
    if condition_ids and item.get("conditionId") not in condition_ids:
        return False
    country = filters.get("itemLocationCountry")
    location = item.get("itemLocation") or {}
    return not (country and location.get("country") and location["country"] != country)


def _set(value: str | None) -> set[str]:
    if not value:
        return set()
    return {part for part in value.strip("{}").split("|") if part}


def _range(value: str) -> tuple[Decimal | None, Decimal | None]:
    """`[10..50]`, `[..50]`, `[10]` -> (low, high)."""
    inner = value.strip("[]")
    low_text, dots, high_text = inner.partition("..")
    try:
        low = Decimal(low_text) if low_text else None
        high = Decimal(high_text) if dots and high_text else None
    except InvalidOperation:
        return None, None
    return low, high


def _oauth_error(status: int, error: str, description: str) -> Reply:
    return json_reply(status, {"error": error, "error_description": description})


def _error_reply(error_id: int) -> Reply:
    status, body = ebay_error(error_id)
    return json_reply(status, body)
