"""Facebook Marketplace, read from the rendered results page in a real headless Chromium.

Facebook has no public API for Marketplace: listings only render in a browser, and most
regions show them only to a logged-in session. This adapter is optional: it needs the
`facebook` extra (Playwright for Python) and a Chromium on the machine (the system one,
FACEBOOK_BROWSER_PATH, so nothing is downloaded at run time). The operator may give a saved
browser session (FACEBOOK_STORAGE_STATE_PATH, made by `marketmon facebook login`);
credentials are never stored in the database.

One browser per process, started on first use and reused; one fresh context and page per
check, under a hard time limit; a crashed browser is started again on the next check.
Scraping Facebook may break its terms of use and breaks whenever the page changes: the
operator enables it knowingly (see README).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
from dataclasses import dataclass
from decimal import Decimal
from importlib.util import find_spec
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from urllib.parse import urlencode

import httpx
from pydantic import Field, StringConstraints

from app.marketplaces import regions, scraping
from app.marketplaces.base import (
    Blocked,
    Capabilities,
    Listing,
    MarketplaceError,
    MarketplaceOptions,
    PageLayoutChanged,
    Query,
)
from app.marketplaces.scraping import CardError, CardParser

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, Playwright

    from app.config import Settings
    from app.security.ssrf import Resolver

logger = logging.getLogger(__name__)

ITEM_LINKS = 'a[href*="/marketplace/item/"]'
RESULTS_GRID = '[aria-label="Collection of Marketplace items"]'
LOGIN_FORM = 'form[action*="login"], input[name="pass"]'
DEFAULT_BROWSER_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome")
# The browser talks to the marketplace only: no update checks, sync or other background calls.
QUIET_BROWSER_ARGS = (
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
)
MAX_SEARCH_TERMS = 2
SCROLL_WAIT_MS = 1_500
_ITEM_ID = re.compile(r"/marketplace/item/(\d+)")
_CONDITIONS = {"new": "new", "used": "used_like_new,used_good,used_fair"}
# Each card's link, its text lines (price(s), title, location) and its image.
_READ_CARDS = """(links) => links.map((a) => ({
    href: a.getAttribute("href"),
    lines: (a.innerText || "").split("\\n").map((s) => s.trim()).filter(Boolean),
    image: (a.querySelector("img") || {}).src || null,
}))"""


class LoginRequired(Blocked):
    """Facebook answered with its login page: the operator's saved session is missing or
    has expired. Shown on the search as "login required"."""

    def __init__(self) -> None:
        super().__init__("login required")
        self.args = (
            "login required: Facebook shows its login page; set FACEBOOK_STORAGE_STATE_PATH "
            "to a saved session (marketmon facebook login)",
        )


class FacebookOptions(MarketplaceOptions):
    city: (
        Annotated[str, StringConstraints(to_lower=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{1,60}$")]
        | None
    ) = Field(default=None, description="Marketplace city slug or id: london, nyc, 108424279189115")
    latitude: Annotated[str, StringConstraints(pattern=r"^-?\d{1,2}(\.\d+)?$")] | None = Field(
        default=None, description="With longitude, instead of a city"
    )
    longitude: Annotated[str, StringConstraints(pattern=r"^-?\d{1,3}(\.\d+)?$")] | None = Field(
        default=None, description="With latitude, instead of a city"
    )
    days_since_listed: Literal["1", "7", "30"] | None = Field(
        default=None, description="Only listings this many days old at most"
    )


@dataclass(frozen=True)
class BrowserSettings:
    executable_path: str | None
    storage_state_path: str | None
    max_scrolls: int = 3
    timeout_s: float = 60.0
    concurrency: int = 1
    # More Chromium flags (tests confine the browser to loopback with host resolver rules).
    extra_args: tuple[str, ...] = ()


def find_browser(configured: str) -> str | None:
    """The Chromium to drive: the configured path, else the system one if there is one."""
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    for path in DEFAULT_BROWSER_PATHS:
        if os.access(path, os.X_OK):
            return path
    for name in BROWSER_NAMES:
        if found := shutil.which(name):
            return found
    return None


def playwright_installed() -> bool:
    return find_spec("playwright") is not None


class FacebookAdapter(scraping.SiteAdapter):
    name = "facebook"
    setup_hint: ClassVar[str] = (
        "the facebook extra (pip install '.[facebook]') and Chromium, or FACEBOOK_BROWSER_PATH"
    )
    options_model: ClassVar[type[MarketplaceOptions] | None] = FacebookOptions
    # Without Playwright and a browser it can never check anything: searches are refused.
    needs_local_software: ClassVar[bool] = True

    def __init__(
        self,
        browser: BrowserSettings,
        *,
        base_url: str = "https://www.facebook.com",
        default_country: str = "GB",
        requests_per_minute: int = 2,
    ) -> None:
        self.settings = browser
        self.base_url = base_url.rstrip("/")
        self.default_currency = regions.region(default_country).currency
        self.capabilities = Capabilities(
            price_filter=True,
            condition_filter=True,
            location_filter=True,
            page_size=24 * (browser.max_scrolls + 1),
            requests_per_minute=requests_per_minute,
        )
        self.cards = CardParser("facebook")
        self._gate = asyncio.Semaphore(browser.concurrency)
        self._start_lock = asyncio.Lock()
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None

    @classmethod
    def from_settings(
        cls, _client: httpx.AsyncClient, settings: Settings, _resolve: Resolver | None = None
    ) -> FacebookAdapter:
        return cls(
            BrowserSettings(
                executable_path=find_browser(settings.facebook_browser_path),
                storage_state_path=settings.facebook_storage_state_path or None,
                max_scrolls=settings.facebook_max_scrolls,
                timeout_s=settings.facebook_timeout_s,
                concurrency=settings.facebook_concurrency,
                extra_args=tuple(settings.facebook_browser_args),
            ),
            base_url=settings.facebook_base_url,
            default_country=settings.default_country,
            requests_per_minute=settings.facebook_requests_per_minute,
        )

    def is_configured(self) -> bool:
        return playwright_installed() and self.settings.executable_path is not None

    def search_url(self, query: Query, term: str) -> str:
        """The results page of one search term, newest first, with every filter the site
        takes in its URL."""
        params: dict[str, str] = {"query": term, "sortBy": "creation_time_descend"}
        if query.min_price is not None:
            params["minPrice"] = str(int(query.min_price))
        if query.max_price is not None:
            params["maxPrice"] = str(
                int(query.max_price.to_integral_value(rounding="ROUND_CEILING"))
            )
        if query.condition in _CONDITIONS:
            params["itemCondition"] = _CONDITIONS[query.condition]
        if query.radius_km is not None:
            params["radius"] = str(query.radius_km)
        if days := query.option("days_since_listed"):
            params["daysSinceListed"] = days
        latitude, longitude = query.option("latitude"), query.option("longitude")
        if latitude and longitude:
            params |= {"latitude": latitude, "longitude": longitude}
        city = query.option("city")
        path = f"/marketplace/{city}/search" if city else "/marketplace/search"
        return f"{self.base_url}{path}?{urlencode(params)}"

    async def search(self, query: Query) -> list[Listing]:
        """The newest listings of up to two search terms. Raises LoginRequired on a login
        wall, PageLayoutChanged when no result grid or card can be read, MarketplaceError
        on a browser failure or when the time limit is reached."""
        if not self.is_configured():
            raise MarketplaceError("facebook: Playwright or a Chromium browser is missing")
        terms = scraping.keyword_terms(query.keywords, limit=MAX_SEARCH_TERMS)
        listings: list[Listing] = []
        async with self._gate:
            for term in terms:
                listings += await self._read_results(self.search_url(query, term), query)
        return scraping.unique(listings)

    async def aclose(self) -> None:
        browser, playwright = self._browser, self._playwright
        self._browser = self._playwright = None
        if browser is not None:
            await _quietly(browser.close())
        if playwright is not None:
            await _quietly(playwright.stop())

    # --- the browser ------------------------------------------------------------------

    async def _read_results(self, url: str, query: Query) -> list[Listing]:
        from playwright.async_api import Error as PlaywrightError

        browser = await self._running_browser()
        context = await browser.new_context(
            storage_state=self._storage_state(),
            locale="en-GB",
            viewport={"width": 1280, "height": 2000},
        )
        try:
            page = await context.new_page()
            async with asyncio.timeout(self.settings.timeout_s):
                cards = await self._load_cards(page, url)
        except TimeoutError as exc:
            raise MarketplaceError(
                f"facebook: no answer within {self.settings.timeout_s:.0f} s"
            ) from exc
        except PlaywrightError as exc:
            if not browser.is_connected():
                logger.warning("facebook: the browser crashed; it starts again on the next check")
                self._browser = None
                raise MarketplaceError("facebook: the browser crashed") from exc
            raise MarketplaceError(f"facebook: page failed to load ({_first_line(exc)})") from exc
        finally:
            await _quietly(context.close())
        currency = self.currency_for(query)
        return self.cards.parse(cards, lambda card: self._listing(card, currency))

    async def _load_cards(self, page: Page, url: str) -> list[dict[str, Any]]:
        await page.goto(url, wait_until="domcontentloaded")
        links = page.locator(ITEM_LINKS)
        if await links.count() == 0:
            await _settle(page, ITEM_LINKS)
        count = await links.count()
        if count == 0:
            if "/login" in page.url or await page.locator(LOGIN_FORM).count():
                raise LoginRequired()
            if await page.locator(RESULTS_GRID).count():
                return []
            raise PageLayoutChanged(
                "facebook: no result grid on the page; its layout may have changed"
            )
        for _ in range(self.settings.max_scrolls):
            await page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
            if not await _more_than(page, count):
                break
            count = await links.count()
        cards: list[dict[str, Any]] = await page.eval_on_selector_all(ITEM_LINKS, _READ_CARDS)
        return cards

    async def _running_browser(self) -> Browser:
        async with self._start_lock:
            if self._browser is not None and self._browser.is_connected():
                return self._browser
            from playwright.async_api import async_playwright

            if self._playwright is None:
                self._playwright = await async_playwright().start()
            self._browser = await self._playwright.chromium.launch(
                executable_path=self.settings.executable_path,
                headless=True,
                args=[*QUIET_BROWSER_ARGS, *self.settings.extra_args],
            )
            return self._browser

    def _storage_state(self) -> str | None:
        path = self.settings.storage_state_path
        if path and not os.path.isfile(path):
            logger.warning("facebook: FACEBOOK_STORAGE_STATE_PATH %s does not exist", path)
            return None
        return path

    # --- cards ------------------------------------------------------------------------

    def _listing(self, card: dict[str, Any], currency: str) -> Listing:
        href = str(card.get("href") or "")
        found = _ITEM_ID.search(href)
        if found is None:
            raise CardError(f"no item id in {href!r}")
        item_id = found.group(1)
        price, currency_seen, rest = _split_prices(list(card.get("lines") or []), currency)
        if not rest:
            raise CardError(f"item {item_id} has no title")
        image = card.get("image")
        return Listing(
            marketplace=self.name,
            external_id=item_id,
            title=scraping.clip(rest[0], 500) or "",
            url=f"{self.base_url}/marketplace/item/{item_id}/",
            price=price,
            currency=currency_seen if price is not None else None,
            image_url=image if isinstance(image, str) and image.startswith("http") else None,
            location=scraping.clip(rest[1], 200) if len(rest) > 1 else None,
        )


async def save_login_session(
    *, browser_path: str, base_url: str, storage_state_path: str, wait_for_login: Any
) -> None:
    """Open a visible browser on Facebook's login page; once the operator has logged in
    (and passed any second factor) and `wait_for_login` returns, save the session's cookies
    to `storage_state_path` for the adapter. Needs a display."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=browser_path, headless=False)
        try:
            context = await browser.new_context()
            page = await context.new_page()
            await page.goto(f"{base_url.rstrip('/')}/login/")
            await asyncio.to_thread(wait_for_login)
            await context.storage_state(path=storage_state_path)
        finally:
            await browser.close()
    os.chmod(storage_state_path, 0o600)  # it holds session cookies


def _split_prices(lines: list[str], currency: str) -> tuple[Decimal | None, str | None, list[str]]:
    """A card's leading price lines (the price, then a struck-out former price) apart from
    the title and location that follow."""
    price: Decimal | None = None
    seen: str | None = None
    index = 0
    while index < len(lines):
        amount, found = scraping.parse_price(
            lines[index], default_currency=currency, needs_currency=True
        )
        if amount is None:
            break
        if price is None:
            price, seen = amount, found or currency
        index += 1
    return price, seen, lines[index:]


async def _settle(page: Page, selector: str) -> None:
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    try:
        await page.wait_for_selector(selector, timeout=SCROLL_WAIT_MS)
    except PlaywrightTimeout:
        return


async def _more_than(page: Page, count: int) -> bool:
    """Whether more cards appeared after a scroll (lazy loading), waiting a little."""
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    try:
        await page.wait_for_function(
            "([selector, n]) => document.querySelectorAll(selector).length > n",
            arg=[ITEM_LINKS, count],
            timeout=SCROLL_WAIT_MS,
        )
    except PlaywrightTimeout:
        return False
    return True


async def _quietly(closing: Any) -> None:
    try:
        await closing
    except Exception:  # closing a dead browser must not fail a check
        logger.debug("facebook: error while closing the browser", exc_info=True)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or ["unknown error"])[0][:200]
