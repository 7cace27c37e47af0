"""Per-user daily allowances (manual checks, test alerts, SMS), counted in api_usage."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, time, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import dialect_insert
from app.errors import TooManyRequests
from app.models import ApiUsage

MANUAL_CHECK = "manual_check"
TEST_ALERT = "test_alert"
SMS_SENT = "sms"


async def use_daily_allowance(
    session: AsyncSession,
    user_id: uuid.UUID,
    kind: str,
    *,
    limit: int,
    refusal: str,
    now: datetime,
) -> int:
    """Count one use of `kind` for this UTC day and return the new count; over `limit`,
    raise TooManyRequests(refusal) with Retry-After at the next UTC midnight.

    Flushes only: when the request fails, its rollback also undoes the count.
    """
    used = await count_today(session, user_id, kind, now)
    if used > limit:
        raise TooManyRequests(refusal, retry_after_s=seconds_to_next_utc_day(now))
    return used


async def count_today(session: AsyncSession, user_id: uuid.UUID, kind: str, now: datetime) -> int:
    """Add one to today's (UTC) counter of `kind` and return the new count, atomically."""
    insert = dialect_insert(session)
    statement = (
        insert(ApiUsage)
        .values(
            id=uuid.uuid4(), user_id=user_id, day=now.astimezone(UTC).date(), kind=kind, count=1
        )
        .on_conflict_do_update(
            index_elements=[ApiUsage.user_id, ApiUsage.day, ApiUsage.kind],
            set_={"count": ApiUsage.count + 1},
        )
        .returning(ApiUsage.count)
    )
    count: int = (await session.execute(statement)).scalar_one()
    return count


def seconds_to_next_utc_day(now: datetime) -> int:
    today = now.astimezone(UTC).date()
    midnight = datetime.combine(today + timedelta(days=1), time.min, tzinfo=UTC)
    return max(1, math.ceil((midnight - now).total_seconds()))
