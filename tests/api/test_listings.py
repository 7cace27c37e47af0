"""/api/v1/listings: the listings a user's searches matched, with the user's own state."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.models import Listing, ListingPrice, Search, SearchMatch, User
from tests.factories import make_listing, make_match, make_search

URL = "/api/v1/listings/"


@dataclass
class Arranged:
    """The owner's two searches and four listings, plus one of the other user's."""

    now: datetime
    phones: Search
    cameras: Search
    iphone: Listing  # matched by both of the owner's searches
    pixel: Listing
    camera: Listing  # no price, on gumtree, matched 6 hours ago
    old_lens: Listing  # matched 3 days ago
    others_only: Listing  # matched only by the other user's search
    others_search: Search


async def arrange(session: AsyncSession, owner: User, other: User) -> Arranged:
    now = utcnow()
    phones = await make_search(session, owner=owner, name="Phones")
    cameras = await make_search(session, owner=owner, name="Cameras")
    others_search = await make_search(session, owner=other, name="Theirs")
    iphone = await make_listing(
        session, external_id="iphone", title="Apple iPhone 13 128GB", price=Decimal("350.00")
    )
    pixel = await make_listing(
        session, external_id="pixel", title="Google Pixel 7 (100% working)", price=Decimal("200")
    )
    camera = await make_listing(
        session,
        marketplace="gumtree",
        external_id="camera",
        title="Fujifilm X-T3 camera body",
        price=None,
    )
    old_lens = await make_listing(
        session, external_id="lens", title="Canon 50mm lens", price=Decimal("90.50")
    )
    others_only = await make_listing(session, external_id="theirs", title="iPhone 12 spares")
    await make_match(session, search=phones, listing=iphone, matched_at=now - timedelta(hours=5))
    await make_match(session, search=cameras, listing=iphone, matched_at=now - timedelta(hours=1))
    await make_match(session, search=phones, listing=pixel, matched_at=now - timedelta(hours=2))
    await make_match(session, search=cameras, listing=camera, matched_at=now - timedelta(hours=6))
    await make_match(session, search=cameras, listing=old_lens, matched_at=now - timedelta(days=3))
    await make_match(session, search=others_search, listing=others_only, matched_at=now)
    await make_match(
        session, search=others_search, listing=iphone, matched_at=now - timedelta(minutes=1)
    )
    return Arranged(
        now, phones, cameras, iphone, pixel, camera, old_lens, others_only, others_search
    )


@pytest.fixture
async def data(session: AsyncSession, user: User, other_user: User) -> Arranged:
    return await arrange(session, user, other_user)


async def get_ids(
    client: httpx.AsyncClient, headers: dict[str, str], path: str = URL, **params: Any
) -> list[str]:
    response = await client.get(path, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def ids(*rows: Listing | Search) -> list[str]:
    return [str(row.id) for row in rows]


async def match_states(session: AsyncSession, user_id: uuid.UUID) -> list[tuple[Any, ...]]:
    """(listing id, saved, hidden, viewed_at) of the user's match rows, as committed."""
    await session.commit()  # end any snapshot; unlike a rollback it keeps loaded objects
    rows = await session.execute(
        select(
            SearchMatch.listing_id,
            SearchMatch.is_saved,
            SearchMatch.is_hidden,
            SearchMatch.viewed_at,
        )
        .where(SearchMatch.user_id == user_id)
        .order_by(SearchMatch.listing_id, SearchMatch.search_id)
    )
    return [tuple(row) for row in rows]


# --- GET /listings/ ----------------------------------------------------------------------


async def test_lists_each_matched_listing_once_with_the_users_state(
    client: httpx.AsyncClient, data: Arranged, headers: dict[str, str]
) -> None:
    response = await client.get(URL, headers=headers)

    assert response.status_code == 200, response.text
    page = response.json()
    assert (page["total"], page["limit"], page["offset"]) == (4, 20, 0)
    assert [item["id"] for item in page["items"]] == ids(
        data.iphone, data.pixel, data.camera, data.old_lens
    )
    iphone = page["items"][0]
    assert sorted(iphone["search_ids"]) == sorted(ids(data.phones, data.cameras))
    assert datetime.fromisoformat(iphone["matched_at"]) == data.now - timedelta(hours=1)
    assert iphone == {
        **iphone,
        "marketplace": "ebay",
        "external_id": "iphone",
        "title": "Apple iPhone 13 128GB",
        "price": "350.00",
        "currency": "GBP",
        "url": "https://www.example.com/itm/iphone",
        "image_url": None,
        "is_saved": False,
        "is_hidden": False,
        "viewed_at": None,
    }
    assert {"location", "condition", "seller", "posted_at", "first_seen_at"} <= set(iphone)
    assert page["items"][2]["price"] is None


async def test_lists_never_show_another_users_listings(
    client: httpx.AsyncClient,
    data: Arranged,
    headers: dict[str, str],
    other_headers: dict[str, str],
) -> None:
    assert str(data.others_only.id) not in await get_ids(client, headers)
    assert str(data.others_only.id) not in await get_ids(client, headers, f"{URL}recent", hours=168)
    theirs = (await client.get(URL, headers=other_headers)).json()
    assert [item["id"] for item in theirs["items"]] == ids(data.others_only, data.iphone)
    # The shared listing shows only the other user's own search.
    assert theirs["items"][1]["search_ids"] == [str(data.others_search.id)]


async def test_listings_need_a_valid_token(client: httpx.AsyncClient, data: Arranged) -> None:
    listing_url = f"{URL}{data.iphone.id}"
    for method, path in [
        ("GET", URL),
        ("GET", f"{URL}recent"),
        ("GET", listing_url),
        ("PUT", listing_url),
        ("PATCH", listing_url),
    ]:
        response = await client.request(method, path, json={"is_saved": True})
        assert response.status_code == 401, (method, path)


async def test_filter_by_search(
    client: httpx.AsyncClient, data: Arranged, headers: dict[str, str]
) -> None:
    assert await get_ids(client, headers, search_id=str(data.phones.id)) == ids(
        data.iphone, data.pixel
    )
    assert await get_ids(client, headers, search_id=str(data.cameras.id)) == ids(
        data.iphone, data.camera, data.old_lens
    )


async def test_filter_by_another_users_search_is_not_found(
    client: httpx.AsyncClient, data: Arranged, headers: dict[str, str]
) -> None:
    for search_id in (data.others_search.id, uuid.uuid4()):
        response = await client.get(URL, params={"search_id": str(search_id)}, headers=headers)
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"


async def test_filter_by_marketplace_and_price(
    client: httpx.AsyncClient, data: Arranged, headers: dict[str, str]
) -> None:
    assert await get_ids(client, headers, marketplace="gumtree") == ids(data.camera)
    assert await get_ids(client, headers, marketplace="craigslist") == []
    assert await get_ids(client, headers, min_price="200") == ids(data.iphone, data.pixel)
    assert await get_ids(client, headers, max_price="200.00") == ids(data.pixel, data.old_lens)
    assert await get_ids(client, headers, min_price="90.5", max_price="300") == ids(
        data.pixel, data.old_lens
    )


async def test_filter_by_title_text_ignores_case_and_treats_wildcards_literally(
    client: httpx.AsyncClient, data: Arranged, headers: dict[str, str]
) -> None:
    assert await get_ids(client, headers, q="IPHONE") == ids(data.iphone)
    assert await get_ids(client, headers, q="  x-t3 ") == ids(data.camera)
    assert await get_ids(client, headers, q="100%") == ids(data.pixel)
    assert await get_ids(client, headers, q="%") == ids(data.pixel)
    assert await get_ids(client, headers, q="_") == []
    assert await get_ids(client, headers, q="spares") == []
    assert len(await get_ids(client, headers, q="")) == 4


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("newest", ["iphone", "pixel", "camera", "old_lens"]),
        ("oldest", ["old_lens", "camera", "pixel", "iphone"]),
        ("price_asc", ["old_lens", "pixel", "iphone", "camera"]),
        ("price_desc", ["iphone", "pixel", "old_lens", "camera"]),
    ],
)
async def test_sort_orders_with_unpriced_listings_last(
    client: httpx.AsyncClient,
    data: Arranged,
    headers: dict[str, str],
    sort: str,
    expected: list[str],
) -> None:
    wanted = ids(*(getattr(data, name) for name in expected))
    assert await get_ids(client, headers, sort=sort) == wanted


async def test_pages_cover_the_list_once_and_report_the_total(
    client: httpx.AsyncClient, data: Arranged, headers: dict[str, str]
) -> None:
    seen: list[str] = []
    for offset in (0, 3, 6):
        response = await client.get(URL, params={"limit": 3, "offset": offset}, headers=headers)
        page = response.json()
        assert (page["total"], page["limit"], page["offset"]) == (4, 3, offset)
        seen += [item["id"] for item in page["items"]]
    assert seen == ids(data.iphone, data.pixel, data.camera, data.old_lens)
    filtered = (await client.get(URL, params={"q": "phone", "limit": 1}, headers=headers)).json()
    assert (filtered["total"], len(filtered["items"])) == (1, 1)


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 101},
        {"limit": 0},
        {"offset": -1},
        {"sort": "random"},
        {"marketplace": "amazon"},
        {"min_price": "-1"},
        {"min_price": "abc"},
        {"min_price": "300", "max_price": "100"},
        {"q": "x" * 201},
        {"q": "a\x00b"},
        {"saved": "maybe"},
        {"search_id": "not-a-uuid"},
    ],
)
async def test_invalid_list_parameters_are_refused(
    client: httpx.AsyncClient, headers: dict[str, str], params: dict[str, Any]
) -> None:
    response = await client.get(URL, params=params, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"


async def test_limit_of_100_is_allowed(
    client: httpx.AsyncClient, data: Arranged, headers: dict[str, str]
) -> None:
    response = await client.get(URL, params={"limit": 100}, headers=headers)
    assert response.status_code == 200
    assert response.json()["limit"] == 100


# --- saved / hidden / viewed ------------------------------------------------------------


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_saving_a_listing_marks_all_the_users_matches_of_it_and_no_one_elses(
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    other_user: User,
    data: Arranged,
    headers: dict[str, str],
    other_headers: dict[str, str],
    method: str,
) -> None:
    owner_id, other_id = user.id, other_user.id
    others_before = await match_states(session, other_id)

    response = await client.request(
        method, f"{URL}{data.iphone.id}", json={"is_saved": True}, headers=headers
    )

    assert response.status_code == 200, response.text
    assert response.json()["is_saved"] is True
    assert response.json()["is_hidden"] is False
    iphone_rows = [row for row in await match_states(session, owner_id) if row[0] == data.iphone.id]
    assert [row[1] for row in iphone_rows] == [True, True]
    assert await match_states(session, other_id) == others_before
    theirs = (await client.get(f"{URL}{data.iphone.id}", headers=other_headers)).json()
    assert theirs["is_saved"] is False

    assert await get_ids(client, headers, saved="true") == ids(data.iphone)
    assert await get_ids(client, headers, saved="false") == ids(
        data.pixel, data.camera, data.old_lens
    )


async def test_hidden_listings_are_left_out_unless_asked_for(
    client: httpx.AsyncClient, data: Arranged, headers: dict[str, str]
) -> None:
    hidden = await client.patch(f"{URL}{data.pixel.id}", json={"is_hidden": True}, headers=headers)
    assert hidden.json()["is_hidden"] is True

    assert await get_ids(client, headers) == ids(data.iphone, data.camera, data.old_lens)
    assert (await client.get(URL, headers=headers)).json()["total"] == 3
    assert await get_ids(client, headers, include_hidden="true") == ids(
        data.iphone, data.pixel, data.camera, data.old_lens
    )
    assert str(data.pixel.id) not in await get_ids(client, headers, f"{URL}recent")
    # Still reachable directly, and can be unhidden.
    assert (await client.get(f"{URL}{data.pixel.id}", headers=headers)).status_code == 200
    await client.patch(f"{URL}{data.pixel.id}", json={"is_hidden": False}, headers=headers)
    assert str(data.pixel.id) in await get_ids(client, headers)


async def test_a_listing_hidden_through_one_search_stays_hidden(
    client: httpx.AsyncClient, session: AsyncSession, data: Arranged, headers: dict[str, str]
) -> None:
    # One of two match rows hidden (as when a second search matches a hidden listing later).
    await session.execute(
        update(SearchMatch)
        .where(SearchMatch.listing_id == data.iphone.id, SearchMatch.search_id == data.phones.id)
        .values(is_hidden=True)
    )
    await session.commit()
    assert str(data.iphone.id) not in await get_ids(client, headers)


async def test_viewed_keeps_the_first_view_and_false_clears_it(
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    data: Arranged,
    headers: dict[str, str],
) -> None:
    owner_id = user.id
    path = f"{URL}{data.iphone.id}"
    first = await client.patch(path, json={"is_viewed": True}, headers=headers)
    viewed_at = first.json()["viewed_at"]
    assert viewed_at is not None

    again = await client.put(path, json={"is_viewed": True, "is_saved": True}, headers=headers)
    assert again.json()["viewed_at"] == viewed_at
    assert again.json()["is_saved"] is True

    cleared = await client.patch(path, json={"is_viewed": False}, headers=headers)
    assert cleared.json()["viewed_at"] is None
    assert cleared.json()["is_saved"] is True
    rows = [row for row in await match_states(session, owner_id) if row[0] == data.iphone.id]
    assert [row[3] for row in rows] == [None, None]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"is_saved": None},
        {"is_hidden": "perhaps"},
        {"is_saved": True, "user_id": "00000000-0000-0000-0000-000000000001"},
        {"is_saved": True, "matched_at": "2020-01-01T00:00:00Z"},
        {"is_saved": True, "price": "1.00"},
        {"viewed_at": "2020-01-01T00:00:00Z"},
    ],
)
async def test_invalid_state_updates_are_refused_and_nothing_changes(
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    data: Arranged,
    headers: dict[str, str],
    body: dict[str, Any],
) -> None:
    owner_id = user.id
    before = await match_states(session, owner_id)
    for method in ("PUT", "PATCH"):
        response = await client.request(
            method, f"{URL}{data.iphone.id}", json=body, headers=headers
        )
        assert response.status_code == 422, response.text
    assert await match_states(session, owner_id) == before


# --- ownership --------------------------------------------------------------------------


async def test_listings_matched_only_by_others_or_by_no_one_are_not_found(
    client: httpx.AsyncClient,
    session: AsyncSession,
    other_user: User,
    data: Arranged,
    headers: dict[str, str],
) -> None:
    other_id = other_user.id
    unmatched = await make_listing(session, external_id="nobody")
    others_before = await match_states(session, other_id)
    for listing_id in (data.others_only.id, unmatched.id, uuid.uuid4()):
        path = f"{URL}{listing_id}"
        assert (await client.get(path, headers=headers)).status_code == 404
        for method in ("PUT", "PATCH"):
            response = await client.request(
                method, path, json={"is_saved": True, "is_hidden": True}, headers=headers
            )
            assert response.status_code == 404
            assert response.json() == {"detail": "Listing not found", "code": "not_found"}
    assert await match_states(session, other_id) == others_before


async def test_two_users_sharing_a_listing_see_only_their_own_state(
    client: httpx.AsyncClient,
    data: Arranged,
    headers: dict[str, str],
    other_headers: dict[str, str],
) -> None:
    path = f"{URL}{data.iphone.id}"
    await client.patch(path, json={"is_saved": True, "is_viewed": True}, headers=headers)
    await client.patch(path, json={"is_hidden": True}, headers=other_headers)

    mine = (await client.get(path, headers=headers)).json()
    theirs = (await client.get(path, headers=other_headers)).json()

    assert (mine["is_saved"], mine["is_hidden"]) == (True, False)
    assert mine["viewed_at"] is not None
    assert (theirs["is_saved"], theirs["is_hidden"], theirs["viewed_at"]) == (False, True, None)
    assert sorted(mine["search_ids"]) == sorted(ids(data.phones, data.cameras))
    assert theirs["search_ids"] == [str(data.others_search.id)]
    assert str(data.iphone.id) in await get_ids(client, headers)
    assert str(data.iphone.id) not in await get_ids(client, other_headers)


# --- GET /listings/recent -----------------------------------------------------------------


async def test_recent_lists_the_last_hours_newest_first(
    client: httpx.AsyncClient, data: Arranged, headers: dict[str, str]
) -> None:
    recent = f"{URL}recent"
    assert await get_ids(client, headers, recent) == ids(data.iphone, data.pixel, data.camera)
    assert await get_ids(client, headers, recent, hours=4) == ids(data.iphone, data.pixel)
    assert await get_ids(client, headers, recent, hours=168) == ids(
        data.iphone, data.pixel, data.camera, data.old_lens
    )
    page = (await client.get(recent, params={"limit": 1, "offset": 1}, headers=headers)).json()
    assert (page["total"], [item["id"] for item in page["items"]]) == (3, ids(data.pixel))


@pytest.mark.parametrize("params", [{"hours": 0}, {"hours": 169}, {"limit": 101}])
async def test_recent_refuses_out_of_range_parameters(
    client: httpx.AsyncClient, headers: dict[str, str], params: dict[str, Any]
) -> None:
    response = await client.get(f"{URL}recent", params=params, headers=headers)
    assert response.status_code == 422


# --- GET /listings/{id} -------------------------------------------------------------------


async def test_detail_has_the_description_and_price_history_oldest_first(
    client: httpx.AsyncClient, session: AsyncSession, data: Arranged, headers: dict[str, str]
) -> None:
    listing_id = data.iphone.id
    await session.execute(
        update(Listing).where(Listing.id == listing_id).values(description="Boxed")
    )
    session.add_all(
        [
            ListingPrice(
                listing_id=listing_id,
                price=Decimal(price),
                currency="GBP",
                observed_at=data.now - timedelta(days=days),
            )
            for price, days in [("350.00", 1), ("420.00", 5), ("399.99", 3)]
        ]
    )
    await session.commit()

    response = await client.get(f"{URL}{listing_id}", headers=headers)

    assert response.status_code == 200, response.text
    detail = response.json()
    assert detail["id"] == str(listing_id)
    assert detail["description"] == "Boxed"
    assert detail["last_seen_at"]
    assert [(point["price"], point["currency"]) for point in detail["price_history"]] == [
        ("420.00", "GBP"),
        ("399.99", "GBP"),
        ("350.00", "GBP"),
    ]
    assert datetime.fromisoformat(detail["price_history"][0]["observed_at"]) == (
        data.now - timedelta(days=5)
    )


async def test_detail_of_a_listing_without_price_changes_has_an_empty_history(
    client: httpx.AsyncClient, data: Arranged, headers: dict[str, str]
) -> None:
    detail = (await client.get(f"{URL}{data.camera.id}", headers=headers)).json()
    assert detail["price_history"] == []
    assert detail["search_ids"] == [str(data.cameras.id)]


async def test_malformed_listing_ids_are_refused(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get(f"{URL}not-a-uuid", headers=headers)
    assert response.status_code == 422


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_recent_is_a_read_only_route_not_a_listing_id(
    client: httpx.AsyncClient, headers: dict[str, str], method: str
) -> None:
    # PUT /listings/recent used to reach PUT /listings/{listing_id}: 422, "not a UUID".
    response = await client.request(
        method, f"{URL}recent", json={"is_saved": True}, headers=headers
    )

    assert response.status_code == 405
    assert response.headers["allow"] == "GET"


async def test_a_listing_matched_twice_at_the_same_moment_is_listed_once(
    client: httpx.AsyncClient, session: AsyncSession, user: User, headers: dict[str, str]
) -> None:
    first = await make_search(session, owner=user, name="First")
    second = await make_search(session, owner=user, name="Second")
    listing = await make_listing(session, external_id="twice")
    moment = utcnow() - timedelta(minutes=10)
    await make_match(session, search=first, listing=listing, matched_at=moment)
    await make_match(session, search=second, listing=listing, matched_at=moment)

    page = (await client.get(URL, headers=headers)).json()

    assert page["total"] == 1
    assert [item["id"] for item in page["items"]] == ids(listing)
    assert sorted(page["items"][0]["search_ids"]) == sorted(ids(first, second))


async def test_recent_goes_by_the_latest_match_of_a_listing(
    client: httpx.AsyncClient, session: AsyncSession, data: Arranged, headers: dict[str, str]
) -> None:
    # Matched three days ago by one search, and again half an hour ago by another.
    await make_match(
        session,
        search=data.phones,
        listing=data.old_lens,
        matched_at=data.now - timedelta(minutes=30),
    )
    recent = await get_ids(client, headers, f"{URL}recent")
    assert recent == ids(data.old_lens, data.iphone, data.pixel, data.camera)
