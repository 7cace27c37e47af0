"""The hourly housekeeping: what is kept only for a while is deleted once its while is over."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import OneTimeCode
from app.monitoring import store
from app.services import accounts

logger = logging.getLogger(__name__)


# Spent codes are kept this long: sending limits count the codes of the last hour.
CODE_KEEP = timedelta(hours=1)


@dataclass(frozen=True)
class HousekeepingReport:
    stale_listings: int
    spent_tokens: int
    spent_codes: int


async def run(
    session: AsyncSession, *, now: datetime, listing_retention: timedelta
) -> HousekeepingReport:
    """Delete listings nobody saved that were last seen before the retention period,
    refresh tokens and dashboard sessions that can no longer be used, and used or expired
    one-time codes (links and SMS codes). Commits each part on its own, so a failure in
    one keeps what the others did."""
    stale = await store.delete_stale_listings(session, seen_before=now - listing_retention)
    await session.commit()
    spent = await accounts.purge_spent_tokens(session, now=now)
    await session.commit()
    codes = await _purge_spent_codes(session, now=now)
    await session.commit()
    report = HousekeepingReport(stale_listings=stale, spent_tokens=spent, spent_codes=codes)
    if stale or spent or codes:
        logger.info(
            "housekeeping deleted %d stale listings, %d spent tokens or sessions, %d codes",
            stale,
            spent,
            codes,
        )
    return report


async def _purge_spent_codes(session: AsyncSession, *, now: datetime) -> int:
    deleted = await session.execute(
        delete(OneTimeCode).where(
            or_(OneTimeCode.used_at.is_not(None), OneTimeCode.expires_at <= now),
            OneTimeCode.created_at < now - CODE_KEEP,
        )
    )
    count: int = deleted.rowcount  # type: ignore[attr-defined]
    return count
