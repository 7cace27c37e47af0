"""The facebook adapter in a real headless Chromium against local pages shaped like
Marketplace's results page: cards, lazy-loaded cards, the login wall, a changed layout."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.marketplaces.base import MarketplaceError, PageLayoutChanged, Query
from app.marketplaces.facebook import (
    BrowserSettings,
    FacebookAdapter,
    FacebookOptions,
    LoginRequired,
    find_browser,
    playwright_installed,
)
from app.models import SearchMatch
from tests.conftest import make_settings
from tests.fakes.facebook import FacebookPagesFake

BROWSER = find_browser("")
if not (playwright_installed() and BROWSER):
    reason = "needs Playwright (the facebook extra) and a Chromium (Debian's chromium package)"
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"CI must run the browser tests: {reason}")
    pytest.skip(reason, allow_module_level=True)

LONDON = (("city", "london"),)
# Chromium resolves no host name: it can reach the local pages only (their IP literal), so
# the cards' image URLs and anything else stay unfetched.
LOOPBACK_ONLY = ("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--no-proxy-server")


def browser_settings(**overrides: object) -> BrowserSettings:
    values: dict[str, object] = {
        "executable_path": BROWSER,
        "storage_state_path": None,
        "timeout_s": 20,
        "extra_args": LOOPBACK_ONLY,
    }
    values.update(overrides)
    return BrowserSettings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def pages() -> Iterator[FacebookPagesFake]:
    with FacebookPagesFake() as fake:
        yield fake


@pytest.fixture
async def adapter(pages: FacebookPagesFake) -> AsyncIterator[FacebookAdapter]:
    facebook = FacebookAdapter(browser_settings(), base_url=pages.base_url)
    yield facebook
    await facebook.aclose()


def query(*keywords: str, **fields: object) -> Query:
    return Query(keywords=keywords, options=LONDON, **fields)  # type: ignore[arg-type]


async def test_reads_every_card_including_those_loaded_on_scroll(
    adapter: FacebookAdapter,
) -> None:
    listings = {item.external_id: item for item in await adapter.search(query("sofa"))}

    assert sorted(listings) == [str(n) for n in range(1001, 1009)]
    sofa = listings["1001"]
    assert (sofa.title, sofa.price, sofa.currency) == ("IKEA Kivik sofa", Decimal(120), "GBP")
    assert sofa.location == "London, United Kingdom"
    assert sofa.url == f"{adapter.base_url}/marketplace/item/1001/"
    assert sofa.image_url == f"{adapter.base_url}/img/1001.jpg"
    # A reduced price shows the new price first and the struck-out one after it.
    assert listings["1002"].price == Decimal(80)
    assert listings["1002"].title == "Road bike, 54cm frame"
    assert (listings["1003"].price, listings["1003"].currency) == (Decimal(0), "GBP")
    unpriced = listings["1004"]
    assert (unpriced.price, unpriced.currency, unpriced.image_url) == (None, None, None)
    assert unpriced.title == "Čajová konvice — ručně malovaná"
    assert listings["1005"].price == Decimal(1250)
    assert (listings["1007"].price, listings["1007"].currency) == (Decimal(30), "EUR")


async def test_without_scrolling_only_the_first_cards_are_read(
    pages: FacebookPagesFake,
) -> None:
    facebook = FacebookAdapter(browser_settings(max_scrolls=0), base_url=pages.base_url)
    try:
        assert len(await facebook.search(query("sofa"))) == 4
    finally:
        await facebook.aclose()


async def test_search_url_carries_the_filters_newest_first(
    adapter: FacebookAdapter, pages: FacebookPagesFake
) -> None:
    await adapter.search(
        Query(
            keywords=("road bike",),
            min_price=Decimal("50.00"),
            max_price=Decimal("199.50"),
            condition="used",
            radius_km=20,
            options=(("city", "london"), ("days_since_listed", "7")),
        )
    )
    target = urlsplit(pages.searches[-1])
    assert target.path == "/marketplace/london/search"
    assert parse_qs(target.query) == {
        "query": ["road bike"],
        "sortBy": ["creation_time_descend"],
        "minPrice": ["50"],
        "maxPrice": ["200"],
        "itemCondition": ["used_like_new,used_good,used_fair"],
        "radius": ["20"],
        "daysSinceListed": ["7"],
    }


async def test_login_wall_is_its_own_error(adapter: FacebookAdapter) -> None:
    with pytest.raises(LoginRequired) as raised:
        await adapter.search(query("login"))
    assert str(raised.value).startswith("login required")


async def test_empty_results_are_no_listings_and_a_changed_page_is_an_error(
    adapter: FacebookAdapter,
) -> None:
    assert await adapter.search(query("nothing")) == []
    with pytest.raises(PageLayoutChanged):
        await adapter.search(query("changed"))


async def test_a_card_that_cannot_be_read_is_skipped_and_counted(
    adapter: FacebookAdapter,
) -> None:
    listings = await adapter.search(query("broken"))
    assert [item.external_id for item in listings] == ["1009"]
    assert adapter.cards.cards_failed == 1


async def test_a_page_over_the_time_limit_fails_the_check(pages: FacebookPagesFake) -> None:
    facebook = FacebookAdapter(browser_settings(timeout_s=1), base_url=pages.base_url)
    try:
        with pytest.raises(MarketplaceError, match="no answer within 1 s"):
            await facebook.search(query("slow"))
    finally:
        await facebook.aclose()


async def test_one_browser_is_reused_and_a_dead_one_is_started_again(
    adapter: FacebookAdapter,
) -> None:
    await adapter.search(query("sofa"))
    first = adapter._browser
    await adapter.search(query("sofa"))
    assert adapter._browser is first
    assert first is not None
    await first.close()  # as if the browser had crashed between checks
    assert len(await adapter.search(query("sofa"))) == 8
    assert adapter._browser is not first


def test_options_are_checked() -> None:
    assert FacebookOptions.model_validate({"city": "London"}).city == "london"
    for bad in ({"city": "../etc"}, {"days_since_listed": "3"}, {"radius": "5"}):
        with pytest.raises(ValueError, match="validation error"):
            FacebookOptions.model_validate(bad)


def test_unconfigured_without_a_browser() -> None:
    facebook = FacebookAdapter(BrowserSettings(executable_path=None, storage_state_path=None))
    assert not facebook.is_configured()


# --- end to end through the API ----------------------------------------------------------


@pytest.fixture
def settings(database_url: str, pages: FacebookPagesFake) -> Settings:
    return make_settings(
        database_url,
        facebook_base_url=pages.base_url,
        facebook_browser_path=BROWSER,
        facebook_browser_args=list(LOOPBACK_ONLY),
    )


async def test_check_now_on_a_facebook_search_stores_its_matches_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    session: AsyncSession,
    headers: dict[str, str],
) -> None:
    body = {
        "name": "Sofas",
        "criteria": {
            "keywords": ["sofa"],
            "max_price": "500",
            "marketplace_options": {"facebook": {"city": "london"}},
        },
        "marketplaces": ["facebook"],
        "alert_channels": [],
        "check_frequency_minutes": 30,
    }
    created = await client.post("/api/v1/searches/", json=body, headers=headers)
    assert created.status_code == 201, created.text
    search_id = created.json()["id"]

    for _ in range(2):
        checked = await client.post(f"/api/v1/searches/{search_id}/check", headers=headers)
        assert checked.status_code == 200, checked.text
        assert checked.json()["search"]["last_error"] is None

    matches = await session.scalar(select(func.count()).select_from(SearchMatch))
    assert matches == 1  # only the sofa: every other title lacks the keyword
