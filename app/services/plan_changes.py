"""Plan changes: the one function that changes a user's plan (for Stripe, an administrator
or the CLI alike), fitting the user's searches to the new plan, telling the user and
auditing the change.

Every function flushes and never commits.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts import outbox
from app.db import new_id, utcnow
from app.errors import NotFound
from app.models import AuditLog, Plan, Search, User
from app.services import plans

logger = logging.getLogger(__name__)

PLAN_CHANGED = "plan_changed"
# How a search paused to fit a lower plan is marked, so that an upgrade resumes it.
PLAN_LIMIT_PAUSE = "Paused: over the"


class PlanSource(StrEnum):
    """Who changed a plan; stored in the audit trail."""

    STRIPE = "stripe"
    ADMIN = "admin"
    CLI = "cli"


@dataclass(frozen=True)
class PlanChange:
    """The result of `change_plan`: searches paused and searches adjusted to fit."""

    user_id: uuid.UUID
    previous_plan: str
    plan: str
    paused: list[Search] = field(default_factory=list)
    adjusted: list[Search] = field(default_factory=list)
    resumed: list[Search] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.previous_plan != self.plan


async def change_plan(
    session: AsyncSession,
    user: User,
    plan: Plan,
    *,
    source: PlanSource,
    actor_id: uuid.UUID | None = None,
    details: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> PlanChange:
    """Put the user on `plan`: the one way a plan changes.

    A higher plan's limits apply at once. To fit a lower plan, the newest active searches
    beyond its limit are paused, and the remaining ones lose the marketplaces beyond its
    limit (the first ones are kept) and are checked no more often than it allows. Nothing
    is deleted. The user is told (email and in-app) and the change is audited. Changing
    to the current plan does nothing.
    """
    plan = Plan(plan)
    now = now or utcnow()
    user = await locked_user(session, user.id)
    previous = user.plan
    if previous == plan.value:
        return PlanChange(user.id, previous, previous)
    user.plan = plan.value
    paused, adjusted = await _fit_searches(session, user.id, plan, now)
    resumed = await _resume_plan_paused(session, user.id, plan, now)
    audit = AuditLog(
        id=new_id(),
        actor_id=actor_id,
        user_id=user.id,
        action=PLAN_CHANGED,
        details={
            "from": previous,
            "to": plan.value,
            "source": source.value,
            "paused_searches": [str(search.id) for search in paused],
            "adjusted_searches": [str(search.id) for search in adjusted],
            "resumed_searches": [str(search.id) for search in resumed],
            **(details or {}),
        },
        created_at=now,
    )
    session.add(audit)
    change = PlanChange(user.id, previous, plan.value, paused, adjusted, resumed)
    # Keyed by the audit row: one notice per change, written in the same transaction.
    await outbox.enqueue_notice(
        session,
        user_id=user.id,
        key=f"{PLAN_CHANGED}:{audit.id}",
        subject=f"Your plan is now {plan.name}",
        text=_plan_change_text(change),
        now=now,
    )
    await session.flush()
    logger.info(
        "plan of user %s changed from %s to %s by %s", user.id, previous, plan.value, source
    )
    return change


async def admin_set_plan(
    session: AsyncSession,
    user_id: uuid.UUID,
    plan: Plan,
    *,
    actor_id: uuid.UUID | None,
    source: PlanSource,
    reason: str | None = None,
) -> PlanChange:
    """Set a user's plan by hand (support cases), audited with the actor and reason.

    A later Stripe event about the user's subscription sets the plan from Stripe again.
    Raises NotFound for an unknown user.
    """
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("User not found")
    details = {"reason": reason} if reason else None
    return await change_plan(session, user, plan, source=source, actor_id=actor_id, details=details)


async def locked_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    """The user row, locked for this transaction and freshly read.

    A no-op UPDATE takes PostgreSQL's row lock and SQLite's write lock (as searches do
    before counting), so billing changes and plan-limited writes of one user serialise.
    """
    await session.execute(
        update(User)
        .where(User.id == user_id)
        .values(updated_at=User.updated_at)
        .execution_options(synchronize_session=False)
    )
    user = await session.scalar(
        select(User).where(User.id == user_id).execution_options(populate_existing=True)
    )
    if user is None:
        raise NotFound("User not found")
    return user


async def _fit_searches(
    session: AsyncSession, owner_id: uuid.UUID, plan: Plan, now: datetime
) -> tuple[list[Search], list[Search]]:
    """Pause and adjust the owner's active searches to the plan's limits."""
    limits = plans.limits_for(plan)
    active = list(
        await session.scalars(
            select(Search)
            .where(Search.owner_id == owner_id, Search.is_active.is_(True))
            .order_by(Search.created_at.desc(), Search.id.desc())
        )
    )
    excess = (
        max(0, len(active) - limits.max_active_searches)
        if limits.max_active_searches is not None
        else 0
    )
    paused, kept = active[:excess], active[excess:]
    for search in paused:
        search.is_active = False
        search.paused_at = now
        search.paused_reason = f"{PLAN_LIMIT_PAUSE} {plan.name} plan's limit"
        search.next_check_at = None
        search.updated_at = now
    adjusted: list[Search] = []
    for search in kept:
        changed = False
        if len(search.marketplaces) > limits.max_marketplaces_per_search:
            search.marketplaces = list(search.marketplaces[: limits.max_marketplaces_per_search])
            changed = True
        if search.check_frequency_minutes < limits.min_check_frequency_minutes:
            search.check_frequency_minutes = limits.min_check_frequency_minutes
            if search.last_checked_at is not None:
                search.next_check_at = search.last_checked_at + timedelta(
                    minutes=search.check_frequency_minutes
                )
            changed = True
        if changed:
            search.updated_at = now
            adjusted.append(search)
    await session.flush()
    return paused, adjusted


async def _resume_plan_paused(
    session: AsyncSession, owner_id: uuid.UUID, plan: Plan, now: datetime
) -> list[Search]:
    """Resume searches an earlier, lower plan paused, oldest first, as far as this plan's
    limit allows. Searches the owner paused stay paused."""
    limit = plans.limits_for(plan).max_active_searches
    active = await session.scalar(
        select(func.count())
        .select_from(Search)
        .where(Search.owner_id == owner_id, Search.is_active.is_(True))
    )
    room = None if limit is None else max(0, limit - int(active or 0))
    if room == 0:
        return []
    waiting = (
        select(Search)
        .where(
            Search.owner_id == owner_id,
            Search.is_active.is_(False),
            Search.paused_reason.startswith(PLAN_LIMIT_PAUSE, autoescape=True),
        )
        .order_by(Search.created_at, Search.id)
    )
    if room is not None:
        waiting = waiting.limit(room)
    resumed = list(await session.scalars(waiting))
    for search in resumed:
        search.is_active = True
        search.paused_at = None
        search.paused_reason = None
        search.next_check_at = now
        search.updated_at = now
    await session.flush()
    return resumed


def _plan_change_text(change: PlanChange) -> str:
    plan = Plan(change.plan)
    limits = plans.limits_for(plan)
    searches = (
        "unlimited active searches"
        if limits.max_active_searches is None
        else f"{limits.max_active_searches} active searches"
    )
    lines = [
        f"Your Marketplace Monitor plan changed from {Plan(change.previous_plan).name} to "
        f"{plan.name}: {searches}, {limits.max_marketplaces_per_search} marketplace(s) per "
        f"search, checks at most every {limits.min_check_frequency_minutes} minutes."
    ]
    if change.paused:
        names = ", ".join(f"'{search.name}'" for search in change.paused)
        lines.append(f"To fit it we paused your newest searches: {names}.")
    if change.adjusted:
        names = ", ".join(f"'{search.name}'" for search in change.adjusted)
        lines.append(f"We reduced the marketplaces or the check frequency of: {names}.")
    if change.resumed:
        names = ", ".join(f"'{search.name}'" for search in change.resumed)
        lines.append(f"We resumed the searches an earlier plan had paused: {names}.")
    if change.paused or change.adjusted:
        lines.append(
            "Nothing was deleted: an upgrade resumes the paused searches, and you can widen "
            "the others again."
        )
    return "\n\n".join(lines)
