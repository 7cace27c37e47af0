"""The dashboard's password change and "Log out everywhere" (Settings)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from app.models import User
from app.web.session import SESSION_COOKIE
from tests.factories import DEFAULT_PASSWORD
from tests.web.conftest import error_of, log_in, notice_of, post_form

SETTINGS = "/app/settings"
NEW_PASSWORD = "a-brand-new-password"


async def api_token(client: httpx.AsyncClient, user: User, password: str) -> dict[str, str]:
    response = await client.post(
        "/api/v1/auth/login", json={"email": user.email, "password": password}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def test_changing_the_password_keeps_this_browser_in_and_signs_out_the_rest(
    app: FastAPI, signed_in: httpx.AsyncClient, client: httpx.AsyncClient, user: User
) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as other_browser:
        await log_in(other_browser, user.email)
        token = await api_token(client, user, DEFAULT_PASSWORD)
        old_cookie = signed_in.cookies[SESSION_COOKIE]

        changed = await post_form(
            signed_in,
            SETTINGS,
            "/app/settings/password",
            {"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD},
        )

        assert changed.status_code == 303, changed.text
        assert signed_in.cookies[SESSION_COOKIE] != old_cookie
        page = await signed_in.get(changed.headers["location"])
        assert "Password changed" in notice_of(page)
        assert (await other_browser.get(SETTINGS)).status_code == 303  # to the login page
        assert (await client.get("/api/v1/users/me", headers=token)).status_code == 401
        await api_token(client, user, NEW_PASSWORD)


async def test_a_wrong_current_password_is_shown_next_to_its_field(
    signed_in: httpx.AsyncClient, client: httpx.AsyncClient, user: User
) -> None:
    wrong = await post_form(
        signed_in,
        SETTINGS,
        "/app/settings/password",
        {"current_password": "not-it", "new_password": NEW_PASSWORD},
    )
    short = await post_form(
        signed_in,
        SETTINGS,
        "/app/settings/password",
        {"current_password": DEFAULT_PASSWORD, "new_password": "short"},
    )

    assert wrong.status_code == 422
    assert error_of(wrong.text, "current_password") == "That is not your current password"
    assert short.status_code == 422
    assert "8 characters" in error_of(short.text, "new_password")
    assert "not-it" not in wrong.text
    await api_token(client, user, DEFAULT_PASSWORD)
    assert (await signed_in.get(SETTINGS)).status_code == 200


async def test_logging_out_everywhere_from_the_dashboard_ends_api_tokens_too(
    signed_in: httpx.AsyncClient, client: httpx.AsyncClient, user: User
) -> None:
    token = await api_token(client, user, DEFAULT_PASSWORD)

    ended = await post_form(signed_in, SETTINGS, "/app/logout-all")

    assert ended.status_code == 303
    assert ended.headers["location"].startswith("/app/login")
    assert (await signed_in.get(SETTINGS)).status_code == 303
    assert (await client.get("/api/v1/users/me", headers=token)).status_code == 401
