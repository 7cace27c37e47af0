"""Personal API tokens (/api/v1/users/me/tokens): shown once, accepted as a Bearer token
wherever a user is, read-only unless given the write scope, never able to manage tokens or
the password, and refused at once when revoked, expired or their owner deactivated."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.listing_shortcut import ListingShortcut
from app.db import utcnow
from app.errors import InvalidInput
from app.models import ApiToken, Search, User
from app.services import api_tokens
from tests.factories import DEFAULT_PASSWORD, make_listing, make_match, make_search

TOKENS = "/api/v1/users/me/tokens"
ME = "/api/v1/users/me"
SEARCHES = "/api/v1/searches/"
LISTINGS = "/api/v1/listings/"
READ_ONLY = {
    "detail": "This API token can only read; create one with the write scope",
    "code": "forbidden",
}
SEARCH_BODY: dict[str, Any] = {
    "name": "Bikes",
    "criteria": {"keywords": ["road bike"], "max_price": 400},
    "marketplaces": ["ebay"],
    "alert_channels": ["email"],
    "check_frequency_minutes": 30,
}


async def create_token(
    client: httpx.AsyncClient, headers: dict[str, str], **body: Any
) -> dict[str, Any]:
    response = await client.post(TOKENS, json={"name": "Home Assistant", **body}, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def bearer(created: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {created['token']}"}


async def stored_tokens(session: AsyncSession, user: User) -> list[ApiToken]:
    """The user's tokens as committed now (the test session may hold stale copies)."""
    await session.commit()  # a fresh snapshot
    rows = await session.scalars(
        select(ApiToken)
        .where(ApiToken.user_id == user.id)
        .execution_options(populate_existing=True)
    )
    return list(rows)


async def searches_of(session: AsyncSession, user: User) -> int:
    await session.commit()
    count = await session.scalar(
        select(func.count()).select_from(Search).where(Search.owner_id == user.id)
    )
    return count or 0


def shortcut_of(app: FastAPI) -> ListingShortcut:
    shortcut: ListingShortcut = app.state.listing_shortcut
    return shortcut


@pytest.fixture
async def matched(session: AsyncSession, user: User) -> None:
    search = await make_search(session, owner=user, name="Mine")
    for n in range(2):
        listing = await make_listing(session, external_id=f"item-{n}", title=f"Item {n}")
        await make_match(session, search=search, listing=listing)


async def test_a_new_token_is_shown_once_and_opens_the_api_as_its_owner(
    client: httpx.AsyncClient, session: AsyncSession, headers: dict[str, str], user: User
) -> None:
    created = await create_token(client, headers)

    assert created["token"].startswith("mmt_")
    assert created["prefix"] == created["token"][:12]
    assert created["name"] == "Home Assistant"
    assert created["scopes"] == ["read"]
    assert created["expires_at"] is None
    assert created["last_used_at"] is None
    me = await client.get(ME, headers=bearer(created))
    assert me.status_code == 200
    assert me.json()["email"] == user.email
    assert (await client.get(SEARCHES, headers=bearer(created))).status_code == 200
    # Stored as a digest only: the database cannot hand the token out again.
    [row] = await stored_tokens(session, user)
    assert created["token"] not in (row.token_hash, row.prefix)
    listed = await client.get(TOKENS, headers=headers)
    assert listed.status_code == 200
    assert created["token"] not in listed.text
    assert row.token_hash not in listed.text
    [item] = listed.json()
    assert set(item) == {
        "id",
        "name",
        "prefix",
        "scopes",
        "created_at",
        "expires_at",
        "last_used_at",
    }


async def test_tokens_are_listed_newest_first(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    for name in ("first", "second", "third"):
        await create_token(client, headers, name=name)

    listed = await client.get(TOKENS, headers=headers)

    assert [item["name"] for item in listed.json()] == ["third", "second", "first"]


async def test_repeated_listing_pages_are_served_to_a_token_but_never_by_the_shortcut(
    app: FastAPI, client: httpx.AsyncClient, headers: dict[str, str], matched: None
) -> None:
    created = await create_token(client, headers)

    first = await client.get(LISTINGS, params={"limit": 5}, headers=bearer(created))
    again = await client.get(LISTINGS, params={"limit": 5}, headers=bearer(created))

    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    assert sorted(item["title"] for item in again.json()["items"]) == ["Item 0", "Item 1"]
    assert shortcut_of(app).answered == 0
    assert len(shortcut_of(app).served) == 0


async def test_a_revoked_token_is_refused_at_once_even_for_a_page_it_read_before(
    client: httpx.AsyncClient,
    session: AsyncSession,
    headers: dict[str, str],
    user: User,
    matched: None,
) -> None:
    created = await create_token(client, headers)
    for _ in range(2):
        read = await client.get(LISTINGS, params={"limit": 5}, headers=bearer(created))
        assert read.status_code == 200

    revoked = await client.delete(f"{TOKENS}/{created['id']}", headers=headers)

    assert revoked.status_code == 204
    assert await stored_tokens(session, user) == []
    for path in (LISTINGS, ME, SEARCHES):
        refused = await client.get(path, params={"limit": 5}, headers=bearer(created))
        assert refused.status_code == 401, path
        assert refused.json() == {"detail": "Invalid or expired token", "code": "not_authenticated"}
        assert refused.headers["www-authenticate"] == "Bearer"
    assert (await client.get(TOKENS, headers=headers)).json() == []


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", SEARCHES, SEARCH_BODY),
        ("PATCH", ME, {"full_name": "Someone else"}),
        ("DELETE", "/api/v1/searches/{search_id}", None),
        ("PATCH", "/api/v1/searches/{search_id}", {"name": "Renamed"}),
    ],
)
async def test_a_read_token_is_refused_anything_but_reading_and_nothing_changes(
    client: httpx.AsyncClient,
    session: AsyncSession,
    headers: dict[str, str],
    user: User,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    search = await make_search(session, owner=user, name="Kept")
    created = await create_token(client, headers, scopes=["read"])

    refused = await client.request(
        method, path.format(search_id=search.id), json=body, headers=bearer(created)
    )

    assert refused.status_code == 403
    assert refused.json() == READ_ONLY
    assert await searches_of(session, user) == 1
    await session.refresh(user)
    await session.refresh(search)
    assert user.is_active
    assert user.full_name is None
    assert search.name == "Kept"


async def test_a_write_token_can_create_a_search(
    client: httpx.AsyncClient, session: AsyncSession, headers: dict[str, str], user: User
) -> None:
    created = await create_token(client, headers, scopes=["read", "write"])

    response = await client.post(SEARCHES, json=SEARCH_BODY, headers=bearer(created))

    assert response.status_code == 201, response.text
    assert response.json()["name"] == "Bikes"
    assert await searches_of(session, user) == 1
    assert created["scopes"] == ["read", "write"]


async def test_the_write_scope_alone_also_reads(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    created = await create_token(client, headers, scopes=["write"])

    assert created["scopes"] == ["read", "write"]
    assert (await client.get(ME, headers=bearer(created))).status_code == 200


async def test_a_token_with_an_expiry_works_until_then_and_not_after(
    client: httpx.AsyncClient, session: AsyncSession, headers: dict[str, str], user: User
) -> None:
    created = await create_token(client, headers, expires_in_days=30)
    expires_at = created["expires_at"]
    assert expires_at is not None
    assert (await client.get(ME, headers=bearer(created))).status_code == 200

    await session.execute(
        update(ApiToken)
        .where(ApiToken.id == uuid.UUID(created["id"]))
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    await session.commit()

    for path in (ME, LISTINGS):
        expired = await client.get(path, headers=bearer(created))
        assert expired.status_code == 401, path
        assert expired.json()["detail"] == "Invalid or expired token"


async def test_expires_in_days_counts_from_now(
    client: httpx.AsyncClient, session: AsyncSession, headers: dict[str, str], user: User
) -> None:
    before = utcnow()
    await create_token(client, headers, expires_in_days=7)

    [row] = await stored_tokens(session, user)

    assert row.expires_at is not None
    assert before + timedelta(days=7) <= row.expires_at <= utcnow() + timedelta(days=7)


async def test_a_deactivated_users_token_is_refused(
    client: httpx.AsyncClient, session: AsyncSession, headers: dict[str, str], user: User
) -> None:
    created = await create_token(client, headers)
    await session.execute(update(User).where(User.id == user.id).values(is_active=False))
    await session.commit()

    for path in (ME, LISTINGS, SEARCHES):
        refused = await client.get(path, headers=bearer(created))
        assert refused.status_code == 401, path


@pytest.mark.parametrize(
    "secret",
    ["mmt_", "mmt_not-a-token", "mmt_" + "A" * 43, "mmt_\u00e9t\u00e9"],
)
async def test_an_unknown_token_is_refused_like_any_bad_token(
    client: httpx.AsyncClient, headers: dict[str, str], secret: str
) -> None:
    await create_token(client, headers)

    for path in (ME, LISTINGS):
        refused = await client.get(path, headers={"Authorization": f"Bearer {secret}".encode()})
        assert refused.status_code == 401, (path, refused.text)
        assert refused.json()["code"] == "not_authenticated"


async def test_last_use_is_recorded_at_most_once_a_minute(
    client: httpx.AsyncClient, session: AsyncSession, headers: dict[str, str], user: User
) -> None:
    created = await create_token(client, headers)
    [row] = await stored_tokens(session, user)
    assert row.last_used_at is None

    await client.get(ME, headers=bearer(created))
    [row] = await stored_tokens(session, user)
    first_use = row.last_used_at
    assert first_use is not None
    await client.get(LISTINGS, headers=bearer(created))
    [row] = await stored_tokens(session, user)
    assert row.last_used_at == first_use, "used again within the minute: no write"

    two_minutes_ago = utcnow() - timedelta(minutes=2)
    await session.execute(
        update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=two_minutes_ago)
    )
    await session.commit()
    await client.get(LISTINGS, headers=bearer(created))
    [row] = await stored_tokens(session, user)
    assert row.last_used_at is not None
    assert row.last_used_at > two_minutes_ago + timedelta(minutes=1)
    listed = (await client.get(TOKENS, headers=headers)).json()
    assert listed[0]["last_used_at"] is not None


async def test_another_users_token_cannot_be_revoked_or_seen(
    client: httpx.AsyncClient,
    session: AsyncSession,
    headers: dict[str, str],
    other_headers: dict[str, str],
    other_user: User,
) -> None:
    theirs = await create_token(client, other_headers, name="Theirs")

    refused = await client.delete(f"{TOKENS}/{theirs['id']}", headers=headers)
    unknown = await client.delete(f"{TOKENS}/{uuid.uuid4()}", headers=headers)

    assert refused.status_code == unknown.status_code == 404
    assert refused.json() == unknown.json()
    assert refused.json()["code"] == "not_found"
    assert (await client.get(TOKENS, headers=headers)).json() == []
    assert len(await stored_tokens(session, other_user)) == 1
    assert (await client.get(ME, headers=bearer(theirs))).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "Script", "scopes": ["admin"]}, "scopes"),
        ({"name": "Script", "scopes": []}, "scopes"),
        ({"name": "Script", "scopes": ["read", "read"]}, "scopes"),
        ({"name": "Script", "expires_in_days": 0}, "expires_in_days"),
        ({"name": "Script", "expires_in_days": -1}, "expires_in_days"),
        ({"name": "Script", "expires_in_days": 3651}, "expires_in_days"),
        ({"name": "Script", "expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "Script", "user_id": str(uuid.uuid4())}, "user_id"),
        ({"scopes": ["read"]}, "name"),
    ],
)
async def test_invalid_token_requests_are_refused_and_store_nothing(
    client: httpx.AsyncClient,
    session: AsyncSession,
    headers: dict[str, str],
    user: User,
    body: dict[str, Any],
    field: str,
) -> None:
    refused = await client.post(TOKENS, json=body, headers=headers)

    assert refused.status_code == 422
    assert refused.json()["code"] == "validation_error"
    assert refused.json()["detail"][0]["loc"][:2] == ["body", field]
    assert await stored_tokens(session, user) == []


async def test_a_user_may_hold_at_most_twenty_tokens(
    client: httpx.AsyncClient, session: AsyncSession, headers: dict[str, str], user: User
) -> None:
    for n in range(api_tokens.MAX_TOKENS_PER_USER):
        await api_tokens.create(session, user, name=f"Script {n}", scopes=["read"], expires_at=None)
    await session.commit()

    refused = await client.post(TOKENS, json={"name": "One too many"}, headers=headers)

    assert refused.status_code == 409
    assert refused.json()["code"] == "conflict"
    assert "20 API tokens" in refused.json()["detail"]
    assert "revoke" in refused.json()["detail"]
    assert len(await stored_tokens(session, user)) == api_tokens.MAX_TOKENS_PER_USER


async def test_a_past_expiry_is_refused_by_the_service(session: AsyncSession, user: User) -> None:
    with pytest.raises(InvalidInput, match="future"):
        await api_tokens.create(
            session, user, name="Late", scopes=["read"], expires_at=utcnow() - timedelta(days=1)
        )


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", TOKENS, {"name": "Minted by a token", "scopes": ["read", "write"]}),
        ("GET", TOKENS, None),
        ("DELETE", TOKENS + "/{token_id}", None),
        (
            "POST",
            ME + "/password",
            {"current_password": DEFAULT_PASSWORD, "new_password": "x" * 12},
        ),
        ("POST", "/api/v1/auth/logout-all", None),
    ],
)
async def test_an_api_token_cannot_manage_tokens_or_sign_in_details(
    client: httpx.AsyncClient,
    session: AsyncSession,
    headers: dict[str, str],
    user: User,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    # Even with the write scope: these need the owner, logged in.
    created = await create_token(client, headers, scopes=["read", "write"])
    credentials_version, password_hash = user.credentials_version, user.password_hash

    refused = await client.request(
        method, path.format(token_id=created["id"]), json=body, headers=bearer(created)
    )

    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden"
    assert "needs a login" in refused.json()["detail"]
    assert len(await stored_tokens(session, user)) == 1
    await session.refresh(user)
    assert user.credentials_version == credentials_version
    assert user.password_hash == password_hash
    assert (await client.get(ME, headers=headers)).status_code == 200
    assert (await client.get(ME, headers=bearer(created))).status_code == 200


async def test_a_read_token_is_told_it_needs_a_login_not_the_write_scope_for_tokens(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    created = await create_token(client, headers)

    refused = await client.post(TOKENS, json={"name": "More"}, headers=bearer(created))

    assert refused.status_code == 403
    assert "needs a login" in refused.json()["detail"]


async def test_managing_tokens_needs_authentication(client: httpx.AsyncClient) -> None:
    for method in ("GET", "POST"):
        response = await client.request(method, TOKENS, json={"name": "x"})
        assert response.status_code == 401
    response = await client.delete(f"{TOKENS}/{uuid.uuid4()}")
    assert response.status_code == 401
