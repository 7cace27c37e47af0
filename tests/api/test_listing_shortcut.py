"""The shortcut for GET /api/v1/listings/ (app/api/listing_shortcut.py): a request the
route has answered is answered again without the route, with the same status, headers
and body; anything it is not sure of goes to the route, which answers as it always did."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.listing_shortcut import ListingShortcut, ServedRequest, ServedRequests, request_key
from app.config import Settings
from app.db import utcnow
from app.models import User
from app.monitoring import feed_versions
from tests.conftest import make_settings
from tests.factories import DEFAULT_PASSWORD, make_listing, make_match, make_search

URL = "/api/v1/listings/"
ORIGIN = "https://dashboard.example.com"


@pytest.fixture
def settings(database_url: str, request: pytest.FixtureRequest) -> Settings:
    """The suite's settings with a CORS origin; `indirect` parametrisation sets
    LISTINGS_PAGE_CACHE_ENTRIES."""
    entries = getattr(request, "param", 2048)
    return make_settings(database_url, cors_origins=[ORIGIN], listings_page_cache_entries=entries)


@pytest.fixture
async def matched(session: AsyncSession, user: User, other_user: User) -> None:
    mine = await make_search(session, owner=user, name="Mine")
    theirs = await make_search(session, owner=other_user, name="Theirs")
    for n in range(3):
        listing = await make_listing(session, external_id=f"item-{n}", title=f"Item {n}")
        await make_match(session, search=mine, listing=listing)
        if n == 0:
            await make_match(session, search=theirs, listing=listing)


def shortcut_of(app: FastAPI) -> ListingShortcut:
    shortcut: ListingShortcut = app.state.listing_shortcut
    return shortcut


def titles(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["title"] for item in response.json()["items"]]


async def test_a_repeated_request_is_answered_by_the_shortcut_exactly_as_by_the_route(
    app: FastAPI, client: httpx.AsyncClient, headers: dict[str, str], matched: None
) -> None:
    asked = {**headers, "Origin": ORIGIN}
    by_route = await client.get(URL, params={"limit": 2}, headers=asked)
    by_shortcut = await client.get(
        URL, params={"limit": 2}, headers={**asked, "X-Request-ID": "req-42"}
    )

    assert shortcut_of(app).answered == 1
    assert by_shortcut.status_code == by_route.status_code == 200
    assert by_shortcut.content == by_route.content
    assert len(by_shortcut.json()["items"]) == 2

    def without_request_id(response: httpx.Response) -> dict[str, str]:
        return {k: v for k, v in response.headers.items() if k != "x-request-id"}

    assert without_request_id(by_shortcut) == without_request_id(by_route)
    assert by_shortcut.headers["access-control-allow-origin"] == ORIGIN
    assert by_shortcut.headers["x-request-id"] == "req-42"
    assert by_route.headers["x-request-id"]


async def test_a_query_string_the_route_has_not_answered_goes_to_the_route(
    app: FastAPI, client: httpx.AsyncClient, headers: dict[str, str], matched: None
) -> None:
    await client.get(URL, params={"limit": 2}, headers=headers)

    # Equal to the first page's filters, spelled differently: the route's page cache
    # finds the page, the shortcut knows only the exact bytes it was asked with.
    assert titles(await client.get(URL, params={"limit": "02"}, headers=headers))
    assert shortcut_of(app).answered == 0
    assert app.state.listing_pages.hits == 1
    # Once answered by the route, that spelling is the shortcut's too.
    await client.get(URL, params={"limit": "02"}, headers=headers)
    assert shortcut_of(app).answered == 1


async def test_invalid_queries_are_never_remembered(
    app: FastAPI, client: httpx.AsyncClient, headers: dict[str, str], matched: None
) -> None:
    for _ in range(2):
        response = await client.get(URL, params={"limit": 0}, headers=headers)
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"
    assert len(shortcut_of(app).served) == 0
    assert shortcut_of(app).answered == 0


async def test_another_users_token_with_the_same_query_gets_their_own_page(
    app: FastAPI,
    client: httpx.AsyncClient,
    headers: dict[str, str],
    other_headers: dict[str, str],
    matched: None,
) -> None:
    mine = titles(await client.get(URL, headers=headers))
    theirs = titles(await client.get(URL, headers=other_headers))
    mine_again = titles(await client.get(URL, headers=headers))
    theirs_again = titles(await client.get(URL, headers=other_headers))

    assert mine == mine_again == ["Item 2", "Item 1", "Item 0"]
    assert theirs == theirs_again == ["Item 0"]
    assert shortcut_of(app).answered == 2


async def test_a_change_to_the_page_reaches_the_next_request(
    app: FastAPI,
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    headers: dict[str, str],
    matched: None,
) -> None:
    owner_id = user.id
    assert titles(await client.get(URL, headers=headers))[0] == "Item 2"
    search = await make_search(session, owner=user, name="Later")
    listing = await make_listing(session, external_id="item-new", title="Item new")
    await make_match(session, search=search, listing=listing)
    await feed_versions.bump(session, [owner_id])
    await session.commit()

    assert titles(await client.get(URL, headers=headers))[0] == "Item new"
    assert shortcut_of(app).answered == 0, "the version moved: the route computed the page"
    assert titles(await client.get(URL, headers=headers))[0] == "Item new"
    assert shortcut_of(app).answered == 1


async def test_a_deactivated_user_is_refused_by_the_route_at_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    headers: dict[str, str],
    matched: None,
) -> None:
    assert titles(await client.get(URL, headers=headers))
    user.is_active = False
    await session.commit()

    response = await client.get(URL, headers=headers)

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert shortcut_of(app).answered == 0


async def test_two_authorization_headers_go_to_the_route(
    app: FastAPI,
    client: httpx.AsyncClient,
    headers: dict[str, str],
    other_headers: dict[str, str],
    matched: None,
) -> None:
    mine = titles(await client.get(URL, headers=headers))
    both = [("Authorization", headers["Authorization"])]
    both.append(("Authorization", other_headers["Authorization"]))

    response = await client.get(URL, headers=both)

    # The route reads the first header, as FastAPI does; the shortcut matched neither.
    assert titles(response) == mine
    assert shortcut_of(app).answered == 0


async def test_other_methods_and_paths_go_to_the_route(
    app: FastAPI, client: httpx.AsyncClient, headers: dict[str, str], matched: None
) -> None:
    assert titles(await client.get(URL, headers=headers))

    assert (await client.post(URL, headers=headers)).status_code == 405
    assert (await client.head(URL, headers=headers)).status_code == 405
    recent = await client.get(f"{URL}recent", headers=headers)
    assert recent.status_code == 200
    assert shortcut_of(app).answered == 0


@pytest.mark.parametrize("settings", [0], indirect=True)
async def test_zero_cache_entries_turns_the_shortcut_off(
    app: FastAPI, client: httpx.AsyncClient, headers: dict[str, str], matched: None
) -> None:
    for _ in range(3):
        assert titles(await client.get(URL, headers=headers)) == ["Item 2", "Item 1", "Item 0"]
    assert len(shortcut_of(app).served) == 0
    assert shortcut_of(app).answered == 0


# --- what is remembered, and for how long --------------------------------------------------


def scope(authorizations: list[bytes], query: bytes = b"limit=5") -> dict[str, Any]:
    headers = [(b"host", b"test")] + [(b"authorization", value) for value in authorizations]
    return {"type": "http", "headers": headers, "query_string": query}


def served(expires_at: float) -> ServedRequest:
    return ServedRequest(uuid.uuid4(), ("page",), expires_at, 0)


def test_a_request_is_known_by_its_one_authorization_header_and_its_query_string() -> None:
    assert request_key(scope([b"Bearer a"])) == (b"Bearer a", b"limit=5")
    assert request_key(scope([])) is None
    assert request_key(scope([b"Bearer a", b"Bearer b"])) is None


def test_a_remembered_request_is_forgotten_once_its_token_expires() -> None:
    requests = ServedRequests(max_entries=10)
    now = utcnow().timestamp()
    requests.remember(scope([b"Bearer a"]), served(expires_at=now + 60))

    assert requests.recall((b"Bearer a", b"limit=5"), now=now + 59) is not None
    assert requests.recall((b"Bearer a", b"limit=6"), now=now) is None
    assert requests.recall((b"Bearer a", b"limit=5"), now=now + 60) is None
    assert len(requests) == 0


def test_the_least_recently_used_request_is_forgotten_first() -> None:
    requests = ServedRequests(max_entries=2)
    later = (utcnow() + timedelta(hours=1)).timestamp()
    for token in (b"Bearer a", b"Bearer b"):
        requests.remember(scope([token]), served(later))
    assert requests.recall((b"Bearer a", b"limit=5"), now=0) is not None
    requests.remember(scope([b"Bearer c"]), served(later))

    assert len(requests) == 2
    assert requests.recall((b"Bearer b", b"limit=5"), now=0) is None
    assert requests.recall((b"Bearer a", b"limit=5"), now=0) is not None
    assert requests.recall((b"Bearer c", b"limit=5"), now=0) is not None


async def test_the_route_remembers_a_request_until_its_token_expires(
    app: FastAPI, client: httpx.AsyncClient, headers: dict[str, str], matched: None
) -> None:
    assert titles(await client.get(URL, params={"limit": 5}, headers=headers))
    token = headers["Authorization"].removeprefix("Bearer ")
    expires_at = float(
        str(app.state.token_policy.signer.decode(token, expected_type="access")["exp"])
    )
    key = (headers["Authorization"].encode(), b"limit=5")

    assert shortcut_of(app).served.recall(key, now=expires_at - 1) is not None
    assert shortcut_of(app).served.recall(key, now=expires_at) is None
    # Forgotten: the route decides again (and its leeway is its own business).
    assert titles(await client.get(URL, params={"limit": 5}, headers=headers))
    assert shortcut_of(app).answered == 0


@pytest.mark.parametrize("ending", ["password change", "log out everywhere"])
async def test_a_token_issued_before_the_owner_ended_every_session_is_refused_even_on_a_repeat(
    app: FastAPI, client: httpx.AsyncClient, user: User, matched: None, ending: str
) -> None:
    login = await client.post(
        "/api/v1/auth/login", json={"email": user.email, "password": DEFAULT_PASSWORD}
    )
    old = {"Authorization": f"Bearer {login.json()['access_token']}"}
    assert (await client.get(URL, headers=old)).status_code == 200
    assert (await client.get(URL, headers=old)).status_code == 200
    assert shortcut_of(app).answered == 1

    if ending == "password change":
        changed = await client.post(
            "/api/v1/users/me/password",
            json={"current_password": DEFAULT_PASSWORD, "new_password": "a-brand-new-password"},
            headers=old,
        )
        assert changed.status_code == 200, changed.text
        new = {"Authorization": f"Bearer {changed.json()['access_token']}"}
    else:
        ended = await client.post("/api/v1/auth/logout-all", headers=old)
        assert ended.status_code == 204, ended.text
        again = await client.post(
            "/api/v1/auth/login", json={"email": user.email, "password": DEFAULT_PASSWORD}
        )
        new = {"Authorization": f"Bearer {again.json()['access_token']}"}

    refused = await client.get(URL, headers=old)
    assert refused.status_code == 401, refused.text
    assert shortcut_of(app).answered == 1
    assert titles(await client.get(URL, headers=new)) == ["Item 2", "Item 1", "Item 0"]
