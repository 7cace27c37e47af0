"""Craigslist per city, newest first: the site's own search JSON, or its static HTML page.

Structure: `external-apis.md` section 8 (both are undocumented). The JSON needs the
city's numeric area id, so it is used for searches that give one
(`marketplace_options.craigslist.area_id`); every other search, and any search whose
JSON answer cannot be read, uses the HTML results page, which carries no images or dates.
Keywords are sent as one query with Craigslist's `|` (or) syntax.
"""

from __future__ import annotations

import logging
import math
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import httpx
from pydantic import Field, StringConstraints
from selectolax.lexbor import LexborHTMLParser, LexborNode

from app.marketplaces import regions, scraping
from app.marketplaces.base import (
    Blocked,
    Capabilities,
    Listing,
    MarketplaceError,
    MarketplaceOptions,
    PageLayoutChanged,
    Query,
    RateLimited,
)
from app.marketplaces.scraping import CardError, CardParser, PageFetcher

if TYPE_CHECKING:
    from app.config import Settings
    from app.security.ssrf import Resolver

logger = logging.getLogger(__name__)

JSON_SEARCH_PATH = "/web/v8/postings/search/full"
IMAGE_URL = "https://images.craigslist.org/{image_id}_300x300.jpg"
NO_RESULTS_PHRASES = ("no results", "nothing found", "0 postings")
KM_PER_MILE = 1.609344
# Item tags in the JSON (`[tag, value...]`): image ids, the URL slug, the price as shown.
IMAGES_TAG, SLUG_TAG, PRICE_TEXT_TAG = 4, 6, 10
_POSTING_ID_IN_URL = re.compile(r"/(\d+)\.html(?:$|[?#])")
_CATEGORY = re.compile(r"^[a-z]{3}$")


class CraigslistOptions(MarketplaceOptions):
    city: Annotated[
        str, StringConstraints(to_lower=True, pattern=r"^[A-Za-z][A-Za-z0-9]{1,30}$")
    ] = Field(description="The site's subdomain: sfbay, newyork, london, ...")
    area_id: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,6}$")] | None = Field(
        default=None, description="The city's numeric area id, to use the faster JSON search"
    )


class CraigslistAdapter(scraping.SiteAdapter):
    name = "craigslist"
    default_currency = "USD"
    capabilities = Capabilities(
        price_filter=True,
        location_filter=True,
        page_size=360,
        requests_per_minute=10,
    )
    options_model: ClassVar[type[MarketplaceOptions] | None] = CraigslistOptions

    def __init__(
        self,
        fetcher: PageFetcher,
        *,
        base_url: str = "https://{city}.craigslist.org",
        api_base_url: str = "https://sapi.craigslist.org",
    ) -> None:
        if "{city}" not in base_url:
            raise ValueError("CRAIGSLIST_BASE_URL needs a {city} placeholder")
        self.fetcher = fetcher
        self.base_url = base_url.rstrip("/")
        self.api_base_url = api_base_url.rstrip("/")
        self.cards = CardParser("craigslist")

    @classmethod
    def from_settings(
        cls, client: httpx.AsyncClient, settings: Settings, _resolve: Resolver | None = None
    ) -> CraigslistAdapter:
        fetcher = PageFetcher.for_marketplace(
            "Craigslist", client, settings, proxy_url=settings.craigslist_proxy_url
        )
        return cls(
            fetcher,
            base_url=settings.craigslist_base_url,
            api_base_url=settings.craigslist_api_base_url,
        )

    async def aclose(self) -> None:
        await self.fetcher.aclose()

    async def search(self, query: Query) -> list[Listing]:
        """The newest postings of the search's city. Raises MarketplaceError when the search
        names no city, Blocked, RateLimited, PageLayoutChanged."""
        city = query.option("city")
        if not city:
            raise MarketplaceError(
                "the search names no craigslist city (criteria.marketplace_options.craigslist.city)"
            )
        text = build_query(query.keywords)
        if not text:
            return []
        area_id = query.option("area_id")
        if area_id:
            try:
                return await self._search_json(query, city, area_id, text)
            except (Blocked, RateLimited):
                raise
            except MarketplaceError as exc:
                logger.warning("craigslist JSON search failed (%s); reading the HTML page", exc)
        return await self._search_html(query, city, text)

    # --- JSON -------------------------------------------------------------------------

    async def _search_json(self, query: Query, city: str, area_id: str, text: str) -> list[Listing]:
        site = self.site_url(city)
        params = {
            "batch": f"{area_id}-0-360-0-0",
            "cc": "US",
            "lang": "en",
            "searchPath": _category(query),
            "query": text,
            "sort": "date",
            **_filters(query),
        }
        response, body = await self.fetcher.get_json(
            self.api_base_url + JSON_SEARCH_PATH,
            params=params,
            headers={"Referer": site + "/", "Origin": site},
        )
        if response.status_code != httpx.codes.OK:
            raise scraping.unexpected_status("Craigslist", response)
        return self.parse_json(body, city=city, category=_category(query))

    def parse_json(self, body: object, *, city: str, category: str) -> list[Listing]:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise PageLayoutChanged("craigslist: the search JSON has no data")
        items = data.get("items")
        if not items:
            return []
        decode = data.get("decode")
        if not isinstance(items, list) or not isinstance(decode, dict):
            raise PageLayoutChanged("craigslist: the search JSON has no items or decode table")
        site = self.site_url(city)

        def parse(item: list[Any]) -> Listing:
            return _json_listing(item, decode, site=site, category=category)

        return self.cards.parse(items, parse)

    # --- HTML -------------------------------------------------------------------------

    async def _search_html(self, query: Query, city: str, text: str) -> list[Listing]:
        site = self.site_url(city)
        response = await self.fetcher.get(
            f"{site}/search/{_category(query)}",
            params={"query": text, "sort": "date", **_filters(query)},
        )
        if response.status_code != httpx.codes.OK:
            raise scraping.unexpected_status("Craigslist", response)
        return self.parse_html(response.text, city=city)

    def parse_html(self, html: str, *, city: str) -> list[Listing]:
        cards = LexborHTMLParser(html).css("li.cl-static-search-result")
        if not cards:
            scraping.page_without_listings(
                "craigslist", html, no_results_phrases=NO_RESULTS_PHRASES
            )
            return []
        site = self.site_url(city)
        return self.cards.parse(cards, lambda card: _html_listing(card, site=site))

    def site_url(self, city: str) -> str:
        return self.base_url.replace("{city}", city)


def build_query(keywords: tuple[str, ...]) -> str:
    """One Craigslist query for any of the keywords: `a | "b c" | (d e)`."""
    terms: list[str] = []
    for keyword in keywords:
        words = keyword.replace('"', " ").split()
        if not words:
            continue
        is_phrase = keyword.strip().startswith('"') and len(words) > 1
        term = " ".join(words)
        term = f'"{term}"' if is_phrase else (f"({term})" if len(words) > 1 else term)
        if term not in terms:
            terms.append(term)
    if len(terms) == 1:
        return terms[0].strip("()")
    return " | ".join(terms)


def _category(query: Query) -> str:
    category = (query.category or "").strip().lower()
    return category if _CATEGORY.match(category) else "sss"


def _filters(query: Query) -> dict[str, str]:
    """Price bounds in whole units (widened outwards) and a postcode radius in miles."""
    filters: dict[str, str] = {}
    if query.min_price is not None:
        filters["min_price"] = str(math.floor(query.min_price))
    if query.max_price is not None:
        filters["max_price"] = str(math.ceil(query.max_price))
    postcode = regions.postcode_in(query.location)
    if postcode:
        filters["postal"] = postcode
        if query.radius_km:
            filters["search_distance"] = str(max(1, math.ceil(query.radius_km / KM_PER_MILE)))
    return filters


def _json_listing(item: list[Any], decode: dict[str, Any], *, site: str, category: str) -> Listing:
    """One JSON item: `[id offset, seconds offset, category, price (-1 none), "loc~lat~lon",
    ..., [tag, values...], ..., title]`."""
    posting_id = int(decode["minPostingId"]) + int(item[0])
    posted_at = datetime.fromtimestamp(int(decode["minPostedDate"]) + int(item[1]), UTC)
    tags = {part[0]: part[1:] for part in item[5:] if isinstance(part, list) and part}
    titles = [part for part in item[5:] if isinstance(part, str) and part.strip()]
    if not titles:
        raise CardError("no title")
    slug = tags.get(SLUG_TAG, [None])[0]
    if not isinstance(slug, str) or not slug:
        raise CardError("no URL slug")
    price_text = next(iter(tags.get(PRICE_TEXT_TAG, [])), None)
    price, currency = scraping.parse_price(
        price_text if isinstance(price_text, str) else None, default_currency="USD"
    )
    if price is None and isinstance(item[3], int) and item[3] >= 0:
        price, currency = scraping.parse_price(str(item[3]), default_currency="USD")
    image_ids = [i for i in tags.get(IMAGES_TAG, []) if isinstance(i, str)]
    image_url = IMAGE_URL.format(image_id=image_ids[0].split(":", 1)[-1]) if image_ids else None
    return Listing(
        marketplace="craigslist",
        external_id=str(posting_id),
        title=scraping.clip(titles[-1], 500) or "",
        url=f"{site}/{category}/d/{slug}/{posting_id}.html",
        price=price,
        currency=currency if price is not None else None,
        image_url=image_url,
        location=_json_location(item[4], decode),
        posted_at=posted_at,
        raw={"item": item},
    )


def _json_location(value: object, decode: dict[str, Any]) -> str | None:
    """The area and neighbourhood a `"<area index>:<hood index>~lat~lon"` field points at."""
    if not isinstance(value, str):
        return None
    indexes = value.split("~", 1)[0].split(":")
    locations = decode.get("locations")
    area_index = indexes[0]
    if not isinstance(locations, list) or not area_index.isdigit():
        return None
    area_at = int(area_index)
    area = locations[area_at] if area_at < len(locations) else None
    parts = [p for p in area[1:] if isinstance(p, str)] if isinstance(area, list) else []
    return scraping.clip(", ".join(parts), 255)


def _html_listing(card: LexborNode, *, site: str) -> Listing:
    anchor = card.css_first("a[href]")
    href = anchor.attributes.get("href") if anchor is not None else None
    if not href:
        raise CardError("no link")
    match = _POSTING_ID_IN_URL.search(href)
    if not match:
        raise CardError(f"no posting id in {href[:80]!r}")
    title_node = card.css_first(".title")
    title = scraping.clip(title_node.text(separator=" ") if title_node else None, 500)
    if not title:
        raise CardError("no title")
    price_node = card.css_first(".price")
    price_text = price_node.text(strip=True) if price_node is not None else None
    price, currency = scraping.parse_price(price_text, default_currency="USD")
    location_node = card.css_first(".location")
    return Listing(
        marketplace="craigslist",
        external_id=match.group(1),
        title=title,
        url=scraping.absolute_url(site, href),
        price=price,
        currency=currency if price is not None else None,
        location=scraping.clip(location_node.text() if location_node else None, 255),
        raw={"href": href, "price_text": price_text},
    )
