"""The dashboard side of email verification and password reset: the banner, the pages the
mailed links open, and "Forgot your password?"."""

from __future__ import annotations

import html

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import OneTimeCode, User
from tests.api.test_email_links import mail_settings, mails_to, token_in
from tests.factories import DEFAULT_PASSWORD
from tests.fakes.sendgrid import SendGridFake
from tests.web.conftest import csrf_of, error_of, log_in, notice_of, post_form

NEW_PASSWORD = "a-brand-new-password"
BANNER = "Please confirm your email address"


@pytest.fixture
def settings(database_url: str, sendgrid: SendGridFake) -> Settings:
    return mail_settings(database_url, sendgrid, "http://test")


def path_of(link_mail: str) -> str:
    start = link_mail.index("http://test") + len("http://test")
    return link_mail[start:].split()[0]


async def test_signing_up_shows_the_banner_until_the_mailed_link_is_followed(
    browser: httpx.AsyncClient, sendgrid: SendGridFake
) -> None:
    token = await csrf_of(browser, "/app/signup")
    signed_up = await browser.post(
        "/app/signup",
        data={"email": "new@example.com", "password": DEFAULT_PASSWORD, "csrf_token": token},
    )
    assert signed_up.status_code == 303, signed_up.text
    page = await browser.get("/app/searches")
    assert BANNER in page.text
    (mail,) = mails_to(sendgrid, "new@example.com")

    followed = await browser.get(path_of(mail))

    assert followed.status_code == 303
    after = await browser.get(followed.headers["location"])
    assert "Your email address is confirmed" in notice_of(after)
    assert BANNER not in after.text


async def test_the_banner_sends_a_new_link_and_the_link_works_signed_out(
    browser: httpx.AsyncClient, sendgrid: SendGridFake, session: AsyncSession, user: User
) -> None:
    await session.execute(update(User).values(email_verified=False))
    await session.commit()
    await log_in(browser, user.email)
    assert BANNER in (await browser.get("/app/settings")).text

    resent = await post_form(browser, "/app/settings", "/app/verify-email/resend")
    assert resent.status_code == 303
    assert "on its way" in notice_of(await browser.get(resent.headers["location"]))
    again = await post_form(browser, "/app/settings", "/app/verify-email/resend")
    assert again.status_code == 303
    assert "a moment ago" in notice_of(await browser.get(again.headers["location"]))
    (mail,) = mails_to(sendgrid, user.email)
    browser.cookies.clear()
    followed = await browser.get(path_of(mail))
    assert followed.headers["location"].startswith("/app/login")
    assert "confirmed" in notice_of(await browser.get(followed.headers["location"]))
    used = await browser.get(path_of(mail))
    assert "not valid any more" in notice_of(await browser.get(used.headers["location"]))


async def test_forgot_password_mails_a_link_that_opens_a_form_for_the_new_one(
    browser: httpx.AsyncClient, sendgrid: SendGridFake, user: User
) -> None:
    login_page = await browser.get("/app/login")
    assert 'href="/app/forgot-password"' in login_page.text

    answers = []
    for email in (user.email, "no@example.com"):
        asked = await post_form(
            browser, "/app/forgot-password", "/app/forgot-password", {"email": email}
        )
        assert asked.status_code == 303
        answers.append(notice_of(await browser.get(asked.headers["location"])))

    assert answers[0] == answers[1]
    assert "on its way" in answers[0]
    (mail,) = mails_to(sendgrid, user.email)
    form_page = await browser.get(path_of(mail))
    assert form_page.status_code == 200
    assert html.escape(token_in(mail)) in form_page.text

    short = await post_form(
        browser,
        path_of(mail),
        "/app/reset-password",
        {"token": token_in(mail), "new_password": "short"},
    )
    assert short.status_code == 422
    assert "8 characters" in error_of(short.text, "new_password")
    done = await post_form(
        browser,
        path_of(mail),
        "/app/reset-password",
        {"token": token_in(mail), "new_password": NEW_PASSWORD},
    )
    assert done.status_code == 303
    assert "Log in with the new one" in notice_of(await browser.get(done.headers["location"]))
    await log_in(browser, user.email, NEW_PASSWORD)


async def test_a_dead_reset_link_leads_back_to_forgot_password(
    browser: httpx.AsyncClient, sendgrid: SendGridFake, session: AsyncSession, user: User
) -> None:
    await post_form(browser, "/app/forgot-password", "/app/forgot-password", {"email": user.email})
    (mail,) = mails_to(sendgrid, user.email)
    await session.execute(update(OneTimeCode).values(used_at=OneTimeCode.created_at))
    await session.commit()

    opened = await browser.get(path_of(mail))

    assert opened.status_code == 303
    assert opened.headers["location"].startswith("/app/forgot-password")
