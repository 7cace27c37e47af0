"""A user's own account: profile and notification settings, deletion, stats and plan usage."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.errors import InvalidInput
from app.models import Alert, AlertStatus, ApiUsage, Search, SearchMatch, User
from app.schemas.users import (
    PlanLimitsOut,
    RemainingOut,
    UsageOut,
    UserLimits,
    UserStats,
    UserUpdate,
)
from app.security import signing, ssrf
from app.services import plans
from app.services.usage import MANUAL_CHECK

# How long the previous webhook secret keeps signing after a rotation.
WEBHOOK_ROTATION_OVERLAP = timedelta(hours=24)


async def update_profile(
    session: AsyncSession, user: User, update: UserUpdate, *, url_policy: ssrf.URLPolicy
) -> str | None:
    """Apply the fields sent in `update` to the user.

    Returns the new webhook signing secret when the webhook URL was set or changed (the
    only time it is shown), else None. A new or cleared phone number is unverified again.
    Raises UnsafeURL for a webhook URL that is not public and InvalidInput for half-set
    quiet hours; on error nothing changes. Flushes.
    """
    changes = update.changes()
    new_secret: str | None = None
    if changes.get("webhook_url") is not None:
        try:
            checked = await url_policy.check(changes["webhook_url"])
        except ssrf.UnsafeURL as exc:
            raise ssrf.UnsafeURL(exc.detail, field="webhook_url") from exc
        changes["webhook_url"] = checked.url
        if checked.url != user.webhook_url or user.webhook_secret is None:
            new_secret = new_webhook_secret()
    _check_quiet_hours(
        changes.get("quiet_hours_start", user.quiet_hours_start),
        changes.get("quiet_hours_end", user.quiet_hours_end),
    )
    if "webhook_url" in changes:
        if changes["webhook_url"] is None:
            user.webhook_secret = None
        elif new_secret is not None:
            user.webhook_secret = new_secret
        # Saving a URL (again) is how a disabled webhook is turned back on.
        user.webhook_disabled_at = None
        user.webhook_disabled_reason = None
        user.webhook_failing_since = None
    if "phone_number" in changes and changes["phone_number"] != user.phone_number:
        # A code proved the old number only: nothing goes by SMS to the new one until a code
        # sent to it comes back.
        user.phone_verified = False
    for field, value in changes.items():
        setattr(user, field, value)
    await session.flush()
    return new_secret


async def delete_account(session: AsyncSession, user: User) -> None:
    """Delete the user; their searches, matches, alerts, tokens and usage go with them (the
    foreign keys cascade). Listings are shared and stay. Flushes."""
    await session.delete(user)
    await session.flush()


async def stats(
    session: AsyncSession, *, owner_id: uuid.UUID, now: datetime | None = None
) -> UserStats:
    """Counts over the user's searches, matches and sent alerts, in one round trip."""
    now = now or utcnow()
    owned_searches = Search.owner_id == owner_id
    owned_matches = SearchMatch.user_id == owner_id
    statement = select(
        select(func.count()).where(owned_searches).scalar_subquery().label("searches_total"),
        select(func.count())
        .where(owned_searches, Search.is_active.is_(True))
        .scalar_subquery()
        .label("searches_active"),
        select(func.count())
        .where(owned_matches, SearchMatch.matched_at >= now - timedelta(hours=24))
        .scalar_subquery()
        .label("matches_last_24h"),
        select(func.count())
        .where(owned_matches, SearchMatch.matched_at >= now - timedelta(days=7))
        .scalar_subquery()
        .label("matches_last_7d"),
        select(func.count())
        .where(Alert.user_id == owner_id, Alert.status == AlertStatus.SENT.value)
        .scalar_subquery()
        .label("alerts_sent"),
        select(func.max(Search.last_checked_at))
        .where(owned_searches)
        .scalar_subquery()
        .label("last_check_at"),
    )
    row = (await session.execute(statement)).one()
    return UserStats.model_validate(row)


async def limits(session: AsyncSession, user: User, *, now: datetime | None = None) -> UserLimits:
    """The user's plan limits, what they use now and what is left (null = unlimited).

    Daily counters are per UTC day, as the manual-check allowance counts them.
    """
    today = (now or utcnow()).astimezone(UTC).date()
    searches = (
        await session.execute(
            select(
                func.count().label("total"),
                func.coalesce(func.sum(case((Search.is_active, 1), else_=0)), 0).label("active"),
            ).where(Search.owner_id == user.id)
        )
    ).one()
    manual_checks = await session.scalar(
        select(ApiUsage.count).where(
            ApiUsage.user_id == user.id, ApiUsage.day == today, ApiUsage.kind == MANUAL_CHECK
        )
    )
    plan = plans.limits_for(user.plan)
    usage = UsageOut(
        active_searches=int(searches.active),
        searches_total=int(searches.total),
        manual_checks_today=manual_checks or 0,
    )
    remaining = RemainingOut(
        active_searches=(
            None
            if plan.max_active_searches is None
            else max(0, plan.max_active_searches - usage.active_searches)
        ),
        manual_checks_today=max(0, plan.manual_checks_per_day - usage.manual_checks_today),
    )
    return UserLimits(
        plan=user.plan,
        limits=PlanLimitsOut.model_validate(plan),
        usage=usage,
        remaining=remaining,
    )


async def rotate_webhook_secret(
    session: AsyncSession, user: User, *, now: datetime | None = None
) -> tuple[str, datetime]:
    """Give the webhook a new signing secret; the old one keeps signing alongside it for
    WEBHOOK_ROTATION_OVERLAP so receivers can switch without losing a message.

    Returns (new secret, when the old one stops). InvalidInput without a webhook. Flushes.
    """
    if not user.webhook_url or not user.webhook_secret:
        raise InvalidInput("Set a webhook URL first: PUT /api/v1/users/me with webhook_url")
    now = now or utcnow()
    user.webhook_previous_secret = user.webhook_secret
    user.webhook_previous_secret_expires_at = now + WEBHOOK_ROTATION_OVERLAP
    user.webhook_secret = new_webhook_secret()
    await session.flush()
    return user.webhook_secret, user.webhook_previous_secret_expires_at


def new_webhook_secret() -> str:
    """A Standard Webhooks signing secret: `whsec_` and base64 of 32 random bytes."""
    return signing.generate_secret()


def _check_quiet_hours(start: Any, end: Any) -> None:
    if (start is None) != (end is None):
        raise InvalidInput(
            "Set both quiet_hours_start and quiet_hours_end, or clear both", field="quiet_hours"
        )
    if start is not None and start == end:
        raise InvalidInput("Quiet hours must start and end at different times", field="quiet_hours")
