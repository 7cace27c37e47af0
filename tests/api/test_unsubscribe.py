"""One-click unsubscribe links: signed per search, GET only shows, POST turns email off."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts import delivery
from app.models import Alert, Search, User
from app.security.unsubscribe import search_id_from_token, unsubscribe_token
from tests.factories import make_search

KEY = "a-secret-key-of-at-least-thirty-two-bytes!"


def test_token_round_trips_and_refuses_tampering() -> None:
    search_id = uuid.uuid4()
    token = unsubscribe_token(KEY, search_id)
    assert search_id_from_token(KEY, token) == search_id
    assert search_id_from_token("another-key-another-key-another-key", token) is None
    other = unsubscribe_token(KEY, uuid.uuid4())
    forged = f"{uuid.uuid4().hex}.{token.split('.')[1]}"
    for bad in (forged, other[:-1], token + "x", "", ".", "not-a-uuid.sig", token.split(".")[0]):
        assert search_id_from_token(KEY, bad) is None


def link(app: FastAPI, search: Search) -> str:
    key = app.state.settings.secret_key.get_secret_value()
    return f"/api/v1/unsubscribe/{unsubscribe_token(key, search.id)}"


async def channels_of(session: AsyncSession, search: Search) -> list[str]:
    await session.refresh(search)
    return list(search.alert_channels)


async def test_get_shows_a_confirmation_and_changes_nothing(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    search = await make_search(session, owner=user, name="<b>Bikes</b>")
    response = await client.get(link(app, search))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "&lt;b&gt;Bikes&lt;/b&gt;" in response.text
    assert '<form method="post"' in response.text
    assert await channels_of(session, search) == ["email"]


async def test_one_click_post_turns_email_off_for_that_search_only(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    search = await make_search(session, owner=user, alert_channels=["email", "webhook"])
    other = await make_search(session, owner=user, name="other")
    url = link(app, search)
    for _ in range(2):  # a second click is harmless
        response = await client.post(url, data={"List-Unsubscribe": "One-Click"})
        assert response.status_code == 200, response.text
        assert response.json()["alert_channels"] == ["webhook"]
    assert await channels_of(session, search) == ["webhook"]
    assert await channels_of(session, other) == ["email"]


async def test_the_page_button_gets_a_page_back(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    search = await make_search(session, owner=user)
    response = await client.post(link(app, search), headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert "Email alerts are off" in response.text
    assert await channels_of(session, search) == []


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_bad_or_stale_links_are_404_and_change_nothing(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession, user: User, method: str
) -> None:
    search = await make_search(session, owner=user)
    good = link(app, search)
    for url in (good[:-2], "/api/v1/unsubscribe/nonsense", good.replace(search.id.hex, "0" * 32)):
        response = await client.request(method, url)
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
    await session.delete(search)
    await session.commit()
    response = await client.request(method, good)
    assert response.status_code == 404


async def test_alert_emails_carry_a_working_link_and_other_channels_none(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    search = await make_search(session, owner=user)
    runtime: delivery.DeliveryRuntime = app.state.delivery_runtime
    for channel, expected in (("email", True), ("webhook", False)):
        alert = Alert(
            user_id=user.id,
            search_id=search.id,
            channel=channel,
            kind="new_listing",
            idempotency_key=f"k:{channel}",
            payload={"title": "Bike", "url": "https://example.com/1"},
            status="pending",
            attempts=0,
        )
        message = delivery.build_message(alert, search, runtime)
        assert (message.unsubscribe_url is not None) is expected
        if message.unsubscribe_url:
            path = message.unsubscribe_url.removeprefix(runtime.public_base_url.rstrip("/"))
            assert (await client.post(path)).status_code == 200
    assert await channels_of(session, search) == []
