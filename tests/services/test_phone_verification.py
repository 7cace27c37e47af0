"""Phone verification codes, service by service call, against the local Twilio fake: the
code is read from what the fake received, and time moves by passing `now`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts.channels.sms import SmsChannel
from app.alerts.delivery import DeliveryRuntime
from app.db import utcnow
from app.errors import Conflict, InvalidInput, ServiceUnavailable, TooManyRequests
from app.models import CodePurpose, OneTimeCode, User
from app.schemas.users import UserUpdate
from app.security import ssrf
from app.services import phone_verification, users
from tests.factories import make_user
from tests.fakes.twilio import TwilioFake

PHONE = "+447911123456"
NEW_PHONE = "+442079460958"
_CODE = re.compile(r"\b(\d{6})\b")


@pytest.fixture
def twilio() -> Iterator[TwilioFake]:
    with TwilioFake() as fake:
        yield fake


@pytest.fixture
def runtime(app: FastAPI, twilio: TwilioFake) -> DeliveryRuntime:
    """The app's delivery runtime with its SMS channel pointed at the fake."""
    base: DeliveryRuntime = app.state.delivery_runtime
    channel = SmsChannel(
        base.http_client,
        twilio.account_sid,
        twilio.auth_token,
        twilio.from_number,
        base_url=twilio.base_url,
    )
    return replace(base, channels={**base.channels, "sms": channel})


@pytest.fixture
async def unverified(session: AsyncSession) -> User:
    return await make_user(
        session, email="phone@example.com", phone_number=PHONE, phone_verified=False
    )


def last_code(twilio: TwilioFake, to: str = PHONE) -> str:
    texts = [message.body for message in twilio.messages if message.to == to]
    assert texts, f"no text reached {to}"
    found = _CODE.search(texts[-1])
    assert found, texts[-1]
    return found.group(1)


async def change_number(session: AsyncSession, user: User, number: str | None) -> None:
    async def no_lookups(host: str) -> list[str]:
        raise OSError(f"{host}: no lookups in this test")

    update = UserUpdate.model_validate({"phone_number": number})
    await users.update_profile(session, user, update, url_policy=ssrf.URLPolicy(no_lookups))


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def codes_of(session: AsyncSession, user: User) -> list[OneTimeCode]:
    rows = await session.scalars(
        select(OneTimeCode)
        .where(OneTimeCode.user_id == user.id)
        .order_by(OneTimeCode.created_at)
        .execution_options(populate_existing=True)
    )
    return list(rows)


async def test_a_code_sent_and_typed_back_verifies_the_number(
    session: AsyncSession, runtime: DeliveryRuntime, twilio: TwilioFake, unverified: User
) -> None:
    sent = await phone_verification.send_code(session, runtime, unverified)
    await session.commit()

    assert (sent.sent_to, sent.expires_in_s) == ("+44••••••3456", 600)
    [text] = twilio.messages
    assert text.to == PHONE
    assert (
        text.body
        == f"Your Marketplace Monitor code is {last_code(twilio)}. It expires in 10 minutes."
    )
    await phone_verification.confirm_code(session, unverified, last_code(twilio))
    await session.commit()
    await session.refresh(unverified)
    assert unverified.phone_verified is True
    [code] = await codes_of(session, unverified)
    assert code.used_at is not None
    assert code.target == PHONE


async def test_only_a_digest_is_stored_and_it_is_bound_to_its_user(
    session: AsyncSession, runtime: DeliveryRuntime, twilio: TwilioFake, unverified: User
) -> None:
    other = await make_user(
        session, email="other@example.com", phone_number=NEW_PHONE, phone_verified=False
    )
    await phone_verification.send_code(session, runtime, unverified)
    mine = last_code(twilio)
    await phone_verification.send_code(session, runtime, other)
    await session.commit()
    [my_row], [their_row] = await codes_of(session, unverified), await codes_of(session, other)
    assert mine not in my_row.secret_hash
    assert re.fullmatch(r"[0-9a-f]{64}", my_row.secret_hash)

    # Even with my digest on their row, my code does not verify their number: the same
    # digits make a different digest for another user.
    their_row.secret_hash = my_row.secret_hash
    await session.commit()
    with pytest.raises(InvalidInput) as refused:
        await phone_verification.confirm_code(session, other, mine)
    assert refused.value.code == "code_wrong"


async def test_five_wrong_codes_kill_the_code_even_the_right_one_after(
    session: AsyncSession, runtime: DeliveryRuntime, twilio: TwilioFake, unverified: User
) -> None:
    await phone_verification.send_code(session, runtime, unverified)
    await session.commit()
    code = last_code(twilio)

    messages = []
    for _ in range(phone_verification.MAX_ATTEMPTS):
        with pytest.raises(InvalidInput) as refused:
            await phone_verification.confirm_code(session, unverified, wrong(code))
        assert refused.value.field == "code"
        messages.append(refused.value.detail)
    assert messages[0] == "That code is not right: 4 tries left"
    assert "last try" in messages[-1]

    with pytest.raises(InvalidInput) as dead:
        await phone_verification.confirm_code(session, unverified, code)
    assert dead.value.code == "code_out_of_tries"
    assert "ask for a new code" in dead.value.detail
    await session.refresh(unverified)
    assert unverified.phone_verified is False
    [row] = await codes_of(session, unverified)
    assert row.attempts == phone_verification.MAX_ATTEMPTS


async def test_wrong_tries_are_kept_even_when_the_caller_rolls_back(
    session: AsyncSession, runtime: DeliveryRuntime, twilio: TwilioFake, unverified: User
) -> None:
    await phone_verification.send_code(session, runtime, unverified)
    await session.commit()
    with pytest.raises(InvalidInput):
        await phone_verification.confirm_code(session, unverified, wrong(last_code(twilio)))
    await session.rollback()  # what a request that answered an error does

    [row] = await codes_of(session, unverified)
    assert row.attempts == 1


async def test_an_expired_code_is_refused(
    session: AsyncSession, runtime: DeliveryRuntime, twilio: TwilioFake, unverified: User
) -> None:
    sent_at = utcnow()
    await phone_verification.send_code(session, runtime, unverified, now=sent_at)
    await session.commit()

    later = sent_at + phone_verification.CODE_LIFETIME + timedelta(seconds=1)
    with pytest.raises(InvalidInput) as refused:
        await phone_verification.confirm_code(session, unverified, last_code(twilio), now=later)
    assert refused.value.code == "code_expired"
    assert "expired" in refused.value.detail
    # Still good one second before the end.
    just_in_time = sent_at + phone_verification.CODE_LIFETIME - timedelta(seconds=1)
    await phone_verification.confirm_code(session, unverified, last_code(twilio), now=just_in_time)
    assert unverified.phone_verified is True


async def test_a_code_works_once(
    session: AsyncSession, runtime: DeliveryRuntime, twilio: TwilioFake, unverified: User
) -> None:
    await phone_verification.send_code(session, runtime, unverified)
    await phone_verification.confirm_code(session, unverified, last_code(twilio))
    await session.commit()
    # The number changes and comes back: it is unverified again, and the used code stays used.
    for number in (NEW_PHONE, PHONE):
        await change_number(session, unverified, number)
    assert unverified.phone_verified is False

    with pytest.raises(InvalidInput) as refused:
        await phone_verification.confirm_code(session, unverified, last_code(twilio))
    assert refused.value.code == "code_used"


async def test_a_new_code_replaces_the_previous_one(
    session: AsyncSession, runtime: DeliveryRuntime, twilio: TwilioFake, unverified: User
) -> None:
    first_at = utcnow()
    await phone_verification.send_code(session, runtime, unverified, now=first_at)
    first = last_code(twilio)
    second_at = first_at + timedelta(seconds=61)
    await phone_verification.send_code(session, runtime, unverified, now=second_at)
    await session.commit()
    second = last_code(twilio)

    if first != second:  # one in a million they are the same
        with pytest.raises(InvalidInput):
            await phone_verification.confirm_code(session, unverified, first, now=second_at)
    old, new = await codes_of(session, unverified)
    assert old.expires_at <= second_at < new.expires_at
    await phone_verification.confirm_code(session, unverified, second, now=second_at)
    assert unverified.phone_verified is True


async def test_codes_are_sent_at_most_once_a_minute_and_five_times_an_hour(
    session: AsyncSession, runtime: DeliveryRuntime, twilio: TwilioFake, unverified: User
) -> None:
    start = utcnow()
    await phone_verification.send_code(session, runtime, unverified, now=start)
    with pytest.raises(TooManyRequests) as too_soon:
        await phone_verification.send_code(
            session, runtime, unverified, now=start + timedelta(seconds=20)
        )
    assert too_soon.value.retry_after_s == 40
    assert "40 seconds" in too_soon.value.detail

    sent_at: datetime = start
    for _ in range(phone_verification.MAX_CODES_PER_HOUR - 1):
        sent_at += timedelta(minutes=2)
        await phone_verification.send_code(session, runtime, unverified, now=sent_at)
    with pytest.raises(TooManyRequests) as too_many:
        await phone_verification.send_code(
            session, runtime, unverified, now=sent_at + timedelta(minutes=2)
        )
    # The first code of the hour leaves the window 60 - 10 minutes later.
    assert too_many.value.retry_after_s == 50 * 60
    assert len(twilio.messages) == phone_verification.MAX_CODES_PER_HOUR
    await phone_verification.send_code(
        session, runtime, unverified, now=start + timedelta(hours=1, seconds=1)
    )
    assert len(twilio.messages) == phone_verification.MAX_CODES_PER_HOUR + 1


async def test_a_code_sent_to_an_earlier_number_is_refused(
    session: AsyncSession, runtime: DeliveryRuntime, twilio: TwilioFake, unverified: User
) -> None:
    await phone_verification.send_code(session, runtime, unverified)
    await change_number(session, unverified, NEW_PHONE)
    await session.commit()

    with pytest.raises(InvalidInput) as refused:
        await phone_verification.confirm_code(session, unverified, last_code(twilio))
    assert refused.value.code == "code_for_other_number"
    assert "+44••••••3456" in refused.value.detail
    assert unverified.phone_verified is False


async def test_a_verified_number_gets_no_code(
    session: AsyncSession, runtime: DeliveryRuntime, twilio: TwilioFake
) -> None:
    verified = await make_user(session, email="done@example.com", phone_number=PHONE)
    with pytest.raises(Conflict) as refused:
        await phone_verification.send_code(session, runtime, verified)
    assert "already verified" in refused.value.detail
    assert twilio.requests == 0
    assert await codes_of(session, verified) == []


async def test_without_a_number_nothing_is_sent(
    session: AsyncSession, runtime: DeliveryRuntime, twilio: TwilioFake, user: User
) -> None:
    with pytest.raises(InvalidInput) as refused:
        await phone_verification.send_code(session, runtime, user)
    assert refused.value.field == "phone_number"
    with pytest.raises(InvalidInput) as no_code:
        await phone_verification.confirm_code(session, user, "123456")
    assert no_code.value.field == "phone_number"
    assert twilio.requests == 0


async def test_a_server_without_twilio_settings_says_so_and_stores_nothing(
    app: FastAPI, session: AsyncSession, unverified: User
) -> None:
    # The suite's own settings have no TWILIO_*.
    with pytest.raises(ServiceUnavailable) as refused:
        await phone_verification.send_code(session, app.state.delivery_runtime, unverified)
    assert "TWILIO_ACCOUNT_SID" in refused.value.detail
    assert phone_verification.can_send_codes(app.state.delivery_runtime) is False
    assert await codes_of(session, unverified) == []


@pytest.mark.parametrize(
    ("scripted", "error", "words"),
    [
        (20001, ServiceUnavailable, "could not be sent (Twilio HTTP 500)"),
        (20003, ServiceUnavailable, "TWILIO_* settings"),
        (21610, InvalidInput, "opted out"),
    ],
)
async def test_a_text_twilio_did_not_take_stores_no_code_and_counts_for_nothing(
    session: AsyncSession,
    runtime: DeliveryRuntime,
    twilio: TwilioFake,
    unverified: User,
    scripted: int,
    error: type[Exception],
    words: str,
) -> None:
    twilio.fail_next(scripted)
    with pytest.raises(error) as refused:
        await phone_verification.send_code(session, runtime, unverified)
    assert str(refused.value).startswith("The text could not be sent")
    assert words in str(refused.value)
    assert await codes_of(session, unverified) == []

    # Not throttled by the failure: the next try goes out at once.
    await phone_verification.send_code(session, runtime, unverified)
    await session.commit()
    assert len(twilio.messages) == 1
    assert [code.purpose for code in await codes_of(session, unverified)] == [
        CodePurpose.VERIFY_PHONE.value
    ]


def test_numbers_are_shown_with_their_middle_hidden() -> None:
    assert phone_verification.masked("+447700900123") == "+44••••••0123"
    assert phone_verification.masked("+14155550123") == "+14•••••0123"
    assert phone_verification.masked("+3312345") == "+3••••45"
