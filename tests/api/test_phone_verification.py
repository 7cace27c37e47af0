"""/api/v1/users/me/phone: a code texted through the local Twilio fake and typed back, and
SMS alerts going only to a verified number. Codes are read from what the fake received."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db import utcnow
from app.main import create_app
from app.models import OneTimeCode, Plan, User
from tests.conftest import empty_tables, make_settings
from tests.factories import make_user, token_headers
from tests.fakes.twilio import TwilioFake

ME = "/api/v1/users/me"
SEND = f"{ME}/phone/verification"
VERIFY = f"{ME}/phone/verify"
TEST_ALERT = f"{ME}/test-alert"
PHONE = "+447911123456"
NEW_PHONE = "+442079460958"
_CODE = re.compile(r"Your Marketplace Monitor code is (\d{6})\.")


def sms_settings(database_url: str, twilio: TwilioFake) -> Settings:
    """The suite's settings, sending SMS through the Twilio fake."""
    return make_settings(
        database_url,
        twilio_account_sid=twilio.account_sid,
        twilio_auth_token=twilio.auth_token,
        twilio_from_number=twilio.from_number,
        twilio_base_url=twilio.base_url,
    )


@pytest.fixture
def twilio() -> Iterator[TwilioFake]:
    with TwilioFake() as fake:
        yield fake


@pytest.fixture
def settings(database_url: str, twilio: TwilioFake) -> Settings:
    return sms_settings(database_url, twilio)


def codes_sent(twilio: TwilioFake, to: str = PHONE) -> list[str]:
    return [
        found.group(1)
        for message in twilio.messages
        if message.to == to and (found := _CODE.match(message.body))
    ]


def alerts_sent(twilio: TwilioFake) -> list[str]:
    """Texts that are not verification codes."""
    return [message.body for message in twilio.messages if not _CODE.match(message.body)]


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def set_phone(
    client: httpx.AsyncClient, headers: dict[str, str], phone: str | None
) -> dict[str, Any]:
    response = await client.patch(ME, json={"phone_number": phone}, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def send_code(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await client.post(SEND, headers=headers)


async def stored_codes(session: AsyncSession, user: User) -> list[OneTimeCode]:
    rows = await session.scalars(
        select(OneTimeCode)
        .where(OneTimeCode.user_id == user.id)
        .execution_options(populate_existing=True)
    )
    return list(rows)


async def test_sms_alerts_wait_for_the_number_to_be_verified_then_arrive(
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    headers: dict[str, str],
    twilio: TwilioFake,
) -> None:
    user.plan = Plan.STARTER.value  # a plan with SMS
    await session.commit()
    profile = await set_phone(client, headers, "+44 7911 123456")
    assert (profile["phone_number"], profile["phone_verified"]) == (PHONE, False)

    before = await client.post(TEST_ALERT, json={"channel": "sms"}, headers=headers)
    assert before.status_code == 200, before.text
    assert before.json()["delivered"] is False
    assert before.json()["alert"]["status"] == "failed"
    assert "not verified" in before.json()["alert"]["last_error"]
    assert twilio.messages == []

    sent = await send_code(client, headers)
    assert sent.status_code == 202, sent.text
    assert sent.json() == {"sent_to": "+44••••••3456", "expires_in": 600}
    [code] = codes_sent(twilio)
    verified = await client.post(VERIFY, json={"code": code}, headers=headers)
    assert verified.status_code == 200, verified.text
    assert verified.json()["phone_verified"] is True
    assert verified.json()["phone_number"] == PHONE
    assert (await client.get(ME, headers=headers)).json()["phone_verified"] is True

    after = await client.post(TEST_ALERT, json={"channel": "sms"}, headers=headers)
    assert after.json()["delivered"] is True, after.text
    assert after.json()["alert"]["status"] == "sent"
    [alert_text] = alerts_sent(twilio)
    assert twilio.messages[-1].to == PHONE
    assert "test" in alert_text.lower()


async def test_a_code_may_be_typed_with_a_space_or_a_dash(
    client: httpx.AsyncClient, headers: dict[str, str], twilio: TwilioFake
) -> None:
    await set_phone(client, headers, PHONE)
    await send_code(client, headers)
    [code] = codes_sent(twilio)
    response = await client.post(VERIFY, json={"code": f" {code[:3]}-{code[3:]} "}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["phone_verified"] is True


async def test_five_wrong_codes_kill_the_code(
    client: httpx.AsyncClient, headers: dict[str, str], twilio: TwilioFake
) -> None:
    code = await sent_code(client, headers, twilio)
    for left in (4, 3, 2, 1):
        response = await client.post(VERIFY, json={"code": wrong(code)}, headers=headers)
        assert response.status_code == 422
        assert response.json()["field"] == "code"
        assert response.json()["detail"].endswith(f"{left} {'try' if left == 1 else 'tries'} left")
    last = await client.post(VERIFY, json={"code": wrong(code)}, headers=headers)
    assert "last try" in last.json()["detail"]

    right_too_late = await client.post(VERIFY, json={"code": code}, headers=headers)
    assert right_too_late.status_code == 422
    assert right_too_late.json()["code"] == "code_out_of_tries"
    assert "ask for a new code" in right_too_late.json()["detail"]
    assert (await client.get(ME, headers=headers)).json()["phone_verified"] is False


async def test_an_expired_code_is_refused(
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    headers: dict[str, str],
    twilio: TwilioFake,
) -> None:
    code = await sent_code(client, headers, twilio)
    await session.execute(
        update(OneTimeCode)
        .where(OneTimeCode.user_id == user.id)
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    await session.commit()

    response = await client.post(VERIFY, json={"code": code}, headers=headers)
    assert response.status_code == 422
    assert (response.json()["field"], response.json()["code"]) == ("code", "code_expired")
    assert "expired" in response.json()["detail"]


async def test_a_code_works_once(
    client: httpx.AsyncClient, headers: dict[str, str], twilio: TwilioFake
) -> None:
    code = await sent_code(client, headers, twilio)
    first = await client.post(VERIFY, json={"code": code}, headers=headers)
    assert first.status_code == 200
    again = await client.post(VERIFY, json={"code": code}, headers=headers)
    assert again.status_code == 409
    assert "already verified" in again.json()["detail"]
    # Unverified again by a new number and back: the used code still does not count.
    await set_phone(client, headers, NEW_PHONE)
    await set_phone(client, headers, PHONE)
    reused = await client.post(VERIFY, json={"code": code}, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["code"] == "code_used"


async def test_codes_are_resent_at_most_once_a_minute_with_retry_after(
    client: httpx.AsyncClient, headers: dict[str, str], twilio: TwilioFake
) -> None:
    await set_phone(client, headers, PHONE)
    assert (await send_code(client, headers)).status_code == 202

    again = await send_code(client, headers)
    assert again.status_code == 429
    assert again.json()["code"] == "rate_limited"
    assert 55 <= int(again.headers["Retry-After"]) <= 60
    assert len(twilio.messages) == 1


async def test_a_new_number_is_unverified_and_a_code_for_the_old_one_is_refused(
    client: httpx.AsyncClient, headers: dict[str, str], twilio: TwilioFake
) -> None:
    old_code = await sent_code(client, headers, twilio)
    changed = await set_phone(client, headers, NEW_PHONE)
    assert changed["phone_verified"] is False
    refused = await client.post(VERIFY, json={"code": old_code}, headers=headers)
    assert refused.status_code == 422
    assert refused.json()["code"] == "code_for_other_number"

    # Verified, then: the same number saved again stays verified; another one does not.
    await set_phone(client, headers, PHONE)
    assert (await client.post(VERIFY, json={"code": old_code}, headers=headers)).status_code == 200
    assert (await set_phone(client, headers, "+44 7911 123456"))["phone_verified"] is True
    assert (await set_phone(client, headers, NEW_PHONE))["phone_verified"] is False
    await set_phone(client, headers, PHONE)
    cleared = await set_phone(client, headers, None)
    assert (cleared["phone_number"], cleared["phone_verified"]) == (None, False)


async def test_without_a_number_the_answer_names_phone_number(
    client: httpx.AsyncClient, headers: dict[str, str], twilio: TwilioFake
) -> None:
    for response in (
        await send_code(client, headers),
        await client.post(VERIFY, json={"code": "123456"}, headers=headers),
    ):
        assert response.status_code == 422
        assert response.json()["field"] == "phone_number"
        assert "phone number" in response.json()["detail"]
    assert twilio.requests == 0


async def test_a_verified_number_gets_no_new_code(
    client: httpx.AsyncClient, session: AsyncSession, twilio: TwilioFake, app: FastAPI
) -> None:
    verified = await make_user(session, email="sms@example.com", phone_number=PHONE)
    response = await send_code(client, token_headers(app, verified))
    assert response.status_code == 409
    assert response.json()["detail"] == "Your phone number is already verified: nothing was sent"
    assert twilio.requests == 0


async def test_a_number_twilio_refuses_is_a_422_and_nothing_is_stored(
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    headers: dict[str, str],
    twilio: TwilioFake,
) -> None:
    await set_phone(client, headers, PHONE)
    twilio.landlines.add(PHONE)
    response = await send_code(client, headers)
    assert response.status_code == 422
    assert response.json()["field"] == "phone_number"
    assert response.json()["detail"].startswith("The text could not be sent to +44••••••3456")
    assert "not a mobile number" in response.json()["detail"]
    assert await stored_codes(session, user) == []


async def test_a_twilio_outage_is_a_503_and_nothing_is_stored(
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    headers: dict[str, str],
    twilio: TwilioFake,
) -> None:
    await set_phone(client, headers, PHONE)
    twilio.fail_next(20001)
    response = await send_code(client, headers)
    assert response.status_code == 503
    assert "could not be sent" in response.json()["detail"]
    assert await stored_codes(session, user) == []
    assert (await send_code(client, headers)).status_code == 202  # not throttled by it


@pytest.mark.parametrize(
    "body",
    [{"code": "12345"}, {"code": "1234567"}, {"code": "abcdef"}, {"code": "١٢٣٤٥٦"}, {}],
)
async def test_a_code_that_is_not_six_digits_is_a_validation_error(
    client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, str]
) -> None:
    await set_phone(client, headers, PHONE)
    response = await client.post(VERIFY, json=body, headers=headers)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "code"]


async def test_the_verified_flag_cannot_be_set_through_the_profile(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    await set_phone(client, headers, PHONE)
    response = await client.patch(ME, json={"phone_verified": True}, headers=headers)
    assert response.status_code == 422
    assert (await client.get(ME, headers=headers)).json()["phone_verified"] is False


async def test_phone_verification_needs_a_login(client: httpx.AsyncClient) -> None:
    for response in (
        await client.post(SEND),
        await client.post(VERIFY, json={"code": "123456"}),
    ):
        assert response.status_code == 401
        assert response.json()["code"] == "not_authenticated"


async def test_a_server_without_twilio_settings_says_the_operator_must_set_them(
    database_url: str,
) -> None:
    application = create_app(make_settings(database_url))
    async with application.router.lifespan_context(application):
        try:
            async with application.state.session_factory() as session:
                user = await make_user(
                    session, email="nosms@example.com", phone_number=PHONE, phone_verified=False
                )
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                response = await send_code(client, token_headers(application, user))
            assert response.status_code == 503
            assert response.json()["code"] == "sms_not_configured"
            assert "TWILIO_ACCOUNT_SID" in response.json()["detail"]
            async with application.state.session_factory() as session:
                assert await stored_codes(session, user) == []
        finally:
            await empty_tables(application)


async def sent_code(client: httpx.AsyncClient, headers: dict[str, str], twilio: TwilioFake) -> str:
    """Set the user's number through the API, ask for a code and read it off the fake."""
    await set_phone(client, headers, PHONE)
    response = await send_code(client, headers)
    assert response.status_code == 202, response.text
    return codes_sent(twilio)[-1]
