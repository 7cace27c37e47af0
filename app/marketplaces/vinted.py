"""Vinted from the catalog JSON its own pages use, per country domain, newest first.

Structure: `external-apis.md` section 8 (undocumented). The JSON needs the session cookie
the home page sets; it is fetched once per domain, kept, and fetched again once when the
catalog answers 401. One catalog request per keyword (no OR syntax); price bounds are
filtered upstream.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import httpx
from pydantic import Field, field_validator

from app.marketplaces import scraping
from app.marketplaces.base import (
    Blocked,
    Capabilities,
    Listing,
    MarketplaceError,
    MarketplaceOptions,
    PageLayoutChanged,
    Query,
)
from app.marketplaces.scraping import CardError, CardParser, PageFetcher

if TYPE_CHECKING:
    from app.config import Settings
    from app.security.ssrf import Resolver

CATALOG_PATH = "/api/v2/catalog/items"
# Cookies that carry a Vinted session (the newer one first).
SESSION_COOKIES = ("access_token_web", "_vinted_fr_session")
# Vinted's sites and the currency each prices in.
DOMAINS: dict[str, str] = {
    "co.uk": "GBP",
    "fr": "EUR",
    "de": "EUR",
    "it": "EUR",
    "es": "EUR",
    "nl": "EUR",
    "be": "EUR",
    "at": "EUR",
    "lu": "EUR",
    "ie": "EUR",
    "pt": "EUR",
    "lt": "EUR",
    "sk": "EUR",
    "fi": "EUR",
    "gr": "EUR",
    "hr": "EUR",
    "pl": "PLN",
    "cz": "CZK",
    "hu": "HUF",
    "ro": "RON",
    "se": "SEK",
    "dk": "DKK",
    "com": "USD",
}
DOMAIN_BY_COUNTRY = {"GB": "co.uk", "US": "com"}
_MONEY_LIMIT = Decimal(10) ** 10


class VintedOptions(MarketplaceOptions):
    domain: str | None = Field(
        default=None,
        description="Vinted's site: co.uk, fr, de, ... (default: the server's DEFAULT_COUNTRY)",
    )

    @field_validator("domain")
    @classmethod
    def _known_domain(cls, value: str | None) -> str | None:
        if value is None:
            return None
        domain = value.lower().removeprefix(".").removeprefix("vinted.")
        if domain not in DOMAINS:
            raise ValueError(f"must be one of {', '.join(DOMAINS)}")
        return domain


class VintedAdapter(scraping.SiteAdapter):
    name = "vinted"
    capabilities = Capabilities(
        price_filter=True,
        page_size=20,
        requests_per_minute=10,
        regions=tuple(DOMAINS),
    )
    options_model: ClassVar[type[MarketplaceOptions] | None] = VintedOptions

    def __init__(
        self,
        fetcher: PageFetcher,
        *,
        base_url: str = "https://www.vinted.{domain}",
        default_domain: str = "co.uk",
        page_size: int = 20,
    ) -> None:
        self.fetcher = fetcher
        self.base_url = base_url.rstrip("/")
        self.default_domain = default_domain
        # A URL without {domain} is one site (a mirror, or www.vinted.fr): every search
        # goes there and takes that site's currency, whatever domain it names.
        self.fixed_domain = (
            None if "{domain}" in base_url else _domain_of(base_url) or default_domain
        )
        self.page_size = page_size
        self.cards = CardParser("vinted")
        self.session_fetches = 0
        self._cookies: dict[str, str] = {}
        # Concurrent searches on one domain wait for one session instead of each fetching.
        self._session_lock = asyncio.Lock()

    @classmethod
    def from_settings(
        cls, client: httpx.AsyncClient, settings: Settings, _resolve: Resolver | None = None
    ) -> VintedAdapter:
        fetcher = PageFetcher.for_marketplace(
            "Vinted", client, settings, proxy_url=settings.vinted_proxy_url
        )
        default_domain = DOMAIN_BY_COUNTRY.get(
            settings.default_country.upper(), settings.default_country.lower()
        )
        return cls(
            fetcher,
            base_url=settings.vinted_base_url,
            default_domain=default_domain if default_domain in DOMAINS else "co.uk",
        )

    def currency_for(self, query: Query) -> str:
        if query.currency:
            return query.currency.upper()
        return DOMAINS[self._domain(query)]

    async def aclose(self) -> None:
        await self.fetcher.aclose()

    async def search(self, query: Query) -> list[Listing]:
        """The newest items for each keyword on the search's domain. Raises Blocked (also
        when a fresh session cookie is refused), RateLimited, PageLayoutChanged."""
        domain = self._domain(query)
        listings: list[Listing] = []
        for term in scraping.keyword_terms(query.keywords):
            listings += await self._catalog(domain, term, query)
        return scraping.unique(listings)

    def site_url(self, domain: str) -> str:
        return self.base_url.replace("{domain}", domain)

    def _domain(self, query: Query) -> str:
        if self.fixed_domain is not None:
            return self.fixed_domain
        domain = query.option("domain") or self.default_domain
        return domain if domain in DOMAINS else self.default_domain

    async def _catalog(self, domain: str, term: str, query: Query) -> list[Listing]:
        params = {
            "search_text": term,
            "order": "newest_first",
            "per_page": str(self.page_size),
            "page": "1",
        }
        if query.min_price is not None:
            params["price_from"] = f"{query.min_price:f}"
        if query.max_price is not None:
            params["price_to"] = f"{query.max_price:f}"
        site = self.site_url(domain)
        for is_retry in (False, True):
            cookie = await self._session_cookie(domain, renew=is_retry)
            response, body = await self.fetcher.get_json(
                site + CATALOG_PATH,
                params=params,
                headers={"Cookie": cookie, "Referer": f"{site}/catalog"},
            )
            if response.status_code != httpx.codes.UNAUTHORIZED:
                break
        else:
            raise Blocked("Vinted refused a fresh session cookie (HTTP 401)")
        if response.status_code != httpx.codes.OK:
            raise scraping.unexpected_status("Vinted", response)
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise PageLayoutChanged("vinted: the catalog answer has no items list")
        currency = DOMAINS[domain]
        return self.cards.parse(items, lambda item: _listing(item, site=site, currency=currency))

    async def _session_cookie(self, domain: str, *, renew: bool) -> str:
        """The Cookie header of a Vinted session on `domain`, from the home page."""
        stale = self._cookies.get(domain) if renew else None
        if domain in self._cookies and not renew:
            return self._cookies[domain]
        async with self._session_lock:
            current = self._cookies.get(domain)
            # Another search may have renewed it while this one waited.
            if current is not None and current != stale:
                return current
            response = await self.fetcher.get(self.site_url(domain) + "/")
            self.session_fetches += 1
            cookies = {
                name: value
                for answer in (*response.history, response)
                for name, value in answer.cookies.items()
            }
            if not any(name in cookies for name in SESSION_COOKIES):
                reason = scraping.block_reason(response.text)
                if reason:
                    raise Blocked(reason)
                raise MarketplaceError(
                    f"Vinted set no session cookie (HTTP {response.status_code})"
                )
            header = "; ".join(f"{name}={value}" for name, value in cookies.items())
            self._cookies[domain] = header
            return header


def _listing(item: Any, *, site: str, currency: str) -> Listing:
    if not isinstance(item, dict):
        raise CardError("not an object")
    item_id = item["id"]
    if not isinstance(item_id, int | str) or isinstance(item_id, bool) or not str(item_id):
        raise CardError("no id")
    title = scraping.clip(item.get("title") if isinstance(item.get("title"), str) else None, 500)
    if not title:
        raise CardError("no title")
    url = item.get("url")
    url = scraping.absolute_url(site, url) if isinstance(url, str) and url else None
    price, price_currency = _money(item.get("price"), currency)
    photo = item.get("photo")
    image_url = photo.get("url") if isinstance(photo, dict) else None
    user = item.get("user")
    seller = user.get("login") if isinstance(user, dict) else None
    brand, size = _text(item.get("brand_title")), _text(item.get("size_title"))
    return Listing(
        marketplace="vinted",
        external_id=str(item_id),
        title=title,
        url=url or f"{site}/items/{item_id}",
        price=price,
        currency=price_currency if price is not None else None,
        image_url=image_url if isinstance(image_url, str) and image_url else None,
        condition=scraping.clip(_text(item.get("status")), 50),
        seller=scraping.clip(seller if isinstance(seller, str) else None, 255),
        description=" · ".join(part for part in (brand, size) if part) or None,
        raw=item,
    )


def _money(value: object, currency: str) -> tuple[Decimal | None, str]:
    """`{"amount": "12.0", "currency_code": "EUR"}`, or the older plain "12.0"."""
    amount: object = value
    if isinstance(value, dict):
        amount = value.get("amount")
        code = value.get("currency_code")
        if isinstance(code, str) and len(code) == 3:
            currency = code.upper()
    if isinstance(amount, bool) or not isinstance(amount, str | int | float):
        return None, currency
    try:
        price = Decimal(str(amount))
    except InvalidOperation:
        return None, currency
    if not price.is_finite() or price < 0 or price >= _MONEY_LIMIT:
        return None, currency
    return price.quantize(Decimal("0.01")), currency


def _text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _domain_of(url: str) -> str | None:
    """The Vinted domain a site URL is on ("https://www.vinted.fr" -> "fr"), if it is one."""
    host = (urlsplit(url).hostname or "").lower()
    for domain in sorted(DOMAINS, key=len, reverse=True):
        if host.endswith(f"vinted.{domain}"):
            return domain
    return None
