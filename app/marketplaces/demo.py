"""A simulated marketplace: new listings for any query appear over time, deterministically.

Needs no credentials and no network, so the embedded quick start shows the whole flow
(search -> match -> alert) within a minute. Listing n of a query appears at
n * interval_s; the same seed, query and clock always give the same listings. Its photos
and listing pages are served by the app itself (`app/web/demo_pages.py`), so links work
without the internet. One listing in five carries words people usually exclude
("broken", "faulty"), and some listings drop their price after a while, so exclusions and
price-drop alerts can be seen too; the others pass the built-in templates' exclusions.
"""

from __future__ import annotations

import hashlib
import random
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING, ClassVar

import httpx

from app.marketplaces.base import Capabilities, Listing, MarketplaceOptions, Query

if TYPE_CHECKING:
    from app.config import Settings
    from app.security.ssrf import Resolver


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


DEFAULT_BASE_URL = "http://localhost:8000"
# Half of FIRST_FOLLOW_UP_S: a new search's second check always finds two new listings,
# and no two listings in a row are flawed, so it always has one to alert.
DEFAULT_INTERVAL_S = 15.0

# `<10 hex digits of the query>-<n>`: the demo pages accept nothing else.
EXTERNAL_ID = re.compile(r"[0-9a-f]{10}-(?:0|[1-9][0-9]{0,15})")

# What a listing's photo shows, by the words of its keyword; the first kind that shares a
# word wins. The image route serves exactly these kinds (and "item").
IMAGE_KINDS: dict[str, frozenset[str]] = {
    "phone": _words("iphone ipad pixel galaxy phone smartphone oneplus xperia nokia tablet"),
    "computer": _words("macbook laptop thinkpad xps chromebook notebook imac computer pc surface"),
    "console": _words(
        "nintendo snes n64 playstation ps5 ps4 ps3 ps2 ps1 xbox sega dreamcast megadrive "
        "gameboy game switch gamecube console wii"
    ),
    "watch": _words("watch omega seiko tudor longines rolex casio speedmaster seamaster skx007"),
    "camera": _words("camera gopro dji drone canon nikon fujifilm leica lens"),
    "bike": _words("bike bicycle brompton cannondale trek specialized gravel"),
    "clothing": _words("jacket coat burberry barbour moncler goose trainers dress jeans hoodie"),
}
DEFAULT_IMAGE_KIND = "item"

_PREFIXES = ("", "", "Genuine", "Boxed", "Immaculate", "Rare", "Used", "Original")
_SUFFIXES = (
    "- excellent condition",
    "with original box",
    "bundle, collection only",
    "barely used",
    "great value",
    "like new, receipt included",
    "fully working, well looked after",
    "recently serviced",
)
# Shown on one listing in five: what the built-in templates exclude.
_FLAWED_SUFFIXES = (
    "spares or repair, broken",
    "faulty - for parts",
    "job lot, untested",
    "cracked, sold as seen",
)
_FLAWED_EVERY = 5
_CONDITIONS = ("New", "Used", "Used", "Pre-owned", "Refurbished")
_CITIES = ("London", "Manchester", "Bristol", "Leeds", "Glasgow", "Birmingham", "Brighton")
_SELLERS = ("deal_finder", "attic_clearout", "retro_rick", "techswap", "sam_sells", "vintage_v")
_CENT = Decimal("0.01")

# Product words whose real spelling is not Title Case (looked up lower-cased).
_SPELLINGS = {
    word.casefold(): word
    for word in _words(
        "iPhone iPad iPod iMac MacBook AirPods AirPod AirTag HomePod PlayStation DualSense "
        "Xbox GoPro Nintendo SNES NES GameCube GameBoy DJI LEGO Dyson KitchenAid Nespresso "
        "ThinkPad Pixel Galaxy OnePlus OLED QLED USB HDMI NVMe WiFi AMD CPU GPU "
        "RAM LED SE UK EU II III IV VR AI"
    )
}
# Short words without vowels that are not acronyms.
_NOT_ACRONYMS = frozenset({"mr", "mrs", "dr", "st", "nr", "vs"})
_VOWELS = frozenset("aeiouy")
# Units and ordinals that stay lower-case after a number: "50mm", "2nd", "90s".
_LOWER_SUFFIXES = frozenset(
    {"mm", "cm", "m", "km", "ml", "l", "kg", "g", "st", "nd", "rd", "th", "s"}
)
_NUMBER_AND_SUFFIX = re.compile(r"(\d+(?:\.\d+)?)([a-z]+)")


class DemoAdapter:
    name = "demo"
    # A real marketplace with a price filter returns only listings in range, so the demo
    # takes the range upstream too and its listings pass the search's own price check.
    capabilities = Capabilities(
        price_filter=True, condition_filter=True, location_filter=False, page_size=20
    )
    options_model: ClassVar[type[MarketplaceOptions] | None] = None

    def __init__(
        self,
        *,
        seed: int = 1,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.time,
        base_url: str = DEFAULT_BASE_URL,
    ) -> None:
        self.seed = seed
        self.interval_s = interval_s
        self.clock = clock
        self.base_url = base_url.rstrip("/")

    @classmethod
    def from_settings(
        cls, _client: httpx.AsyncClient, settings: Settings, _resolve: Resolver | None = None
    ) -> DemoAdapter | None:
        """The demo marketplace, or None when DEMO_MARKETPLACE_ENABLED is off."""
        if not settings.demo_marketplace_enabled:
            return None
        return cls(interval_s=settings.demo_listing_interval_s, base_url=settings.public_base_url)

    def is_configured(self) -> bool:
        return True

    def currency_for(self, query: Query) -> str:
        return query.currency or "GBP"

    async def search(self, query: Query) -> list[Listing]:
        """The newest page of listings for the query, newest first."""
        if not query.keywords:
            return []
        # The price range is part of the key: searches with other ranges see other
        # listings, never the same listing at two prices.
        key_parts = (*query.keywords, str(query.min_price), str(query.max_price), query.currency)
        query_key = hashlib.sha256("|".join(map(str, key_parts)).lower().encode()).hexdigest()
        query_key = query_key[:10]
        latest = int(self.clock() // self.interval_s)
        page = range(latest, latest - self.capabilities.page_size, -1)
        return [self._listing(query, query_key, n, latest) for n in page if n >= 0]

    def _listing(self, query: Query, query_key: str, n: int, latest: int) -> Listing:
        rng = random.Random(f"{self.seed}:{query_key}:{n}")
        keyword = rng.choice(query.keywords).strip('"')
        product = product_name(keyword)
        # A fixed share, spread evenly, so every page shows some of each.
        is_flawed = (n + int(query_key[:4], 16)) % _FLAWED_EVERY == 0
        suffix = rng.choice(_FLAWED_SUFFIXES if is_flawed else _SUFFIXES)
        title = " ".join(part for part in (rng.choice(_PREFIXES), product, suffix) if part)
        low, high = _price_range(query, _base_price(keyword, self.seed))
        price = _cents(low + (high - low) * Decimal(rng.random()), low, high)
        # One listing in five is reduced by 15% once it is three intervals old (never
        # below the range: the marketplace would stop returning it).
        if rng.random() < 0.2 and latest - n >= 3:
            price = _cents(price * Decimal("0.85"), query.min_price or _CENT, high)
        external_id = f"{query_key}-{n}"
        return Listing(
            marketplace=self.name,
            external_id=external_id,
            title=title,
            url=f"{self.base_url}/demo/listings/{external_id}",
            price=price,
            currency=self.currency_for(query),
            image_url=f"{self.base_url}/demo/images/{external_id}.svg?p={image_kind(keyword)}",
            location=query.location or rng.choice(_CITIES),
            condition=rng.choice(_conditions(query.condition)),
            seller=rng.choice(_SELLERS),
            posted_at=datetime.fromtimestamp(n * self.interval_s, UTC),
            raw={"demo": True, "n": n},
        )


def _conditions(wanted: str | None) -> tuple[str, ...]:
    # Filtered upstream like a real marketplace: only listings in the condition asked for.
    if wanted == "new":
        return ("New",)
    if wanted == "used":
        return tuple(c for c in _CONDITIONS if c != "New")
    return _CONDITIONS


def product_name(keyword: str) -> str:
    """The keyword spelt as the product is: "iphone 13 pro 256gb" -> "iPhone 13 Pro 256GB".

    Upstream queries are lower-cased so equal searches share a fetch; titles read better
    with the makers' own spelling. Only letter case changes, so the keyword still matches.
    """
    return " ".join("-".join(map(_word_case, word.split("-"))) for word in keyword.split())


def image_kind(keyword: str) -> str:
    """Which kind of product photo the keyword gets: one of IMAGE_KINDS, or "item"."""
    words = set(keyword.casefold().replace("-", " ").split())
    return next((kind for kind, known in IMAGE_KINDS.items() if words & known), DEFAULT_IMAGE_KIND)


def is_listing_id(value: str) -> bool:
    """Whether the value is an id the demo marketplace could have made."""
    return EXTERNAL_ID.fullmatch(value) is not None


def _word_case(word: str) -> str:
    lower = word.casefold()
    if lower in _SPELLINGS:
        return _SPELLINGS[lower]
    number_and_suffix = _NUMBER_AND_SUFFIX.fullmatch(lower)
    if number_and_suffix is not None:
        number, suffix = number_and_suffix.groups()
        return number + (suffix if suffix in _LOWER_SUFFIXES else suffix.upper())
    if any(c.isdigit() for c in lower):
        return lower.upper()  # a model number: "ps5", "skx007", "m2"
    if lower.isalpha() and len(lower) <= 4 and not _VOWELS & set(lower):
        return lower.capitalize() if lower in _NOT_ACRONYMS else lower.upper()
    return word[:1].upper() + word[1:]


def _price_range(query: Query, base: Decimal) -> tuple[Decimal, Decimal]:
    """Whole cents the listing's price lies between: the query's range when it has one,
    around the keyword's own price otherwise (with one bound only, on its right side)."""
    low, high = query.min_price, query.max_price
    if low is None:
        low = base * Decimal("0.45") if high is None else min(base * Decimal("0.45"), high / 2)
    if high is None:
        high = max(base * Decimal("1.3"), low * Decimal("1.5"))
    low = low.quantize(_CENT, ROUND_CEILING)
    return low, max(low, high.quantize(_CENT, ROUND_FLOOR))


def _cents(price: Decimal, low: Decimal, high: Decimal) -> Decimal:
    # Rounding must not carry a price just outside the range it was drawn from.
    return min(max(price.quantize(_CENT), low), high)


def _base_price(keyword: str, seed: int) -> Decimal:
    digest = hashlib.sha256(f"{seed}:{keyword.lower()}".encode()).digest()
    return Decimal(20 + int.from_bytes(digest[:2], "big") % 780)
