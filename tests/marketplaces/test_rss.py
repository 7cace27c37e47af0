"""The RSS/Atom adapter against a fake feed host, always through the SSRF-safe GET."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from app.config import Settings
from app.marketplaces.base import (
    Blocked,
    MarketplaceError,
    PageLayoutChanged,
    Query,
    RateLimited,
)
from app.marketplaces.rss import RssAdapter
from app.security import ssrf
from tests.fakes.feeds import FeedFake
from tests.fakes.pages import too_many_requests
from tests.security.test_ssrf import FakeResolver

AGENT = "MarketmonTests/1.0"


def feed(url: str) -> Query:
    return Query(keywords=(), options=(("url", url),))


@pytest.fixture
def fake() -> Iterator[FeedFake]:
    with FeedFake(big_feed_bytes=8 * 1024) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


def adapter(http: httpx.AsyncClient, *, allow_loopback: bool = True) -> RssAdapter:
    # Names are answered by the fake resolver only (metadata.google.internal is internal).
    policy = ssrf.URLPolicy(
        resolve=FakeResolver({"metadata.google.internal": ["169.254.169.254"]}),
        allow_http=True,
        allow_loopback=allow_loopback,
    )
    return RssAdapter(http, policy, user_agent=AGENT, timeout_s=5.0, max_bytes=4 * 1024)


@pytest.fixture
def rss(http: httpx.AsyncClient) -> RssAdapter:
    return adapter(http)


async def test_rss_items_become_listings_keyed_on_guid_or_link(
    fake: FeedFake, rss: RssAdapter
) -> None:
    listings = await rss.search(feed(fake.base_url + "/feed.xml"))

    assert [x.external_id for x in listings] == [
        "shop-item-1002",
        "https://shop.example.com/items/canon-50mm",
    ]
    leica, canon = listings
    assert leica.title == "Leica M6 body - £2,450"
    assert (leica.price, leica.currency) == (Decimal("2450.00"), "GBP")
    assert leica.url == "https://shop.example.com/items/leica-m6"
    assert leica.posted_at == datetime(2026, 5, 1, 9, 15, 2, tzinfo=UTC)
    assert leica.image_url == "https://shop.example.com/img/leica-m6.jpg"
    assert leica.description is not None
    assert leica.description.startswith("Serviced in")
    assert "<" not in leica.description
    assert canon.title == "Objectif Canon 50mm f/1.8, très bon état"
    assert (canon.price, canon.image_url) == (None, "https://shop.example.com/img/canon-50mm.jpg")
    assert rss.cards_failed == 1  # the entry without a link


async def test_atom_entries_are_read_too(fake: FeedFake, rss: RssAdapter) -> None:
    [entry] = await rss.search(feed(fake.base_url + "/atom.xml"))
    assert entry.external_id == "t3_1xyz9"
    assert entry.url == "https://www.reddit.example/r/ukmarketplace/comments/1xyz9/switch/"
    assert (entry.price, entry.currency) == (Decimal("220.00"), "GBP")
    assert entry.posted_at == datetime(2026, 5, 1, 9, 59, tzinfo=UTC)
    assert entry.description == "Collection in Leeds"


async def test_the_request_asks_for_a_feed_uncompressed_with_our_agent(
    fake: FeedFake, rss: RssAdapter
) -> None:
    await rss.search(feed(fake.base_url + "/feed.xml"))
    [request] = fake.received
    assert request.headers["user-agent"] == AGENT
    assert request.headers["accept"].startswith("application/rss+xml")
    assert request.headers["accept-encoding"] == "identity"


async def test_an_empty_feed_is_no_results(fake: FeedFake, rss: RssAdapter) -> None:
    assert await rss.search(feed(fake.base_url + "/empty.xml")) == []


async def test_a_page_that_is_not_a_feed_is_an_error(fake: FeedFake, rss: RssAdapter) -> None:
    with pytest.raises(PageLayoutChanged, match="RSS or Atom"):
        await rss.search(feed(fake.base_url + "/page.html"))


async def test_a_captcha_instead_of_the_feed_is_blocked(fake: FeedFake, rss: RssAdapter) -> None:
    with pytest.raises(Blocked, match="CAPTCHA"):
        await rss.search(feed(fake.base_url + "/captcha"))


async def test_a_redirect_is_checked_and_followed(fake: FeedFake, rss: RssAdapter) -> None:
    listings = await rss.search(feed(fake.base_url + "/moved"))
    assert len(listings) == 2
    assert [r.path for r in fake.received] == ["/moved", "/feed.xml"]


async def test_a_redirect_to_a_private_address_is_refused(fake: FeedFake, rss: RssAdapter) -> None:
    with pytest.raises(MarketplaceError, match=r"feed URL refused: 10\.1\.2\.3 is a private"):
        await rss.search(feed(fake.base_url + "/to-private"))
    assert [r.path for r in fake.received] == ["/to-private"]


async def test_a_redirect_to_an_internal_name_is_refused(fake: FeedFake, rss: RssAdapter) -> None:
    with pytest.raises(MarketplaceError, match="feed URL refused"):
        await rss.search(feed(fake.base_url + "/to-metadata"))
    assert [r.path for r in fake.received] == ["/to-metadata"]


async def test_endless_redirects_stop(fake: FeedFake, rss: RssAdapter) -> None:
    with pytest.raises(MarketplaceError, match="redirects more than 3 times"):
        await rss.search(feed(fake.base_url + "/loop"))
    assert len(fake.received) == 4


async def test_a_feed_over_the_size_cap_fails_the_check(fake: FeedFake, rss: RssAdapter) -> None:
    with pytest.raises(MarketplaceError, match="larger than 4096 bytes"):
        await rss.search(feed(fake.base_url + "/big.xml"))


async def test_a_gzipped_feed_sent_anyway_is_inflated_within_the_cap(
    fake: FeedFake, rss: RssAdapter
) -> None:
    listings = await rss.search(feed(fake.base_url + "/gzip.xml"))
    assert len(listings) == 2


async def test_a_429_with_retry_after_is_rate_limited(fake: FeedFake, rss: RssAdapter) -> None:
    fake.answer_next(too_many_requests("120"))
    with pytest.raises(RateLimited) as caught:
        await rss.search(feed(fake.base_url + "/feed.xml"))
    assert caught.value.retry_after_s == 120


async def test_without_the_loopback_allowance_a_local_feed_is_never_fetched(
    fake: FeedFake, http: httpx.AsyncClient
) -> None:
    strict = adapter(http, allow_loopback=False)
    with pytest.raises(MarketplaceError, match="feed URL refused"):
        await strict.search(feed(fake.base_url + "/feed.xml"))
    assert fake.received == []


async def test_a_search_without_a_feed_url_fails_clearly(rss: RssAdapter) -> None:
    with pytest.raises(MarketplaceError, match="no feed"):
        await rss.search(Query(keywords=("x",)))


async def test_from_settings_applies_the_url_policy_of_the_settings(
    http: httpx.AsyncClient,
) -> None:
    production = Settings(
        _env_file=None, debug=False, secret_key="k" * 40, allow_sqlite_in_production=True
    )  # type: ignore[call-arg]
    strict = RssAdapter.from_settings(http, production, FakeResolver())
    assert (strict.policy.allow_http, strict.policy.allow_loopback) == (False, False)
    local = RssAdapter.from_settings(
        http,
        Settings(_env_file=None, ssrf_allow_loopback=True),
        FakeResolver(),  # type: ignore[call-arg]
    )
    assert (local.policy.allow_http, local.policy.allow_loopback) == (True, True)
    assert local.client is http
