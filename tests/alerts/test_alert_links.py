"""The "manage this search" link of every channel opens the search in the dashboard (a
browser has the dashboard's session, never an API token), and the page is really there."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts import delivery, render
from app.alerts.channels import webhook
from app.db import utcnow
from app.models import Alert, User
from tests.factories import make_search
from tests.web.conftest import log_in

BASE = "https://mm.example.com/"


def runtime(app: FastAPI) -> delivery.DeliveryRuntime:
    return replace(app.state.delivery_runtime, public_base_url=BASE, link_signing_key="k" * 32)


def alert_about(
    search_id: uuid.UUID, *, channel: str = "email", kind: str = "new_listing"
) -> Alert:
    listing = {"title": "Canon EF 50mm", "url": "https://www.ebay.co.uk/itm/1", "price": "45.00"}
    payload = {"listings": [listing, {**listing, "title": "Canon EF 85mm"}]}
    return Alert(
        id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        search_id=search_id,
        channel=channel,
        kind=kind,
        idempotency_key="key",
        payload=payload if kind == "digest" else listing,
        created_at=utcnow(),
    )


def test_every_rendering_links_to_the_dashboard_edit_page(app: FastAPI) -> None:
    search_id = uuid.uuid4()
    expected = f"https://mm.example.com/app/searches/{search_id}/edit"
    message = delivery.build_message(alert_about(search_id), None, runtime(app))
    digest = delivery.build_message(alert_about(search_id, kind="digest"), None, runtime(app))

    assert message.manage_url == expected
    email = render.render_email(message)
    assert f'href="{expected}"' in email.html
    assert f"Change or stop them here: {expected}" in email.text
    assert f"Manage this search: {expected}" in render.plain_text(message)  # Apprise
    assert render.short_text(digest, limit=400).endswith(expected)  # SMS
    document = webhook.payload(message, now=datetime.now(UTC))
    assert document["data"]["search"]["url"] == expected
    for text in (email.html, email.text, render.plain_text(message)):
        assert "/api/v1/searches" not in text


def test_a_message_about_no_search_has_no_manage_link(app: FastAPI) -> None:
    alert = alert_about(uuid.uuid4())
    alert.search_id = None

    message = delivery.build_message(alert, None, runtime(app))

    assert message.manage_url is None
    assert webhook.payload(message, now=datetime.now(UTC))["data"]["search"] is None


async def test_the_link_opens_the_search_in_the_dashboard(
    app: FastAPI, session: AsyncSession, user: User
) -> None:
    search = await make_search(session, owner=user, name="Lenses")
    message = delivery.build_message(alert_about(search.id), search, runtime(app))
    assert message.manage_url is not None

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as browser:
        await log_in(browser, user.email)
        page = await browser.get(message.manage_url.removeprefix(BASE.rstrip("/")))

    assert page.status_code == 200
    assert 'value="Lenses"' in page.text
