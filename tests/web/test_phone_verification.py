"""Verifying the phone number on the settings page, against the local Twilio fake: the
status next to the number, sending a code, typing it in, and SMS test alerts before and
after."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts.channels.sms import SmsChannel
from app.config import Settings
from app.models import Plan, User
from tests.api.test_phone_verification import sms_settings
from tests.fakes.twilio import TwilioFake
from tests.web.conftest import error_of, notice_of, post_form
from tests.web.test_settings import settings_form

SETTINGS = "/app/settings"
SEND_CODE = "/app/settings/phone/send-code"
VERIFY = "/app/settings/phone/verify"
TEST_ALERT = "/app/settings/test-alert"
PHONE = "+447911123456"
_CODE = re.compile(r"Your Marketplace Monitor code is (\d{6})\.")


@pytest.fixture
def twilio() -> Iterator[TwilioFake]:
    with TwilioFake() as fake:
        yield fake


@pytest.fixture
def settings(database_url: str, twilio: TwilioFake) -> Settings:
    return sms_settings(database_url, twilio)


@pytest.fixture
async def with_phone(signed_in: httpx.AsyncClient) -> httpx.AsyncClient:
    """Signed in, with a phone number saved on the settings page (not verified yet)."""
    saved = await post_form(signed_in, SETTINGS, SETTINGS, settings_form(phone_number=PHONE))
    assert saved.status_code == 303, saved.text
    return signed_in


def last_code(twilio: TwilioFake) -> str:
    found = _CODE.match(twilio.messages[-1].body)
    assert found, twilio.messages[-1].body
    return found.group(1)


def phone_status(page: str) -> str:
    found = re.search(r'<p class="phone-status" id="phone-status">(.*?)</p>', page, re.S)
    assert found, "no phone status on the page"
    return " ".join(re.sub(r"<[^>]+>", " ", found.group(1)).split())


async def test_a_number_is_verified_on_the_settings_page_then_gets_sms_alerts(
    with_phone: httpx.AsyncClient, session: AsyncSession, user: User, twilio: TwilioFake
) -> None:
    user.plan = Plan.STARTER.value  # a plan with SMS
    await session.commit()
    page = await with_phone.get(SETTINGS)
    assert (
        phone_status(page.text) == f"{PHONE}: not verified — SMS alerts wait until it is. Send code"
    )
    assert 'form="send-phone-code"' in page.text

    refused = await post_form(with_phone, SETTINGS, TEST_ALERT, {"channel": "sms"})
    assert refused.status_code == 303
    notice = notice_of(await with_phone.get(SETTINGS))
    assert notice.startswith("Test alert by sms not delivered: your phone number is not verified")
    assert twilio.messages == []

    sent = await post_form(with_phone, SETTINGS, SEND_CODE)
    assert sent.status_code == 303
    assert notice_of(await with_phone.get(SETTINGS)) == (
        "A code is on its way to +44••••••3456. Enter it below within 10 minutes."
    )
    code = last_code(twilio)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    mistyped = await post_form(with_phone, SETTINGS, VERIFY, {"code": wrong})
    assert mistyped.status_code == 422
    assert error_of(mistyped.text, "code") == "That code is not right: 4 tries left"
    assert 'value="' + wrong not in mistyped.text

    verified = await post_form(with_phone, SETTINGS, VERIFY, {"code": code})
    assert verified.status_code == 303
    page = await with_phone.get(SETTINGS)
    assert notice_of(page) == "Your phone number is verified: SMS alerts can go to it."
    assert phone_status(page.text) == f"{PHONE}: verified"
    assert 'id="phone-verification"' not in page.text
    await session.refresh(user)
    assert user.phone_verified is True

    delivered = await post_form(with_phone, SETTINGS, TEST_ALERT, {"channel": "sms"})
    assert delivered.status_code == 303
    assert notice_of(await with_phone.get(SETTINGS)) == "Test alert sent by sms."
    assert twilio.messages[-1].to == PHONE
    assert not _CODE.match(twilio.messages[-1].body)


async def test_a_code_that_is_not_six_digits_is_a_field_error(
    with_phone: httpx.AsyncClient, twilio: TwilioFake
) -> None:
    await post_form(with_phone, SETTINGS, SEND_CODE)
    response = await post_form(with_phone, SETTINGS, VERIFY, {"code": "12ab"})
    assert response.status_code == 422
    assert error_of(response.text, "code") == (
        "Enter the 6 digits of the text we sent, such as 123456"
    )


async def test_asking_again_at_once_is_refused_with_a_notice(
    with_phone: httpx.AsyncClient, twilio: TwilioFake
) -> None:
    await post_form(with_phone, SETTINGS, SEND_CODE)
    again = await post_form(with_phone, SETTINGS, SEND_CODE)
    assert again.status_code == 303
    assert again.headers["location"] == SETTINGS
    assert notice_of(await with_phone.get(SETTINGS)).startswith(
        "A code was sent a moment ago; ask again in"
    )
    assert len(twilio.messages) == 1


async def test_a_new_number_shows_as_not_verified_again(
    with_phone: httpx.AsyncClient, twilio: TwilioFake
) -> None:
    await post_form(with_phone, SETTINGS, SEND_CODE)
    await post_form(with_phone, SETTINGS, VERIFY, {"code": last_code(twilio)})
    await post_form(with_phone, SETTINGS, SETTINGS, settings_form(phone_number="+442079460958"))
    page = await with_phone.get(SETTINGS)
    assert phone_status(page.text).startswith("+442079460958: not verified")


async def test_sending_a_code_without_a_number_names_the_phone_field(
    signed_in: httpx.AsyncClient, twilio: TwilioFake
) -> None:
    page = await signed_in.get(SETTINGS)
    assert 'id="phone-status"' not in page.text
    response = await post_form(signed_in, SETTINGS, SEND_CODE)
    assert response.status_code == 422
    assert "Add a phone number" in error_of(response.text, "phone_number")
    assert twilio.requests == 0


async def test_a_server_without_twilio_says_so_instead_of_offering_a_code(
    app: FastAPI, with_phone: httpx.AsyncClient, twilio: TwilioFake
) -> None:
    runtime = app.state.delivery_runtime
    unconfigured = SmsChannel(runtime.http_client, "", "", "")
    app.state.delivery_runtime = replace(
        runtime, channels={**runtime.channels, "sms": unconfigured}
    )

    page = await with_phone.get(SETTINGS)
    assert 'form="send-phone-code"' not in page.text
    assert "This server cannot send SMS yet" in page.text
    refused = await post_form(with_phone, SETTINGS, SEND_CODE)
    assert refused.status_code == 303
    assert "TWILIO_ACCOUNT_SID" in notice_of(await with_phone.get(SETTINGS))
    assert twilio.requests == 0


async def test_the_phone_forms_need_their_csrf_token(
    with_phone: httpx.AsyncClient, twilio: TwilioFake
) -> None:
    for action, data in ((SEND_CODE, {}), (VERIFY, {"code": "123456"})):
        response = await with_phone.post(action, data=data)
        assert response.status_code == 403
    assert twilio.requests == 0
