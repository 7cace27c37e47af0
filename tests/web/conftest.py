"""Dashboard fixtures: a browser-like client that keeps cookies, and signing in through the
login form as a person would."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from app.models import User
from tests.factories import DEFAULT_PASSWORD

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


# Public-looking hosts that user-supplied URLs in these tests name (webhooks, feeds).
PUBLIC_HOSTS = {"hooks.example.com": ["93.184.216.34"], "feeds.example.com": ["93.184.216.34"]}


@pytest.fixture
def fake_dns(app: FastAPI) -> None:
    """Host names of user URLs resolve from PUBLIC_HOSTS only, never through real DNS."""

    async def resolve(host: str) -> list[str]:
        if host not in PUBLIC_HOSTS:
            raise OSError(f"{host}: Name or service not known")
        return PUBLIC_HOSTS[host]

    app.state.resolve_host = resolve


@pytest.fixture
async def browser(app: FastAPI, fake_dns: None) -> AsyncIterator[httpx.AsyncClient]:
    """A client that keeps cookies and does not follow redirects (tests look at them); the
    app resolves host names through `fake_dns`."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
async def signed_in(browser: httpx.AsyncClient, user: User) -> httpx.AsyncClient:
    """`browser`, logged in as `user`."""
    await log_in(browser, user.email)
    return browser


async def log_in(
    client: httpx.AsyncClient, email: str, password: str = DEFAULT_PASSWORD
) -> httpx.Response:
    token = await csrf_of(client, "/app/login")
    response = await client.post(
        "/app/login", data={"email": email, "password": password, "csrf_token": token}
    )
    assert response.status_code == 303, response.text
    return response


async def csrf_of(client: httpx.AsyncClient, path: str) -> str:
    """The CSRF token of the page's forms, as the browser would send it back."""
    page = await client.get(path)
    assert page.status_code == 200, page.text
    return csrf_in(page.text)


def csrf_in(page: str) -> str:
    found = _CSRF.search(page)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


async def post_form(
    client: httpx.AsyncClient, page: str, action: str, data: dict[str, object] | None = None
) -> httpx.Response:
    """Open `page`, then send one of its forms to `action` with the page's CSRF token."""
    token = await csrf_of(client, page)
    return await client.post(action, data={**(data or {}), "csrf_token": token})


def error_of(page: str, field: str) -> str:
    """The message shown next to a form field ("" when there is none)."""
    found = re.search(
        rf'<p class="field-error" id="error-{re.escape(field)}"[^>]*>(.*?)</p>', page, re.S
    )
    return html.unescape(found.group(1).strip()) if found else ""


def notice_of(response: httpx.Response) -> str:
    """The text of the notice on a page."""
    found = re.search(r'<p class="notice notice-\w+" role="\w+">(.*?)</p>', response.text, re.S)
    return html.unescape(found.group(1).strip()) if found else ""
