"""A simulated marketplace: new listings for any query appear over time, deterministically.

Needs no credentials and no network, so the embedded quick start shows the whole flow
(search -> match -> alert) within a minute. Listing n of a query appears at
n * interval_s; the same seed, query and clock always give the same listings. Some
titles carry words people usually exclude ("broken", "faulty"), and some listings drop
their price after a while, so exclusions and price-drop alerts can be seen too.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, ClassVar

import httpx

from app.marketplaces.base import Capabilities, Listing, MarketplaceOptions, Query

if TYPE_CHECKING:
    from app.config import Settings
    from app.security.ssrf import Resolver

_PREFIXES = ("", "Genuine", "Boxed", "Immaculate", "Job lot:", "Rare", "Used")
_SUFFIXES = (
    "- excellent condition",
    "with original box",
    "bundle, collection only",
    "barely used",
    "spares or repair, broken",
    "faulty - for parts",
    "great value",
    "like new, receipt included",
)
_CONDITIONS = ("New", "Used", "Used", "Pre-owned", "Refurbished")
_CITIES = ("London", "Manchester", "Bristol", "Leeds", "Glasgow", "Birmingham", "Brighton")
_SELLERS = ("deal_finder", "attic_clearout", "retro_rick", "techswap", "sam_sells", "vintage_v")


class DemoAdapter:
    name = "demo"
    capabilities = Capabilities(
        price_filter=False, condition_filter=False, location_filter=False, page_size=20
    )
    options_model: ClassVar[type[MarketplaceOptions] | None] = None

    def __init__(
        self,
        *,
        seed: int = 1,
        interval_s: float = 45.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.seed = seed
        self.interval_s = interval_s
        self.clock = clock

    @classmethod
    def from_settings(
        cls, _client: httpx.AsyncClient, settings: Settings, _resolve: Resolver | None = None
    ) -> DemoAdapter | None:
        """The demo marketplace, or None when DEMO_MARKETPLACE_ENABLED is off."""
        if not settings.demo_marketplace_enabled:
            return None
        return cls(interval_s=settings.demo_listing_interval_s)

    def is_configured(self) -> bool:
        return True

    def currency_for(self, query: Query) -> str:
        return query.currency or "GBP"

    async def search(self, query: Query) -> list[Listing]:
        """The newest page of listings for the query, newest first."""
        if not query.keywords:
            return []
        query_key = hashlib.sha256("|".join(query.keywords).lower().encode()).hexdigest()[:10]
        latest = int(self.clock() // self.interval_s)
        page = range(latest, latest - self.capabilities.page_size, -1)
        return [self._listing(query, query_key, n, latest) for n in page if n >= 0]

    def _listing(self, query: Query, query_key: str, n: int, latest: int) -> Listing:
        rng = random.Random(f"{self.seed}:{query_key}:{n}")
        keyword = _title_case(rng.choice(query.keywords).strip('"'))
        title = " ".join(
            part for part in (rng.choice(_PREFIXES), keyword, rng.choice(_SUFFIXES)) if part
        )
        base = _base_price(keyword, self.seed)
        price = (base * Decimal(rng.uniform(0.45, 1.3))).quantize(Decimal("0.01"))
        # One listing in five is reduced by 15% once it is three intervals old.
        if rng.random() < 0.2 and latest - n >= 3:
            price = (price * Decimal("0.85")).quantize(Decimal("0.01"))
        external_id = f"{query_key}-{n}"
        return Listing(
            marketplace=self.name,
            external_id=external_id,
            title=title,
            url=f"https://demo.marketmon.invalid/item/{external_id}",
            price=price,
            currency=self.currency_for(query),
            image_url=f"https://demo.marketmon.invalid/img/{external_id}.jpg",
            location=query.location or rng.choice(_CITIES),
            condition=rng.choice(_CONDITIONS),
            seller=rng.choice(_SELLERS),
            posted_at=datetime.fromtimestamp(n * self.interval_s, UTC),
            raw={"demo": True, "n": n},
        )


def _base_price(keyword: str, seed: int) -> Decimal:
    digest = hashlib.sha256(f"{seed}:{keyword.lower()}".encode()).digest()
    return Decimal(20 + int.from_bytes(digest[:2], "big") % 780)


def _title_case(keyword: str) -> str:
    # Upstream queries are lower-cased for sharing; titles read better capitalised.
    return " ".join(word[:1].upper() + word[1:] for word in keyword.split())
