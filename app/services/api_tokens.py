"""Personal API tokens: created with a secret shown once, listed, revoked, and exchanged
for their owner on each request a script or integration makes with one."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy import update as sql_update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.errors import AuthenticationFailed, Conflict, InvalidInput, NotFound
from app.models import ApiToken, User

# Tells an API token apart from a JWT (which starts "eyJ") in the same Bearer header,
# and makes a leaked one easy to recognise by secret scanners.
SECRET_PREFIX = "mmt_"
# What lists show of a token: the marker and the first 8 random characters.
SHOWN_PREFIX_LENGTH = len(SECRET_PREFIX) + 8
MAX_TOKENS_PER_USER = 20
READ = "read"
WRITE = "write"
SCOPES = (READ, WRITE)
# Recording every use would turn each read a script makes into a write.
LAST_USED_PRECISION = timedelta(minutes=1)
INVALID_TOKEN = "Invalid or expired token"
NOT_FOUND = "You have no API token with this id"


def is_api_token(bearer: str) -> bool:
    """Whether a Bearer value is meant as an API token (rather than a login's JWT)."""
    return bearer.startswith(SECRET_PREFIX)


def may_write(token: ApiToken) -> bool:
    return WRITE in token.scopes


async def create(
    session: AsyncSession,
    user: User,
    *,
    name: str,
    scopes: Iterable[str],
    expires_at: datetime | None,
    now: datetime | None = None,
) -> tuple[ApiToken, str]:
    """A new token of the user's and its secret, which is not stored and cannot be shown
    again. "write" implies "read", so a token always reads. Raises InvalidInput for an
    unknown scope or an expiry not in the future, Conflict when the user already has
    MAX_TOKENS_PER_USER tokens. Flushes, does not commit."""
    now = now or utcnow()
    wanted = set(scopes)
    if not wanted <= set(SCOPES):
        raise InvalidInput(f"Scopes are {READ!r} and {WRITE!r}", field="scopes")
    if expires_at is not None and expires_at <= now:
        raise InvalidInput("The expiry must be in the future", field="expires_at")
    await _lock_owner(session, user.id)
    if await _count_of(session, user.id) >= MAX_TOKENS_PER_USER:
        raise Conflict(
            f"You already have {MAX_TOKENS_PER_USER} API tokens, the most an account may "
            "have; revoke one you no longer use first"
        )
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user.id,
        name=name,
        token_hash=_digest(secret),
        prefix=secret[:SHOWN_PREFIX_LENGTH],
        scopes=[scope for scope in SCOPES if scope in wanted | {READ}],
        expires_at=expires_at,
        created_at=now,
    )
    session.add(token)
    await session.flush()
    return token, secret


async def list_for_owner(session: AsyncSession, *, owner_id: uuid.UUID) -> list[ApiToken]:
    """The owner's tokens, newest first, expired ones included (their owner revokes them)."""
    rows = await session.scalars(
        select(ApiToken)
        .where(ApiToken.user_id == owner_id)
        .order_by(ApiToken.created_at.desc(), ApiToken.id)
    )
    return list(rows)


async def revoke(session: AsyncSession, token_id: uuid.UUID, *, owner_id: uuid.UUID) -> None:
    """Delete the owner's token: it stops working with the next request. NotFound for an
    unknown id or someone else's, alike. Flushes, does not commit."""
    token = await session.get(ApiToken, token_id)
    if token is None or token.user_id != owner_id:
        raise NotFound(NOT_FOUND)
    await session.delete(token)
    await session.flush()


async def authenticate(
    session: AsyncSession, secret: str, now: datetime | None = None
) -> tuple[User, ApiToken]:
    """The active owner of a valid, unexpired token, and the token. Records when it was
    last used (at most once per LAST_USED_PRECISION, flushed, not committed). Raises
    AuthenticationFailed with one message for every refusal."""
    now = now or utcnow()
    token = await session.scalar(select(ApiToken).where(ApiToken.token_hash == _digest(secret)))
    if token is None or (token.expires_at is not None and token.expires_at <= now):
        raise AuthenticationFailed(INVALID_TOKEN)
    user = await session.get(User, token.user_id)
    if user is None or not user.is_active:
        raise AuthenticationFailed(INVALID_TOKEN)
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_PRECISION:
        token.last_used_at = now
        await session.flush()
    return user, token


def _digest(secret: str) -> str:
    # A plain SHA-256 is enough: the secret has 256 random bits, nothing to guess.
    return hashlib.sha256(secret.encode()).hexdigest()


async def _count_of(session: AsyncSession, owner_id: uuid.UUID) -> int:
    count = await session.scalar(
        select(func.count()).select_from(ApiToken).where(ApiToken.user_id == owner_id)
    )
    return count or 0


async def _lock_owner(session: AsyncSession, owner_id: uuid.UUID) -> None:
    """Serialise an owner's token creations, so two concurrent requests cannot both take
    the last free slot: a no-op UPDATE of the user row takes PostgreSQL's row lock and
    SQLite's write lock before the tokens are counted."""
    await session.execute(
        sql_update(User)
        .where(User.id == owner_id)
        .values(updated_at=User.updated_at)
        .execution_options(synchronize_session=False)
    )
