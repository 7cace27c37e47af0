"""Marketplace options in upstream queries: they split groups where they change what is
fetched, and sources read whole (a subreddit, a feed) share one fetch whatever the keywords."""

from __future__ import annotations

import uuid
from typing import Any

from app.marketplaces.craigslist import CraigslistAdapter
from app.marketplaces.ebay import EbayAdapter
from app.marketplaces.reddit import RedditAdapter
from app.marketplaces.rss import RssAdapter
from app.monitoring import scheduler

CAPABILITIES = {
    "reddit": RedditAdapter.capabilities,
    "rss": RssAdapter.capabilities,
    "craigslist": CraigslistAdapter.capabilities,
    "ebay": EbayAdapter.capabilities,
}


def due(marketplaces: list[str], **criteria: Any) -> scheduler.DueSearch:
    return scheduler.DueSearch(
        id=uuid.uuid4(),
        marketplaces=tuple(marketplaces),
        criteria={"keywords": ["rtx 3080"], **criteria},
        is_first_check=False,
    )


def subreddit(name: str) -> dict[str, Any]:
    return {"reddit": {"subreddit": name}}


def test_searches_on_one_subreddit_share_one_fetch_whatever_their_keywords() -> None:
    searches = [
        due(["reddit"], marketplace_options=subreddit("hardwareswap")),
        due(["reddit"], keywords=["steam deck"], marketplace_options=subreddit("hardwareswap")),
        due(["reddit"], marketplace_options=subreddit("ukmarketplace")),
    ]

    groups = scheduler.group_by_query(searches, CAPABILITIES)

    by_sub = {group.query.option("subreddit"): group for group in groups}
    assert set(by_sub) == {"hardwareswap", "ukmarketplace"}
    assert len(by_sub["hardwareswap"].search_ids) == 2
    assert by_sub["hardwareswap"].query.keywords == ()


def test_a_query_carries_only_its_own_marketplaces_options_sorted() -> None:
    options = {"craigslist": {"city": "sfbay", "area_id": "1"}, "rss": {"url": "https://f.test/"}}
    search = due(["craigslist", "rss", "ebay"], marketplace_options=options)

    groups = {g.marketplace: g for g in scheduler.group_by_query([search], CAPABILITIES)}

    assert groups["craigslist"].query.options == (("area_id", "1"), ("city", "sfbay"))
    assert groups["craigslist"].query.keywords == ("rtx 3080",)
    assert groups["rss"].query.options == (("url", "https://f.test/"),)
    assert groups["ebay"].query.options == ()


def test_options_survive_the_trip_through_a_task_message() -> None:
    search = due(["craigslist"], marketplace_options={"craigslist": {"city": "london"}})
    [group] = scheduler.group_by_query([search], CAPABILITIES)
    assert scheduler.group_from_payload(scheduler.group_to_payload(group)) == group


def test_a_message_from_before_options_still_reads() -> None:
    [group] = scheduler.group_by_query([due(["ebay"])], CAPABILITIES)
    payload = scheduler.group_to_payload(group)
    del payload["query"]["options"]
    assert scheduler.group_from_payload(payload) == group
