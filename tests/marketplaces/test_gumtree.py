"""The Gumtree adapter against a fake Gumtree on 127.0.0.1 serving its search-page markup."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from app.config import Settings
from app.marketplaces.base import Blocked, PageLayoutChanged, Query, RateLimited
from app.marketplaces.gumtree import GumtreeAdapter
from app.marketplaces.scraping import FetchPolicy, PageFetcher
from tests.fakes.gumtree import REDESIGNED_PAGE, Ad, GumtreeFake
from tests.fakes.pages import (
    ACCESS_DENIED_PAGE,
    CAPTCHA_PAGE,
    CHALLENGE_PAGE,
    html_reply,
    too_many_requests,
)
from tests.fakes.server import Reply

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
POLICY = FetchPolicy(
    user_agent="MarketmonTests/1.0 (+https://example.invalid/contact)",
    timeout_s=5.0,
    max_retries=2,
    max_retry_wait_s=1.0,
    backoff_s=0.01,
)
LENS = Query(keywords=("canon 50mm",))


@pytest.fixture
def fake() -> Iterator[GumtreeFake]:
    with GumtreeFake() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


@pytest.fixture
def gumtree(fake: GumtreeFake, http: httpx.AsyncClient) -> GumtreeAdapter:
    return GumtreeAdapter(
        PageFetcher("Gumtree", http, POLICY), base_url=fake.base_url, clock=NOW.timestamp
    )


def by_id(listings: list) -> dict:  # type: ignore[type-arg]
    return {listing.external_id: listing for listing in listings}


async def test_cards_become_listings_with_price_place_photo_and_time(
    fake: GumtreeFake, gumtree: GumtreeAdapter
) -> None:
    fake.set_ads(
        [
            Ad("1400000001", "Canon 50mm f/1.8 lens", "£1,250", posted="2 mins ago"),
            Ad("1400000002", "Canon 50mm · objectif très bon état", "£20 ono", posted="1 hour ago"),
            Ad("1400000003", "Canon 50mm lens cap", "Free", location="Leeds", posted="Yesterday"),
            Ad("1400000004", "Canon 50mm, offers", None, image=None, posted=None),
        ]
    )

    listings = await gumtree.search(LENS)

    found = by_id(listings)
    assert list(found) == ["1400000001", "1400000002", "1400000003", "1400000004"]
    first = found["1400000001"]
    assert (first.price, first.currency) == (Decimal("1250.00"), "GBP")
    assert first.url == f"{fake.base_url}/p/cameras-camcorders/canon-50mm-f/1.8-lens/1400000001"
    assert first.location == "Hackney, London"
    assert first.image_url == "https://i.ebayimg.com/00/s/NjAwWDgwMA==/z/abc/$_78.JPG"
    assert first.posted_at == NOW - timedelta(minutes=2)
    assert first.marketplace == "gumtree"
    accented = found["1400000002"]
    assert accented.title == "Canon 50mm · objectif très bon état"
    assert (accented.price, accented.currency) == (Decimal("20.00"), "GBP")
    assert accented.posted_at == NOW - timedelta(hours=1)
    free = found["1400000003"]
    assert (free.price, free.currency, free.location) == (Decimal("0.00"), "GBP", "Leeds")
    assert free.posted_at == NOW - timedelta(days=1)
    unpriced = found["1400000004"]
    assert (unpriced.price, unpriced.currency, unpriced.image_url) == (None, None, None)
    assert unpriced.posted_at is None


async def test_the_request_asks_for_newest_first_in_the_area_with_whole_pound_bounds(
    fake: GumtreeFake, gumtree: GumtreeAdapter
) -> None:
    fake.set_ads([Ad("1400000001", "Canon 50mm lens")])
    query = Query(
        keywords=("canon 50mm",),
        location="sw1a 1aa",
        radius_km=16,
        min_price=Decimal("10.50"),
        max_price=Decimal("99.99"),
    )

    await gumtree.search(query)

    [request] = fake.search_requests
    assert request.param("q") == "canon 50mm"
    assert request.param("search_category") == "all"
    assert request.param("search_location") == "sw1a 1aa"
    assert request.param("distance") == "10"  # 16 km, rounded up to whole miles
    assert (request.param("min_price"), request.param("max_price")) == ("10", "100")
    assert (request.param("sort"), request.param("page")) == ("date", "1")
    assert request.headers["user-agent"] == POLICY.user_agent
    assert request.headers["accept"].startswith("text/html")
    assert request.headers["accept-language"].startswith("en-GB")
    assert "gzip" in request.headers["accept-encoding"]


async def test_a_search_without_location_covers_the_whole_uk(
    fake: GumtreeFake, gumtree: GumtreeAdapter
) -> None:
    fake.set_ads([Ad("1400000001", "Canon 50mm lens")])
    await gumtree.search(LENS)
    [request] = fake.search_requests
    assert request.param("search_location") == "uk"
    assert request.param("distance") is None


async def test_promoted_ads_are_left_out_and_counted(
    fake: GumtreeFake, gumtree: GumtreeAdapter
) -> None:
    fake.set_ads(
        [
            Ad("1300000009", "Canon 50mm bargain (top ad)", promoted=True),
            Ad("1400000001", "Canon 50mm lens"),
        ]
    )
    listings = await gumtree.search(LENS)
    assert [x.external_id for x in listings] == ["1400000001"]
    assert gumtree.promoted_skipped == 1
    assert gumtree.cards_failed == 0


async def test_a_card_that_does_not_parse_is_skipped_and_counted(
    fake: GumtreeFake, gumtree: GumtreeAdapter
) -> None:
    fake.set_ads(
        [Ad("1400000001", "Canon 50mm lens"), Ad("x", "?", broken=True), Ad("1400000002", "Canon")]
    )
    listings = await gumtree.search(LENS)
    assert [x.external_id for x in listings] == ["1400000001", "1400000002"]
    assert gumtree.cards_failed == 1


async def test_a_page_where_every_card_fails_is_an_error_not_no_results(
    fake: GumtreeFake, gumtree: GumtreeAdapter
) -> None:
    fake.set_ads([Ad("a", "?", broken=True), Ad("b", "?", broken=True)])
    with pytest.raises(PageLayoutChanged, match="none of the 2 listings"):
        await gumtree.search(LENS)
    assert gumtree.cards_failed == 2


async def test_an_empty_result_page_is_no_results(
    fake: GumtreeFake, gumtree: GumtreeAdapter
) -> None:
    assert await gumtree.search(Query(keywords=("nothing matches this",))) == []


async def test_a_page_without_cards_or_a_no_results_notice_is_a_layout_change(
    fake: GumtreeFake, gumtree: GumtreeAdapter
) -> None:
    fake.set_raw_page(REDESIGNED_PAGE)
    with pytest.raises(PageLayoutChanged, match="no 'no results' notice"):
        await gumtree.search(LENS)


async def test_a_403_block_page_is_blocked(fake: GumtreeFake, gumtree: GumtreeAdapter) -> None:
    fake.answer_next(html_reply(403, ACCESS_DENIED_PAGE))
    with pytest.raises(Blocked) as caught:
        await gumtree.search(LENS)
    assert str(caught.value) == "blocked (HTTP 403, an access-denied page)"
    assert len(fake.search_requests) == 1


async def test_a_captcha_page_served_with_200_is_blocked(
    fake: GumtreeFake, gumtree: GumtreeAdapter
) -> None:
    fake.set_raw_page(CAPTCHA_PAGE)
    with pytest.raises(Blocked, match="CAPTCHA"):
        await gumtree.search(LENS)


async def test_a_challenge_page_served_with_503_is_blocked_without_retrying(
    fake: GumtreeFake, gumtree: GumtreeAdapter
) -> None:
    fake.answer_next(html_reply(503, CHALLENGE_PAGE))
    with pytest.raises(Blocked, match="bot challenge"):
        await gumtree.search(LENS)
    assert len(fake.search_requests) == 1


async def test_a_redirect_to_the_login_page_is_a_login_wall(
    fake: GumtreeFake, gumtree: GumtreeAdapter
) -> None:
    fake.answer_next(Reply(302, b"", {"Location": "/login?redirect=/search"}))
    with pytest.raises(Blocked, match="login page"):
        await gumtree.search(LENS)


async def test_a_short_retry_after_is_waited_out_and_the_search_succeeds(
    fake: GumtreeFake, gumtree: GumtreeAdapter
) -> None:
    fake.set_ads([Ad("1400000001", "Canon 50mm lens")])
    fake.answer_next(too_many_requests("0"))
    listings = await gumtree.search(LENS)
    assert [x.external_id for x in listings] == ["1400000001"]
    assert len(fake.search_requests) == 2


async def test_a_long_retry_after_fails_the_check_as_rate_limited_at_once(
    fake: GumtreeFake, gumtree: GumtreeAdapter
) -> None:
    fake.answer_next(too_many_requests("120"))
    with pytest.raises(RateLimited) as caught:
        await gumtree.search(LENS)
    assert caught.value.retry_after_s == 120
    assert len(fake.search_requests) == 1


async def test_repeated_429s_give_up_after_the_retries(
    fake: GumtreeFake, gumtree: GumtreeAdapter
) -> None:
    fake.answer_next(*(too_many_requests(None) for _ in range(3)))
    with pytest.raises(RateLimited, match="answered 429"):
        await gumtree.search(LENS)
    assert len(fake.search_requests) == 3  # the first try and two retries


async def test_the_second_page_adds_what_is_new_and_the_repeats_end_the_walk(
    fake: GumtreeFake, http: httpx.AsyncClient
) -> None:
    gumtree = GumtreeAdapter(
        PageFetcher("Gumtree", http, POLICY), base_url=fake.base_url, max_pages=3
    )
    fake.set_ads([Ad("1400000003", "Canon 50mm a"), Ad("1400000002", "Canon 50mm b")], page=1)
    # Listings shift while pages are read: page 2 repeats one of page 1.
    fake.set_ads([Ad("1400000002", "Canon 50mm b"), Ad("1400000001", "Canon 50mm c")], page=2)
    fake.set_ads([Ad("1400000001", "Canon 50mm c")], page=3)

    listings = await gumtree.search(LENS)

    assert [x.external_id for x in listings] == ["1400000003", "1400000002", "1400000001"]
    assert [r.param("page") for r in fake.search_requests] == ["1", "2", "3"]


async def test_each_keyword_is_one_search_and_the_results_are_merged(
    fake: GumtreeFake, gumtree: GumtreeAdapter
) -> None:
    fake.set_ads([Ad("1", "PS5 console"), Ad("2", "PS5 and Xbox bundle")], q="ps5")
    fake.set_ads([Ad("2", "PS5 and Xbox bundle"), Ad("3", "Xbox series x")], q="xbox series x")

    listings = await gumtree.search(Query(keywords=("ps5", '"xbox series x"')))

    assert sorted(x.external_id for x in listings) == ["1", "2", "3"]
    assert [r.param("q") for r in fake.search_requests] == ["ps5", "xbox series x"]


async def test_gumtree_is_reached_through_its_proxy_when_one_is_set(fake: GumtreeFake) -> None:
    # The fake answers as the proxy: the site's name is never resolved here.
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        gumtree_base_url="http://www.gumtree.invalid",
        gumtree_proxy_url=fake.base_url,
        scraper_user_agent=POLICY.user_agent,
    )
    fake.set_ads([Ad("1400000001", "Canon 50mm lens")])
    async with httpx.AsyncClient(trust_env=False) as shared:
        gumtree = GumtreeAdapter.from_settings(shared, settings)
        try:
            assert gumtree.fetcher.client is not shared
            listings = await gumtree.search(LENS)
        finally:
            await gumtree.aclose()
    assert [x.external_id for x in listings] == ["1400000001"]
    assert fake.search_requests[0].headers["host"] == "www.gumtree.invalid"


async def test_without_a_proxy_the_adapter_uses_the_shared_client() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    async with httpx.AsyncClient(trust_env=False) as shared:
        gumtree = GumtreeAdapter.from_settings(shared, settings)
        assert gumtree.fetcher.client is shared
        assert gumtree.base_url == "https://www.gumtree.com"
        assert gumtree.is_configured()
        assert gumtree.currency_for(LENS) == "GBP"
