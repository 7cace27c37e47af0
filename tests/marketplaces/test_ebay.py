"""The eBay adapter against a fake eBay on 127.0.0.1 that speaks the Browse wire format."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from app.config import Settings
from app.marketplaces.base import MarketplaceError, Query, RateLimited
from app.marketplaces.ebay import (
    API_SCOPE,
    MAX_Q_CHARS,
    EbayAdapter,
    EbayAuthError,
    EbayError,
    base_urls,
    build_q,
)
from tests.fakes.ebay import SEARCH_PATH, EbayFake, item_summary

UK_QUERY = Query(keywords=("canon 50mm",), location="london")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> Iterator[EbayFake]:
    with EbayFake() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    # trust_env=False: no proxy from the environment, nothing leaves 127.0.0.1.
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


def adapter_for(fake: EbayFake, http: httpx.AsyncClient, **overrides: Any) -> EbayAdapter:
    options: dict[str, Any] = {
        "api_base_url": fake.base_url,
        "oauth_base_url": fake.base_url,
        "app_id": fake.app_id,
        "cert_id": fake.cert_id,
        "retry_backoff_s": 0.01,
        "max_retry_delay_s": 0.05,
    } | overrides
    return EbayAdapter(http, **options)


@pytest.fixture
def ebay(fake: EbayFake, http: httpx.AsyncClient) -> EbayAdapter:
    return adapter_for(fake, http)


# --- the token ------------------------------------------------------------------------


async def test_token_is_minted_once_with_client_credentials_and_reused(
    fake: EbayFake, ebay: EbayAdapter
) -> None:
    fake.set_items([item_summary(1, "Canon 50mm f/1.8")])

    await ebay.search(UK_QUERY)
    await ebay.search(UK_QUERY)

    assert fake.token_calls == 1
    assert fake.search_calls == 2
    request = fake.token_requests[0]
    assert request.headers["content-type"].startswith("application/x-www-form-urlencoded")
    credentials = base64.b64decode(request.headers["authorization"].removeprefix("Basic "))
    assert credentials.decode() == f"{fake.app_id}:{fake.cert_id}"
    assert request.form == {"grant_type": "client_credentials", "scope": API_SCOPE}


async def test_token_is_renewed_five_minutes_before_it_expires(
    fake: EbayFake, http: httpx.AsyncClient
) -> None:
    clock = FakeClock()
    ebay = adapter_for(fake, http, clock=clock)
    await ebay.search(UK_QUERY)

    clock.now += fake.token_ttl_s - 301
    await ebay.search(UK_QUERY)
    assert fake.token_calls == 1

    clock.now += 2
    await ebay.search(UK_QUERY)
    assert fake.token_calls == 2


async def test_an_expired_token_is_reminted_once_and_the_search_succeeds(
    fake: EbayFake, ebay: EbayAdapter
) -> None:
    fake.set_items([item_summary(1, "Canon 50mm f/1.8")])
    await ebay.search(UK_QUERY)
    fake.expire_tokens()

    listings = await ebay.search(UK_QUERY)

    assert [x.title for x in listings] == ["Canon 50mm f/1.8"]
    assert fake.token_calls == 2
    assert fake.search_calls == 3  # first search, the refused one, its retry


async def test_a_401_with_error_1001_remints_and_retries(fake: EbayFake, ebay: EbayAdapter) -> None:
    fake.set_items([item_summary(1)])
    fake.fail_search(1001)

    assert len(await ebay.search(UK_QUERY)) == 1
    assert fake.token_calls == 2


async def test_two_401s_in_a_row_fail_without_minting_in_a_loop(
    fake: EbayFake, ebay: EbayAdapter
) -> None:
    fake.fail_search(1001, times=5)

    with pytest.raises(EbayAuthError, match="1001") as error:
        await ebay.search(UK_QUERY)

    assert error.value.status_code == 401
    assert fake.token_calls == 2
    assert fake.search_calls == 2


async def test_concurrent_searches_share_one_token_mint(fake: EbayFake, ebay: EbayAdapter) -> None:
    fake.set_items([item_summary(1)])

    results = await asyncio.gather(*(ebay.search(UK_QUERY) for _ in range(6)))

    assert all(len(listings) == 1 for listings in results)
    assert fake.token_calls == 1
    assert fake.search_calls == 6


async def test_refused_credentials_give_eBays_reason_without_the_secret(
    fake: EbayFake, http: httpx.AsyncClient
) -> None:
    ebay = adapter_for(fake, http, cert_id="wrong-secret-value")

    with pytest.raises(EbayAuthError, match="client authentication failed") as error:
        await ebay.search(UK_QUERY)

    assert "wrong-secret-value" not in str(error.value)
    assert error.value.status_code == 401
    assert fake.search_calls == 0


async def test_an_invalid_scope_error_is_reported(fake: EbayFake, ebay: EbayAdapter) -> None:
    fake.fail_token(400, "invalid_scope", "The requested scope is invalid")

    with pytest.raises(EbayAuthError, match=r"invalid_scope.*requested scope is invalid"):
        await ebay.search(UK_QUERY)


async def test_a_malformed_token_response_is_an_error(fake: EbayFake, ebay: EbayAdapter) -> None:
    fake.fail_token(200, "", "")  # 200 without access_token

    with pytest.raises(EbayAuthError, match="malformed token response"):
        await ebay.search(UK_QUERY)


async def test_an_unconfigured_adapter_refuses_to_search_without_calling_eBay(
    fake: EbayFake, http: httpx.AsyncClient
) -> None:
    ebay = adapter_for(fake, http, cert_id="")

    assert not ebay.is_configured()
    with pytest.raises(EbayAuthError, match="EBAY_APP_ID"):
        await ebay.search(UK_QUERY)
    assert fake.token_calls == 0
    assert adapter_for(fake, http).is_configured()
    assert not adapter_for(fake, http, app_id="").is_configured()


# --- the request ----------------------------------------------------------------------


async def test_a_uk_search_sends_price_condition_and_location_filters(
    fake: EbayFake, ebay: EbayAdapter
) -> None:
    query = Query(
        keywords=("canon 50mm",),
        min_price=Decimal("20.00"),
        max_price=Decimal("400.00"),
        location="manchester, uk",
        condition="used",
    )

    await ebay.search(query)

    [request] = fake.search_requests
    assert request.params["q"] == "canon 50mm"
    assert request.params["sort"] == "newlyListed"
    assert request.params["limit"] == "50"
    assert "offset" not in request.params
    assert "category_ids" not in request.params
    assert request.filters["price"] == "[20.00..400.00]"
    assert request.filters["priceCurrency"] == "GBP"
    condition_ids = request.filters["conditionIds"].strip("{}").split("|")
    assert "3000" in condition_ids
    assert "1000" not in condition_ids
    assert request.filters["buyingOptions"] == "{FIXED_PRICE|AUCTION|BEST_OFFER}"
    assert request.filters["itemLocationCountry"] == "GB"
    assert request.filters["deliveryCountry"] == "GB"
    assert request.marketplace_id == "EBAY_GB"
    assert request.headers["authorization"].startswith("Bearer v^1.1#")
    assert request.headers["x-ebay-c-enduserctx"] == "contextualLocation=country%3DGB"


async def test_new_condition_and_one_sided_price_ranges(fake: EbayFake, ebay: EbayAdapter) -> None:
    await ebay.search(Query(keywords=("ps5",), max_price=Decimal("400.00"), condition="new"))
    await ebay.search(Query(keywords=("ps5",), min_price=Decimal("100.00"), currency="usd"))
    await ebay.search(Query(keywords=("ps5",), condition="any"))

    capped, floored, plain = fake.search_requests
    assert capped.filters["price"] == "[..400.00]"
    assert capped.filters["conditionIds"] == "{1000|1500}"
    assert floored.filters["price"] == "[100.00]"
    assert floored.filters["priceCurrency"] == "USD"
    assert "price" not in plain.filters
    assert "conditionIds" not in plain.filters
    # No location given: delivery to the default country, items from anywhere.
    assert "itemLocationCountry" not in plain.filters
    assert plain.filters["deliveryCountry"] == "GB"


@pytest.mark.parametrize(
    ("location", "marketplace_id", "currency"),
    [
        ("london", "EBAY_GB", "GBP"),
        ("new york", "EBAY_US", "USD"),
        ("berlin", "EBAY_DE", "EUR"),
        ("paris", "EBAY_FR", "EUR"),
        ("milano", "EBAY_IT", "EUR"),
        ("madrid", "EBAY_ES", "EUR"),
        ("sydney", "EBAY_AU", "AUD"),
        ("toronto", "EBAY_CA", "CAD"),
        (None, "EBAY_GB", "GBP"),
    ],
)
async def test_the_region_picks_the_ebay_site_and_currency(
    fake: EbayFake, ebay: EbayAdapter, location: str | None, marketplace_id: str, currency: str
) -> None:
    query = Query(keywords=("lens",), max_price=Decimal("50.00"), location=location)

    await ebay.search(query)

    [request] = fake.search_requests
    assert request.marketplace_id == marketplace_id
    assert request.filters["priceCurrency"] == currency
    assert ebay.currency_for(query) == currency


async def test_a_postcode_location_is_sent_as_the_buyers_context(
    fake: EbayFake, ebay: EbayAdapter
) -> None:
    await ebay.search(Query(keywords=("lens",), location="10001"))

    [request] = fake.search_requests
    assert request.marketplace_id == "EBAY_US"
    assert request.headers["x-ebay-c-enduserctx"] == (
        "contextualLocation=country%3DUS%2Czip%3D10001"
    )


async def test_the_default_country_applies_without_a_location(
    fake: EbayFake, http: httpx.AsyncClient
) -> None:
    ebay = adapter_for(fake, http, default_country="us")

    await ebay.search(Query(keywords=("lens",)))

    [request] = fake.search_requests
    assert request.marketplace_id == "EBAY_US"
    assert request.filters["deliveryCountry"] == "US"
    assert ebay.currency_for(Query(keywords=("lens",))) == "USD"
    assert ebay.currency_for(Query(keywords=("lens",), currency="eur")) == "EUR"


async def test_several_keywords_are_sent_with_ebays_or_syntax(
    fake: EbayFake, ebay: EbayAdapter
) -> None:
    await ebay.search(Query(keywords=('"galaxy s22"', "iphone 13")))

    assert fake.search_requests[0].params["q"] == '("galaxy s22", iphone 13)'


async def test_a_numeric_category_is_sent_and_a_named_one_is_not(
    fake: EbayFake, ebay: EbayAdapter
) -> None:
    await ebay.search(Query(keywords=("lens",), category="3323"))
    await ebay.search(Query(keywords=("lens",), category="electronics"))

    numeric, named = fake.search_requests
    assert numeric.params["category_ids"] == "3323"
    assert "category_ids" not in named.params


async def test_a_query_without_keywords_or_category_calls_nothing(
    fake: EbayFake, ebay: EbayAdapter
) -> None:
    assert await ebay.search(Query(keywords=())) == []
    assert fake.token_calls == fake.search_calls == 0


def test_one_keyword_becomes_its_words_and_phrases_stay_quoted() -> None:
    assert build_q(["iphone 13 pro"]) == "iphone 13 pro"
    assert build_q(['"iphone 13 pro"']) == '"iphone 13 pro"'
    assert build_q(['"ps5"']) == "ps5"
    assert build_q(["lego (technic), *rare*"]) == "lego technic rare"
    assert build_q(["ps5", "PS5", "ps5"]) == "ps5"
    assert build_q([]) == ""


def test_a_long_query_is_shortened_to_100_characters_keeping_every_keyword_it_can() -> None:
    keywords = [
        "vintage leica m6 rangefinder camera body black chrome",
        "leica summicron 50mm f2 lens rigid version",
        "hasselblad 500cm",
    ]
    q = build_q(keywords)
    assert len(q) <= MAX_Q_CHARS
    assert q.startswith("(vintage leica")
    assert "summicron" in q
    assert "hasselblad 500cm" in q

    many = [f"keyword{n:02}" for n in range(20)]
    q = build_q(many)
    assert len(q) <= MAX_Q_CHARS
    assert q.startswith("(keyword00, keyword01")
    assert q.endswith(")")


# --- pages ----------------------------------------------------------------------------


async def test_pages_are_followed_up_to_the_configured_cap(
    fake: EbayFake, http: httpx.AsyncClient
) -> None:
    fake.set_items([item_summary(n) for n in range(250)])
    ebay = adapter_for(fake, http, page_size=50, max_pages=3)

    listings = await ebay.search(UK_QUERY)

    assert len(listings) == 150
    assert listings[0].external_id == item_summary(0)["itemId"]
    assert [r.params.get("offset") for r in fake.search_requests] == [None, "50", "100"]
    assert all(r.params["limit"] == "50" for r in fake.search_requests)
    assert ebay.capabilities.page_size == 50


async def test_paging_stops_when_ebay_sends_no_next_link(
    fake: EbayFake, http: httpx.AsyncClient
) -> None:
    fake.set_items([item_summary(n) for n in range(70)])
    ebay = adapter_for(fake, http, page_size=50, max_pages=5)

    assert len(await ebay.search(UK_QUERY)) == 70
    assert fake.search_calls == 2


async def test_a_next_link_to_another_host_only_moves_the_offset(
    fake: EbayFake, ebay: EbayAdapter
) -> None:
    fake.respond_to_search(
        200,
        {
            "total": 2,
            "limit": 50,
            "offset": 0,
            "next": "https://elsewhere.invalid/buy/browse/v1/item_summary/search?q=x&offset=50",
            "itemSummaries": [item_summary(1)],
        },
    )
    fake.set_items([item_summary(n) for n in range(60)])

    listings = await ebay.search(UK_QUERY)

    second = fake.search_requests[1]
    assert second.params["offset"] == "50"
    assert second.params["q"] == "canon 50mm"
    assert len(listings) == 11


async def test_a_listing_repeated_on_the_next_page_is_kept_once(
    fake: EbayFake, ebay: EbayAdapter
) -> None:
    next_link = f"{fake.base_url}{SEARCH_PATH}?q=canon+50mm&offset=50"
    fake.respond_to_search(
        200, {"next": next_link, "itemSummaries": [item_summary(2), item_summary(1)]}
    )
    fake.respond_to_search(200, {"itemSummaries": [item_summary(1), item_summary(0)]})

    listings = await ebay.search(UK_QUERY)

    assert [x.external_id for x in listings] == [item_summary(n)["itemId"] for n in (2, 1, 0)]


async def test_no_results_without_item_summaries_is_an_empty_list(
    fake: EbayFake, ebay: EbayAdapter
) -> None:
    fake.set_items([])

    assert await ebay.search(UK_QUERY) == []
    assert fake.search_calls == 1


# --- errors ---------------------------------------------------------------------------


async def test_429_raises_rate_limited_with_retry_after_seconds(
    fake: EbayFake, ebay: EbayAdapter
) -> None:
    fake.fail_search(2001, retry_after="30")

    with pytest.raises(RateLimited, match="2001") as error:
        await ebay.search(UK_QUERY)

    assert error.value.retry_after_s == 30
    assert fake.search_calls == 1


async def test_429_reads_retry_after_as_an_http_date(fake: EbayFake, ebay: EbayAdapter) -> None:
    later = datetime.now(UTC) + timedelta(minutes=2)
    fake.fail_search(2001, retry_after=format_datetime(later, usegmt=True))

    with pytest.raises(RateLimited) as error:
        await ebay.search(UK_QUERY)

    assert error.value.retry_after_s is not None
    assert 60 < error.value.retry_after_s <= 120


async def test_429_without_retry_after_still_raises_rate_limited(
    fake: EbayFake, ebay: EbayAdapter
) -> None:
    fake.fail_search(2001)

    with pytest.raises(RateLimited) as error:
        await ebay.search(UK_QUERY)

    assert error.value.retry_after_s is None


async def test_a_server_error_is_retried_then_succeeds(fake: EbayFake, ebay: EbayAdapter) -> None:
    fake.set_items([item_summary(1)])
    fake.fail_search(12000, times=2, retry_after="1")

    assert len(await ebay.search(UK_QUERY)) == 1
    assert fake.search_calls == 3


async def test_a_persistent_server_error_fails_after_two_retries(
    fake: EbayFake, ebay: EbayAdapter
) -> None:
    fake.fail_search(12000, times=10)

    with pytest.raises(EbayError, match="12000") as error:
        await ebay.search(UK_QUERY)

    assert error.value.status_code == 500
    assert error.value.error_id == 12000
    assert fake.search_calls == 3


@pytest.mark.parametrize(
    ("error_id", "status", "text"),
    [
        (12001, 400, "must have a valid 'q'"),
        (12006, 400, "'limit' value"),
        (1100, 403, "Access denied"),
        (12013, 409, "top-level category"),
    ],
)
async def test_a_client_error_surfaces_ebays_message_and_error_id(
    fake: EbayFake, ebay: EbayAdapter, error_id: int, status: int, text: str
) -> None:
    fake.fail_search(error_id)

    with pytest.raises(EbayError, match=str(error_id)) as error:
        await ebay.search(UK_QUERY)

    assert text in str(error.value)
    assert error.value.status_code == status
    assert error.value.error_id == error_id
    assert fake.search_calls == 1


async def test_error_text_never_contains_the_token_or_the_secret(
    fake: EbayFake, ebay: EbayAdapter
) -> None:
    await ebay.search(UK_QUERY)
    token = fake.search_requests[0].headers["authorization"].removeprefix("Bearer ")
    fake.fail_search(12001, message=f"bad request with {token} and {fake.cert_id}")

    with pytest.raises(EbayError) as error:
        await ebay.search(UK_QUERY)

    assert token not in str(error.value)
    assert fake.cert_id not in str(error.value)
    assert "[redacted]" in str(error.value)


@pytest.mark.parametrize(
    "body",
    [
        b'{"itemSummaries": [',
        b"<html>maintenance</html>",
        b"[1, 2, 3]",
        b'{"itemSummaries": "none"}',
    ],
)
async def test_a_malformed_response_is_a_marketplace_error(
    fake: EbayFake, ebay: EbayAdapter, body: bytes
) -> None:
    fake.respond_to_search(200, body)

    with pytest.raises(MarketplaceError, match="malformed"):
        await ebay.search(UK_QUERY)


async def test_a_redirect_is_not_followed(fake: EbayFake, ebay: EbayAdapter) -> None:
    fake.respond_to_search(302, b"", headers={"Location": "http://127.0.0.1:9/elsewhere"})

    with pytest.raises(EbayError, match="redirect"):
        await ebay.search(UK_QUERY)
    assert fake.search_calls == 1


async def test_a_timeout_is_a_marketplace_error(fake: EbayFake, http: httpx.AsyncClient) -> None:
    fake.search_delay_s = 1.0
    ebay = adapter_for(fake, http, timeout_s=0.1)

    with pytest.raises(EbayError, match="did not answer"):
        await ebay.search(UK_QUERY)


async def test_an_unreachable_ebay_is_a_marketplace_error(http: httpx.AsyncClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{closed_port}"
    ebay = EbayAdapter(http, api_base_url=base, oauth_base_url=base, app_id="a", cert_id="b")

    with pytest.raises(EbayError, match="could not reach eBay"):
        await ebay.search(UK_QUERY)


# --- the listings ---------------------------------------------------------------------


async def test_an_item_is_normalised_from_the_wire_format(
    fake: EbayFake, ebay: EbayAdapter
) -> None:
    item = item_summary(
        7,
        "Canon 50mm f/1.8",
        price="45.00",
        itemLocation={"city": "London", "postalCode": "SW1***", "country": "GB"},
        seller={"username": "cam_shop", "feedbackPercentage": "99.8", "feedbackScore": 1520},
        itemOriginDate="2025-05-01T09:15:02.000Z",
        itemCreationDate="2025-06-01T10:00:00.000Z",
    )
    fake.set_items([item])

    [listing] = await ebay.search(UK_QUERY)

    assert listing.marketplace == "ebay"
    assert listing.external_id == "v1|100000000007|0"
    assert listing.title == "Canon 50mm f/1.8"
    assert listing.price == Decimal("45.00")
    assert listing.currency == "GBP"
    assert listing.url == "https://www.ebay.co.uk/itm/100000000007"
    assert listing.image_url == "https://i.ebayimg.com/images/g/7/s-l225.jpg"
    assert listing.location == "London, SW1***, United Kingdom"
    assert listing.condition == "Used"
    assert listing.seller == "cam_shop"
    # itemOriginDate survives relisting, so it is the posting time.
    assert listing.posted_at == datetime(2025, 5, 1, 9, 15, 2, tzinfo=UTC)
    assert listing.raw == item


async def test_missing_optional_fields_are_tolerated(fake: EbayFake, ebay: EbayAdapter) -> None:
    fake.set_items(
        [
            {"itemId": "v1|123456789012|0", "title": "Bare listing"},
            {
                "itemId": "v1|223456789012|0",
                "title": "Odd listing",
                "price": {"value": "not a number", "currency": "GBP"},
                "image": None,
                "seller": "someone",
                "itemLocation": {},
                "itemOriginDate": "yesterday",
                "itemCreationDate": "2025-05-01T09:15:02",
            },
        ]
    )

    bare, odd = await ebay.search(UK_QUERY)

    assert bare.url == "https://www.ebay.com/itm/123456789012"
    assert (bare.price, bare.currency, bare.image_url) == (None, None, None)
    assert (bare.location, bare.condition, bare.seller, bare.posted_at) == (None,) * 4
    assert odd.price is None
    assert odd.seller is None
    assert odd.location is None
    assert odd.posted_at == datetime(2025, 5, 1, 9, 15, 2, tzinfo=UTC)


async def test_items_without_an_id_or_title_are_skipped(fake: EbayFake, ebay: EbayAdapter) -> None:
    fake.set_items(
        [
            {"title": "No id"},
            {"itemId": "v1|1|0", "title": "   "},
            {"itemId": 5, "title": "Numeric id"},
            "not an object",
            item_summary(1, "Kept"),
        ]
    )

    assert [x.title for x in await ebay.search(UK_QUERY)] == ["Kept"]


async def test_non_ascii_titles_come_through_intact(fake: EbayFake, ebay: EbayAdapter) -> None:
    titles = ["Café Möbel, Größe XL", "ニコン レンズ 50mm", "Zażółć gęślą jaźń 🎉"]
    fake.set_items([item_summary(n, title) for n, title in enumerate(titles)])

    assert [x.title for x in await ebay.search(UK_QUERY)] == titles


async def test_auction_only_items_are_returned_with_their_current_bid(
    fake: EbayFake, ebay: EbayAdapter
) -> None:
    fake.set_items(
        [
            item_summary(
                1,
                "Auction lens",
                price=None,
                buying_options=("AUCTION",),
                currentBidPrice={"value": "12.50", "currency": "GBP"},
                bidCount=3,
            ),
            item_summary(2, "Buy it now lens", price="40.00"),
        ]
    )

    auction, fixed = await ebay.search(UK_QUERY)

    assert auction.price == Decimal("12.50")
    assert auction.currency == "GBP"
    assert fixed.price == Decimal("40.00")


# --- construction ---------------------------------------------------------------------


def test_base_urls_follow_the_environment_unless_set() -> None:
    assert base_urls("production") == ("https://api.ebay.com", "https://api.ebay.com")
    assert base_urls("sandbox") == (
        "https://api.sandbox.ebay.com",
        "https://api.sandbox.ebay.com",
    )
    assert base_urls("sandbox", "http://127.0.0.1:1/", "") == (
        "http://127.0.0.1:1",
        "https://api.sandbox.ebay.com",
    )


async def test_the_adapter_is_built_from_settings(fake: EbayFake, http: httpx.AsyncClient) -> None:
    settings = Settings(
        _env_file=None,
        ebay_app_id=fake.app_id,
        ebay_cert_id=fake.cert_id,
        ebay_api_base_url=fake.base_url,
        ebay_oauth_base_url=fake.base_url,
        ebay_page_size=20,
        ebay_max_pages=1,
        default_country="de",
    )
    fake.set_items([item_summary(n) for n in range(30)])

    ebay = EbayAdapter.from_settings(http, settings)
    listings = await ebay.search(Query(keywords=("lens",)))

    assert ebay.is_configured()
    assert len(listings) == 20
    assert fake.search_requests[0].marketplace_id == "EBAY_DE"
    assert ebay.capabilities.page_size == 20
    assert EbayAdapter.capabilities.page_size == 50


def test_the_shared_request_budget_comes_from_the_settings(http: httpx.AsyncClient) -> None:
    settings = Settings(_env_file=None, ebay_requests_per_minute=600)

    ebay = EbayAdapter.from_settings(http, settings)

    assert ebay.capabilities.requests_per_minute == 600
    assert EbayAdapter.capabilities.requests_per_minute == 30


def test_sandbox_settings_point_at_the_sandbox(http: httpx.AsyncClient) -> None:
    settings = Settings(_env_file=None, ebay_environment="sandbox")

    ebay = EbayAdapter.from_settings(http, settings)

    assert ebay.api_base_url == ebay.oauth_base_url == "https://api.sandbox.ebay.com"
    assert not ebay.is_configured()


@pytest.mark.parametrize(
    "options",
    [{"page_size": 0}, {"page_size": 201}, {"max_pages": 0}, {"default_country": "XX"}],
)
def test_impossible_options_are_refused(http: httpx.AsyncClient, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"page_size|max_pages|DEFAULT_COUNTRY"):
        EbayAdapter(http, app_id="a", cert_id="b", **options)


# --- the fake is as strict as eBay ----------------------------------------------------


async def _raw_search(
    fake: EbayFake, http: httpx.AsyncClient, params: dict[str, str], headers: dict[str, str]
) -> httpx.Response:
    return await http.get(f"{fake.base_url}{SEARCH_PATH}", params=params, headers=headers)


def _headers(token: str | None, site: str | None = "EBAY_GB") -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return headers | ({"X-EBAY-C-MARKETPLACE-ID": site} if site else {})


async def _minted_token(fake: EbayFake, http: httpx.AsyncClient) -> str:
    response = await http.post(
        f"{fake.base_url}/identity/v1/oauth2/token",
        data={"grant_type": "client_credentials", "scope": API_SCOPE},
        auth=(fake.app_id, fake.cert_id),
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Application Access Token"
    assert body["expires_in"] == fake.token_ttl_s
    token: str = body["access_token"]
    return token


@pytest.mark.parametrize(
    ("params", "error_id"),
    [
        ({"q": "lens", "limit": "50", "offset": "25"}, 12515),
        ({"q": "lens", "limit": "201"}, 12006),
        ({"q": "lens", "limit": "0"}, 12006),
        ({"q": "lens", "limit": "50", "offset": "10000"}, 12029),
        ({"limit": "50"}, 12001),
    ],
)
async def test_the_fake_rejects_what_ebay_rejects(
    fake: EbayFake, http: httpx.AsyncClient, params: dict[str, str], error_id: int
) -> None:
    token = await _minted_token(fake, http)

    response = await _raw_search(fake, http, params, _headers(token))

    assert response.status_code == 400
    assert response.json()["errors"][0]["errorId"] == error_id


async def test_the_fake_wants_the_minted_bearer_token_and_a_marketplace_header(
    fake: EbayFake, http: httpx.AsyncClient
) -> None:
    token = await _minted_token(fake, http)
    params = {"q": "lens"}

    unknown = await _raw_search(fake, http, params, _headers("made-up"))
    missing = await _raw_search(fake, http, params, _headers(None))
    no_site = await _raw_search(fake, http, params, _headers(token, site=None))
    bad_site = await _raw_search(fake, http, params, _headers(token, site="EBAY_XX"))
    fine = await _raw_search(fake, http, params, _headers(token))

    assert (unknown.status_code, unknown.json()["errors"][0]["errorId"]) == (401, 1001)
    assert (missing.status_code, missing.json()["errors"][0]["errorId"]) == (400, 1002)
    assert no_site.status_code == 400
    assert "X-EBAY-C-MARKETPLACE-ID" in no_site.json()["errors"][0]["message"]
    assert (bad_site.status_code, bad_site.json()["errors"][0]["errorId"]) == (409, 12019)
    assert fine.status_code == 200
    assert "itemSummaries" not in fine.json()


async def test_the_fake_checks_the_token_request(fake: EbayFake, http: httpx.AsyncClient) -> None:
    url = f"{fake.base_url}/identity/v1/oauth2/token"
    good = {"grant_type": "client_credentials", "scope": API_SCOPE}
    credentials = (fake.app_id, fake.cert_id)

    wrong_secret = await http.post(url, data=good, auth=(fake.app_id, "nope"))
    bad_scope = await http.post(url, data={**good, "scope": "https://x/y"}, auth=credentials)
    bad_grant = await http.post(url, data={**good, "grant_type": "password"}, auth=credentials)
    as_json = await http.post(url, json=good, auth=credentials)

    assert (wrong_secret.status_code, wrong_secret.json()["error"]) == (401, "invalid_client")
    assert (bad_scope.status_code, bad_scope.json()["error"]) == (400, "invalid_scope")
    assert bad_grant.json()["error"] == "unsupported_grant_type"
    assert as_json.status_code == 400
    assert fake.token_calls == 4


async def test_the_fake_returns_fixed_price_items_only_without_buying_options(
    fake: EbayFake, http: httpx.AsyncClient
) -> None:
    fake.set_items([item_summary(1, buying_options=("AUCTION",)), item_summary(2)])
    token = await _minted_token(fake, http)

    plain = await _raw_search(fake, http, {"q": "x"}, _headers(token))
    both = await _raw_search(
        fake, http, {"q": "x", "filter": "buyingOptions:{FIXED_PRICE|AUCTION}"}, _headers(token)
    )

    assert [i["itemId"] for i in plain.json()["itemSummaries"]] == [item_summary(2)["itemId"]]
    assert len(both.json()["itemSummaries"]) == 2
    assert fake.search_requests[1].filters == {"buyingOptions": "{FIXED_PRICE|AUCTION}"}


async def test_the_fake_pages_with_next_links_that_keep_the_query(
    fake: EbayFake, http: httpx.AsyncClient
) -> None:
    fake.set_items([item_summary(n) for n in range(5)])
    token = await _minted_token(fake, http)

    first = (await _raw_search(fake, http, {"q": "x y", "limit": "2"}, _headers(token))).json()
    last = (
        await _raw_search(fake, http, {"q": "x y", "limit": "2", "offset": "4"}, _headers(token))
    ).json()

    assert first["total"] == 5
    assert dict(parse_qsl(first["next"].split("?", 1)[1])) == {
        "q": "x y",
        "limit": "2",
        "offset": "2",
    }
    assert "prev" not in first
    assert len(last["itemSummaries"]) == 1
    assert "next" not in last
    assert "prev" in last
