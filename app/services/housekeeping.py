"""The hourly housekeeping: what is kept only for a while is deleted once its while is over."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.monitoring import store
from app.services import accounts

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HousekeepingReport:
    stale_listings: int
    spent_tokens: int


async def run(
    session: AsyncSession, *, now: datetime, listing_retention: timedelta
) -> HousekeepingReport:
    """Delete listings nobody saved that were last seen before the retention period, and
    refresh tokens and dashboard sessions that can no longer be used. Commits each part
    on its own, so a failure in one keeps what the other did."""
    stale = await store.delete_stale_listings(session, seen_before=now - listing_retention)
    await session.commit()
    spent = await accounts.purge_spent_tokens(session, now=now)
    await session.commit()
    report = HousekeepingReport(stale_listings=stale, spent_tokens=spent)
    if stale or spent:
        logger.info(
            "housekeeping deleted %d stale listings and %d spent tokens or sessions", stale, spent
        )
    return report
