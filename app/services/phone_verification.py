"""Proving that a phone number is the user's before any SMS alert goes to it: a 6-digit
code sent to the number by SMS and typed back.

Only a digest of the code is stored, with the number it was sent to. A code works once,
for ten minutes and five tries, and only while the account still has that number; a new
code replaces the previous one. Sending is throttled per account from the stored rows, so
every process agrees.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts.channels.base import DeliveryResult, DeliveryStatus
from app.alerts.channels.sms import SmsChannel
from app.alerts.delivery import DeliveryRuntime
from app.db import utcnow
from app.errors import Conflict, InvalidInput, ServiceUnavailable
from app.models import AlertChannel, CodePurpose, OneTimeCode, User
from app.services import one_time_codes

logger = logging.getLogger(__name__)

CODE_DIGITS = 6
CODE_LIFETIME = timedelta(minutes=10)
MAX_ATTEMPTS = 5
# How often codes may be sent: app/services/one_time_codes.py.
MAX_CODES_PER_HOUR = one_time_codes.MAX_PER_HOUR

NO_PHONE_NUMBER = "Add a phone number to your settings first: the code is sent to it"
ALREADY_VERIFIED = "Your phone number is already verified: nothing was sent"
NO_SMS_PROVIDER = (
    "This server cannot send SMS: the operator must set TWILIO_ACCOUNT_SID, "
    "TWILIO_AUTH_TOKEN and TWILIO_FROM_NUMBER"
)
ASK_AGAIN = "ask for a new code"
OUT_OF_TRIES = f"Too many wrong codes: this one no longer works; {ASK_AGAIN}"
USED_ALREADY = f"This code was used already: {ASK_AGAIN}"


@dataclass(frozen=True)
class CodeSent:
    """Where a code went (the number, mostly hidden) and for how long it works."""

    sent_to: str
    expires_in_s: int


async def send_code(
    session: AsyncSession, runtime: DeliveryRuntime, user: User, *, now: datetime | None = None
) -> CodeSent:
    """Text a new code to the user's current number; the previous unused one stops working.

    Commits what the session holds before calling Twilio, so that no database connection
    waits on the provider (up to its timeout). The code is stored only once Twilio
    accepted the text, so a text that never left neither counts against the limits nor
    waits to be typed. Raises InvalidInput (field phone_number) without a number or for a
    number Twilio refuses, Conflict when the number is already verified,
    ServiceUnavailable when this server has no SMS provider or the provider failed,
    TooManyRequests when codes were asked for too often. Flushes the new code.
    """
    now = now or utcnow()
    phone = user.phone_number
    if not phone:
        raise InvalidInput(NO_PHONE_NUMBER, field="phone_number")
    if user.phone_verified:
        raise Conflict(ALREADY_VERIFIED, code="already_verified")
    channel = _sms_channel(runtime)
    if channel is None:
        # 503, not 409: nothing the user can change makes this work; only the operator can.
        raise ServiceUnavailable(NO_SMS_PROVIDER, code="sms_not_configured")
    await one_time_codes.check_send_rate(
        session, user.id, CodePurpose.VERIFY_PHONE, now, noun="code"
    )
    await session.commit()
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    result = await channel.send_text(phone, code_text(code))
    if result.status is not DeliveryStatus.DELIVERED:
        logger.warning("verification code not sent: %s", result.error)
        raise _not_sent(phone, result)
    await one_time_codes.replace(
        session,
        user_id=user.id,
        purpose=CodePurpose.VERIFY_PHONE,
        secret_hash=_digest(user.id, code),
        target=phone,
        expires_at=now + CODE_LIFETIME,
        now=now,
    )
    return CodeSent(sent_to=masked(phone), expires_in_s=int(CODE_LIFETIME.total_seconds()))


async def confirm_code(
    session: AsyncSession, user: User, code: str, *, now: datetime | None = None
) -> User:
    """Mark the user's number verified when `code` is the last one sent to it.

    Commits the try before judging it: an error answer rolls the request back, and must
    not give back the try with it. Raises Conflict when the number is already verified,
    InvalidInput (field phone_number) without a number, InvalidInput (field code) for a
    wrong code or one that is used, expired, out of tries or sent to another number.
    Flushes the verification.
    """
    now = now or utcnow()
    if user.phone_verified:
        raise Conflict("Your phone number is already verified", code="already_verified")
    if not user.phone_number:
        raise InvalidInput(NO_PHONE_NUMBER, field="phone_number")
    latest = await session.scalar(
        select(OneTimeCode)
        .where(
            OneTimeCode.user_id == user.id, OneTimeCode.purpose == CodePurpose.VERIFY_PHONE.value
        )
        .order_by(OneTimeCode.created_at.desc())
        .limit(1)
    )
    latest = _usable(latest, user.phone_number, now)
    tries = await _count_try(session, latest.id)
    if not hmac.compare_digest(latest.secret_hash, _digest(user.id, code)):
        left = MAX_ATTEMPTS - tries
        detail = (
            f"That code is not right: {left} {'try' if left == 1 else 'tries'} left"
            if left
            else f"That code is not right, and that was its last try: {ASK_AGAIN}"
        )
        raise InvalidInput(detail, field="code", code="code_wrong")
    # Conditional, so that of two requests bearing the right code only one uses it.
    used = await session.scalar(
        update(OneTimeCode)
        .where(OneTimeCode.id == latest.id, OneTimeCode.used_at.is_(None))
        .values(used_at=now)
        .returning(OneTimeCode.id)
        .execution_options(synchronize_session=False)
    )
    if used is None:
        raise InvalidInput(USED_ALREADY, field="code", code="code_used")
    user.phone_verified = True
    await session.flush()
    return user


def can_send_codes(runtime: DeliveryRuntime) -> bool:
    """Whether this server can text codes at all (Twilio is configured)."""
    return _sms_channel(runtime) is not None


def code_text(code: str) -> str:
    """The SMS that carries a code (plain GSM-7 text, one segment)."""
    minutes = int(CODE_LIFETIME.total_seconds() // 60)
    return f"Your Marketplace Monitor code is {code}. It expires in {minutes} minutes."


def masked(phone: str) -> str:
    """The number with its middle hidden, e.g. +44••••••0123: enough to recognise it,
    not enough to learn it from a screen or a log."""
    hidden = len(phone) - 7
    if hidden < 3:
        return phone[:2] + "•" * max(len(phone) - 4, 0) + phone[-2:]
    return phone[:3] + "•" * hidden + phone[-4:]


def _sms_channel(runtime: DeliveryRuntime) -> SmsChannel | None:
    channel = runtime.channels.get(AlertChannel.SMS.value)
    if isinstance(channel, SmsChannel) and channel.is_configured():
        return channel
    return None


def _digest(user_id: uuid.UUID, code: str) -> str:
    # With the user's id, equal codes of two users differ and no digest matches across
    # accounts. Six digits are quick to brute-force from a digest anyway; what protects a
    # code is its ten minutes and five tries.
    material = f"{CodePurpose.VERIFY_PHONE.value}:{user_id}:{code}"
    return hashlib.sha256(material.encode()).hexdigest()


def _not_sent(phone: str, result: DeliveryResult) -> InvalidInput | ServiceUnavailable:
    """The error that tells why Twilio did not take the text (nothing was stored)."""
    reason = result.error or result.status.value
    if result.status is DeliveryStatus.PERMANENT:
        # Twilio refused the number itself (not a mobile, opted out, not valid): only
        # another number helps.
        return InvalidInput(
            f"The text could not be sent to {masked(phone)}: {reason}",
            field="phone_number",
            code="sms_not_sent",
        )
    if result.status is DeliveryStatus.MISCONFIGURED:
        return ServiceUnavailable(
            f"The text could not be sent: {reason}; the operator must check the TWILIO_* settings",
            code="sms_not_sent",
        )
    return ServiceUnavailable(
        f"The text could not be sent ({reason}); try again in a few minutes", code="sms_not_sent"
    )


def _usable(code: OneTimeCode | None, phone: str, now: datetime) -> OneTimeCode:
    """The code, unless it cannot be right whatever was typed: then InvalidInput, saying
    why."""
    if code is None:
        problem, reason = "code_not_sent", f"No code has been sent to your number yet: {ASK_AGAIN}"
    elif code.target != phone:
        problem = "code_for_other_number"
        reason = f"The last code was sent to {masked(code.target)}, not your current number: "
        reason += ASK_AGAIN
    elif code.used_at is not None:
        problem, reason = "code_used", USED_ALREADY
    elif code.expires_at <= now:
        minutes = int(CODE_LIFETIME.total_seconds() // 60)
        problem = "code_expired"
        reason = f"This code has expired (codes work for {minutes} minutes): {ASK_AGAIN}"
    elif code.attempts >= MAX_ATTEMPTS:
        problem, reason = "code_out_of_tries", OUT_OF_TRIES
    else:
        return code
    raise InvalidInput(reason, field="code", code=problem)


async def _count_try(session: AsyncSession, code_id: uuid.UUID) -> int:
    """Count one try at the code and commit it; returns the tries made so far. Refuses the
    code when its tries are used up (a parallel guess may have taken the last one)."""
    counted = await session.execute(
        update(OneTimeCode)
        .where(OneTimeCode.id == code_id, OneTimeCode.attempts < MAX_ATTEMPTS)
        .values(attempts=OneTimeCode.attempts + 1)
        .returning(OneTimeCode.attempts)
        .execution_options(synchronize_session=False)
    )
    tries = counted.scalar_one_or_none()
    await session.commit()
    if tries is None:
        raise InvalidInput(OUT_OF_TRIES, field="code", code="code_out_of_tries")
    return int(tries)
