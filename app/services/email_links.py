"""Links sent by email that prove the owner reads the mailbox: verifying an address and
resetting a forgotten password.

A link carries a random secret; only its SHA-256 digest is stored, with the address it
was sent to. A link works once, until it expires, and only while the account still has
that address. Sending is throttled per account from the stored rows, so every process
agrees.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts.channels.base import DeliveryStatus
from app.alerts.channels.email import EmailChannel
from app.db import utcnow
from app.errors import Conflict, InvalidInput, ServiceUnavailable, TooManyRequests
from app.models import CodePurpose, OneTimeCode, User
from app.security import passwords
from app.services import accounts, one_time_codes

logger = logging.getLogger(__name__)

VERIFY_LIFETIME = timedelta(hours=48)
RESET_LIFETIME = timedelta(hours=1)
INVALID_LINK = "This link is not valid any more (used, expired or replaced): ask for a new one"
NO_EMAIL_PROVIDER = (
    "This server cannot send email yet (no SendGrid key or SMTP server is set), so no link "
    "can reach you. An administrator can mark your address verified with "
    "`marketmon verify-user EMAIL`."
)


@dataclass(frozen=True)
class AccountMailer:
    """Where account mails go out (the email channel, or None on a server without one)
    and the public address the links point to."""

    channel: EmailChannel | None
    public_base_url: str

    def can_send(self) -> bool:
        return self.channel is not None and self.channel.is_configured()

    def link(self, path: str, secret: str) -> str:
        return f"{self.public_base_url.rstrip('/')}{path}?{urlencode({'token': secret})}"


@dataclass(frozen=True)
class PendingMail:
    """A mail to send once the request's transaction is committed (so the link works
    when it arrives)."""

    to_email: str
    to_name: str | None
    subject: str
    text: str
    kind: str


async def send_pending(mailer: AccountMailer, mail: PendingMail) -> bool:
    """Send it; True when the provider accepted it. Failures are logged, never raised."""
    if mailer.channel is None:
        return False
    result = await mailer.channel.send_account_mail(
        to_email=mail.to_email,
        to_name=mail.to_name,
        subject=mail.subject,
        text=mail.text,
        kind=mail.kind,
    )
    sent = result.status == DeliveryStatus.DELIVERED
    if not sent:
        logger.warning("account mail (%s) not sent: %s", mail.kind, result.error)
    return sent


async def verification_mail(
    session: AsyncSession, mailer: AccountMailer, user: User, *, now: datetime | None = None
) -> PendingMail:
    """A new verification link for the user's address (earlier ones stop working).

    Raises Conflict when the address is already verified, ServiceUnavailable when this
    server cannot send email, TooManyRequests when links were asked for too often.
    Flushes."""
    now = now or utcnow()
    if user.email_verified:
        raise Conflict("Your email address is already verified")
    if not mailer.can_send():
        raise ServiceUnavailable(NO_EMAIL_PROVIDER)
    await one_time_codes.check_send_rate(
        session, user.id, CodePurpose.VERIFY_EMAIL, now, noun="link"
    )
    secret = await _new_code(session, user, CodePurpose.VERIFY_EMAIL, now + VERIFY_LIFETIME, now)
    link = mailer.link("/app/verify-email", secret)
    return PendingMail(
        to_email=user.email,
        to_name=user.full_name,
        subject="Confirm your email address for Marketplace Monitor",
        text=(
            "Please confirm that this is your address, so that alerts can be sent to it:\n\n"
            f"{link}\n\n"
            "The link works once, for 48 hours. If you did not sign up for Marketplace "
            "Monitor, ignore this mail: nothing will be sent to you.\n"
        ),
        kind="verify-email",
    )


async def first_verification_mail(
    session: AsyncSession, mailer: AccountMailer, user: User
) -> PendingMail | None:
    """The verification link for a new account, or None on a server that cannot send
    email (the account then says so, instead of waiting for a link). Flushes."""
    if not mailer.can_send():
        return None
    return await verification_mail(session, mailer, user)


async def verify_email(session: AsyncSession, secret: str, *, now: datetime | None = None) -> User:
    """Mark the address the link was sent to verified. Raises InvalidInput (field token)
    for a link that is unknown, used, expired, or for an address the account no longer
    has. Flushes."""
    now = now or utcnow()
    code, user = await _redeem(session, secret, CodePurpose.VERIFY_EMAIL, now)
    user.email_verified = True
    code.used_at = now
    await session.flush()
    return user


async def reset_mail(
    session: AsyncSession, mailer: AccountMailer, email: str, *, now: datetime | None = None
) -> PendingMail | None:
    """A password reset link for the account with this address, or None when there is no
    such active account or it asked too often. The caller answers the same either way, so
    nobody learns whether an address has an account. Flushes."""
    now = now or utcnow()
    user = await session.scalar(select(User).where(User.email == accounts.normalise_email(email)))
    if user is None or not user.is_active or not mailer.can_send():
        return None
    try:
        await one_time_codes.check_send_rate(
            session, user.id, CodePurpose.RESET_PASSWORD, now, noun="link"
        )
    except TooManyRequests:
        return None
    secret = await _new_code(session, user, CodePurpose.RESET_PASSWORD, now + RESET_LIFETIME, now)
    link = mailer.link("/app/reset-password", secret)
    return PendingMail(
        to_email=user.email,
        to_name=user.full_name,
        subject="Reset your Marketplace Monitor password",
        text=(
            "Someone (we hope you) asked to reset the password of your Marketplace Monitor "
            f"account. Choose a new one here:\n\n{link}\n\n"
            "The link works once, for one hour. If you did not ask, ignore this mail: your "
            "password stays as it is.\n"
        ),
        kind="reset-password",
    )


async def reset_password(
    session: AsyncSession, secret: str, new_password: str, *, now: datetime | None = None
) -> User:
    """Set a new password through a reset link, then log the user out everywhere. The link
    proves the mailbox, so the address counts as verified too. Raises InvalidInput (field
    token) for a link that is not valid. Flushes."""
    now = now or utcnow()
    code, user = await _redeem(session, secret, CodePurpose.RESET_PASSWORD, now)
    code.used_at = now
    user.password_hash = await passwords.hash_password(new_password)
    user.email_verified = True
    await accounts.end_every_session(session, user)
    return user


async def check_reset_link(
    session: AsyncSession, secret: str, *, now: datetime | None = None
) -> None:
    """Raise InvalidInput when the reset link cannot be used (before showing its form)."""
    await _redeem(session, secret, CodePurpose.RESET_PASSWORD, now or utcnow())


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def _new_code(
    session: AsyncSession, user: User, purpose: CodePurpose, expires_at: datetime, now: datetime
) -> str:
    secret = secrets.token_urlsafe(32)
    await one_time_codes.replace(
        session,
        user_id=user.id,
        purpose=purpose,
        secret_hash=_digest(secret),
        target=user.email,
        expires_at=expires_at,
        now=now,
    )
    return secret


async def _redeem(
    session: AsyncSession, secret: str, purpose: CodePurpose, now: datetime
) -> tuple[OneTimeCode, User]:
    code = await session.scalar(
        select(OneTimeCode).where(
            OneTimeCode.secret_hash == _digest(secret), OneTimeCode.purpose == purpose.value
        )
    )
    if code is None or code.used_at is not None or code.expires_at <= now:
        raise InvalidInput(INVALID_LINK, field="token")
    user = await session.get(User, code.user_id)
    if user is None or not user.is_active or user.email != code.target:
        raise InvalidInput(INVALID_LINK, field="token")
    return code, user
