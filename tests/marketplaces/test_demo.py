"""The demo marketplace: deterministic, growing over time, with things worth excluding,
product names spelt right, prices in the searched range and links to this server."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.config import Settings
from app.marketplaces.base import Query
from app.marketplaces.demo import DemoAdapter, is_listing_id, product_name
from app.monitoring import scheduler
from app.monitoring.matching import build_matcher
from app.services.templates import BUILTIN_TEMPLATES

QUERY = Query(keywords=("iPhone 13", "iPhone 14"), currency="GBP")


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_same_seed_query_and_time_give_the_same_listings() -> None:
    first = await DemoAdapter(seed=7, clock=FakeClock(1_000_000)).search(QUERY)
    second = await DemoAdapter(seed=7, clock=FakeClock(1_000_000)).search(QUERY)
    assert first == second
    assert len(first) == DemoAdapter.capabilities.page_size
    other_seed = await DemoAdapter(seed=8, clock=FakeClock(1_000_000)).search(QUERY)
    assert [x.title for x in other_seed] != [x.title for x in first]


async def test_new_listings_appear_as_time_passes_newest_first() -> None:
    clock = FakeClock(1_000_000)
    adapter = DemoAdapter(interval_s=45, clock=clock)
    before = await adapter.search(QUERY)
    clock.now += 90
    after = await adapter.search(QUERY)
    new_ids = {x.external_id for x in after} - {x.external_id for x in before}
    assert len(new_ids) == 2
    assert [x.external_id for x in after[:2]] == sorted(new_ids, reverse=True)
    assert all(
        a.posted_at and b.posted_at and a.posted_at > b.posted_at
        for a, b in itertools.pairwise(after)
    )


async def test_every_title_carries_one_of_the_keywords_and_some_should_be_excluded() -> None:
    listings = await DemoAdapter(clock=FakeClock(5_000_000)).search(QUERY)
    matcher = build_matcher({"keywords": list(QUERY.keywords)}, currency="GBP")
    assert all(matcher.matches(x) for x in listings)
    excluding = build_matcher(
        {"keywords": list(QUERY.keywords), "exclude_keywords": ["broken", "faulty"]},
        currency="GBP",
    )
    kept = [x for x in listings if excluding.matches(x)]
    assert 0 < len(kept) < len(listings)
    assert all(x.price is not None and x.price > 0 and x.currency == "GBP" for x in listings)


async def test_some_listings_drop_their_price_later() -> None:
    clock = FakeClock(2_000_000)
    adapter = DemoAdapter(clock=clock)
    seen: dict[str, object] = {}
    dropped = 0
    for _ in range(20):
        for item in await adapter.search(QUERY):
            previous = seen.get(item.external_id)
            if previous is not None and item.price is not None and item.price < previous:  # type: ignore[operator]
                dropped += 1
            seen[item.external_id] = item.price
        clock.now += 45
    assert dropped > 0


async def test_a_query_without_keywords_finds_nothing() -> None:
    assert await DemoAdapter().search(Query(keywords=())) == []


# --- links, names, prices, timing --------------------------------------------------------

# Words the built-in templates exclude; most demo listings must carry none of them.
COMMON_EXCLUDES = (
    "broken",
    "faulty",
    "for parts",
    "spares or repair",
    "job lot",
    "cracked",
    "reproduction",
    "repro",
    "mini",
    "case only",
    "box only",
    "empty box",
)
prices = st.decimals(min_value=0, max_value=100_000, places=2, allow_nan=False)
epoch_seconds = st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False)


async def test_links_and_photos_point_at_the_configured_server() -> None:
    adapter = DemoAdapter(base_url="https://monitor.example.org/", clock=FakeClock(1_000_000))
    listings = await adapter.search(QUERY)
    for item in listings:
        assert is_listing_id(item.external_id)
        assert item.url == f"https://monitor.example.org/demo/listings/{item.external_id}"
        assert item.image_url == (
            f"https://monitor.example.org/demo/images/{item.external_id}.svg?p=phone"
        )
    local = await DemoAdapter(clock=FakeClock(1_000_000)).search(QUERY)
    assert local[0].url.startswith("http://localhost:8000/demo/listings/")
    assert not any("invalid" in (x.url + str(x.image_url)) for x in listings + local)


async def test_from_settings_takes_the_public_base_url_and_interval() -> None:
    settings = Settings(
        _env_file=None, public_base_url="https://monitor.example.org/", demo_listing_interval_s=7
    )
    async with httpx.AsyncClient() as client:
        adapter = DemoAdapter.from_settings(client, settings)
    assert adapter is not None
    assert (adapter.base_url, adapter.interval_s) == ("https://monitor.example.org", 7)
    assert Settings(_env_file=None).demo_listing_interval_s == 15
    assert DemoAdapter().interval_s == 15


@pytest.mark.parametrize(
    ("keyword", "title"),
    [
        ("iphone 13 pro 256gb", "iPhone 13 Pro 256GB"),
        ("macbook air m2", "MacBook Air M2"),
        ("airpods pro 2nd gen", "AirPods Pro 2nd Gen"),
        ("ps5 digital edition", "PS5 Digital Edition"),
        ("playstation 4 1tb", "PlayStation 4 1TB"),
        ("xbox series x", "Xbox Series X"),
        ("gopro hero 11", "GoPro Hero 11"),
        ("nintendo 64", "Nintendo 64"),
        ("snes console", "SNES Console"),
        ("n64", "N64"),
        ("game boy color", "Game Boy Color"),
        ("dji mini 3", "DJI Mini 3"),
        ("lego star wars", "LEGO Star Wars"),
        ("dyson v11", "Dyson V11"),
        ("kitchenaid mixer", "KitchenAid Mixer"),
        ("nespresso vertuo", "Nespresso Vertuo"),
        ("thinkpad x1 carbon", "ThinkPad X1 Carbon"),
        ("pixel 7", "Pixel 7"),
        ("galaxy s23 ultra", "Galaxy S23 Ultra"),
        ("seiko skx007", "Seiko SKX007"),
        ("oled tv", "OLED TV"),
        ("usb-c hdmi cable", "USB-C HDMI Cable"),
        ("ssd 2tb", "SSD 2TB"),
        ("canon 50mm lens", "Canon 50mm Lens"),
        ("barbour jacket", "Barbour Jacket"),
        ("iPhone 13", "iPhone 13"),
    ],
)
def test_product_names_are_spelt_as_their_makers_spell_them(keyword: str, title: str) -> None:
    assert product_name(keyword) == title


async def test_titles_carry_the_product_name_not_the_lower_cased_query() -> None:
    query = scheduler.upstream_query({"keywords": ["iPhone 13"]}, DemoAdapter.capabilities)
    assert query.keywords == ("iphone 13",)
    titles = [x.title for x in await DemoAdapter(clock=FakeClock(1_000_000)).search(query)]
    assert all("iPhone 13" in title for title in titles)
    assert not any("Iphone" in title for title in titles)


def test_the_search_price_range_is_sent_to_the_demo_marketplace() -> None:
    criteria = {"keywords": ["lego"], "min_price": 10, "max_price": "25.50", "currency": "GBP"}
    query = scheduler.upstream_query(criteria, DemoAdapter.capabilities)
    assert (query.min_price, query.max_price, query.currency) == (
        Decimal("10"),
        Decimal("25.50"),
        "GBP",
    )


@settings(max_examples=30, deadline=None)
@given(low=prices, high=prices, now=epoch_seconds)
async def test_prices_stay_inside_the_searched_range(
    low: Decimal, high: Decimal, now: float
) -> None:
    low, high = min(low, high), max(low, high)
    clock = FakeClock(now)
    adapter = DemoAdapter(clock=clock)
    for query in (
        Query(keywords=("lego",), min_price=low, max_price=high),
        Query(keywords=("lego",), min_price=low),
        Query(keywords=("lego",), max_price=high),
    ):
        # Now and later, once some prices have dropped.
        for _ in range(2):
            for item in await adapter.search(query):
                assert item.price is not None
                assert item.price == item.price.quantize(Decimal("0.01"))
                assert query.min_price is None or item.price >= query.min_price
                assert query.max_price is None or item.price <= query.max_price
            clock.now += 10 * adapter.interval_s


async def test_a_range_of_prices_is_used_not_one_price() -> None:
    query = Query(keywords=("lego",), min_price=Decimal("100"), max_price=Decimal("200"))
    listings = await DemoAdapter(clock=FakeClock(1_000_000)).search(query)
    assert len({x.price for x in listings}) > 10
    assert min(x.price or 0 for x in listings) < 130 < 170 < max(x.price or 0 for x in listings)


async def test_searches_with_other_ranges_see_other_listings() -> None:
    cheap = Query(keywords=("lego",), max_price=Decimal("50"))
    dear = Query(keywords=("lego",), min_price=Decimal("500"))
    adapter = DemoAdapter(clock=FakeClock(1_000_000))
    cheap_ids = {x.external_id for x in await adapter.search(cheap)}
    assert cheap_ids.isdisjoint(x.external_id for x in await adapter.search(dear))


@settings(max_examples=100, deadline=None)
@given(now=epoch_seconds)
async def test_the_page_is_strictly_newest_first_and_posted_when_it_appeared(now: float) -> None:
    clock = FakeClock(now)
    adapter = DemoAdapter(clock=clock)
    listings = await adapter.search(QUERY)
    assert listings
    posted = [x.posted_at for x in listings]
    assert all(a is not None and b is not None and a > b for a, b in itertools.pairwise(posted))
    for item in listings:
        assert item.posted_at is not None
        appeared_at = item.raw["n"] * adapter.interval_s
        assert item.posted_at.timestamp() == appeared_at <= now
        # Not there a moment before its time.
        clock.now = appeared_at - 0.001
        assert item.external_id not in {x.external_id for x in await adapter.search(QUERY)}
        clock.now = now


@settings(max_examples=100, deadline=None)
@given(start=epoch_seconds)
async def test_a_new_listing_appears_in_any_fifteen_seconds(start: float) -> None:
    clock = FakeClock(start)
    adapter = DemoAdapter(clock=clock)
    assert adapter.interval_s == 15
    before = {x.external_id for x in await adapter.search(QUERY)}
    clock.now = start + 15
    new = [x for x in await adapter.search(QUERY) if x.external_id not in before]
    assert len(new) == 1
    assert new[0].posted_at is not None
    assert start < new[0].posted_at.timestamp() <= start + 15


@settings(max_examples=30, deadline=None)
@given(start=epoch_seconds, late_s=st.floats(min_value=0, max_value=20))
async def test_a_templates_second_check_always_has_a_listing_to_alert(
    start: float, late_s: float
) -> None:
    """What the Quick start promises: a search saved from any template, checked once and
    again FIRST_FOLLOW_UP_S later (or a little later still), finds a new listing that
    passes every filter of the template."""
    follow_up_s = Settings(_env_file=None).first_follow_up_s
    for template in BUILTIN_TEMPLATES:
        criteria = template["criteria"]
        query = scheduler.upstream_query(criteria, DemoAdapter.capabilities, "demo")
        matcher = build_matcher(criteria, currency=criteria.get("currency"))
        clock = FakeClock(start)
        adapter = DemoAdapter(clock=clock)
        seen = {x.external_id for x in await adapter.search(query)}
        clock.now = start + follow_up_s + late_s
        new = [x for x in await adapter.search(query) if x.external_id not in seen]
        assert any(matcher.matches(x) for x in new), template["slug"]


async def test_most_listings_carry_none_of_the_commonly_excluded_words() -> None:
    adapter = DemoAdapter(clock=FakeClock(3_000_000))
    everything = build_matcher({"keywords": ["iphone", "lego", "omega"]}, currency="GBP")
    clean = build_matcher(
        {"keywords": ["iphone", "lego", "omega"], "exclude_keywords": list(COMMON_EXCLUDES)},
        currency="GBP",
    )
    for keywords in (("iphone 13",), ("lego",), ("omega seamaster", "omega speedmaster")):
        listings = await adapter.search(Query(keywords=keywords))
        assert all(everything.matches(x) for x in listings)
        kept = sum(clean.matches(x) for x in listings)
        assert 0.7 * len(listings) <= kept < len(listings)


@pytest.mark.parametrize("template", BUILTIN_TEMPLATES, ids=lambda t: t["slug"])
async def test_every_builtin_template_finds_matches_on_the_demo(template: dict[str, Any]) -> None:
    criteria = template["criteria"]
    query = scheduler.upstream_query(criteria, DemoAdapter.capabilities, "demo")
    adapter = DemoAdapter(clock=FakeClock(1_000_000))
    listings = await adapter.search(query)
    assert all(x.currency == "GBP" for x in listings)
    matcher = build_matcher(criteria, currency=criteria.get("currency"))
    assert sum(matcher.matches(x) for x in listings) >= len(listings) // 2
