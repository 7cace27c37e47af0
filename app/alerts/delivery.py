"""Deliver due outbox rows: claim, build the message, send through its channel, finish.

`deliver_due` is what the `alerts` Celery task, the embedded runner and the test-alert
endpoint all call. No database connection is held while a provider is being called.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.alerts import digests, outbox
from app.alerts.channels.base import (
    AlertChannelSender,
    AlertMessage,
    DeliveryResult,
    DeliveryStatus,
    ListingInfo,
    Recipient,
)
from app.alerts.quiet_hours import quiet_until
from app.db import utcnow
from app.errors import TooManyRequests
from app.models import Alert, AlertChannel, AlertKind, Search, User
from app.security.unsubscribe import unsubscribe_token
from app.services import plans, usage

logger = logging.getLogger(__name__)

WEBHOOK_DISABLE_AFTER = timedelta(days=5)
CLAIMS_PER_SLOT = 5


@dataclass
class DeliveryRuntime:
    """What delivering needs, built once per process."""

    session_factory: async_sessionmaker[AsyncSession]
    channels: Mapping[str, AlertChannelSender]
    http_client: httpx.AsyncClient
    policy: outbox.RetryPolicy
    lease: timedelta
    worker_id: str
    public_base_url: str
    digest_max_listings: int = 10
    digest_daily_hour: int = 8
    # Signs unsubscribe links; empty = emails carry none.
    link_signing_key: str = ""
    # Below the lease, so a slow provider cannot outlive the claim.
    send_timeout_s: float = 60.0
    concurrency: int = 20
    # How long a channel whose provider refused the server's credentials rests before it
    # is tried again; its messages wait meanwhile. Per process.
    channel_pause: timedelta = timedelta(minutes=10)
    paused_channels: dict[str, datetime] = field(default_factory=dict)


@dataclass
class DeliveryReport:
    claimed: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    # Claimed as many as it could take: more may be due, so call again.
    full: bool = False


async def deliver_due(
    runtime: DeliveryRuntime,
    *,
    limit: int = 100,
    only_ids: Sequence[uuid.UUID] | None = None,
    now: datetime | None = None,
) -> DeliveryReport:
    """Claim up to `limit` due alerts and deliver them, `concurrency` at a time.

    At most a few rows per delivery slot are claimed at once, so a claimed row does not
    wait in the batch until its lease runs out."""
    limit = min(limit, runtime.concurrency * CLAIMS_PER_SLOT)
    async with runtime.session_factory() as session:
        claimed = await outbox.claim_due(
            session,
            worker_id=runtime.worker_id,
            now=now or utcnow(),
            lease=runtime.lease,
            limit=limit,
            only_ids=only_ids,
        )
    gate = asyncio.Semaphore(runtime.concurrency)

    async def bounded(alert_id: uuid.UUID) -> str:
        async with gate:
            return await _deliver_one(runtime, alert_id)

    results = await asyncio.gather(*(bounded(alert_id) for alert_id in claimed))
    return DeliveryReport(
        claimed=len(claimed), outcomes=Counter(results), full=len(claimed) >= limit
    )


async def write_due_digests(runtime: DeliveryRuntime) -> int:
    """Write the digests of periodic searches whose period has ended (see digests.py)."""
    async with runtime.session_factory() as session:
        written = await digests.write_due_digests(
            session, now=utcnow(), daily_hour=runtime.digest_daily_hour
        )
        await session.commit()
    return written


async def _deliver_one(runtime: DeliveryRuntime, alert_id: uuid.UUID) -> str:
    now = utcnow()
    async with runtime.session_factory() as session:
        if not await outbox.renew_lease(
            session, alert_id, worker_id=runtime.worker_id, now=now, lease=runtime.lease
        ):
            await session.commit()
            return "lost_lease"
        alert = await session.get(Alert, alert_id)
        user = await session.get(User, alert.user_id) if alert else None
        if alert is None or user is None:
            return "vanished"
        channel_name = alert.channel
        until = quiet_until(
            now, start=user.quiet_hours_start, end=user.quiet_hours_end, timezone=user.timezone
        )
        refusal: DeliveryResult | None = None
        if channel_name == AlertChannel.SMS.value and not plans.limits_for(user.plan).sms_per_day:
            refusal = DeliveryResult.permanent(f"the {user.plan.upper()} plan includes no SMS")
        if channel_name == AlertChannel.WEBHOOK.value and user.webhook_disabled_at is not None:
            refusal = DeliveryResult.permanent(webhook_disabled_error(user))
        if until is None:
            until = _paused_until(runtime, channel_name, now)
        if until is None and refusal is None and channel_name == AlertChannel.SMS.value:
            until = await _sms_cap_reached(session, user, now)
        if until is not None and channel_name != AlertChannel.IN_APP.value:
            await outbox.defer(session, alert_id, worker_id=runtime.worker_id, until=until)
            await session.commit()
            return "deferred"
        search = await session.get(Search, alert.search_id) if alert.search_id else None
        message = build_message(alert, search, runtime)
        recipient = recipient_for(user, now)
        await session.commit()  # keeps the SMS count, if one was taken
    # The session is closed: no connection is held while the provider answers.
    result = refusal or await _send(channel_name, recipient, message, runtime)
    newly_paused = False
    if result.status is DeliveryStatus.MISCONFIGURED:
        newly_paused = _pause(runtime, channel_name, result.error or "", utcnow())
        result = replace(result, retry_after_s=runtime.channel_pause.total_seconds())

    async with runtime.session_factory() as session:
        if newly_paused:
            await _tell_operators(session, channel_name, result.error or "", utcnow())
        status = await outbox.finish(
            session,
            alert_id,
            worker_id=runtime.worker_id,
            result=result,
            policy=runtime.policy,
            now=utcnow(),
        )
        if status is not None and channel_name == AlertChannel.WEBHOOK.value:
            await _track_webhook_health(session, recipient.user_id, result, utcnow())
        await session.commit()
    if status is None:
        logger.warning("alert %s was taken over by another worker before it finished", alert_id)
    return status or "lost_lease"


def _paused_until(runtime: DeliveryRuntime, channel: str, now: datetime) -> datetime | None:
    until = runtime.paused_channels.get(channel)
    return until if until is not None and until > now else None


def _pause(runtime: DeliveryRuntime, channel: str, error: str, now: datetime) -> bool:
    """Rest a channel whose provider refused our credentials; True if it was not resting."""
    was_resting = _paused_until(runtime, channel, now) is not None
    runtime.paused_channels[channel] = now + runtime.channel_pause
    if not was_resting:
        logger.critical(
            "alert channel %s paused for %.0f s, its messages wait: %s. Check its settings.",
            channel,
            runtime.channel_pause.total_seconds(),
            error,
        )
    return not was_resting


async def _tell_operators(session: AsyncSession, channel: str, error: str, now: datetime) -> None:
    """Tell every admin, at most once an hour per channel, on the channels still working."""
    admins = await session.scalars(
        select(User.id).where(User.is_admin.is_(True), User.is_active.is_(True))
    )
    channels = [AlertChannel.IN_APP.value]
    if channel != AlertChannel.EMAIL.value:
        channels.append(AlertChannel.EMAIL.value)
    for admin_id in admins:
        await outbox.enqueue_notice(
            session,
            user_id=admin_id,
            key=f"channel_misconfigured:{channel}:{now:%Y-%m-%dT%H}",
            subject=f"Alert channel {channel} needs attention",
            text=(
                f"The {channel} provider refused this server's credentials ({error}). "
                "Its alerts are waiting, not lost: fix the settings and they go out."
            ),
            now=now,
            channels=channels,
        )


async def _sms_cap_reached(session: AsyncSession, user: User, now: datetime) -> datetime | None:
    """Count this SMS against the plan's daily cap; over it, when the next day starts (the
    message waits for it rather than being dropped). Flushes only."""
    try:
        await usage.use_daily_allowance(
            session,
            user.id,
            usage.SMS_SENT,
            limit=plans.limits_for(user.plan).sms_per_day,
            refusal="daily SMS cap reached",
            now=now,
        )
    except TooManyRequests as exc:
        await session.rollback()  # the refused attempt is not counted
        return now + timedelta(seconds=exc.retry_after_s)
    return None


async def _send(
    channel_name: str, recipient: Recipient, message: AlertMessage, runtime: DeliveryRuntime
) -> DeliveryResult:
    channel = runtime.channels.get(channel_name)
    if channel is None:
        return DeliveryResult.permanent(f"{channel_name} is not available on this server")
    if not channel.is_configured():
        return DeliveryResult.permanent(f"{channel.name} is not configured on this server")
    if not channel.can_reach(recipient):
        return DeliveryResult.permanent(f"{channel.name} is not set up in your settings")
    if unverified := _unverified(channel_name, recipient):
        return DeliveryResult.permanent(unverified)
    try:
        return await asyncio.wait_for(channel.send(recipient, message), runtime.send_timeout_s)
    except TimeoutError:
        return DeliveryResult.retry(f"timed out after {runtime.send_timeout_s:.0f} s")


def _unverified(channel_name: str, recipient: Recipient) -> str | None:
    """Why the channel may not send to this recipient yet, or None."""
    if channel_name == AlertChannel.EMAIL.value and not recipient.email_verified:
        return (
            "your email address is not verified yet: follow the link we sent "
            "(Settings can send a new one)"
        )
    if channel_name == AlertChannel.SMS.value and not recipient.phone_verified:
        return "your phone number is not verified yet: Settings sends a code to confirm it"
    return None


def webhook_disabled_error(user: User) -> str:
    """What the alert log says about an alert that could not go to a disabled webhook."""
    when = _day(user.webhook_disabled_at) if user.webhook_disabled_at else "an earlier day"
    why = f": {user.webhook_disabled_reason}" if user.webhook_disabled_reason else ""
    return f"webhook disabled on {when}{why}; save the URL again in Settings to turn it back on"


def recipient_for(user: User, now: datetime) -> Recipient:
    secrets = [user.webhook_secret] if user.webhook_secret else []
    if (
        user.webhook_previous_secret
        and user.webhook_previous_secret_expires_at
        and user.webhook_previous_secret_expires_at > now
    ):
        secrets.append(user.webhook_previous_secret)
    return Recipient(
        user_id=user.id,
        email=user.email,
        full_name=user.full_name,
        phone_number=user.phone_number,
        webhook_url=None if user.webhook_disabled_at else user.webhook_url,
        webhook_secrets=tuple(secrets),
        apprise_urls=tuple(user.apprise_urls or ()),
        email_verified=user.email_verified,
        phone_verified=user.phone_verified,
    )


def build_message(alert: Alert, search: Search | None, runtime: DeliveryRuntime) -> AlertMessage:
    """The message for an outbox row, from what the row recorded when it was written."""
    payload: dict[str, Any] = alert.payload or {}
    listings = _listings(payload)
    shown = listings[: runtime.digest_max_listings]
    search_name = search.name if search else None
    return AlertMessage(
        alert_id=alert.id,
        idempotency_key=alert.idempotency_key,
        kind=alert.kind,
        subject=_subject(alert.kind, listings, search_name, payload),
        listings=tuple(shown),
        more_count=max(int(payload.get("total") or 0), len(listings)) - len(shown),
        search_id=alert.search_id,
        search_name=search_name,
        manage_url=manage_url(runtime.public_base_url, alert.search_id),
        unsubscribe_url=_unsubscribe_url(alert, runtime),
        text=payload.get("text"),
    )


def manage_url(public_base_url: str, search_id: uuid.UUID | None) -> str | None:
    """The dashboard page where the owner changes or stops the search: a link in a message
    is opened in a browser, which has the dashboard's session and no API token."""
    if search_id is None:
        return None
    return f"{public_base_url.rstrip('/')}/app/searches/{search_id}/edit"


def subject_of(alert: Alert, search_name: str | None) -> str:
    """The alert's subject line, as its messages carry it (for pages that list alerts)."""
    payload: dict[str, Any] = alert.payload or {}
    return _subject(alert.kind, _listings(payload), search_name, payload)


def _unsubscribe_url(alert: Alert, runtime: DeliveryRuntime) -> str | None:
    if (
        alert.search_id is None
        or alert.channel != AlertChannel.EMAIL.value
        or not runtime.link_signing_key
    ):
        return None
    token = unsubscribe_token(runtime.link_signing_key, alert.search_id)
    return f"{runtime.public_base_url.rstrip('/')}/api/v1/unsubscribe/{token}"


def _subject(
    kind: str, listings: list[ListingInfo], search_name: str | None, payload: dict[str, Any]
) -> str:
    if payload.get("subject"):
        return str(payload["subject"])
    about = f" for '{search_name}'" if search_name else ""
    if kind == AlertKind.DIGEST.value:
        return f"{len(listings)} new matches{about}"
    title = listings[0].title if listings else ""
    if kind == AlertKind.PRICE_DROP.value:
        return f"Price drop: {title}"
    return f"New match: {title}"


def _listings(payload: Mapping[str, Any]) -> list[ListingInfo]:
    """A digest's listings, or the one listing a single alert's payload describes."""
    listings = [_listing(item) for item in payload.get("listings", [])]
    if not listings and payload.get("title"):
        listings = [_listing(payload)]
    return listings


def _listing(item: Mapping[str, Any]) -> ListingInfo:
    return ListingInfo(
        title=str(item.get("title") or ""),
        url=str(item.get("url") or ""),
        marketplace=str(item.get("marketplace") or ""),
        price=item.get("price"),
        currency=item.get("currency"),
        previous_price=item.get("previous_price"),
        image_url=item.get("image_url"),
        location=item.get("location"),
    )


async def _track_webhook_health(
    session: AsyncSession, user_id: uuid.UUID, result: DeliveryResult, now: datetime
) -> None:
    """A webhook that answers 410, or has failed for days, is disabled and its owner told."""
    user = await session.get(User, user_id)
    if user is None or user.webhook_disabled_at is not None:
        return
    if result.status is DeliveryStatus.DELIVERED:
        user.webhook_failing_since = None
        return
    since = user.webhook_failing_since = user.webhook_failing_since or now
    if result.status is DeliveryStatus.GONE:
        reason = (
            f"Your endpoint answered 410 Gone on {_moment(now)}, "
            "which means it no longer wants deliveries"
        )
    elif now - since >= WEBHOOK_DISABLE_AFTER:
        days = (now - since).days
        reason = f"Deliveries have failed since {_moment(since)} ({days} days)"
    else:
        return
    user.webhook_disabled_at = now
    user.webhook_disabled_reason = reason
    await outbox.enqueue_notice(
        session,
        user_id=user.id,
        key=f"webhook_disabled:{user.id}:{now.isoformat()}",
        subject="Your webhook has been disabled",
        text=(
            f"We stopped sending alerts to your webhook. {reason}. "
            "Save the URL again in your settings to turn it back on."
        ),
        now=now,
    )


def _day(moment: datetime) -> str:
    """ "7 Dec 2026" (UTC): unambiguous in every locale, unlike 07/12/2026."""
    utc = moment.astimezone(UTC)
    return f"{utc.day} {utc:%b %Y}"


def _moment(moment: datetime) -> str:
    """ "7 Dec 2026 at 20:15 UTC" """
    return f"{_day(moment)} at {moment.astimezone(UTC):%H:%M} UTC"
