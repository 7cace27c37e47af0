"""The alert outbox: claim due rows with a lease, finish them with fencing, retry on a
schedule, and sweep up what a dead worker left behind.

Rows are the truth; Celery messages only wake workers. A claim commits before any
delivery I/O, so a worker that dies mid-send leaves a row whose lease expires and which
another worker claims again (with the same idempotency key, so receivers can drop a
repeat). Statuses: pending -> sending -> sent | failed (permanent) | dead (retries used up);
a channel whose provider refuses the server's credentials puts rows back to pending.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from app import metrics
from app.alerts.channels.base import DeliveryResult, DeliveryStatus
from app.models import Alert, AlertKind, AlertStatus

JITTER_FRACTION = 0.1
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class RetryPolicy:
    """Seconds before attempt 1, 2, ... ; the schedule's length is the attempt budget."""

    schedule_s: tuple[float, ...]

    @property
    def max_attempts(self) -> int:
        return len(self.schedule_s)

    def delay_after(self, attempts: int, *, retry_after_s: float | None = None) -> timedelta:
        """The wait before the next attempt, after `attempts` attempts, with +-10 % jitter;
        a provider's Retry-After wins when it asks for longer."""
        base = self.schedule_s[min(attempts, self.max_attempts - 1)]
        jittered = base * (1 + JITTER_FRACTION * (2 * random.random() - 1))
        return timedelta(seconds=max(jittered, retry_after_s or 0.0))


def _due(now: datetime) -> ColumnElement[bool]:
    return or_(
        and_(Alert.status == AlertStatus.PENDING.value, Alert.next_attempt_at <= now),
        and_(Alert.status == AlertStatus.SENDING.value, Alert.lease_until < now),
    )


async def claim_due(
    session: AsyncSession,
    *,
    worker_id: str,
    now: datetime,
    lease: timedelta,
    limit: int = 100,
    only_ids: Sequence[uuid.UUID] | None = None,
) -> list[uuid.UUID]:
    """Claim up to `limit` due rows (pending and due, or sending with an expired lease) for
    this worker and count the attempt. Commits before returning.

    The attempt is counted at claim time, so a crash mid-send still backs off.
    """
    candidates = select(Alert.id).where(_due(now)).order_by(Alert.next_attempt_at).limit(limit)
    if only_ids is not None:
        candidates = candidates.where(Alert.id.in_(only_ids))
    if session.get_bind().dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    ids = list((await session.scalars(candidates)).all())
    if not ids:
        await session.commit()
        return []
    # The WHERE re-checks due-ness, so of two claimers racing for a row only one wins
    # (SQLite has no SKIP LOCKED; the single UPDATE is atomic there).
    claimed = await session.execute(
        update(Alert)
        .where(Alert.id.in_(ids), _due(now))
        .values(
            status=AlertStatus.SENDING.value,
            lease_until=now + lease,
            claimed_by=worker_id,
            attempts=Alert.attempts + 1,
        )
        .returning(Alert.id)
    )
    won = [row.id for row in claimed]
    await session.commit()
    return won


async def renew_lease(
    session: AsyncSession, alert_id: uuid.UUID, *, worker_id: str, now: datetime, lease: timedelta
) -> bool:
    """Start a fresh lease on a claimed row just before sending it; False when the row is
    no longer this worker's (its lease ran out while it waited in the batch and another
    worker took it). Only the holder of a live lease sends, so two workers never send the
    same row at once. Flushes only."""
    result = await session.execute(
        update(Alert)
        .where(
            Alert.id == alert_id,
            Alert.claimed_by == worker_id,
            Alert.status == AlertStatus.SENDING.value,
            Alert.lease_until >= now,
        )
        .values(lease_until=now + lease)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def finish(
    session: AsyncSession,
    alert_id: uuid.UUID,
    *,
    worker_id: str,
    result: DeliveryResult,
    policy: RetryPolicy,
    now: datetime,
) -> str | None:
    """Record a delivery attempt's outcome; returns the new status, or None when this worker
    no longer holds the row (its lease expired and another worker took it). Flushes only.
    """
    alert = await session.scalar(
        select(Alert).where(
            Alert.id == alert_id,
            Alert.claimed_by == worker_id,
            Alert.status == AlertStatus.SENDING.value,
        )
    )
    if alert is None:
        return None
    alert.lease_until = None
    alert.last_error = result.error[:MAX_ERROR_CHARS] if result.error else None
    if result.status is DeliveryStatus.DELIVERED:
        alert.status = AlertStatus.SENT.value
        alert.sent_at = now
        alert.provider_message_id = result.provider_message_id
    elif result.status is DeliveryStatus.MISCONFIGURED:
        # The server's own credentials were refused: wait for the operator without using
        # up the user's attempts.
        alert.status = AlertStatus.PENDING.value
        alert.attempts = max(alert.attempts - 1, 0)
        alert.next_attempt_at = now + timedelta(seconds=result.retry_after_s or 0.0)
    elif result.status is DeliveryStatus.RETRY and alert.attempts < policy.max_attempts:
        alert.status = AlertStatus.PENDING.value
        alert.next_attempt_at = now + policy.delay_after(
            alert.attempts, retry_after_s=result.retry_after_s
        )
    elif result.status is DeliveryStatus.RETRY:
        alert.status = AlertStatus.DEAD.value
    else:
        alert.status = AlertStatus.FAILED.value
    await session.flush()
    metrics.record_alert(alert, now)
    return alert.status


async def defer(
    session: AsyncSession, alert_id: uuid.UUID, *, worker_id: str, until: datetime
) -> bool:
    """Put a claimed row back until `until` without using up an attempt (quiet hours)."""
    result = await session.execute(
        update(Alert)
        .where(
            Alert.id == alert_id,
            Alert.claimed_by == worker_id,
            Alert.status == AlertStatus.SENDING.value,
        )
        .values(
            status=AlertStatus.PENDING.value,
            next_attempt_at=until,
            lease_until=None,
            attempts=Alert.attempts - 1,
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class OutboxState:
    due: int
    oldest_pending_age_s: float | None


async def inspect(session: AsyncSession, *, now: datetime) -> OutboxState:
    """How many rows are due now (including expired leases) and how old the oldest
    undelivered row is: what the sweeper re-enqueues and what operators graph."""
    due = await session.scalar(select(func.count()).select_from(Alert).where(_due(now)))
    oldest = await session.scalar(
        select(func.min(Alert.created_at)).where(
            Alert.status.in_([AlertStatus.PENDING.value, AlertStatus.SENDING.value])
        )
    )
    return OutboxState(
        due=int(due or 0),
        oldest_pending_age_s=None if oldest is None else (now - oldest).total_seconds(),
    )


async def enqueue_notice(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    key: str,
    subject: str,
    text: str,
    now: datetime,
    channels: Sequence[str] = ("email", "in_app"),
) -> None:
    """Queue a message from the service itself (a disabled webhook, a failing search) on
    the given channels, once per `key`. Flushes only."""
    for channel in channels:
        idempotency_key = f"system:{key}:{channel}"
        exists = await session.scalar(
            select(Alert.id).where(Alert.idempotency_key == idempotency_key)
        )
        if exists is None:
            session.add(
                Alert(
                    user_id=user_id,
                    channel=channel,
                    kind=AlertKind.SYSTEM.value,
                    idempotency_key=idempotency_key,
                    payload={"subject": subject, "text": text},
                    status=AlertStatus.PENDING.value,
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
    await session.flush()


async def release_claims(session: AsyncSession, *, worker_id: str, now: datetime) -> int:
    """Hand back every row this worker holds because it is shutting down: due again now,
    the attempt not counted (a send cut off mid-way may be repeated, under the same
    idempotency key). Flushes only; returns the rows released."""
    result = await session.execute(
        update(Alert)
        .where(Alert.claimed_by == worker_id, Alert.status == AlertStatus.SENDING.value)
        .values(
            status=AlertStatus.PENDING.value,
            next_attempt_at=now,
            lease_until=None,
            attempts=Alert.attempts - 1,
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
