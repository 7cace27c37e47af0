"""Gumtree UK from its public search pages, newest first, parsed with selectolax.

Page structure: `external-apis.md` section 8. One page per keyword (Gumtree has no OR
syntax), with the location, distance and price range filtered upstream. Featured and
promoted ads sit on top of every page whatever their age, so they are left out: they
would otherwise arrive as "new" on every check that sees them first.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

import httpx
from selectolax.lexbor import LexborHTMLParser, LexborNode

from app.marketplaces import scraping
from app.marketplaces.base import Capabilities, Listing, MarketplaceOptions, Query
from app.marketplaces.scraping import CardError, CardParser, PageFetcher

if TYPE_CHECKING:
    from app.config import Settings
    from app.security.ssrf import Resolver

SEARCH_PATH = "/search"
CARD_SELECTORS = ('article[data-q="search-result"]', "article.listing-maxi")
PROMOTED_SELECTOR = ", ".join(
    f'[data-q*="{word}"], [class*="{word}"]'
    for word in ("featured", "promoted", "spotlight", "top-ad")
)
# What Gumtree's empty result pages say (lower case); a page with neither cards nor this
# is a layout we do not know, not an empty result.
NO_RESULTS_PHRASES = ("no results", "0 results", "0 ads", "couldn't find", "could not find")
KM_PER_MILE = 1.609344


class GumtreeAdapter(scraping.SiteAdapter):
    name = "gumtree"
    # Pages are built for people: a search a minute and a half is plenty, for every worker.
    capabilities = Capabilities(
        price_filter=True,
        location_filter=True,
        page_size=25,
        requests_per_minute=6,
        regions=("GB",),
    )
    options_model: ClassVar[type[MarketplaceOptions] | None] = None

    def __init__(
        self,
        fetcher: PageFetcher,
        *,
        base_url: str = "https://www.gumtree.com",
        max_pages: int = 1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.fetcher = fetcher
        self.base_url = base_url.rstrip("/")
        self.max_pages = max_pages
        self.cards = CardParser("gumtree")
        self.promoted_skipped = 0
        self._clock = clock

    @classmethod
    def from_settings(
        cls, client: httpx.AsyncClient, settings: Settings, _resolve: Resolver | None = None
    ) -> GumtreeAdapter:
        fetcher = PageFetcher.for_marketplace(
            "Gumtree", client, settings, proxy_url=settings.gumtree_proxy_url
        )
        return cls(fetcher, base_url=settings.gumtree_base_url)

    async def aclose(self) -> None:
        await self.fetcher.aclose()

    async def search(self, query: Query) -> list[Listing]:
        """The newest ads for each keyword (up to `max_pages` pages each), promoted ads left
        out. Raises Blocked, RateLimited, PageLayoutChanged or MarketplaceError."""
        listings: list[Listing] = []
        known: set[str] = set()
        # One moment for every "2 mins ago" of this search, so their order holds.
        now = datetime.fromtimestamp(self._clock(), UTC)
        for term in scraping.keyword_terms(query.keywords):
            for page in range(1, self.max_pages + 1):
                found = [
                    x
                    for x in await self._page(query, term, page, now)
                    if x.external_id not in known
                ]
                listings += found
                known.update(x.external_id for x in found)
                # Past the last page Gumtree repeats it or shows none: nothing new, stop.
                if not found:
                    break
        return _newest_first(listings)

    async def _page(self, query: Query, term: str, page: int, now: datetime) -> list[Listing]:
        response = await self.fetcher.get(
            self.base_url + SEARCH_PATH, params=search_params(query, term, page)
        )
        if response.status_code != httpx.codes.OK:
            raise scraping.unexpected_status("Gumtree", response)
        return self.parse_page(response.text, now=now)

    def parse_page(self, html: str, *, now: datetime) -> list[Listing]:
        """The ads on a results page. Raises Blocked for a block page, PageLayoutChanged
        for a page with no ads that does not say it has none."""
        tree = LexborHTMLParser(html)
        cards: list[LexborNode] = []
        for selector in CARD_SELECTORS:
            cards = tree.css(selector)
            if cards:
                break
        if not cards:
            scraping.page_without_listings("gumtree", html, no_results_phrases=NO_RESULTS_PHRASES)
            return []
        return self.cards.parse(cards, lambda card: self._card(card, now))

    def _card(self, card: LexborNode, now: datetime) -> Listing | None:
        if _is_promoted(card):
            self.promoted_skipped += 1
            return None
        anchor = card.css_first('a[data-q="search-result-anchor"]') or card.css_first("a[href]")
        href = anchor.attributes.get("href") if anchor is not None else None
        if not href:
            raise CardError("no link")
        ad_id = href.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        if not ad_id.isalnum():
            raise CardError(f"no ad id in {href[:80]!r}")
        title = scraping.clip(_text(card, '[data-q="tile-title"]'), 500)
        if not title:
            raise CardError("no title")
        price_text = _text(card, '[data-q="tile-price"]')
        price, currency = scraping.parse_price(price_text, default_currency="GBP")
        image = card.css_first("img")
        image_url = None
        if image is not None:
            src = image.attributes.get("data-src") or image.attributes.get("src")
            image_url = scraping.absolute_url(self.base_url, src) if src else None
        posted_text = _text(card, '[data-q="tile-datePosted"]')
        return Listing(
            marketplace=self.name,
            external_id=ad_id,
            title=title,
            url=scraping.absolute_url(self.base_url, href),
            price=price,
            currency=currency if price is not None else None,
            image_url=image_url,
            location=scraping.clip(_text(card, '[data-q="tile-location"]'), 255),
            description=scraping.clip(_text(card, '[data-q="tile-description"]'), 2000),
            posted_at=scraping.parse_relative_time(posted_text, now=now),
            raw={"href": href, "price_text": price_text, "posted_text": posted_text},
        )


def search_params(query: Query, term: str, page: int) -> dict[str, str]:
    """Gumtree's query string: newest first, location and distance, whole-pound bounds
    (widened outwards: local matching applies the exact ones)."""
    category = (query.category or "").strip().lower()
    params = {
        "search_category": category if category.replace("-", "").isalnum() else "all",
        "q": term,
        "search_location": query.location or "uk",
        "sort": "date",
        "page": str(page),
    }
    if query.location and query.radius_km:
        params["distance"] = str(max(1, math.ceil(query.radius_km / KM_PER_MILE)))
    if query.min_price is not None:
        params["min_price"] = str(math.floor(query.min_price))
    if query.max_price is not None:
        params["max_price"] = str(math.ceil(query.max_price))
    return params


def _is_promoted(card: LexborNode) -> bool:
    own = " ".join(card.attributes.get(name) or "" for name in ("class", "data-q")).casefold()
    if any(word in own for word in ("featured", "promoted", "spotlight", "top-ad")):
        return True
    return card.css_first(PROMOTED_SELECTOR) is not None


def _text(card: LexborNode, selector: str) -> str | None:
    node = card.css_first(selector)
    if node is None:
        return None
    return node.text(separator=" ", strip=True) or None


def _newest_first(listings: list[Listing]) -> list[Listing]:
    # Merged keyword pages; undated ads keep their place after the dated ones.
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(listings, key=lambda x: x.posted_at or oldest, reverse=True)
