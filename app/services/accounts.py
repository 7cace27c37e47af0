"""Accounts: sign-up, login, rotating refresh-token families and dashboard sessions."""

from __future__ import annotations

import logging
import uuid
from contextlib import suppress
from datetime import datetime

from pydantic.networks import validate_email
from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts import outbox
from app.db import utcnow
from app.errors import AuthenticationFailed, Conflict, InvalidInput
from app.models import ApiToken, Plan, RefreshToken, User
from app.schemas.auth import TokenPair
from app.security import passwords
from app.security.throttle import AuthThrottle
from app.security.tokens import InvalidToken, TokenPolicy

logger = logging.getLogger(__name__)

INVALID_CREDENTIALS = "Incorrect email or password"
INVALID_REFRESH = "Invalid or expired refresh token"
INVALID_SESSION = "Your session has ended; log in again"


def normalise_email(email: str) -> str:
    """The stored form of an address: the sign-up validator's normal form (NFC, IDNA-mapped
    domain, display name dropped), lower-cased. Sign-up, login and the per-account throttle
    all key on it, so equivalent spellings of one address are one account."""
    email = email.strip()
    # Not an address sign-up would accept: it matches no account as typed.
    with suppress(ValueError):
        _, email = validate_email(email)
    return email.lower()


async def register(
    session: AsyncSession, *, email: str, password: str, full_name: str | None, plan: Plan
) -> User:
    """Create a user on `plan` (see plans.signup_plan); Conflict when the email is taken."""
    email = normalise_email(email)
    if await _user_by_email(session, email) is not None:
        raise Conflict("An account with this email already exists")
    user = User(
        email=email,
        password_hash=await passwords.hash_password(password),
        full_name=full_name,
        plan=plan.value,
        apprise_urls=[],
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent sign-up with the same email won the race
        raise Conflict("An account with this email already exists") from exc
    return user


async def authenticate(session: AsyncSession, *, email: str, password: str) -> User:
    """The active user with these credentials; AuthenticationFailed with one message otherwise."""
    email = normalise_email(email)
    # PostgreSQL cannot compare text holding NUL (the form login is not an InputModel).
    user = None if "\x00" in email else await _user_by_email(session, email)
    ok, new_hash = await passwords.verify_password(password, user.password_hash if user else None)
    if user is None or not ok or not user.is_active:
        raise AuthenticationFailed(INVALID_CREDENTIALS)
    if new_hash is not None:
        user.password_hash = new_hash
        await session.flush()
    return user


async def login(
    session: AsyncSession,
    policy: TokenPolicy,
    throttle: AuthThrottle,
    *,
    email: str,
    password: str,
    ip: str,
) -> TokenPair:
    """Tokens for valid credentials, within the login throttle (see `sign_in`)."""
    user = await sign_in(session, throttle, email=email, password=password, ip=ip)
    return await issue_tokens(session, user, policy)


async def sign_in(
    session: AsyncSession, throttle: AuthThrottle, *, email: str, password: str, ip: str
) -> User:
    """The user with these credentials. Each attempt is counted against the address and the
    account (app/security/throttle.py); raises TooManyRequests when this address may not
    try now and AuthenticationFailed for bad credentials. The API login and the dashboard
    share it."""
    account = normalise_email(email)
    await throttle.claim_login_attempt(account, ip)
    try:
        user = await authenticate(session, email=account, password=password)
    except AuthenticationFailed:
        if await throttle.record_failure(account, ip):
            await _tell_owner_of_attack(session, account)
        raise
    await throttle.record_success(account, ip)
    return user


async def _tell_owner_of_attack(session: AsyncSession, account: str) -> None:
    """The account just passed its ceiling of failed logins: tell its owner (by email and
    in the app), once a day. Commits, since the failed login's rollback must not undo it."""
    user = await _user_by_email(session, account)
    if user is None:
        return
    now = utcnow()
    logger.warning("failed logins passed the account's ceiling", extra={"user_id": str(user.id)})
    await outbox.enqueue_notice(
        session,
        user_id=user.id,
        key=f"login_attack:{user.id}:{now:%Y-%m-%d}",
        subject="Someone is trying to log in to your account",
        text=(
            "Many wrong passwords were tried on your Marketplace Monitor account today, from "
            "addresses that are now held back. You can still log in as usual. If you reuse "
            "this password anywhere, change it (Settings, Password and sessions)."
        ),
        now=now,
    )
    await session.commit()


async def issue_tokens(
    session: AsyncSession,
    user: User,
    policy: TokenPolicy,
    *,
    family_id: uuid.UUID | None = None,
    now: datetime | None = None,
) -> TokenPair:
    """A new access token and a refresh token in the given family (a new family by default)."""
    now = now or utcnow()
    family_id = family_id or uuid.uuid4()
    access, _ = policy.signer.issue(
        subject=user.id,
        token_type="access",
        now=now,
        lifetime=policy.access_lifetime,
        credentials_version=user.credentials_version,
    )
    refresh, jti = policy.signer.issue(
        subject=user.id,
        token_type="refresh",
        now=now,
        lifetime=policy.refresh_lifetime,
        family_id=family_id,
        credentials_version=user.credentials_version,
    )
    session.add(
        RefreshToken(
            jti=jti, user_id=user.id, family_id=family_id, expires_at=now + policy.refresh_lifetime
        )
    )
    await session.flush()
    return TokenPair(
        access_token=access,
        refresh_token=refresh,
        expires_in=int(policy.access_lifetime.total_seconds()),
    )


async def refresh(session: AsyncSession, token: str, policy: TokenPolicy) -> TokenPair:
    """Rotate a refresh token. Re-use of a spent token revokes its whole family.

    Commits the revocation itself before raising, so the rollback of the failed request
    cannot undo it.
    """
    stored = await _stored_refresh_token(session, token, policy)
    now = utcnow()
    if stored.revoked_at is not None or stored.used_at is not None or stored.expires_at <= now:
        if stored.used_at is not None:
            await _revoke_family(session, stored.family_id, now)
            await session.commit()
        raise AuthenticationFailed(INVALID_REFRESH)
    # Compare-and-set: of concurrent refreshes with one token, exactly one wins.
    claimed = await session.execute(
        update(RefreshToken)
        .where(
            RefreshToken.jti == stored.jti,
            RefreshToken.used_at.is_(None),
            RefreshToken.revoked_at.is_(None),
        )
        .values(used_at=now)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        await _revoke_family(session, stored.family_id, now)
        await session.commit()
        raise AuthenticationFailed(INVALID_REFRESH)
    user = await session.get(User, stored.user_id)
    if user is None or not user.is_active:
        raise AuthenticationFailed(INVALID_REFRESH)
    return await issue_tokens(session, user, policy, family_id=stored.family_id, now=now)


async def logout(session: AsyncSession, token: str, policy: TokenPolicy) -> None:
    """Revoke the refresh token's whole family; logging out twice is harmless."""
    stored = await _stored_refresh_token(session, token, policy)
    await _revoke_family(session, stored.family_id, utcnow())


# A dashboard session is a `session` token (a cookie) whose jti is stored in the refresh
# token table as a family of its own: logging out revokes it there, and neither kind of
# token is accepted in place of the other.


async def open_session(
    session: AsyncSession, user: User, policy: TokenPolicy, *, now: datetime | None = None
) -> tuple[str, str]:
    """A new dashboard session for the user, lasting as long as a refresh token.

    Returns (the signed session token, its id). Flushes.
    """
    now = now or utcnow()
    token, jti = policy.signer.issue(
        subject=user.id,
        token_type="session",
        now=now,
        lifetime=policy.refresh_lifetime,
        credentials_version=user.credentials_version,
    )
    session.add(
        RefreshToken(
            jti=jti,
            user_id=user.id,
            family_id=uuid.uuid4(),
            expires_at=now + policy.refresh_lifetime,
        )
    )
    await session.flush()
    return token, jti


async def session_user(session: AsyncSession, token: str, policy: TokenPolicy) -> tuple[User, str]:
    """The active user of a live dashboard session, and the session's id.

    Raises AuthenticationFailed for a malformed, expired or revoked session, or an
    inactive user.
    """
    try:
        claims = policy.signer.decode(token, expected_type="session")
    except InvalidToken as exc:
        raise AuthenticationFailed(INVALID_SESSION) from exc
    stored = await session.get(RefreshToken, str(claims["jti"]))
    if (
        stored is None
        or str(stored.user_id) != claims["sub"]
        or stored.revoked_at is not None
        or stored.expires_at <= utcnow()
    ):
        raise AuthenticationFailed(INVALID_SESSION)
    user = await session.get(User, stored.user_id)
    if user is None or not user.is_active:
        raise AuthenticationFailed(INVALID_SESSION)
    return user, stored.jti


async def close_session(session: AsyncSession, session_id: str) -> None:
    """Revoke a dashboard session; closing it twice is harmless. Flushes."""
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.jti == session_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    await session.flush()


async def end_every_session(session: AsyncSession, user: User) -> None:
    """Log the user out everywhere: revoke every refresh token and dashboard session, delete
    every personal API token (one made by whoever had the password must not outlive its
    change), and raise the credentials version, so that every access token issued before
    is refused too (the listings shortcut included). Flushes."""
    user.credentials_version += 1
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    await session.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
    await session.flush()


async def change_password(
    session: AsyncSession,
    throttle: AuthThrottle,
    user: User,
    *,
    current_password: str,
    new_password: str,
    ip: str,
) -> None:
    """Set a new password after checking the current one, then log the user out
    everywhere. Checking the current password counts like a login attempt, so a stolen
    token cannot be used to guess it. Raises InvalidInput (field current_password) for a
    wrong one, TooManyRequests over the login throttle. Flushes."""
    await throttle.claim_login_attempt(user.email, ip)
    ok, _ = await passwords.verify_password(current_password, user.password_hash)
    if not ok:
        await throttle.record_failure(user.email, ip)
        raise InvalidInput("That is not your current password", field="current_password")
    await throttle.record_success(user.email, ip)
    user.password_hash = await passwords.hash_password(new_password)
    await end_every_session(session, user)


async def purge_spent_tokens(session: AsyncSession, *, now: datetime) -> int:
    """Delete refresh tokens and dashboard sessions that are expired or revoked: neither
    can be used again, and a revoked one is refused just the same once it is gone. Used
    tokens of a live family stay until they expire, so re-using one is still caught.
    Flushes; returns how many were deleted."""
    deleted = await session.execute(
        delete(RefreshToken).where(
            or_(RefreshToken.expires_at <= now, RefreshToken.revoked_at.is_not(None))
        )
    )
    await session.flush()
    count: int = deleted.rowcount  # type: ignore[attr-defined]
    return count


async def _stored_refresh_token(
    session: AsyncSession, token: str, policy: TokenPolicy
) -> RefreshToken:
    try:
        claims = policy.signer.decode(token, expected_type="refresh")
    except InvalidToken as exc:
        raise AuthenticationFailed(INVALID_REFRESH) from exc
    stored = await session.get(RefreshToken, str(claims["jti"]))
    if stored is None or str(stored.user_id) != claims["sub"]:
        raise AuthenticationFailed(INVALID_REFRESH)
    return stored


async def _revoke_family(session: AsyncSession, family_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def _user_by_email(session: AsyncSession, email: str) -> User | None:
    user: User | None = await session.scalar(select(User).where(User.email == email))
    return user
