"""The Reddit adapter against a fake Reddit serving a subreddit's new.json."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from app.marketplaces.base import Blocked, MarketplaceError, Query, RateLimited
from app.marketplaces.reddit import RedditAdapter, location_tag, trade_price
from app.marketplaces.scraping import FetchPolicy, PageFetcher
from tests.fakes.reddit import CREATED_UTC, Post, RedditFake

AGENT = "python:marketmon-tests:1.0 (by /u/marketmon_tests)"
POLICY = FetchPolicy(user_agent=AGENT, max_retries=0, max_retry_wait_s=1.0, backoff_s=0.01)
SWAP = Query(keywords=(), options=(("subreddit", "hardwareswap"),))
POSTS = [
    Post("1abcd3", "[USA-CA] [H] RTX 3080 FE [W] $450 shipped, local cash"),
    Post("1abcd2", "[UK-London] [H] Steam Deck 512GB [W] £300", thumbnail="self"),
    Post("1abcd1", "[USA-NY] [H] PayPal [W] Ryzen 7 5800X3D"),
    Post("1abcd0", "[EU-DE] [H] Grafikkarte für Bastler [W] 120 €"),
    Post("1abccz", "broken", broken=True),
]


@pytest.fixture
def fake() -> Iterator[RedditFake]:
    with RedditFake() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


@pytest.fixture
def reddit(fake: RedditFake, http: httpx.AsyncClient) -> RedditAdapter:
    return RedditAdapter(PageFetcher("Reddit", http, POLICY), base_url=fake.base_url)


async def test_new_posts_become_listings_with_asking_price_place_and_time(
    fake: RedditFake, reddit: RedditAdapter
) -> None:
    fake.set_posts("hardwareswap", POSTS)

    listings = await reddit.search(SWAP)

    # 1abcd1 offers only money ("[H] PayPal"): a buying post, skipped.
    assert [x.external_id for x in listings] == ["1abcd3", "1abcd2", "1abcd0"]
    gpu, deck, german = listings
    assert (gpu.price, gpu.currency, gpu.location) == (Decimal("450.00"), "USD", "USA-CA")
    assert gpu.url.startswith(f"{fake.base_url}/r/hardwareswap/comments/1abcd3/")
    assert gpu.posted_at == datetime.fromtimestamp(CREATED_UTC, UTC)
    assert gpu.seller == "trader_joe"
    assert gpu.image_url == "https://b.thumbs.redditmedia.com/abc.jpg"
    assert gpu.description == POSTS[0].selftext
    assert (deck.price, deck.currency, deck.image_url) == (Decimal("300.00"), "GBP", None)
    assert (german.title, german.price, german.currency) == (
        "[EU-DE] [H] Grafikkarte für Bastler [W] 120 €",
        Decimal("120.00"),
        "EUR",
    )
    assert reddit.cards_failed == 1


async def test_closed_sold_and_buying_posts_are_skipped_and_not_counted_as_broken(
    fake: RedditFake, reddit: RedditAdapter
) -> None:
    fake.set_posts(
        "hardwareswap",
        [
            Post("2a0001", "[USA-CA] [H] RTX 4070 [W] $480", flair="Selling"),
            Post("2a0002", "[USA-CA] [H] RTX 3070 [W] $250", flair="Closed"),
            Post("2a0003", "[UK-London] [H] Steam Deck [W] £300", flair="SOLD"),
            Post("2a0004", "[USA-NY] [H] iPad Air [W] $400", flair="Completed"),
            Post("2a0005", "[CLOSED] [USA-TX] [H] 5800X3D [W] $250", flair=None),
            Post("2a0006", "[USA-TX] [H] 7800X3D [W] $300 (sold)", flair=None),
            Post("2a0007", "[USA-WA] [H] Local cash, PayPal [W] RTX 4090", flair=None),
            Post("2a0008", "[USA-WA][WTB] Steam Deck OLED", flair=None),
            Post("2a0009", "[EU-NL] [H] Keychron Q1 [W] 120 €", flair="Buying"),
            Post("2a0010", "[UK] [H] Soldering station [W] £40", flair=None),
        ],
    )

    listings = await reddit.search(SWAP)

    assert [x.external_id for x in listings] == ["2a0001", "2a0010"]
    assert listings[1].title == "[UK] [H] Soldering station [W] £40"
    assert reddit.cards_failed == 0


async def test_the_request_names_the_app_and_asks_for_a_hundred_posts(
    fake: RedditFake, reddit: RedditAdapter
) -> None:
    fake.set_posts("hardwareswap", POSTS[:1])
    await reddit.search(SWAP)
    [request] = fake.received
    assert request.path == "/r/hardwareswap/new.json"
    assert (request.param("limit"), request.param("raw_json")) == ("100", "1")
    assert request.headers["user-agent"] == AGENT
    assert request.headers["accept"].startswith("application/json")


async def test_a_generic_user_agent_is_throttled_and_reported_as_rate_limited(
    fake: RedditFake, http: httpx.AsyncClient
) -> None:
    generic = FetchPolicy(user_agent="python-httpx/0.28", max_retries=0)
    reddit = RedditAdapter(PageFetcher("Reddit", http, generic), base_url=fake.base_url)
    fake.set_posts("hardwareswap", POSTS)
    with pytest.raises(RateLimited):
        await reddit.search(SWAP)


async def test_an_empty_subreddit_is_no_results(fake: RedditFake, reddit: RedditAdapter) -> None:
    fake.set_posts("hardwareswap", [])
    assert await reddit.search(SWAP) == []


async def test_an_unknown_subreddit_fails_clearly(fake: RedditFake, reddit: RedditAdapter) -> None:
    with pytest.raises(MarketplaceError, match="r/hardwareswap does not exist"):
        await reddit.search(SWAP)


async def test_a_private_subreddit_is_blocked(fake: RedditFake, reddit: RedditAdapter) -> None:
    fake.set_posts("hardwareswap", POSTS)
    fake.private.add("hardwareswap")
    with pytest.raises(Blocked, match="HTTP 403"):
        await reddit.search(SWAP)


async def test_a_search_without_a_subreddit_fails_clearly(reddit: RedditAdapter) -> None:
    with pytest.raises(MarketplaceError, match="no subreddit"):
        await reddit.search(Query(keywords=("rtx",)))


@pytest.mark.parametrize(
    ("title", "price"),
    [
        ("[USA-TX] [H] 3090 [W] $700", (Decimal("700.00"), "USD")),
        ("[H] iPhone 14 [W] £400 or swap", (Decimal("400.00"), "GBP")),
        ("[H] $500 PayPal [W] 4090", (None, None)),
        ("[H] RTX 3070 [W] offers", (None, None)),
        ("Selling my Switch for £150", (Decimal("150.00"), "GBP")),
        ("Selling my Switch, 2 controllers", (None, None)),
    ],
)
def test_the_asking_price_comes_from_what_the_poster_wants(
    title: str, price: tuple[Decimal | None, str | None]
) -> None:
    assert trade_price(title) == price


def test_only_a_leading_tag_is_a_place() -> None:
    assert location_tag("[UK-Manchester] [H] Dell XPS [W] £500") == "UK-Manchester"
    assert location_tag("[H] Dell XPS [W] £500") is None
    assert location_tag("Dell XPS [UK]") is None
