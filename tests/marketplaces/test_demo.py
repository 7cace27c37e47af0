"""The demo marketplace: deterministic, growing over time, with things worth excluding."""

from __future__ import annotations

import itertools

from app.marketplaces.base import Query
from app.marketplaces.demo import DemoAdapter
from app.monitoring.matching import build_matcher

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
