"""API tokens in the dashboard: created with the secret shown once on the resulting page,
listed with their last use, revoked; someone else's cannot be revoked, forms need CSRF."""

from __future__ import annotations

import html
import re

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import ApiToken, User
from app.services import api_tokens
from tests.web.conftest import error_of, notice_of, post_form

TOKENS = "/app/settings/tokens"
_SECRET = re.compile(r'<code class="secret-value" id="new-api-token">([^<]+)</code>')


async def tokens_of(session: AsyncSession, user: User) -> list[ApiToken]:
    await session.commit()  # a fresh snapshot
    rows = await session.scalars(
        select(ApiToken)
        .where(ApiToken.user_id == user.id)
        .execution_options(populate_existing=True)
    )
    return list(rows)


def secret_on(page: str) -> str | None:
    found = _SECRET.search(page)
    return html.unescape(found.group(1)) if found else None


async def test_settings_link_to_the_tokens_page(signed_in: httpx.AsyncClient) -> None:
    settings = await signed_in.get("/app/settings")

    assert f'href="{TOKENS}"' in settings.text
    assert (await signed_in.get(TOKENS)).status_code == 200


async def test_a_new_token_is_shown_once_and_works_with_the_api(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    created = await post_form(
        signed_in, TOKENS, TOKENS, {"name": "Spreadsheet", "expires_in_days": "90"}
    )

    assert created.status_code == 200
    secret = secret_on(created.text)
    assert secret is not None
    assert secret.startswith("mmt_")
    assert "shown only this once" in created.text
    [row] = await tokens_of(session, user)
    assert row.name == "Spreadsheet"
    assert row.scopes == ["read"]
    assert row.expires_at is not None
    me = await signed_in.get("/api/v1/users/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200
    assert me.json()["email"] == user.email
    # Listed from now on, by name and prefix, never again in full, with its last use.
    page = await signed_in.get(TOKENS)
    assert secret not in page.text
    assert "Spreadsheet" in page.text
    assert row.prefix in page.text
    assert "read only" in page.text
    assert "just now" in page.text


async def test_may_change_things_gives_the_write_scope(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    created = await post_form(
        signed_in, TOKENS, TOKENS, {"name": "n8n", "may_write": "true", "expires_in_days": ""}
    )

    assert created.status_code == 200
    [row] = await tokens_of(session, user)
    assert row.scopes == ["read", "write"]
    assert row.expires_at is None
    assert "read and change" in created.text


async def test_invalid_input_is_shown_next_to_the_field_and_creates_nothing(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    nameless = await post_form(signed_in, TOKENS, TOKENS, {"name": " "})
    never = await post_form(signed_in, TOKENS, TOKENS, {"name": "Script", "expires_in_days": "0"})
    wordy = await post_form(signed_in, TOKENS, TOKENS, {"name": "x", "expires_in_days": "soon"})

    assert nameless.status_code == never.status_code == wordy.status_code == 422
    assert error_of(nameless.text, "name") == "Give it a name"
    assert error_of(never.text, "expires_in_days") == "Enter 1 or more"
    assert error_of(wordy.text, "expires_in_days")
    assert 'value="Script"' in never.text, "what was typed is kept"
    assert secret_on(never.text) is None
    assert await tokens_of(session, user) == []


async def test_the_twenty_first_token_is_refused_with_the_reason(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    for n in range(api_tokens.MAX_TOKENS_PER_USER):
        await api_tokens.create(session, user, name=f"Script {n}", scopes=["read"], expires_at=None)
    await session.commit()

    refused = await post_form(signed_in, TOKENS, TOKENS, {"name": "One too many"})

    assert refused.status_code == 409
    assert "revoke one" in error_of_form(refused.text)
    assert secret_on(refused.text) is None
    assert len(await tokens_of(session, user)) == api_tokens.MAX_TOKENS_PER_USER


def error_of_form(page: str) -> str:
    found = re.search(r'<p class="notice notice-error" id="error-form"[^>]*>(.*?)</p>', page, re.S)
    return html.unescape(found.group(1).strip()) if found else ""


async def test_revoking_a_token_removes_it_and_it_stops_working(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    token, secret = await api_tokens.create(
        session, user, name="Garage door", scopes=["read"], expires_at=None
    )
    await session.commit()

    revoked = await post_form(signed_in, TOKENS, f"{TOKENS}/{token.id}/revoke")

    assert revoked.status_code == 303
    assert revoked.headers["location"] == TOKENS
    page = await signed_in.get(TOKENS)
    assert notice_of(page) == "Token revoked: it no longer works."
    assert "Garage door" not in page.text
    assert await tokens_of(session, user) == []
    refused = await signed_in.get("/api/v1/users/me", headers={"Authorization": f"Bearer {secret}"})
    assert refused.status_code == 401


async def test_another_users_token_cannot_be_revoked_through_the_form(
    signed_in: httpx.AsyncClient, session: AsyncSession, other_user: User
) -> None:
    theirs, _ = await api_tokens.create(
        session, other_user, name="Theirs", scopes=["read"], expires_at=None
    )
    await session.commit()

    refused = await post_form(signed_in, TOKENS, f"{TOKENS}/{theirs.id}/revoke")
    malformed = await post_form(signed_in, TOKENS, f"{TOKENS}/not-an-id/revoke")

    assert refused.status_code == malformed.status_code == 404
    assert len(await tokens_of(session, other_user)) == 1
    assert "Theirs" not in (await signed_in.get(TOKENS)).text


async def test_token_forms_need_their_csrf_token(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    token, _ = await api_tokens.create(session, user, name="Kept", scopes=["read"], expires_at=None)
    await session.commit()

    forged_create = await signed_in.post(TOKENS, data={"name": "Forged"})
    forged_revoke = await signed_in.post(
        f"{TOKENS}/{token.id}/revoke", data={"csrf_token": "0" * 64}
    )

    assert forged_create.status_code == forged_revoke.status_code == 403
    assert [row.name for row in await tokens_of(session, user)] == ["Kept"]


async def test_the_tokens_page_needs_a_login(browser: httpx.AsyncClient) -> None:
    response = await browser.get(TOKENS)

    assert response.status_code == 303
    assert response.headers["location"].startswith("/app/login")
