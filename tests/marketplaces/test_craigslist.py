"""The Craigslist adapter against a fake Craigslist serving its search JSON and HTML page."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from app.marketplaces.base import Blocked, MarketplaceError, Query, RateLimited
from app.marketplaces.craigslist import CraigslistAdapter, build_query
from app.marketplaces.scraping import FetchPolicy, PageFetcher
from tests.fakes.craigslist import MIN_POSTED_DATE, CraigslistFake, Posting
from tests.fakes.pages import ACCESS_DENIED_PAGE, CAPTCHA_PAGE, html_reply, too_many_requests

POLICY = FetchPolicy(user_agent="MarketmonTests/1.0", max_retry_wait_s=1.0, backoff_s=0.01)
JSON_QUERY = Query(keywords=("ipad",), options=(("area_id", "1"), ("city", "sfbay")))
HTML_QUERY = Query(keywords=("ipad",), options=(("city", "sfbay"),))
POSTINGS = [
    Posting(7_712_345_678, 'iPad Pro 11" · like new', price=450, slug="ipad-pro"),
    Posting(7_712_345_600, "iPad mini für Kinder 🙂", price=-1, slug="ipad-mini", area_index=1),
    Posting(7_712_345_500, "iPad air bundle", price=1524, price_text="$1,524", slug="ipad-air"),
    Posting(7_712_345_400, "broken", broken=True),
]


@pytest.fixture
def fake() -> Iterator[CraigslistFake]:
    with CraigslistFake() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


@pytest.fixture
def craigslist(fake: CraigslistFake, http: httpx.AsyncClient) -> CraigslistAdapter:
    return CraigslistAdapter(
        PageFetcher("Craigslist", http, POLICY),
        base_url=fake.base_url + "/{city}",
        api_base_url=fake.base_url,
    )


async def test_the_search_json_becomes_listings_with_ids_times_prices_and_photos(
    fake: CraigslistFake, craigslist: CraigslistAdapter
) -> None:
    fake.set_postings(POSTINGS)

    listings = await craigslist.search(JSON_QUERY)

    assert [x.external_id for x in listings] == ["7712345678", "7712345600", "7712345500"]
    pro, mini, air = listings
    site = f"{fake.base_url}/sfbay"
    assert pro.title == 'iPad Pro 11" · like new'
    assert pro.url == f"{site}/sss/d/ipad-pro/7712345678.html"
    assert (pro.price, pro.currency) == (Decimal("450.00"), "USD")
    assert pro.posted_at == datetime.fromtimestamp(MIN_POSTED_DATE + 3600, UTC)
    assert pro.image_url == "https://images.craigslist.org/00a0a_abcdefghijk_0t20CI_300x300.jpg"
    assert pro.location == "sfbay, sfc"
    assert (mini.title, mini.price, mini.currency) == ("iPad mini für Kinder 🙂", None, None)
    assert mini.location == "sfbay, eby"
    assert air.price == Decimal("1524.00")
    assert craigslist.cards_failed == 1
    assert fake.html_requests == []


async def test_the_json_request_names_the_area_newest_first_and_the_bounds(
    fake: CraigslistFake, craigslist: CraigslistAdapter
) -> None:
    fake.set_postings(POSTINGS[:1])
    query = Query(
        keywords=("ipad", '"iphone 13"', "galaxy tab"),
        min_price=Decimal("99.50"),
        max_price=Decimal("400"),
        location="94110",
        radius_km=10,
        options=(("area_id", "1"), ("city", "sfbay")),
    )

    await craigslist.search(query)

    [request] = fake.json_requests
    assert request.param("batch") == "1-0-360-0-0"
    assert request.param("searchPath") == "sss"
    assert request.param("query") == 'ipad | "iphone 13" | (galaxy tab)'
    assert (request.param("min_price"), request.param("max_price")) == ("99", "400")
    assert (request.param("postal"), request.param("search_distance")) == ("94110", "7")
    assert request.headers["referer"] == f"{fake.base_url}/sfbay/"
    assert request.headers["accept"].startswith("application/json")


def test_a_single_keyword_is_sent_as_it_is() -> None:
    assert build_query(("iphone 13",)) == "iphone 13"
    assert build_query(('"iphone 13"',)) == '"iphone 13"'


async def test_an_empty_json_result_is_no_results(
    fake: CraigslistFake, craigslist: CraigslistAdapter
) -> None:
    assert await craigslist.search(JSON_QUERY) == []
    assert fake.html_requests == []


async def test_unreadable_json_falls_back_to_the_html_page(
    fake: CraigslistFake, craigslist: CraigslistAdapter
) -> None:
    fake.set_postings(POSTINGS[:2])
    fake.json_broken = True

    listings = await craigslist.search(JSON_QUERY)

    assert [x.external_id for x in listings] == ["7712345678", "7712345600"]
    assert len(fake.json_requests) == 1
    assert len(fake.html_requests) == 1


async def test_without_an_area_id_the_html_page_is_read(
    fake: CraigslistFake, craigslist: CraigslistAdapter
) -> None:
    fake.set_postings(POSTINGS)

    listings = await craigslist.search(HTML_QUERY)

    assert fake.json_requests == []
    [request] = fake.html_requests
    assert request.path == "/sfbay/search/sss"
    assert (request.param("query"), request.param("sort")) == ("ipad", "date")
    pro, mini, air = listings
    assert pro.url == "https://sfbay.craigslist.org/sfc/ele/d/ipad-pro/7712345678.html"
    assert (pro.price, pro.currency, pro.location) == (Decimal("450.00"), "USD", "mission district")
    assert (pro.image_url, pro.posted_at) == (None, None)  # the HTML page has neither
    assert (mini.title, mini.price) == ("iPad mini für Kinder 🙂", None)
    assert air.price == Decimal("1524.00")
    assert craigslist.cards_failed == 1


async def test_an_html_page_without_results_is_no_results(
    fake: CraigslistFake, craigslist: CraigslistAdapter
) -> None:
    assert await craigslist.search(HTML_QUERY) == []


async def test_a_403_is_blocked_and_not_retried_as_html(
    fake: CraigslistFake, craigslist: CraigslistAdapter
) -> None:
    fake.answer_next(html_reply(403, ACCESS_DENIED_PAGE))
    with pytest.raises(Blocked, match="HTTP 403"):
        await craigslist.search(JSON_QUERY)
    assert fake.html_requests == []


async def test_a_captcha_page_where_json_was_expected_is_blocked(
    fake: CraigslistFake, craigslist: CraigslistAdapter
) -> None:
    fake.answer_next(html_reply(200, CAPTCHA_PAGE))
    with pytest.raises(Blocked, match="CAPTCHA"):
        await craigslist.search(JSON_QUERY)


async def test_a_long_429_is_rate_limited(
    fake: CraigslistFake, craigslist: CraigslistAdapter
) -> None:
    fake.answer_next(too_many_requests("600"))
    with pytest.raises(RateLimited) as caught:
        await craigslist.search(HTML_QUERY)
    assert caught.value.retry_after_s == 600


async def test_a_search_without_a_city_fails_clearly(craigslist: CraigslistAdapter) -> None:
    with pytest.raises(MarketplaceError, match="no craigslist city"):
        await craigslist.search(Query(keywords=("ipad",)))
