"""Email verification and password reset by mailed links, against a local SendGrid fake:
links are read from what the fake received, as a person would read their mail."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts import delivery
from app.config import Settings
from app.db import utcnow
from app.models import Alert, OneTimeCode, User
from tests.conftest import make_settings
from tests.factories import DEFAULT_PASSWORD, make_user
from tests.fakes.sendgrid import SendGridFake

_TOKEN = re.compile(r"[?&]token=([\w-]+)")
NEW_PASSWORD = "a-brand-new-password"
ME = "/api/v1/users/me"


def mail_settings(database_url: str, sendgrid: SendGridFake, public_base_url: str) -> Settings:
    """The suite's settings, sending email through the SendGrid fake."""
    return make_settings(
        database_url,
        sendgrid_api_key=sendgrid.api_key,
        sendgrid_base_url=sendgrid.base_url,
        email_from_address="alerts@marketmon.example",
        public_base_url=public_base_url,
    )


@pytest.fixture
def settings(database_url: str, sendgrid: SendGridFake) -> Settings:
    return mail_settings(database_url, sendgrid, "https://monitor.example.com")


def mails_to(fake: SendGridFake, address: str) -> list[str]:
    """The plain-text bodies of the mails accepted for `address`, oldest first."""
    return [mail.content("text/plain") for mail in fake.accepted if address in mail.to]


def token_in(text: str) -> str:
    found = _TOKEN.search(text)
    assert found, text
    return found.group(1)


async def register(client: httpx.AsyncClient, email: str) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def bearer(
    client: httpx.AsyncClient, email: str, password: str = DEFAULT_PASSWORD
) -> dict[str, str]:
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def test_an_unverified_address_gets_no_alert_by_email_until_its_link_is_followed(
    client: httpx.AsyncClient, sendgrid: SendGridFake
) -> None:
    email = "new@example.com"
    profile = await register(client, email)
    headers = await bearer(client, email)

    assert profile["email_verified"] is False
    (welcome,) = mails_to(sendgrid, email)
    assert "https://monitor.example.com/app/verify-email?token=" in welcome
    by_email = await client.post(f"{ME}/test-alert", json={"channel": "email"}, headers=headers)
    in_app = await client.post(f"{ME}/test-alert", json={"channel": "in_app"}, headers=headers)
    assert by_email.json()["delivered"] is False
    assert "not verified" in by_email.json()["alert"]["last_error"]
    assert in_app.json()["delivered"] is True
    assert len(mails_to(sendgrid, email)) == 1  # only the link

    verified = await client.post("/api/v1/auth/verify-email", json={"token": token_in(welcome)})

    assert verified.status_code == 204
    assert (await client.get(ME, headers=headers)).json()["email_verified"] is True
    by_email = await client.post(f"{ME}/test-alert", json={"channel": "email"}, headers=headers)
    assert by_email.json()["delivered"] is True, by_email.text
    assert len(mails_to(sendgrid, email)) == 2


async def test_a_verification_link_works_once_and_a_new_one_replaces_it(
    client: httpx.AsyncClient, sendgrid: SendGridFake, session: AsyncSession
) -> None:
    email = "new@example.com"
    await register(client, email)
    headers = await bearer(client, email)
    first = token_in(mails_to(sendgrid, email)[0])
    # Past the resend interval: the newest link is the only one that works.
    await session.execute(update(OneTimeCode).values(created_at=utcnow() - timedelta(minutes=2)))
    await session.commit()

    resent = await client.post(f"{ME}/email-verification", headers=headers)

    assert resent.status_code == 202, resent.text
    assert resent.json() == {"sent_to": email}
    second = token_in(mails_to(sendgrid, email)[1])
    replaced = await client.post("/api/v1/auth/verify-email", json={"token": first})
    assert replaced.status_code == 422
    assert replaced.json()["field"] == "token"
    assert (
        await client.post("/api/v1/auth/verify-email", json={"token": second})
    ).status_code == 204
    again = await client.post("/api/v1/auth/verify-email", json={"token": second})
    assert again.status_code == 422
    already = await client.post(f"{ME}/email-verification", headers=headers)
    assert already.status_code == 409


async def test_resending_at_once_is_throttled_and_an_expired_link_is_refused(
    client: httpx.AsyncClient, sendgrid: SendGridFake, session: AsyncSession
) -> None:
    email = "new@example.com"
    await register(client, email)
    headers = await bearer(client, email)

    throttled = await client.post(f"{ME}/email-verification", headers=headers)

    assert throttled.status_code == 429
    assert 0 < int(throttled.headers["Retry-After"]) <= 60
    assert len(mails_to(sendgrid, email)) == 1
    await session.execute(update(OneTimeCode).values(expires_at=utcnow() - timedelta(seconds=1)))
    await session.commit()
    token = token_in(mails_to(sendgrid, email)[0])
    expired = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert expired.status_code == 422
    assert "ask for a new one" in expired.json()["detail"]


@pytest.mark.parametrize("token", ["", "x" * 201, "not-a-real-token"])
async def test_a_malformed_or_unknown_verification_token_is_a_422(
    client: httpx.AsyncClient, token: str
) -> None:
    response = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert response.status_code == 422
    assert response.json()["code"] in {"validation_error", "invalid_input"}


async def test_the_link_is_stored_only_as_a_digest(
    client: httpx.AsyncClient, sendgrid: SendGridFake, session: AsyncSession
) -> None:
    await register(client, "new@example.com")
    token = token_in(mails_to(sendgrid, "new@example.com")[0])
    stored = (await session.scalars(select(OneTimeCode.secret_hash))).all()
    assert len(stored) == 1
    assert token not in stored[0]


async def test_a_password_reset_answers_alike_for_any_address_and_mails_only_real_accounts(
    client: httpx.AsyncClient, sendgrid: SendGridFake, user: User
) -> None:
    known = await client.post("/api/v1/auth/password-reset", json={"email": user.email})
    unknown = await client.post("/api/v1/auth/password-reset", json={"email": "nobody@example.com"})
    junk = await client.post("/api/v1/auth/password-reset", json={"email": "not an address"})

    assert known.status_code == unknown.status_code == junk.status_code == 202
    assert known.json() == unknown.json() == junk.json()
    assert [mail.to for mail in sendgrid.accepted] == [[user.email]]


async def test_a_reset_link_sets_a_new_password_once_and_ends_every_session(
    client: httpx.AsyncClient, sendgrid: SendGridFake, user: User
) -> None:
    old = await bearer(client, user.email)
    await client.post("/api/v1/auth/password-reset", json={"email": user.email})
    token = token_in(mails_to(sendgrid, user.email)[0])

    short = await client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": "short"}
    )
    done = await client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD}
    )
    again = await client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": "other-pass-1"}
    )

    assert short.status_code == 422
    assert done.status_code == 204, done.text
    assert again.status_code == 422
    assert (await client.get(ME, headers=old)).status_code == 401
    await bearer(client, user.email, NEW_PASSWORD)
    login = await client.post(
        "/api/v1/auth/login", json={"email": user.email, "password": DEFAULT_PASSWORD}
    )
    assert login.status_code == 401


async def test_an_expired_reset_link_changes_nothing(
    client: httpx.AsyncClient, sendgrid: SendGridFake, user: User, session: AsyncSession
) -> None:
    await client.post("/api/v1/auth/password-reset", json={"email": user.email})
    token = token_in(mails_to(sendgrid, user.email)[0])
    await session.execute(update(OneTimeCode).values(expires_at=utcnow() - timedelta(seconds=1)))
    await session.commit()

    expired = await client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD}
    )

    assert expired.status_code == 422
    await bearer(client, user.email, DEFAULT_PASSWORD)


async def test_without_an_email_provider_nothing_is_sent_and_the_answer_says_why(
    app: FastAPI, database_url: str, session: AsyncSession
) -> None:
    bare = make_settings(database_url, load_templates_on_startup=False)
    from app.main import create_app

    application = create_app(bare)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            profile = await register(http, "new@example.com")
            headers = await bearer(http, "new@example.com")
            resend = await http.post(f"{ME}/email-verification", headers=headers)
            reset = await http.post(
                "/api/v1/auth/password-reset", json={"email": "new@example.com"}
            )

    assert profile["email_verified"] is False
    assert resend.status_code == 503
    assert "marketmon verify-user" in resend.json()["detail"]
    assert reset.status_code == 202
    assert (await session.scalars(select(OneTimeCode.id))).all() == []


async def test_an_account_under_attack_is_told_once(
    app: FastAPI, database_url: str, session: AsyncSession
) -> None:
    owner = await make_user(session, email="target@example.com")
    from tests.test_auth import app_with, client_from, login

    async with app_with(database_url, login_account_failure_limit="3/day") as limited:
        for n in range(6):
            async with client_from(limited, f"203.0.113.{n}") as attacker:
                await login(attacker, owner.email, f"guess-{n}")

    await session.rollback()
    notices = (await session.scalars(select(Alert).where(Alert.user_id == owner.id))).all()
    assert sorted(n.channel for n in notices) == ["email", "in_app"]
    assert all("trying to log in" in n.payload["subject"] for n in notices)


async def test_a_search_alert_goes_in_app_but_not_by_email_until_the_address_is_verified(
    app: FastAPI, client: httpx.AsyncClient, sendgrid: SendGridFake
) -> None:
    email = "hunter@example.com"
    await register(client, email)
    headers = await bearer(client, email)
    welcome = mails_to(sendgrid, email)[0]

    async def alert_statuses_after_a_check(keyword: str) -> dict[str, str]:
        body = {
            "name": keyword,
            "criteria": {"keywords": [keyword]},
            "marketplaces": ["demo"],
            "alert_channels": ["email", "in_app"],
            "alert_on_first_check": True,
        }
        created = await client.post("/api/v1/searches/", json=body, headers=headers)
        assert created.status_code == 201, created.text
        search_id = created.json()["id"]
        checked = await client.post(f"/api/v1/searches/{search_id}/check", headers=headers)
        assert checked.json()["matches_new"] > 0, checked.text
        await delivery.deliver_due(app.state.delivery_runtime)
        alerts = await client.get("/api/v1/alerts/", params={"limit": 100}, headers=headers)
        return {
            item["channel"]: item["status"]
            for item in alerts.json()["items"]
            if item["search_id"] == search_id
        }

    before = await alert_statuses_after_a_check("lego")
    assert before == {"in_app": "sent", "email": "failed"}
    assert len(mails_to(sendgrid, email)) == 1  # the link only

    await client.post("/api/v1/auth/verify-email", json={"token": token_in(welcome)})
    after = await alert_statuses_after_a_check("iphone")

    assert after == {"in_app": "sent", "email": "sent"}
    assert len(mails_to(sendgrid, email)) == 2
