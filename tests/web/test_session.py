"""Sessions, CSRF and the shared login throttle of the dashboard."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.main import create_app
from app.models import Search, User
from app.web.session import CSRF_COOKIE, SESSION_COOKIE
from tests.conftest import make_settings
from tests.factories import DEFAULT_PASSWORD, make_search, token_headers
from tests.web.conftest import csrf_of, error_of, log_in, notice_of


def set_cookie_headers(response: httpx.Response, name: str) -> list[str]:
    return [
        value for value in response.headers.get_list("set-cookie") if value.startswith(f"{name}=")
    ]


async def test_login_sets_an_httponly_samesite_lax_session_cookie_on_the_dashboard_path(
    browser: httpx.AsyncClient, user: User
) -> None:
    response = await log_in(browser, user.email)

    assert response.headers["location"] == "/app/searches"
    (cookie,) = set_cookie_headers(response, SESSION_COOKIE)
    attributes = {part.strip().lower() for part in cookie.split(";")}
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    assert "path=/app" in attributes
    # Development (DEBUG=True) serves plain http://localhost, where Secure would be dropped.
    assert "secure" not in attributes
    assert (await browser.get("/app/searches")).status_code == 200


async def test_cookies_are_secure_outside_development(database_url: str, user: User) -> None:
    settings = make_settings(database_url, debug=False, allow_sqlite_in_production=True)
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="https://test") as client:
            login_page = await client.get("/app/login")
            response = await log_in(client, user.email)

    for cookie in [
        *set_cookie_headers(login_page, CSRF_COOKIE),
        *set_cookie_headers(response, SESSION_COOKIE),
    ]:
        attributes = {part.strip().lower() for part in cookie.split(";")}
        assert {"secure", "httponly", "samesite=lax"} <= attributes, cookie


async def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    search = await make_search(session, owner=user)

    missing = await signed_in.post(f"/app/searches/{search.id}/pause", data={})
    forged = await signed_in.post(f"/app/searches/{search.id}/pause", data={"csrf_token": "0" * 64})

    for response in (missing, forged):
        assert response.status_code == 403
        assert "This form has expired" in response.text
    await session.refresh(search)
    assert search.is_active


async def test_a_csrf_token_is_bound_to_its_session(
    app: FastAPI, signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    """A token from another session of the same user does not work in this one."""
    search = await make_search(session, owner=user)
    other_browser = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    )
    async with other_browser:
        await log_in(other_browser, user.email)
        other_token = await csrf_of(other_browser, "/app/searches")

    response = await signed_in.post(
        f"/app/searches/{search.id}/pause", data={"csrf_token": other_token}
    )

    assert response.status_code == 403
    await session.refresh(search)
    assert search.is_active


async def test_the_login_form_needs_its_csrf_cookie(browser: httpx.AsyncClient, user: User) -> None:
    token = await csrf_of(browser, "/app/login")
    browser.cookies.clear()

    response = await browser.post(
        "/app/login",
        data={"email": user.email, "password": DEFAULT_PASSWORD, "csrf_token": token},
    )

    assert response.status_code == 403
    assert SESSION_COOKIE not in response.cookies


async def test_pages_ask_for_a_login_and_return_to_the_page_after_it(
    browser: httpx.AsyncClient, user: User
) -> None:
    response = await browser.get("/app/matches?saved=true")
    assert response.status_code == 303
    assert response.headers["location"] == "/app/login?next=%2Fapp%2Fmatches%3Fsaved%3Dtrue"

    token = await csrf_of(browser, response.headers["location"])
    login = await browser.post(
        "/app/login",
        data={
            "email": user.email,
            "password": DEFAULT_PASSWORD,
            "next": "/app/matches?saved=true",
            "csrf_token": token,
        },
    )
    assert login.headers["location"] == "/app/matches?saved=true"


async def test_next_never_leads_off_the_dashboard(browser: httpx.AsyncClient, user: User) -> None:
    for target in ("https://evil.example/", "//evil.example/app/", "/api/v1/users/me", "/app\\x"):
        browser.cookies.clear()
        token = await csrf_of(browser, "/app/login")
        login = await browser.post(
            "/app/login",
            data={
                "email": user.email,
                "password": DEFAULT_PASSWORD,
                "next": target,
                "csrf_token": token,
            },
        )
        assert login.headers["location"] == "/app/searches", target


async def test_a_wrong_password_shows_the_login_form_again(
    browser: httpx.AsyncClient, user: User
) -> None:
    token = await csrf_of(browser, "/app/login")
    response = await browser.post(
        "/app/login", data={"email": user.email, "password": "wrong", "csrf_token": token}
    )

    assert response.status_code == 401
    assert "Incorrect email or password" in response.text
    assert SESSION_COOKIE not in response.cookies
    assert 'value="owner@example.com"' in response.text


async def test_logging_out_ends_the_session_for_good(
    signed_in: httpx.AsyncClient, user: User
) -> None:
    stolen = signed_in.cookies[SESSION_COOKIE]
    token = await csrf_of(signed_in, "/app/searches")

    response = await signed_in.post("/app/logout", data={"csrf_token": token})

    assert response.status_code == 303
    assert response.headers["location"] == "/app/login"
    signed_in.cookies.clear()
    signed_in.cookies.set(SESSION_COOKIE, stolen, domain="test", path="/app")
    replayed = await signed_in.get("/app/searches")
    assert replayed.status_code == 303
    assert replayed.headers["location"].startswith("/app/login")


async def test_session_cookies_and_api_tokens_are_not_interchangeable(
    app: FastAPI, signed_in: httpx.AsyncClient, client: httpx.AsyncClient, user: User
) -> None:
    session_token = signed_in.cookies[SESSION_COOKIE]
    as_bearer = await client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {session_token}"}
    )
    assert as_bearer.status_code == 401

    access_token = token_headers(app, user)["Authorization"].removeprefix("Bearer ")
    signed_in.cookies.clear()
    signed_in.cookies.set(SESSION_COOKIE, access_token, domain="test", path="/app")
    as_cookie = await signed_in.get("/app/searches")
    assert as_cookie.status_code == 303


async def test_dashboard_and_api_logins_share_the_failure_budget(
    database_url: str, user: User
) -> None:
    settings = make_settings(database_url, login_pair_failure_limit="3/15minutes")
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for _ in range(3):
                token = await csrf_of(client, "/app/login")
                failed = await client.post(
                    "/app/login",
                    data={"email": user.email, "password": "wrong", "csrf_token": token},
                )
                assert failed.status_code == 401

            api = await client.post(
                "/api/v1/auth/login", json={"email": user.email, "password": DEFAULT_PASSWORD}
            )
            token = await csrf_of(client, "/app/login")
            dashboard = await client.post(
                "/app/login",
                data={"email": user.email, "password": DEFAULT_PASSWORD, "csrf_token": token},
            )

    assert api.status_code == 429
    assert dashboard.status_code == 429
    assert "Too many failed logins" in dashboard.text
    assert int(dashboard.headers["Retry-After"]) > 0


async def test_signing_up_logs_in_and_leads_to_the_first_search(
    browser: httpx.AsyncClient, session: AsyncSession
) -> None:
    token = await csrf_of(browser, "/app/signup")
    response = await browser.post(
        "/app/signup",
        data={
            "email": "New.Person@Example.com",
            "full_name": "New Person",
            "password": "a-long-password",
            "csrf_token": token,
        },
    )

    assert response.status_code == 303
    assert response.headers["location"] == "/app/searches/new"
    page = await browser.get("/app/searches/new")
    assert page.status_code == 200
    assert "Welcome!" in notice_of(page)
    created = await session.scalar(select(User).where(User.email == "new.person@example.com"))
    assert created is not None
    assert await session.scalar(select(Search).where(Search.owner_id == created.id)) is None


async def test_sign_up_shows_the_schema_messages_and_a_taken_email(
    browser: httpx.AsyncClient, user: User
) -> None:
    token = await csrf_of(browser, "/app/signup")
    invalid = await browser.post(
        "/app/signup", data={"email": "not-an-email", "password": "short", "csrf_token": token}
    )
    taken = await browser.post(
        "/app/signup",
        data={"email": user.email, "password": "a-long-password", "csrf_token": token},
    )

    assert invalid.status_code == 422
    assert error_of(invalid.text, "email") == "Enter an email address like name@example.com"
    assert error_of(invalid.text, "password") == "Use at least 8 characters"
    assert taken.status_code == 409
    assert "An account with this email already exists" in taken.text
