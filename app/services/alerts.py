"""The user's alert feed and delivery log (with what is unread), and test alerts.

Unread: one alert reaches a user as one outbox row per channel, and every alert about a
match, digest or notice has an `in_app` row (the in-app feed gets them all), so counting
`in_app` rows newer than `users.alerts_seen_at` counts each alert once. A test alert on
another channel is not counted: its sender is looking at the result already.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from app.alerts import delivery
from app.alerts.channels.base import AlertChannelSender
from app.alerts.delivery import DeliveryRuntime
from app.db import utcnow
from app.models import Alert, AlertChannel, AlertKind, AlertStatus, Plan, Search, User
from app.schemas.alerts import AlertFilters
from app.services import availability, plans, usage

TEST_SUBJECT = "Test alert from Marketplace Monitor"
TEST_TEXT = "This is a test. When your searches find something new, alerts arrive like this."


@dataclass(frozen=True)
class LatestAlert:
    alert: Alert
    subject: str
    search_name: str | None


@dataclass(frozen=True)
class SearchOutlook:
    """What an empty alert log explains: whether there are searches to alert at all, and
    when the next of them is checked."""

    searches: int
    active: int
    next_check_at: datetime | None


@dataclass(frozen=True)
class ChannelChoice:
    name: str
    # Why a test alert on this channel cannot work for this user now; None when it can.
    unavailable: str | None


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


async def unread_count(session: AsyncSession, user: User, *, cap: int | None = None) -> int:
    """How many alerts arrived since the user last opened the alert log; at most `cap`
    (counting stops there: a badge shows "99+", not the exact backlog)."""
    unread = select(Alert.id).where(*_unread(user))
    if cap is not None:
        unread = unread.limit(cap)
    count = await session.scalar(select(func.count()).select_from(unread.subquery()))
    return int(count or 0)


async def latest_unread(session: AsyncSession, user: User) -> LatestAlert | None:
    """The newest unread alert with its subject line and search name, or None."""
    row = (
        await session.execute(
            select(Alert, Search.name)
            .outerjoin(Search, Search.id == Alert.search_id)
            .where(*_unread(user))
            .order_by(Alert.created_at.desc(), Alert.id)
            .limit(1)
        )
    ).first()
    if row is None:
        return None
    alert, search_name = row
    return LatestAlert(alert, delivery.subject_of(alert, search_name), search_name)


async def mark_seen(session: AsyncSession, user: User, *, until: datetime) -> None:
    """Every alert created up to `until` counts as seen; never moves back. Flushes."""
    if user.alerts_seen_at is None or until > user.alerts_seen_at:
        user.alerts_seen_at = until
        await session.flush()


async def search_names(
    session: AsyncSession, search_ids: Iterable[uuid.UUID], *, owner_id: uuid.UUID
) -> dict[uuid.UUID, str]:
    """The names of the owner's searches among `search_ids` (a deleted one has none)."""
    ids = set(search_ids)
    if not ids:
        return {}
    rows = await session.execute(
        select(Search.id, Search.name).where(Search.owner_id == owner_id, Search.id.in_(ids))
    )
    return {row.id: row.name for row in rows}


async def search_outlook(session: AsyncSession, *, owner_id: uuid.UUID) -> SearchOutlook:
    """How many searches the owner has, how many are active, and the soonest next check
    of those the scheduler will run (a search waiting for setup is not checked)."""
    scheduled = and_(Search.is_active.is_(True), Search.waiting_for_setup.is_(False))
    row = (
        await session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(case((Search.is_active.is_(True), 1), else_=0)), 0),
                func.min(case((scheduled, Search.next_check_at), else_=None)),
            ).where(Search.owner_id == owner_id)
        )
    ).one()
    return SearchOutlook(searches=int(row[0]), active=int(row[1]), next_check_at=row[2])


def channel_choices(user: User, channels: Mapping[str, AlertChannelSender]) -> list[ChannelChoice]:
    """Every channel, in-app first, each with what stops a test alert on it from arriving
    (the server is not set up for it, or the user has not set it up yet)."""
    names = [AlertChannel.IN_APP, *(c for c in AlertChannel if c is not AlertChannel.IN_APP)]
    return [ChannelChoice(c.value, _unavailable(c, user, channels)) for c in names]


def _unavailable(
    channel: AlertChannel, user: User, channels: Mapping[str, AlertChannelSender]
) -> str | None:
    setup = availability.channel_setup(channel.value, channels)
    if setup is not None:
        return f"not set up on this server ({setup})"
    if channel is AlertChannel.EMAIL and not user.email_verified:
        return "confirm your email address first"
    if channel is AlertChannel.SMS and not plans.limits_for(user.plan).sms_per_day:
        return f"the {Plan(user.plan).name} plan includes no SMS"
    step = availability.user_channel_setup(user, channel.value)
    return f"{step} first" if step is not None else None


def _unread(user: User) -> list[ColumnElement[bool]]:
    conditions = [Alert.user_id == user.id, Alert.channel == AlertChannel.IN_APP.value]
    if user.alerts_seen_at is not None:
        conditions.append(Alert.created_at > user.alerts_seen_at)
    return conditions
