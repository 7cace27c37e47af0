"""GET /api/v1/listings/ served from the per-process page cache: a repeated page costs no
listing query, and no change to what the page shows is ever missed."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db import utcnow
from app.models import Listing, Search, SearchMatch, User
from app.monitoring import feed_versions
from app.services.listing_pages import PageCache
from tests.conftest import make_settings
from tests.factories import make_listing, make_match, make_search
from tests.statements import statements_run

URL = "/api/v1/listings/"
# Not ASCII, with typographic quotes: serialised as UTF-8, exactly as FastAPI does.
CAMERA_TITLE = "Appareil photo Fujifilm \u2013 \u00e9tat \u201cneuf\u201d \u00a3 \u65e5\u672c"


@pytest.fixture
def settings(database_url: str, request: pytest.FixtureRequest) -> Settings:
    """The suite's settings; `indirect` parametrisation sets LISTINGS_PAGE_CACHE_ENTRIES."""
    if hasattr(request, "param"):
        return make_settings(database_url, listings_page_cache_entries=request.param)
    return make_settings(database_url)


@dataclass
class Arranged:
    now: datetime
    phones: Search
    cameras: Search
    iphone: Listing  # matched by both of the owner's searches, and by the other user's
    pixel: Listing
    camera: Listing  # on gumtree, no price, a title that is not ASCII
    others_search: Search


@pytest.fixture
async def data(session: AsyncSession, user: User, other_user: User) -> Arranged:
    now = utcnow()
    phones = await make_search(session, owner=user, name="Phones")
    cameras = await make_search(session, owner=user, name="Cameras")
    others_search = await make_search(session, owner=other_user, name="Theirs")
    iphone = await make_listing(session, external_id="iphone", title="Apple iPhone 13")
    pixel = await make_listing(
        session, external_id="pixel", title="Google Pixel 7", price=Decimal("200")
    )
    camera = await make_listing(
        session,
        marketplace="gumtree",
        external_id="camera",
        title=CAMERA_TITLE,
        price=None,
    )
    await make_match(session, search=phones, listing=iphone, matched_at=now - timedelta(hours=3))
    await make_match(session, search=cameras, listing=iphone, matched_at=now - timedelta(hours=1))
    await make_match(session, search=phones, listing=pixel, matched_at=now - timedelta(hours=2))
    await make_match(session, search=cameras, listing=camera, matched_at=now - timedelta(hours=4))
    await make_match(session, search=others_search, listing=iphone, matched_at=now)
    return Arranged(now, phones, cameras, iphone, pixel, camera, others_search)


@contextmanager
def listing_queries(app: FastAPI) -> Iterator[list[str]]:
    """The SQL statements that read match rows, run while the block runs."""
    with statements_run(app.state.engine) as statements:
        yield statements
    statements[:] = [s for s in statements if "search_matches" in s]


async def page(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = await client.get(URL, params=params, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


def ids(body: dict[str, Any]) -> list[str]:
    return [item["id"] for item in body["items"]]


def strs(*rows: Listing | Search) -> list[str]:
    return [str(row.id) for row in rows]


def cache_of(app: FastAPI) -> PageCache:
    cache: PageCache = app.state.listing_pages
    return cache


# --- served from the cache ----------------------------------------------------------------


async def test_a_repeated_page_is_served_without_querying_the_matches(
    app: FastAPI, client: httpx.AsyncClient, data: Arranged, headers: dict[str, str]
) -> None:
    with listing_queries(app) as first_queries:
        first = await client.get(URL, headers=headers)
    with listing_queries(app) as second_queries:
        second = await client.get(URL, headers=headers)

    assert first_queries, "the first request computes the page"
    assert second_queries == []
    assert second.content == first.content
    assert ids(second.json()) == strs(data.iphone, data.pixel, data.camera)
    assert (cache_of(app).hits, cache_of(app).misses, len(cache_of(app))) == (1, 1, 1)


async def test_the_page_is_the_json_fastapi_produces_for_the_same_page(
    client: httpx.AsyncClient, data: Arranged, headers: dict[str, str]
) -> None:
    # /searches/{id}/listings runs the same service and lets FastAPI serialise its
    # response_model, as /listings/ did before it returned cached bytes.
    reference = await client.get(f"/api/v1/searches/{data.cameras.id}/listings", headers=headers)
    params = {"search_id": str(data.cameras.id)}
    computed = await client.get(URL, params=params, headers=headers)
    cached = await client.get(URL, params=params, headers=headers)

    assert reference.status_code == computed.status_code == cached.status_code == 200
    assert computed.json() == reference.json()
    assert computed.content == reference.content == cached.content
    assert computed.headers["content-type"] == reference.headers["content-type"]
    camera = computed.json()["items"][1]
    assert camera["title"] == CAMERA_TITLE
    assert camera["price"] is None


async def test_different_filters_limits_and_offsets_are_different_pages(
    app: FastAPI, client: httpx.AsyncClient, data: Arranged, headers: dict[str, str]
) -> None:
    queries: list[dict[str, Any]] = [
        {},
        {"limit": 1},
        {"limit": 1, "offset": 1},
        {"sort": "oldest"},
        {"q": "pixel"},
        {"marketplace": "gumtree"},
        {"min_price": "200"},
        {"search_id": str(data.phones.id)},
        {"saved": "false"},
        {"include_hidden": "true", "limit": 2},
    ]
    expected = [
        strs(data.iphone, data.pixel, data.camera),
        strs(data.iphone),
        strs(data.pixel),
        strs(data.camera, data.pixel, data.iphone),
        strs(data.pixel),
        strs(data.camera),
        strs(data.iphone, data.pixel),
        strs(data.iphone, data.pixel),
        strs(data.iphone, data.pixel, data.camera),
        strs(data.iphone, data.pixel),
    ]

    first = [ids(await page(client, headers, **query)) for query in queries]
    again = [ids(await page(client, headers, **query)) for query in queries]

    assert first == again == expected
    assert len(cache_of(app)) == len(queries)
    assert cache_of(app).hits == len(queries)
    # The same price written differently is the same page.
    await page(client, headers, min_price="200.00")
    assert cache_of(app).hits == len(queries) + 1


async def test_another_user_never_gets_the_first_users_page(
    client: httpx.AsyncClient,
    data: Arranged,
    headers: dict[str, str],
    other_headers: dict[str, str],
) -> None:
    mine = await page(client, headers)
    theirs = await page(client, other_headers)
    mine_again = await page(client, headers)

    assert ids(theirs) == strs(data.iphone)
    assert theirs["items"][0]["search_ids"] == strs(data.others_search)
    assert mine_again == mine
    assert mine["total"] == 3


# --- a cached page is no way around authentication ---------------------------------------


async def test_a_deactivated_users_token_is_refused_at_once_though_their_page_is_cached(
    app: FastAPI,
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    data: Arranged,
    headers: dict[str, str],
) -> None:
    await page(client, headers)
    user.is_active = False
    await session.commit()

    response = await client.get(URL, headers=headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {"detail": "Invalid or expired token", "code": "not_authenticated"}
    assert cache_of(app).hits == 0


async def test_a_deleted_users_token_is_refused_at_once_though_their_page_is_cached(
    app: FastAPI,
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    data: Arranged,
    headers: dict[str, str],
) -> None:
    await page(client, headers)
    await session.execute(delete(User).where(User.id == user.id))
    await session.commit()

    assert (await client.get(URL, headers=headers)).status_code == 401
    assert cache_of(app).hits == 0


async def test_only_a_valid_access_token_reads_a_cached_page(
    app: FastAPI, client: httpx.AsyncClient, user: User, data: Arranged, headers: dict[str, str]
) -> None:
    await page(client, headers)
    policy = app.state.token_policy
    refresh, _ = policy.signer.issue(
        subject=user.id, token_type="refresh", now=utcnow(), lifetime=timedelta(hours=1)
    )
    expired, _ = policy.signer.issue(
        subject=user.id,
        token_type="access",
        now=utcnow() - timedelta(hours=2),
        lifetime=timedelta(hours=1),
    )
    valid = headers["Authorization"]
    # A character inside the signature: the last one also carries padding bits.
    tampered = valid[:-10] + ("A" if valid[-10] != "A" else "B") + valid[-9:]

    for authorization in (
        f"Bearer {refresh}",
        f"Bearer {expired}",
        tampered,
        "Bearer not-a-token",
        "",
    ):
        response = await client.get(URL, headers={"Authorization": authorization})
        assert response.status_code == 401, authorization
    assert cache_of(app).hits == 0


@pytest.mark.parametrize("settings", [0], indirect=True)
async def test_zero_entries_turns_the_cache_off(
    app: FastAPI, client: httpx.AsyncClient, data: Arranged, headers: dict[str, str]
) -> None:
    for _ in range(2):
        with listing_queries(app) as queries:
            assert ids(await page(client, headers)) == strs(data.iphone, data.pixel, data.camera)
        assert queries, "every request queries the matches"
    assert len(cache_of(app)) == 0
    assert cache_of(app).hits == 0


async def test_errors_are_not_cached(
    app: FastAPI, client: httpx.AsyncClient, data: Arranged, headers: dict[str, str]
) -> None:
    params = {"search_id": str(data.others_search.id)}
    for _ in range(2):
        response = await client.get(URL, params=params, headers=headers)
        assert response.status_code == 404
    assert len(cache_of(app)) == 0


# --- never stale ---------------------------------------------------------------------------


async def test_a_new_match_is_listed_once_the_owners_feed_version_is_bumped(
    app: FastAPI,
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    data: Arranged,
    headers: dict[str, str],
) -> None:
    owner_id = user.id
    before = await page(client, headers)
    lens = await make_listing(session, external_id="lens", title="Canon 50mm lens")
    session.add(
        SearchMatch(
            search_id=data.cameras.id,
            listing_id=lens.id,
            user_id=owner_id,
            matched_at=utcnow(),
            price_at_match=lens.price,
        )
    )
    await session.flush()

    # The cache is what answers: the committed row alone does not reach the page...
    await session.commit()
    assert await page(client, headers) == before
    # ...and the bump every writer makes in its transaction does.
    await feed_versions.bump(session, [owner_id])
    await session.commit()
    after = await page(client, headers)

    assert ids(after) == [str(lens.id), *ids(before)]
    assert after["total"] == before["total"] + 1


async def test_hiding_saving_and_viewing_through_the_api_show_at_once(
    client: httpx.AsyncClient, data: Arranged, headers: dict[str, str]
) -> None:
    assert ids(await page(client, headers)) == strs(data.iphone, data.pixel, data.camera)
    assert ids(await page(client, headers, saved="true")) == []

    hidden = await client.patch(f"{URL}{data.pixel.id}", json={"is_hidden": True}, headers=headers)
    assert hidden.status_code == 200
    listed = await page(client, headers)
    assert (ids(listed), listed["total"]) == (strs(data.iphone, data.camera), 2)

    saved = await client.put(f"{URL}{data.camera.id}", json={"is_saved": True}, headers=headers)
    assert saved.status_code == 200
    assert ids(await page(client, headers, saved="true")) == strs(data.camera)

    await client.patch(f"{URL}{data.iphone.id}", json={"is_viewed": True}, headers=headers)
    viewed = (await page(client, headers))["items"][0]
    assert viewed["id"] == str(data.iphone.id)
    assert viewed["viewed_at"] is not None
    assert (await page(client, headers))["items"][1]["is_saved"] is True


async def test_deleting_a_search_takes_its_matches_off_the_page(
    client: httpx.AsyncClient, data: Arranged, headers: dict[str, str]
) -> None:
    before = await page(client, headers)
    assert sorted(before["items"][0]["search_ids"]) == sorted(strs(data.phones, data.cameras))

    response = await client.delete(f"/api/v1/searches/{data.cameras.id}", headers=headers)
    assert response.status_code == 204

    after = await page(client, headers)
    # The iPhone's latest match is now the older one, by the remaining search.
    assert ids(after) == strs(data.pixel, data.iphone)
    assert after["items"][1]["search_ids"] == strs(data.phones)
    assert after["total"] == 2


async def test_a_change_to_a_listing_shows_once_its_owners_are_bumped(
    client: httpx.AsyncClient,
    session: AsyncSession,
    data: Arranged,
    headers: dict[str, str],
    other_headers: dict[str, str],
) -> None:
    assert (await page(client, headers))["items"][0]["title"] == "Apple iPhone 13"
    assert (await page(client, other_headers))["items"][0]["title"] == "Apple iPhone 13"

    await session.execute(
        update(Listing).where(Listing.id == data.iphone.id).values(title="Apple iPhone 13 Pro")
    )
    await feed_versions.bump_owners_of_listings(session, [data.iphone.id])
    await session.commit()

    assert (await page(client, headers))["items"][0]["title"] == "Apple iPhone 13 Pro"
    assert (await page(client, other_headers))["items"][0]["title"] == "Apple iPhone 13 Pro"


# --- the total, counted by grouping -------------------------------------------------------


async def test_the_total_counts_the_listed_entries_for_every_combination_of_filters(
    client: httpx.AsyncClient,
    session: AsyncSession,
    data: Arranged,
    headers: dict[str, str],
) -> None:
    # Several rows per listing, with the state spread over them: one of the iPhone's two
    # rows hidden, one of the pixel's saved, the camera matched again later.
    await session.execute(
        update(SearchMatch)
        .where(SearchMatch.listing_id == data.iphone.id, SearchMatch.search_id == data.phones.id)
        .values(is_hidden=True)
    )
    await session.execute(
        update(SearchMatch).where(SearchMatch.listing_id == data.pixel.id).values(is_saved=True)
    )
    await make_match(session, search=data.phones, listing=data.camera, matched_at=data.now)
    combinations = itertools.product(
        [None, "true"],  # include_hidden
        [None, "true", "false"],  # saved
        [None, str(data.phones.id), str(data.cameras.id)],  # search_id
        [None, "gumtree"],  # marketplace
        [None, "o"],  # q
    )
    totals: dict[tuple[Any, ...], int] = {}
    for combination in combinations:
        params = {
            name: value
            for name, value in zip(
                ("include_hidden", "saved", "search_id", "marketplace", "q"),
                combination,
                strict=True,
            )
            if value is not None
        }
        body = await page(client, headers, limit=100, **params)
        assert body["total"] == len(body["items"]), params
        totals[combination] = body["total"]

    assert totals[(None, None, None, None, None)] == 2  # the hidden iPhone left out
    assert totals[("true", None, None, None, None)] == 3
    assert totals[("true", "true", None, None, None)] == 1
    assert totals[(None, None, str(data.phones.id), None, None)] == 2
    assert totals[("true", None, str(data.cameras.id), "gumtree", None)] == 1
