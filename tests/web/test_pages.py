"""Every page renders for a signed-in user, stays light, and carries the security headers."""

from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import User
from tests.factories import make_listing, make_match, make_search

MAX_PAGE_BYTES = 100_000  # HTML + CSS + script, before images
PAGES = [
    "/app/searches",
    "/app/searches/new",
    "/app/matches",
    "/app/alerts",
    "/app/settings",
    "/app/billing",
]


@pytest.fixture
async def busy_user(session: AsyncSession, user: User) -> User:
    """A user with a search and a full page of matches."""
    search = await make_search(session, owner=user, marketplaces=["demo"])
    for number in range(25):
        listing = await make_listing(
            session,
            external_id=f"x{number}",
            title=f"Listing number {number} with a fairly long title to weigh like a real one",
            image_url=f"https://i.example.com/{number}.jpg",
        )
        await make_match(session, search=search, listing=listing)
    return user


async def test_every_page_renders_and_weighs_under_100_kb(
    signed_in: httpx.AsyncClient, busy_user: User
) -> None:
    css = await signed_in.get("/app/static/app.css")
    script = await signed_in.get("/app/static/app.js")
    assert css.headers["content-type"].startswith("text/css")
    assert "javascript" in script.headers["content-type"]

    for path in PAGES:
        page = await signed_in.get(path)
        assert page.status_code == 200, path
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert '<html lang="en">' in page.text
        assert 'name="viewport"' in page.text
        assert 'aria-current="page"' in page.text, path
        weight = len(page.content) + len(css.content) + len(script.content)
        assert weight < MAX_PAGE_BYTES, (path, weight)


async def test_anonymous_pages_render(browser: httpx.AsyncClient) -> None:
    for path in ("/app/login", "/app/signup"):
        page = await browser.get(path)
        assert page.status_code == 200
        assert 'name="csrf_token"' in page.text
        assert "Log out" not in page.text
    home = await browser.get("/app/")
    assert home.status_code == 303
    assert home.headers["location"] == "/app/login"
    bare = await browser.get("/app")
    assert bare.status_code == 307
    assert bare.headers["location"] == "http://test/app/"


async def test_every_field_has_a_label(signed_in: httpx.AsyncClient) -> None:
    for path in PAGES:
        page = (await signed_in.get(path)).text
        for field_id in re.findall(r'<(?:input|select|textarea) id="([^"]+)"', page):
            assert f'<label for="{field_id}">' in page, (path, field_id)


async def test_dashboard_responses_carry_security_headers(signed_in: httpx.AsyncClient) -> None:
    for path in ("/app/searches", "/app/static/app.css", "/app/nowhere"):
        response = await signed_in.get(path)
        assert "default-src 'self'" in response.headers["content-security-policy"], path
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
    page = await signed_in.get("/app/searches")
    assert page.headers["cache-control"] == "no-store"


async def test_the_api_keeps_its_json_errors(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/searches/")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert "content-security-policy" not in response.headers
