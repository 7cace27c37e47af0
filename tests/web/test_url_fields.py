"""Every field that takes a URL, in the API and in the dashboard forms, answers a malformed
URL with a 422 naming the field, never a 5xx, and stores nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Search, User
from tests.web.conftest import error_of, post_form
from tests.web.test_searches import NEW, search_form
from tests.web.test_settings import SETTINGS, settings_form

# Shapes urlsplit itself refuses (brackets that are unbalanced or hold no IPv6 address).
MALFORMED = ["https://[zz]/", "https://[::1/", "https://[1.2.3.4]/", "https://a]b/"]
OPTION_FIELD = "criteria.marketplace_options.rss.url"


def _url_like() -> st.SearchStrategy[str]:
    host_chars = st.sampled_from([*list("ab1.-:[]@%_~ "), "::1", "[", "]", "xn--", "%00"])
    host = st.lists(host_chars, max_size=12).map("".join)
    path = st.text(max_size=20)
    scheme = st.sampled_from(["https://", "http://", "HTTPS://", "ftp://", "https:", "//", ""])
    built = st.builds(lambda s, h, p: f"{s}{h}/{p}", scheme, host, path)
    return st.one_of(built, st.text(max_size=60))


def url_candidates(count: int = 40) -> list[str]:
    """Arbitrary strings and URL-shaped ones, drawn by Hypothesis (the same on every run)."""
    drawn: list[str] = []

    @settings(max_examples=count, database=None, derandomize=True)
    @given(_url_like())
    def collect(value: str) -> None:
        drawn.append(value)

    collect()
    return [*MALFORMED, *dict.fromkeys(drawn)]


CANDIDATES = url_candidates()


@pytest.fixture
def no_dns(app: FastAPI) -> None:
    async def resolve(host: str) -> list[str]:
        raise OSError(f"{host}: Name or service not known")

    app.state.resolve_host = resolve


@pytest.mark.parametrize("url", MALFORMED)
async def test_a_malformed_webhook_url_is_a_422_naming_the_field(
    client: httpx.AsyncClient, headers: dict[str, str], no_dns: None, url: str
) -> None:
    response = await client.patch("/api/v1/users/me", json={"webhook_url": url}, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "webhook_url"
    assert "well-formed" in response.json()["detail"]


@pytest.mark.parametrize("url", MALFORMED)
async def test_a_malformed_feed_url_is_a_422_naming_the_option(
    client: httpx.AsyncClient, headers: dict[str, str], no_dns: None, url: str
) -> None:
    body = {
        "name": "Feed",
        "criteria": {"keywords": ["lens"], "marketplace_options": {"rss": {"url": url}}},
        "marketplaces": ["rss"],
    }
    response = await client.post("/api/v1/searches/", json=body, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == OPTION_FIELD
    assert response.json()["detail"].startswith(f"{OPTION_FIELD}: ")


async def test_no_string_in_an_api_url_field_gets_a_5xx(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    no_dns: None,
    session: AsyncSession,
    user: User,
) -> None:
    for url in CANDIDATES:
        webhook = await client.patch("/api/v1/users/me", json={"webhook_url": url}, headers=headers)
        apprise = await client.patch(
            "/api/v1/users/me", json={"apprise_urls": [url]}, headers=headers
        )
        feed = await client.post(
            "/api/v1/searches/",
            json={
                "name": "Feed",
                "criteria": {"keywords": ["lens"], "marketplace_options": {"rss": {"url": url}}},
                "marketplaces": ["rss"],
            },
            headers=headers,
        )
        for response in (webhook, apprise, feed):
            assert response.status_code < 500, (url, response.text)
            if response.status_code >= 400:
                assert response.json()["detail"], (url, response.text)
    # Without DNS no host is public: nothing was stored.
    assert await _stored_urls(session, user) == (None, 0)


@pytest.mark.parametrize("url", MALFORMED)
async def test_the_settings_form_shows_a_malformed_url_next_to_its_field(
    signed_in: httpx.AsyncClient, url: str
) -> None:
    page = await post_form(signed_in, SETTINGS, SETTINGS, settings_form(webhook_url=url))
    assert page.status_code == 422, page.text
    assert "well-formed" in error_of(page.text, "webhook_url")


@pytest.mark.parametrize("url", MALFORMED)
async def test_the_search_form_shows_a_malformed_feed_url_next_to_its_field(
    signed_in: httpx.AsyncClient, url: str
) -> None:
    form = search_form(marketplaces=["rss"], **{"option:rss:url": url})
    page = await post_form(signed_in, NEW, NEW, form)
    assert page.status_code == 422, page.text
    assert "well-formed" in error_of(page.text, "option:rss:url")


async def test_no_string_in_a_form_url_field_gets_a_5xx(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    for url in CANDIDATES[:20]:
        fields: list[dict[str, Any]] = [
            settings_form(webhook_url=url),
            settings_form(apprise_urls=url),
        ]
        for data in fields:
            page = await post_form(signed_in, SETTINGS, SETTINGS, data)
            assert page.status_code < 500, (url, page.text[:500])
        form = search_form(marketplaces=["rss"], **{"option:rss:url": url})
        page = await post_form(signed_in, NEW, NEW, form)
        assert page.status_code < 500, (url, page.text[:500])
    assert await _stored_urls(session, user) == (None, 0)


async def _stored_urls(session: AsyncSession, user: User) -> tuple[str | None, int]:
    """The user's webhook URL and number of searches, as committed now."""
    user_id = user.id
    await session.rollback()
    webhook_url = await session.scalar(select(User.webhook_url).where(User.id == user_id))
    searches = await session.scalar(
        select(func.count()).select_from(Search).where(Search.owner_id == user_id)
    )
    return webhook_url, searches or 0
