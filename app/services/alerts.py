"""The user's alert feed and delivery log, and test alerts."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts import delivery
from app.alerts.delivery import DeliveryRuntime
from app.db import utcnow
from app.models import Alert, AlertKind, AlertStatus, Plan, User
from app.schemas.alerts import AlertFilters
from app.services import plans, usage

TEST_SUBJECT = "Test alert from Marketplace Monitor"
TEST_TEXT = "This is a test. When your searches find something new, alerts arrive like this."


async def list_alerts(
    session: AsyncSession, *, owner_id: uuid.UUID, filters: AlertFilters
) -> tuple[list[Alert], int]:
    """The owner's alerts, newest first, and how many match the filters."""
    conditions = [Alert.user_id == owner_id]
    if filters.channel is not None:
        conditions.append(Alert.channel == filters.channel.value)
    if filters.status is not None:
        conditions.append(Alert.status == filters.status.value)
    if filters.kind is not None:
        conditions.append(Alert.kind == filters.kind.value)
    if filters.search_id is not None:
        conditions.append(Alert.search_id == filters.search_id)
    total = await session.scalar(select(func.count()).select_from(Alert).where(*conditions))
    rows = await session.scalars(
        select(Alert)
        .where(*conditions)
        .order_by(Alert.created_at.desc(), Alert.id)
        .limit(filters.limit)
        .offset(filters.offset)
    )
    return list(rows.all()), int(total or 0)


async def send_test_alert(
    session: AsyncSession, runtime: DeliveryRuntime, *, owner: User, channel: str
) -> Alert:
    """Send a test message on one channel now and return its alert row with the outcome.

    Counted against the plan's daily allowance (TooManyRequests when used up). Commits the
    row before delivering: delivery runs in its own transactions, as for any alert.
    """
    now = utcnow()
    limit = plans.limits_for(owner.plan).test_alerts_per_day
    await usage.use_daily_allowance(
        session,
        owner.id,
        usage.TEST_ALERT,
        limit=limit,
        refusal=f"The {Plan(owner.plan).name} plan allows {limit} test alerts per day; "
        "try again after midnight UTC",
        now=now,
    )
    alert = Alert(
        user_id=owner.id,
        channel=channel,
        kind=AlertKind.TEST.value,
        idempotency_key=f"test:{owner.id}:{uuid.uuid4()}",
        payload={"subject": TEST_SUBJECT, "text": TEST_TEXT},
        status=AlertStatus.PENDING.value,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(alert)
    await session.commit()
    await delivery.deliver_due(runtime, only_ids=[alert.id])
    await session.refresh(alert)
    return alert
