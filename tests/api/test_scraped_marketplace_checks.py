"""A search on a scraped marketplace, end to end: saved through the API, checked with
`POST /searches/{id}/check` against a fake Gumtree, its matches stored exactly once, and a
blocked answer recorded on the search without stopping its other marketplaces."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import Alert, Plan
from app.models import Listing as ListingRow
from tests.conftest import make_settings
from tests.factories import make_user, token_headers
from tests.fakes.gumtree import Ad, GumtreeFake
from tests.fakes.pages import ACCESS_DENIED_PAGE, html_reply

URL = "/api/v1/searches/"
ADS = [
    Ad("1400000005", "Canon 50mm f/1.8 STM", "£95", location="Camden, London"),
    Ad("1400000004", "Canon 50mm f/1.4 USM, boxed", "£1,250", posted="1 hour ago"),
    Ad("1400000003", "Canon 50mm lens, offers", None, image=None),
    Ad("1400000002", "Canon 50mm (top ad)", "£40", promoted=True),
    Ad("1400000001", "?", broken=True),
]


@pytest.fixture
def gumtree() -> Iterator[GumtreeFake]:
    with GumtreeFake() as fake:
        fake.set_ads(ADS)
        yield fake


@pytest.fixture
def settings(database_url: str, gumtree: GumtreeFake) -> Settings:
    # No response cache: every check asks the fake again.
    return make_settings(
        database_url,
        gumtree_base_url=gumtree.base_url,
        fetch_cache_ttl_s=0,
        scraper_max_retries=0,
    )


@pytest.fixture
async def pro_headers(app: FastAPI, session: AsyncSession) -> dict[str, str]:
    pro = await make_user(session, email="pro@example.com", plan=Plan.PRO)
    return token_headers(app, pro)


async def create(
    client: httpx.AsyncClient, headers: dict[str, str], marketplaces: list[str]
) -> dict[str, Any]:
    body = {
        "name": "Fifty",
        "criteria": {"keywords": ["canon 50mm"], "max_price": 1000, "location": "London"},
        "marketplaces": marketplaces,
        "alert_channels": ["in_app"],
        "alert_on_first_check": True,
    }
    response = await client.post(URL, json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def check(client: httpx.AsyncClient, headers: dict[str, str], search_id: str) -> Any:
    response = await client.post(f"{URL}{search_id}/check", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_gumtree_search_stores_its_matches_once_with_every_field_the_page_has(
    client: httpx.AsyncClient,
    pro_headers: dict[str, str],
    session: AsyncSession,
    gumtree: GumtreeFake,
) -> None:
    search = await create(client, pro_headers, ["gumtree"])

    first = await check(client, pro_headers, search["id"])
    second = await check(client, pro_headers, search["id"])

    assert first["errors"] == []
    assert first["upstream_calls"] == 1
    # The promoted and the broken card are not listings; the £1,250 lens is over the price
    # limit, and the lens without a price passes it as "price unknown".
    assert first["listings_fetched"] == 3
    assert first["matches_new"] == 2
    assert second["upstream_calls"] == 1
    assert second["matches_new"] == 0
    assert len(gumtree.search_requests) == 2
    assert gumtree.search_requests[0].param("search_location") == "london"
    stored = await session.scalar(
        select(func.count()).select_from(ListingRow).where(ListingRow.marketplace == "gumtree")
    )
    assert stored == 3

    listed = await client.get(f"{URL}{search['id']}/listings", headers=pro_headers)
    items = {item["external_id"]: item for item in listed.json()["items"]}
    assert set(items) == {"1400000005", "1400000003"}
    assert items["1400000003"]["price"] is None
    stm = items["1400000005"]
    assert (Decimal(stm["price"]), stm["currency"]) == (Decimal("95.00"), "GBP")
    assert stm["url"] == (
        f"{gumtree.base_url}/p/cameras-camcorders/canon-50mm-f/1.8-stm/1400000005"
    )
    assert stm["image_url"].startswith("https://")
    assert stm["location"] == "Camden, London"
    assert stm["posted_at"] is not None


async def test_a_blocked_answer_is_recorded_on_the_search_as_blocked(
    client: httpx.AsyncClient, pro_headers: dict[str, str], gumtree: GumtreeFake
) -> None:
    search = await create(client, pro_headers, ["gumtree"])
    gumtree.answer_next(html_reply(403, ACCESS_DENIED_PAGE))

    result = await check(client, pro_headers, search["id"])

    error = "gumtree: blocked (HTTP 403, an access-denied page)"
    assert result["errors"] == [error]
    assert result["matches_new"] == 0
    assert result["search"]["last_error"] == error
    assert result["search"]["consecutive_failures"] == 1


async def test_a_blocked_marketplace_does_not_stop_the_others_in_the_same_check(
    client: httpx.AsyncClient, pro_headers: dict[str, str], gumtree: GumtreeFake
) -> None:
    search = await create(client, pro_headers, ["gumtree", "demo"])
    gumtree.answer_next(html_reply(403, ACCESS_DENIED_PAGE))

    result = await check(client, pro_headers, search["id"])

    assert result["errors"] == ["gumtree: blocked (HTTP 403, an access-denied page)"]
    assert result["upstream_calls"] == 1  # demo's
    assert result["matches_new"] > 0


async def test_a_search_blocked_three_times_in_a_row_tells_its_owner(
    client: httpx.AsyncClient,
    pro_headers: dict[str, str],
    session: AsyncSession,
    gumtree: GumtreeFake,
) -> None:
    search = await create(client, pro_headers, ["gumtree"])
    gumtree.answer_next(*(html_reply(403, ACCESS_DENIED_PAGE) for _ in range(3)))

    for _ in range(3):
        result = await check(client, pro_headers, search["id"])

    assert result["search"]["consecutive_failures"] == 3
    notices = (
        await session.scalars(
            select(Alert).where(Alert.kind == "system", Alert.channel == "in_app")
        )
    ).all()
    assert len(notices) == 1
    assert "keeps failing" in notices[0].payload["subject"]
    assert "blocked (HTTP 403" in notices[0].payload["text"]
