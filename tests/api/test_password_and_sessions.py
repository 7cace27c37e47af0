"""Changing the password and logging out everywhere: the current password is required,
and afterwards every refresh token, dashboard session and access token issued before is
refused."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import RefreshToken, User
from tests.factories import DEFAULT_PASSWORD

PASSWORD = "/api/v1/users/me/password"
NEW_PASSWORD = "a-brand-new-password"


async def log_in(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/api/v1/auth/login", json={"email": email, "password": password})


async def pair_of(client: httpx.AsyncClient, user: User) -> tuple[dict[str, str], str]:
    """(Bearer headers, refresh token) of a fresh login."""
    response = await log_in(client, user.email, DEFAULT_PASSWORD)
    assert response.status_code == 200, response.text
    body = response.json()
    return {"Authorization": f"Bearer {body['access_token']}"}, body["refresh_token"]


async def test_changing_the_password_ends_every_token_and_answers_a_fresh_pair(
    client: httpx.AsyncClient, user: User, session: AsyncSession
) -> None:
    headers, refresh_token = await pair_of(client, user)
    other_device, other_refresh = await pair_of(client, user)

    changed = await client.post(
        PASSWORD,
        json={"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD},
        headers=headers,
    )

    assert changed.status_code == 200, changed.text
    fresh = {"Authorization": f"Bearer {changed.json()['access_token']}"}
    for old in (headers, other_device):
        assert (await client.get("/api/v1/users/me", headers=old)).status_code == 401
        assert (await client.get("/api/v1/searches/", headers=old)).status_code == 401
    for token in (refresh_token, other_refresh):
        refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": token})
        assert refreshed.status_code == 401
    assert (await client.get("/api/v1/users/me", headers=fresh)).status_code == 200
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": changed.json()["refresh_token"]}
    )
    assert refreshed.status_code == 200
    assert (await log_in(client, user.email, DEFAULT_PASSWORD)).status_code == 401
    assert (await log_in(client, user.email, NEW_PASSWORD)).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"current_password": "not-my-password", "new_password": NEW_PASSWORD}, None),
        ({"current_password": DEFAULT_PASSWORD, "new_password": "short"}, "new_password"),
        ({"new_password": NEW_PASSWORD}, "current_password"),
        ({"current_password": DEFAULT_PASSWORD}, "new_password"),
        ({"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD, "plan": "x"}, "plan"),
    ],
)
async def test_a_refused_password_change_says_why_and_changes_nothing(
    client: httpx.AsyncClient, user: User, body: dict[str, str], field: str | None
) -> None:
    headers, _ = await pair_of(client, user)

    refused = await client.post(PASSWORD, json=body, headers=headers)

    assert refused.status_code == 422, refused.text
    if field is None:
        assert refused.json()["field"] == "current_password"
        assert refused.json()["detail"] == "That is not your current password"
    else:
        assert field in str(refused.json()["detail"])
    assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 200
    assert (await log_in(client, user.email, DEFAULT_PASSWORD)).status_code == 200


async def test_guessing_the_current_password_with_a_stolen_token_is_throttled(
    client: httpx.AsyncClient, user: User
) -> None:
    headers, _ = await pair_of(client, user)
    wrong = {"current_password": "guess", "new_password": NEW_PASSWORD}
    for _ in range(5):
        assert (await client.post(PASSWORD, json=wrong, headers=headers)).status_code == 422

    right = {"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD}
    throttled = await client.post(PASSWORD, json=right, headers=headers)

    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) > 0


async def test_the_password_change_needs_a_token(client: httpx.AsyncClient) -> None:
    body = {"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD}
    assert (await client.post(PASSWORD, json=body)).status_code == 401


async def test_logging_out_everywhere_revokes_every_session_of_the_user_only(
    app: FastAPI,
    client: httpx.AsyncClient,
    user: User,
    other_user: User,
    session: AsyncSession,
) -> None:
    headers, refresh_token = await pair_of(client, user)
    theirs, their_refresh = await pair_of(client, other_user)

    ended = await client.post("/api/v1/auth/logout-all", headers=headers)

    assert ended.status_code == 204
    assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 401
    refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})
    assert refreshed.status_code == 401
    assert (await client.post("/api/v1/auth/logout-all", headers=headers)).status_code == 401
    # Another user's tokens are untouched.
    assert (await client.get("/api/v1/users/me", headers=theirs)).status_code == 200
    refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": their_refresh})
    assert refreshed.status_code == 200
    await session.rollback()
    live = await session.scalars(
        select(RefreshToken.jti).where(
            RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None)
        )
    )
    assert list(live) == []
    # The password still works: a new login is a new start.
    assert (await log_in(client, user.email, DEFAULT_PASSWORD)).status_code == 200


async def _api_token(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, str]:
    created = await client.post(
        "/api/v1/users/me/tokens",
        json={"name": "Script", "scopes": ["read", "write"]},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    return {"Authorization": f"Bearer {created.json()['token']}"}


@pytest.mark.parametrize("ending", ["password change", "log out everywhere"])
async def test_ending_every_session_revokes_api_tokens_too(
    client: httpx.AsyncClient, user: User, ending: str
) -> None:
    headers, _ = await pair_of(client, user)
    script = await _api_token(client, headers)
    assert (await client.get("/api/v1/users/me", headers=script)).status_code == 200

    if ending == "password change":
        body = {"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD}
        assert (await client.post(PASSWORD, json=body, headers=headers)).status_code == 200
    else:
        assert (await client.post("/api/v1/auth/logout-all", headers=headers)).status_code == 204

    assert (await client.get("/api/v1/users/me", headers=script)).status_code == 401


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", PASSWORD),
        ("POST", "/api/v1/auth/logout-all"),
        ("DELETE", "/api/v1/users/me"),
        ("PUT", f"/api/v1/admin/users/{uuid.uuid4()}/plan"),
    ],
)
async def test_an_api_token_cannot_do_what_needs_a_login(
    client: httpx.AsyncClient, session: AsyncSession, user: User, method: str, path: str
) -> None:
    user.is_admin = True
    await session.commit()
    headers, _ = await pair_of(client, user)
    script = await _api_token(client, headers)
    body = {"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD, "plan": "pro"}

    refused = await client.request(method, path, json=body, headers=script)

    assert refused.status_code == 403, refused.text
    assert "needs a login" in refused.json()["detail"]
    assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 200
