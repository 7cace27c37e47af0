"""What mailed links and texted codes share: how often one may be sent, and that only the
newest of a purpose works. Counted from the stored rows, so every process agrees."""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import TooManyRequests
from app.models import CodePurpose, OneTimeCode

# At most one a minute and five an hour per account and purpose: each costs a mail or a
# text, and a flood of them is how an address or number gets bombarded.
RESEND_INTERVAL = timedelta(seconds=60)
MAX_PER_HOUR = 5
SENDING_WINDOW = timedelta(hours=1)


async def check_send_rate(
    session: AsyncSession, user_id: uuid.UUID, purpose: CodePurpose, now: datetime, *, noun: str
) -> None:
    """Raise TooManyRequests (with when to ask again) when another `noun` ("link", "code")
    may not be sent to the user yet."""
    count, oldest, latest = (
        await session.execute(
            select(
                func.count(), func.min(OneTimeCode.created_at), func.max(OneTimeCode.created_at)
            ).where(
                OneTimeCode.user_id == user_id,
                OneTimeCode.purpose == purpose.value,
                OneTimeCode.created_at > now - SENDING_WINDOW,
            )
        )
    ).one()
    if latest is not None and now - latest < RESEND_INTERVAL:
        wait_s = _seconds_until(latest + RESEND_INTERVAL, now)
        raise TooManyRequests(
            f"A {noun} was sent a moment ago; ask again in {wait_s} seconds", retry_after_s=wait_s
        )
    if count >= MAX_PER_HOUR:
        wait_s = _seconds_until(oldest + SENDING_WINDOW, now)
        raise TooManyRequests(
            f"{MAX_PER_HOUR} {noun}s were sent in the last hour; ask again in "
            f"{math.ceil(wait_s / 60)} minutes",
            retry_after_s=wait_s,
        )


async def replace(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    purpose: CodePurpose,
    secret_hash: str,
    target: str,
    expires_at: datetime,
    now: datetime,
) -> None:
    """Store a new code for `target`; the user's earlier unused ones of the purpose stop
    working (after a resend, the earlier mail or text is worthless). Flushes."""
    await session.execute(
        update(OneTimeCode)
        .where(
            OneTimeCode.user_id == user_id,
            OneTimeCode.purpose == purpose.value,
            OneTimeCode.used_at.is_(None),
            OneTimeCode.expires_at > now,
        )
        .values(expires_at=now)
        .execution_options(synchronize_session=False)
    )
    session.add(
        OneTimeCode(
            user_id=user_id,
            purpose=purpose.value,
            secret_hash=secret_hash,
            target=target,
            expires_at=expires_at,
            attempts=0,
            created_at=now,
        )
    )
    await session.flush()


def _seconds_until(moment: datetime, now: datetime) -> int:
    """Whole seconds from now until `moment`, rounded up and at least 1."""
    return max(1, math.ceil((moment - now).total_seconds()))
