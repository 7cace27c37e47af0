"""A search's own criteria per marketplace (`criteria.marketplace_options`): validated against
each marketplace when the search is saved, with a 422 naming the field; feed URLs pass
the SSRF gate."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Plan, Search, User
from tests.factories import make_user, token_headers
from tests.security.test_ssrf import FakeResolver

URL = "/api/v1/searches/"
NAMES = {"feeds.example.com": ["93.184.216.34"], "intranet.example.com": ["10.1.2.3"]}


def body(marketplaces: list[str], options: dict[str, Any] | None = None) -> dict[str, Any]:
    criteria: dict[str, Any] = {"keywords": ["rtx 3080"]}
    if options is not None:
        criteria["marketplace_options"] = options
    return {"name": "GPU", "criteria": criteria, "marketplaces": marketplaces}


@pytest.fixture
def resolver(app: FastAPI) -> FakeResolver:
    fake = FakeResolver(NAMES)
    app.state.resolve_host = fake
    return fake


@pytest.fixture
async def pro_headers(app: FastAPI, session: AsyncSession) -> dict[str, str]:
    pro = await make_user(session, email="pro@example.com", plan=Plan.PRO)
    return token_headers(app, pro)


async def searches_of(session: AsyncSession, owner: User) -> int:
    await session.rollback()
    total = await session.scalar(
        select(func.count()).select_from(Search).where(Search.owner_id == owner.id)
    )
    return total or 0


@pytest.mark.parametrize(
    ("marketplaces", "options", "detail"),
    [
        pytest.param(
            ["craigslist"],
            None,
            "criteria.marketplace_options.craigslist.city: This field is required",
            id="required option missing",
        ),
        pytest.param(
            ["craigslist"],
            {"craigslist": {"city": "san francisco"}},
            "criteria.marketplace_options.craigslist.city: Use the city's short name",
            id="malformed city",
        ),
        pytest.param(
            ["craigslist"],
            {"craigslist": {"city": "sfbay", "radius": "5"}},
            "criteria.marketplace_options.craigslist.radius: Remove “radius”: it is not one",
            id="unknown key",
        ),
        pytest.param(
            ["vinted"],
            {"reddit": {"subreddit": "hardwareswap"}},
            "criteria.marketplace_options.reddit: reddit is not one of this search's marketplaces",
            id="options for a marketplace not chosen",
        ),
        pytest.param(
            ["ebay"],
            {"ebay": {"site": "EBAY_GB"}},
            "criteria.marketplace_options.ebay: ebay takes no options",
            id="marketplace without options",
        ),
        pytest.param(
            ["vinted"],
            {"vinted": {"domain": "moon"}},
            "criteria.marketplace_options.vinted.domain: Must be one of co.uk",
            id="unknown vinted domain",
        ),
        pytest.param(
            ["reddit"],
            {"reddit": {"subreddit": "no spaces allowed"}},
            "criteria.marketplace_options.reddit.subreddit: Enter the subreddit's name",
            id="malformed subreddit",
        ),
        pytest.param(
            ["rss"],
            {"rss": {"url": "ftp://feeds.example.com/feed.xml"}},
            "criteria.marketplace_options.rss.url: Enter an address starting with http",
            id="feed url not http",
        ),
    ],
)
async def test_invalid_marketplace_options_are_422_naming_the_field_and_save_nothing(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    session: AsyncSession,
    user: User,
    marketplaces: list[str],
    options: dict[str, Any] | None,
    detail: str,
) -> None:
    response = await client.post(URL, json=body(marketplaces, options), headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_input"
    assert response.json()["detail"].startswith(detail)
    assert await searches_of(session, user) == 0


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"craigslist": {"city": 5}}, id="not a string"),
        pytest.param({"craigslist": "sfbay"}, id="not an object"),
    ],
)
async def test_options_of_the_wrong_shape_are_a_validation_error(
    client: httpx.AsyncClient, headers: dict[str, str], options: dict[str, Any]
) -> None:
    response = await client.post(URL, json=body(["craigslist"], options), headers=headers)
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


async def test_valid_options_are_stored_normalised_and_shown(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.post(
        URL, json=body(["reddit"], {"reddit": {"subreddit": "/r/HardwareSwap/"}}), headers=headers
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["criteria"]["marketplace_options"] == {"reddit": {"subreddit": "hardwareswap"}}
    shown = await client.get(f"{URL}{created['id']}", headers=headers)
    assert shown.json()["criteria"]["marketplace_options"] == {
        "reddit": {"subreddit": "hardwareswap"}
    }


async def test_optional_options_may_be_left_out(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.post(URL, json=body(["vinted"]), headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["criteria"]["marketplace_options"] == {}


async def test_a_public_feed_url_is_accepted(
    client: httpx.AsyncClient, headers: dict[str, str], resolver: FakeResolver
) -> None:
    options = {"rss": {"url": "https://feeds.example.com/new.xml"}}
    response = await client.post(URL, json=body(["rss"], options), headers=headers)
    assert response.status_code == 201, response.text
    assert resolver.lookups == ["feeds.example.com"]


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://intranet.example.com/feed.xml", id="name of a private address"),
        pytest.param("https://10.0.0.1/feed.xml", id="private address"),
        pytest.param("https://169.254.169.254/latest/meta-data/", id="cloud metadata"),
        pytest.param("https://localhost/feed.xml", id="localhost"),
        pytest.param("https://feeds.example.com:8443/feed.xml", id="unusual port"),
    ],
)
async def test_a_feed_url_that_could_reach_inside_is_refused_with_its_path(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    session: AsyncSession,
    user: User,
    resolver: FakeResolver,
    url: str,
) -> None:
    response = await client.post(URL, json=body(["rss"], {"rss": {"url": url}}), headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "unsafe_url"
    assert response.json()["detail"].startswith("criteria.marketplace_options.rss.url: ")
    assert await searches_of(session, user) == 0


async def test_patching_to_a_marketplace_that_needs_options_needs_them(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    created = (await client.post(URL, json=body(["ebay"]), headers=headers)).json()
    path = f"{URL}{created['id']}"

    refused = await client.patch(path, json={"marketplaces": ["craigslist"]}, headers=headers)
    assert refused.status_code == 422
    assert "craigslist.city" in refused.json()["detail"]

    changed = await client.patch(
        path,
        json={
            "marketplaces": ["craigslist"],
            "criteria": body([], {"craigslist": {"city": "SFBay", "area_id": "1"}})["criteria"],
        },
        headers=headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["criteria"]["marketplace_options"] == {
        "craigslist": {"city": "sfbay", "area_id": "1"}
    }
    # Other fields leave the stored options alone.
    renamed = await client.patch(path, json={"name": "GPU deals"}, headers=headers)
    assert renamed.status_code == 200
    assert renamed.json()["criteria"]["marketplace_options"]["craigslist"]["city"] == "sfbay"


async def test_put_checks_the_options_of_every_marketplace(
    client: httpx.AsyncClient, pro_headers: dict[str, str]
) -> None:
    created = (await client.post(URL, json=body(["ebay"]), headers=pro_headers)).json()
    path = f"{URL}{created['id']}"
    both = body(["ebay", "craigslist", "reddit"], {"craigslist": {"city": "london"}})

    refused = await client.put(path, json=both, headers=pro_headers)
    assert refused.status_code == 422
    assert "reddit.subreddit: This field is required" in refused.json()["detail"]

    both["criteria"]["marketplace_options"]["reddit"] = {"subreddit": "ukmarketplace"}
    replaced = await client.put(path, json=both, headers=pro_headers)
    assert replaced.status_code == 200, replaced.text
    assert set(replaced.json()["criteria"]["marketplace_options"]) == {"craigslist", "reddit"}


async def test_plan_limits_are_checked_before_options(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    # FREE allows one marketplace: that is the answer, whatever the options say.
    response = await client.post(URL, json=body(["ebay", "craigslist"]), headers=headers)
    assert response.status_code == 403
