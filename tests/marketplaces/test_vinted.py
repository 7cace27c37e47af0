"""The Vinted adapter against a fake Vinted: session cookie, catalog JSON, per domain."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import httpx
import pytest

from app.config import Settings
from app.marketplaces.base import Blocked, MarketplaceError, Query, RateLimited
from app.marketplaces.scraping import FetchPolicy, PageFetcher
from app.marketplaces.vinted import VintedAdapter
from tests.fakes.pages import CAPTCHA_PAGE, html_reply, too_many_requests
from tests.fakes.vinted import Item, VintedFake

POLICY = FetchPolicy(user_agent="MarketmonTests/1.0", max_retry_wait_s=1.0, backoff_s=0.01)
JACKET = Query(keywords=("north face jacket",))
ITEMS = [
    Item(4_100_000_001, "North Face jacket", amount="45.0", brand="The North Face", size="L"),
    Item(4_100_000_002, "Veste North Face · été ✨", amount="12.5", plain_price=True, photo=None),
    Item(4_100_000_003, "broken", broken=True),
]


@pytest.fixture
def fake() -> Iterator[VintedFake]:
    with VintedFake() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


@pytest.fixture
def vinted(fake: VintedFake, http: httpx.AsyncClient) -> VintedAdapter:
    return VintedAdapter(PageFetcher("Vinted", http, POLICY), base_url=fake.base_url + "/{domain}")


async def test_catalog_items_become_listings_with_price_brand_size_and_photo(
    fake: VintedFake, vinted: VintedAdapter
) -> None:
    fake.set_items(ITEMS)

    listings = await vinted.search(JACKET)

    assert [x.external_id for x in listings] == ["4100000001", "4100000002"]
    jacket, veste = listings
    assert (jacket.price, jacket.currency) == (Decimal("45.00"), "GBP")
    assert jacket.description == "The North Face · L"
    assert jacket.condition == "Very good"
    assert jacket.seller == "jane_d"
    assert jacket.image_url == "https://images1.vinted.net/t/01_abc/f800/1714000000.jpeg"
    assert jacket.url.startswith("https://www.vinted.co.uk/items/4100000001")
    assert veste.title == "Veste North Face · été ✨"
    # The older plain-string price takes the domain's currency.
    assert (veste.price, veste.currency, veste.image_url) == (Decimal("12.50"), "GBP", None)
    assert vinted.cards_failed == 1


async def test_the_session_cookie_is_fetched_once_and_sent_with_each_search(
    fake: VintedFake, vinted: VintedAdapter
) -> None:
    fake.set_items(ITEMS[:1])

    await vinted.search(JACKET)
    await vinted.search(JACKET)

    assert len(fake.home_requests()) == 1
    first, second = fake.catalog_requests()
    assert first.headers["cookie"].startswith("access_token_web=")
    assert second.headers["cookie"] == first.headers["cookie"]
    assert first.headers["referer"] == f"{fake.base_url}/co.uk/catalog"
    assert first.headers["accept"].startswith("application/json")


async def test_an_expired_session_is_renewed_once_and_the_search_succeeds(
    fake: VintedFake, vinted: VintedAdapter
) -> None:
    fake.set_items(ITEMS[:1])
    await vinted.search(JACKET)
    fake.expire_sessions()

    listings = await vinted.search(JACKET)

    assert [x.external_id for x in listings] == ["4100000001"]
    assert len(fake.home_requests()) == 2
    assert len(fake.catalog_requests()) == 3  # first search, the refused one, its retry
    assert vinted.session_fetches == 2


async def test_a_fresh_cookie_that_is_refused_too_is_blocked(
    fake: VintedFake, vinted: VintedAdapter
) -> None:
    fake.accepts_sessions = False
    with pytest.raises(Blocked, match="refused a fresh session cookie"):
        await vinted.search(JACKET)
    assert len(fake.home_requests()) == 2


async def test_a_home_page_without_a_session_cookie_fails_clearly(
    fake: VintedFake, vinted: VintedAdapter
) -> None:
    fake.set_cookie = False
    with pytest.raises(MarketplaceError, match="no session cookie"):
        await vinted.search(JACKET)


async def test_a_captcha_instead_of_the_home_page_is_blocked(
    fake: VintedFake, vinted: VintedAdapter
) -> None:
    fake.set_cookie = False
    fake.answer_next(html_reply(200, CAPTCHA_PAGE))
    with pytest.raises(Blocked, match="CAPTCHA"):
        await vinted.search(JACKET)


async def test_the_catalog_request_is_newest_first_with_price_bounds_per_keyword(
    fake: VintedFake, vinted: VintedAdapter
) -> None:
    query = Query(
        keywords=("north face", "patagonia"), min_price=Decimal("5"), max_price=Decimal("60.50")
    )
    await vinted.search(query)

    requests = fake.catalog_requests()
    assert [r.param("search_text") for r in requests] == ["north face", "patagonia"]
    assert requests[0].param("order") == "newest_first"
    assert (requests[0].param("per_page"), requests[0].param("page")) == ("20", "1")
    assert (requests[0].param("price_from"), requests[0].param("price_to")) == ("5", "60.50")


async def test_the_domain_option_picks_the_site_and_its_currency(
    fake: VintedFake, vinted: VintedAdapter
) -> None:
    fake.set_items([Item(9, "Robe Zara", amount="8.0", currency="EUR")], domain="fr")
    query = Query(keywords=("robe",), options=(("domain", "fr"),))

    [robe] = await vinted.search(query)

    assert (robe.price, robe.currency) == (Decimal("8.00"), "EUR")
    assert vinted.currency_for(query) == "EUR"
    assert vinted.currency_for(JACKET) == "GBP"
    assert len(fake.home_requests("fr")) == 1


async def test_a_base_url_without_a_domain_placeholder_is_one_site_for_every_search(
    fake: VintedFake, http: httpx.AsyncClient
) -> None:
    # One site, e.g. VINTED_BASE_URL=https://www.vinted.fr or a mirror of one domain.
    single = VintedAdapter(PageFetcher("Vinted", http, POLICY), base_url=fake.base_url + "/fr")
    fake.set_items([Item(9, "Robe Zara", amount="8.0", currency="EUR")], domain="fr")
    asks_for_de = Query(keywords=("robe",), options=(("domain", "de"),))

    [robe] = await single.search(asks_for_de)

    assert robe.title == "Robe Zara"
    assert len(fake.catalog_requests("fr")) == 1
    assert fake.catalog_requests("de") == []
    # Not a vinted.<domain> host: the default domain's currency.
    assert single.currency_for(asks_for_de) == "GBP"
    france = VintedAdapter(PageFetcher("Vinted", http, POLICY), base_url="https://www.vinted.fr/")
    assert (france.fixed_domain, france.currency_for(JACKET)) == ("fr", "EUR")
    assert france.site_url("de") == "https://www.vinted.fr"


async def test_a_long_429_on_the_catalog_is_rate_limited(
    fake: VintedFake, vinted: VintedAdapter
) -> None:
    await vinted.search(JACKET)  # holds a session now
    fake.answer_next(too_many_requests("300"))
    with pytest.raises(RateLimited):
        await vinted.search(JACKET)


@pytest.mark.parametrize(("country", "domain"), [("GB", "co.uk"), ("DE", "de"), ("AU", "co.uk")])
async def test_the_default_domain_follows_the_default_country(
    http: httpx.AsyncClient, country: str, domain: str
) -> None:
    settings = Settings(_env_file=None, default_country=country)  # type: ignore[call-arg]
    assert VintedAdapter.from_settings(http, settings).default_domain == domain
