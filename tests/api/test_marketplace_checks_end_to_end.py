"""Searches on craigslist, vinted, reddit and rss, end to end: saved through the API with
their marketplace options, checked twice with `POST /searches/{id}/check` against a local
fake, their matches stored exactly once and shown with every field the source has.

The Gumtree search is covered the same way in test_scraped_marketplace_checks.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import Listing as ListingRow
from app.models import Plan
from tests.conftest import make_settings
from tests.factories import make_user, token_headers
from tests.fakes.craigslist import MIN_POSTED_DATE, CraigslistFake, Posting
from tests.fakes.feeds import FeedFake
from tests.fakes.reddit import CREATED_UTC, Post, RedditFake
from tests.fakes.vinted import Item, VintedFake
from tests.security.test_ssrf import FakeResolver

URL = "/api/v1/searches/"


@pytest.fixture
def craigslist() -> Iterator[CraigslistFake]:
    with CraigslistFake() as fake:
        fake.set_postings(
            [
                Posting(7_712_345_678, "iPad Pro 11 inch, like new", price=450, slug="ipad-pro"),
                Posting(7_712_345_600, "iPad mini", price=-1, slug="ipad-mini", area_index=1),
                Posting(7_712_345_500, "iPad air bundle", price=1524, slug="ipad-air"),
                Posting(7_712_345_400, "broken", broken=True),
            ]
        )
        yield fake


@pytest.fixture
def vinted() -> Iterator[VintedFake]:
    with VintedFake() as fake:
        fake.set_items(
            [
                Item(4_100_000_001, "North Face jacket", amount="45.0"),
                Item(4_100_000_002, "North Face fleece", amount="12.5", photo=None),
                Item(4_100_000_003, "North Face parka", amount="180.0"),
                Item(4_100_000_004, "broken", broken=True),
            ]
        )
        yield fake


@pytest.fixture
def reddit() -> Iterator[RedditFake]:
    with RedditFake() as fake:
        fake.set_posts(
            "hardwareswap",
            [
                Post("1abcd3", "[USA-CA] [H] RTX 3080 FE [W] $450 shipped, local cash"),
                Post("1abcd2", "[UK-London] [H] Steam Deck 512GB [W] £300", thumbnail="self"),
                Post("1abcd1", "[USA-NY] [H] PayPal [W] Ryzen 7 5800X3D"),
                Post("1abcd0", "[UK-Leeds] [H] Steam Deck OLED [W] £380", flair="Sold"),
                Post("1abccz", "broken", broken=True),
            ],
        )
        yield fake


@pytest.fixture
def feeds() -> Iterator[FeedFake]:
    with FeedFake() as fake:
        yield fake


@pytest.fixture
def settings(
    database_url: str,
    craigslist: CraigslistFake,
    vinted: VintedFake,
    reddit: RedditFake,
    feeds: FeedFake,
) -> Settings:
    # No response cache: every check asks the fake again. The loopback allowance lets a
    # feed URL on 127.0.0.1 pass the SSRF check, when saved and when fetched.
    return make_settings(
        database_url,
        craigslist_base_url=craigslist.base_url + "/{city}",
        craigslist_api_base_url=craigslist.base_url,
        vinted_base_url=vinted.base_url + "/{domain}",
        reddit_base_url=reddit.base_url,
        fetch_cache_ttl_s=0,
        scraper_max_retries=0,
        ssrf_allow_loopback=True,
    )


@pytest.fixture
def resolver(app: FastAPI) -> FakeResolver:
    # Knows no names: a feed URL on 127.0.0.1 needs no lookup, and any lookup fails loudly.
    fake = FakeResolver()
    app.state.resolve_host = fake
    return fake


@pytest.fixture
async def pro_headers(app: FastAPI, session: AsyncSession) -> dict[str, str]:
    pro = await make_user(session, email="pro@example.com", plan=Plan.PRO)
    return token_headers(app, pro)


async def create(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    marketplace: str,
    criteria: dict[str, Any],
) -> str:
    body = {
        "name": f"A {marketplace} search",
        "criteria": criteria,
        "marketplaces": [marketplace],
        "alert_channels": ["in_app"],
        "alert_on_first_check": True,
    }
    response = await client.post(URL, json=body, headers=headers)
    assert response.status_code == 201, response.text
    search_id: str = response.json()["id"]
    return search_id


async def check_twice(
    client: httpx.AsyncClient, headers: dict[str, str], search_id: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    results = []
    for _ in range(2):
        response = await client.post(f"{URL}{search_id}/check", headers=headers)
        assert response.status_code == 200, response.text
        results.append(response.json())
    first, second = results
    assert first["errors"] == []
    assert second["errors"] == []
    assert second["matches_new"] == 0
    return first, second


async def stored(session: AsyncSession, marketplace: str) -> int:
    count = await session.scalar(
        select(func.count()).select_from(ListingRow).where(ListingRow.marketplace == marketplace)
    )
    return count or 0


async def listed(
    client: httpx.AsyncClient, headers: dict[str, str], search_id: str
) -> dict[str, dict[str, Any]]:
    response = await client.get(f"{URL}{search_id}/listings", headers=headers)
    assert response.status_code == 200, response.text
    return {item["external_id"]: item for item in response.json()["items"]}


def posted(item: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(item["posted_at"]).astimezone(UTC)


async def test_a_craigslist_search_stores_its_matches_once_with_every_field_the_json_has(
    client: httpx.AsyncClient,
    pro_headers: dict[str, str],
    session: AsyncSession,
    craigslist: CraigslistFake,
) -> None:
    # An area id makes the adapter read the search JSON, which has photos and times.
    criteria = {
        "keywords": ["ipad"],
        "max_price": 1000,
        "marketplace_options": {"craigslist": {"city": "sfbay", "area_id": "1"}},
    }
    search_id = await create(client, pro_headers, "craigslist", criteria)

    first, _ = await check_twice(client, pro_headers, search_id)

    # The broken item is not a listing; the air is over the limit; the mini shows no price,
    # so it passes the limit as "price unknown".
    assert first["listings_fetched"] == 3
    assert first["matches_new"] == 2
    assert len(craigslist.json_requests) == 2
    assert craigslist.html_requests == []
    assert await stored(session, "craigslist") == 3

    items = await listed(client, pro_headers, search_id)
    assert set(items) == {"7712345678", "7712345600"}
    assert items["7712345600"]["price"] is None
    pro = items["7712345678"]
    assert (Decimal(pro["price"]), pro["currency"]) == (Decimal("450.00"), "USD")
    assert pro["url"] == f"{craigslist.base_url}/sfbay/sss/d/ipad-pro/7712345678.html"
    assert pro["image_url"] == (
        "https://images.craigslist.org/00a0a_abcdefghijk_0t20CI_300x300.jpg"
    )
    assert pro["location"] == "sfbay, sfc"
    assert posted(pro) == datetime.fromtimestamp(MIN_POSTED_DATE + 3600, UTC)


async def test_a_vinted_search_stores_its_matches_once_with_every_field_the_catalog_has(
    client: httpx.AsyncClient,
    pro_headers: dict[str, str],
    session: AsyncSession,
    vinted: VintedFake,
) -> None:
    criteria = {"keywords": ["north face"], "max_price": 100}
    search_id = await create(client, pro_headers, "vinted", criteria)

    first, _ = await check_twice(client, pro_headers, search_id)

    # The broken item is not a listing; the parka is over the limit.
    assert first["listings_fetched"] == 3
    assert first["matches_new"] == 2
    assert len(vinted.catalog_requests()) == 2
    assert len(vinted.home_requests()) == 1  # the session cookie is kept between checks
    assert await stored(session, "vinted") == 3

    items = await listed(client, pro_headers, search_id)
    assert set(items) == {"4100000001", "4100000002"}
    jacket, fleece = items["4100000001"], items["4100000002"]
    assert (Decimal(jacket["price"]), jacket["currency"]) == (Decimal("45.00"), "GBP")
    assert jacket["url"].startswith("https://www.vinted.co.uk/items/4100000001")
    assert jacket["image_url"] == "https://images1.vinted.net/t/01_abc/f800/1714000000.jpeg"
    assert (Decimal(fleece["price"]), fleece["image_url"]) == (Decimal("12.50"), None)
    # The catalog JSON names neither a place nor a posting time.
    assert (jacket["location"], jacket["posted_at"]) == (None, None)


async def test_a_reddit_search_stores_its_matches_once_with_every_field_the_post_has(
    client: httpx.AsyncClient,
    pro_headers: dict[str, str],
    session: AsyncSession,
    reddit: RedditFake,
) -> None:
    # No price limit: the posts ask in dollars and pounds, and limits compare one currency.
    criteria = {
        "keywords": ["rtx 3080", "steam deck"],
        "marketplace_options": {"reddit": {"subreddit": "hardwareswap"}},
    }
    search_id = await create(client, pro_headers, "reddit", criteria)

    first, _ = await check_twice(client, pro_headers, search_id)

    # Not listings: the broken post, the buying post ("[H] PayPal") and the sold Steam Deck,
    # which would match "steam deck".
    assert first["listings_fetched"] == 2
    assert first["matches_new"] == 2
    assert len(reddit.requests_to("/r/hardwareswap/new.json")) == 2
    assert await stored(session, "reddit") == 2

    items = await listed(client, pro_headers, search_id)
    assert set(items) == {"1abcd3", "1abcd2"}
    gpu, deck = items["1abcd3"], items["1abcd2"]
    assert (Decimal(gpu["price"]), gpu["currency"]) == (Decimal("450.00"), "USD")
    assert gpu["url"].startswith(f"{reddit.base_url}/r/hardwareswap/comments/1abcd3/")
    assert gpu["image_url"] == "https://b.thumbs.redditmedia.com/abc.jpg"
    assert gpu["location"] == "USA-CA"
    assert posted(gpu) == datetime.fromtimestamp(CREATED_UTC, UTC)
    # A self post has no thumbnail.
    assert (Decimal(deck["price"]), deck["currency"], deck["image_url"]) == (
        Decimal("300.00"),
        "GBP",
        None,
    )
    assert deck["location"] == "UK-London"


async def test_an_rss_search_stores_its_matches_once_with_every_field_the_feed_has(
    client: httpx.AsyncClient,
    pro_headers: dict[str, str],
    session: AsyncSession,
    feeds: FeedFake,
    resolver: FakeResolver,
) -> None:
    criteria = {
        "keywords": ["leica m6", "canon 50mm"],
        "marketplace_options": {"rss": {"url": f"{feeds.base_url}/feed.xml"}},
    }
    search_id = await create(client, pro_headers, "rss", criteria)

    first, _ = await check_twice(client, pro_headers, search_id)

    # The entry without a link is not a listing.
    assert first["listings_fetched"] == 2
    assert first["matches_new"] == 2
    assert [r.path for r in feeds.received] == ["/feed.xml", "/feed.xml"]
    assert resolver.lookups == []
    assert await stored(session, "rss") == 2

    items = await listed(client, pro_headers, search_id)
    leica_id, canon_id = "shop-item-1002", "https://shop.example.com/items/canon-50mm"
    assert set(items) == {leica_id, canon_id}
    leica, canon = items[leica_id], items[canon_id]
    assert (Decimal(leica["price"]), leica["currency"]) == (Decimal("2450.00"), "GBP")
    assert leica["url"] == "https://shop.example.com/items/leica-m6"
    assert leica["image_url"] == "https://shop.example.com/img/leica-m6.jpg"
    assert posted(leica) == datetime(2026, 5, 1, 9, 15, 2, tzinfo=UTC)
    # A feed entry names no place.
    assert leica["location"] is None
    # The Canon's title states no price; its photo comes from the enclosure.
    assert (canon["price"], canon["currency"]) == (None, None)
    assert canon["image_url"] == "https://shop.example.com/img/canon-50mm.jpg"
