"""Saved searches: create, edit, pause/resume, "check now", within the owner's plan.

Every function flushes and never commits. Another user's search is reported as NotFound.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy import update as sql_update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.errors import Conflict, InvalidInput, NotFound
from app.marketplaces import registry as marketplace_registry
from app.models import Search, User
from app.models.enums import AlertChannel, Plan
from app.monitoring import cycle, feed_versions
from app.monitoring.cycle import CycleReport
from app.monitoring.fetch import MonitoringRuntime
from app.schemas.searches import SearchCreate, SearchCriteria, SearchUpdate
from app.security import ssrf
from app.services import availability, plans, usage

PAUSED_BY_OWNER = "Paused by the owner"

# Changing what a search looks for makes its next check a fresh first check (no alerts
# for what is already listed), exactly like a new search.
_RESTART_FIELDS = frozenset({"criteria", "marketplaces"})


async def create(
    session: AsyncSession,
    data: SearchCreate,
    *,
    owner: User,
    url_policy: ssrf.URLPolicy | None = None,
) -> Search:
    """A new active search, due at once.

    Raises PlanLimitExceeded (active searches, marketplaces, frequency) and InvalidInput
    (a chosen alert channel the owner has not set up; marketplace options that are
    missing, unknown or invalid, or a feed URL `url_policy` refuses; without a policy,
    the strictest one).
    """
    await _lock_owner(session, owner.id)
    plans.check_new_active_search(owner.plan, await _active_count(session, owner.id))
    values = _values(data, set(SearchCreate.model_fields))
    _check_settings(
        owner,
        values,
        marketplaces=values["marketplaces"],
        check_frequency_minutes=values["check_frequency_minutes"],
    )
    await _check_marketplace_options(
        values, marketplaces=values["marketplaces"], criteria=values["criteria"], policy=url_policy
    )
    now = utcnow()
    search = Search(
        owner_id=owner.id,
        is_active=True,
        next_check_at=now,
        last_digest_at=now,
        created_at=now,
        updated_at=now,
        **values,
    )
    session.add(search)
    await session.flush()
    return search


async def list_for_owner(
    session: AsyncSession,
    *,
    owner_id: uuid.UUID,
    is_active: bool | None = None,
    limit: int,
    offset: int,
) -> tuple[list[Search], int]:
    """One page of the owner's searches, newest first, and the total count."""
    conditions: list[Any] = [Search.owner_id == owner_id]
    if is_active is not None:
        conditions.append(Search.is_active.is_(is_active))
    total = await session.scalar(select(func.count()).select_from(Search).where(*conditions))
    rows = await session.scalars(
        select(Search)
        .where(*conditions)
        .order_by(Search.created_at.desc(), Search.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(rows), total or 0


async def get(session: AsyncSession, search_id: uuid.UUID, *, owner_id: uuid.UUID) -> Search:
    """The owner's search; NotFound if it does not exist or belongs to someone else."""
    search = await session.scalar(
        select(Search).where(Search.id == search_id, Search.owner_id == owner_id)
    )
    if search is None:
        raise NotFound("Search not found")
    return search


async def replace(
    session: AsyncSession,
    search_id: uuid.UUID,
    data: SearchCreate,
    *,
    owner: User,
    url_policy: ssrf.URLPolicy | None = None,
) -> Search:
    """PUT: every setting from `data` (omitted optional fields take their defaults).

    Raises NotFound, PlanLimitExceeded, InvalidInput; nothing changes when it raises.
    """
    search = await get(session, search_id, owner_id=owner.id)
    values = _values(data, set(SearchCreate.model_fields))
    return await _apply(session, search, values, owner, url_policy)


async def update(
    session: AsyncSession,
    search_id: uuid.UUID,
    changes: SearchUpdate,
    *,
    owner: User,
    url_policy: ssrf.URLPolicy | None = None,
) -> Search:
    """PATCH: only the fields given. Plan limits are checked when marketplaces or the
    frequency are given; channels when channels are given.

    Raises NotFound, PlanLimitExceeded, InvalidInput; nothing changes when it raises.
    """
    search = await get(session, search_id, owner_id=owner.id)
    values = _values(changes, changes.model_fields_set)
    return await _apply(session, search, values, owner, url_policy)


async def delete(session: AsyncSession, search_id: uuid.UUID, *, owner_id: uuid.UUID) -> None:
    """Delete the search; the database cascades to its matches, so the owner's feed version
    goes up. NotFound if not theirs."""
    search = await get(session, search_id, owner_id=owner_id)
    await session.delete(search)
    await session.flush()
    # After the delete, as every writer orders its locks (see feed_versions).
    await feed_versions.bump(session, [owner_id])


async def stop_email_alerts(session: AsyncSession, search_id: uuid.UUID) -> Search:
    """Take email off the search's alert channels (an unsubscribe link was followed; the
    link's signature stands in for the owner's login). Repeating it changes nothing.
    NotFound when the search no longer exists."""
    search = await session.get(Search, search_id)
    if search is None:
        raise NotFound("This unsubscribe link is no longer valid")
    if AlertChannel.EMAIL.value in search.alert_channels:
        search.alert_channels = [
            channel for channel in search.alert_channels if channel != AlertChannel.EMAIL.value
        ]
        await session.flush()
    return search


async def pause(session: AsyncSession, search_id: uuid.UUID, *, owner_id: uuid.UUID) -> Search:
    """Stop checking the search. Pausing a paused search changes nothing."""
    search = await get(session, search_id, owner_id=owner_id)
    if search.is_active:
        search.is_active = False
        search.paused_at = utcnow()
        search.paused_reason = PAUSED_BY_OWNER
        search.next_check_at = None
        await session.flush()
    return search


async def resume(session: AsyncSession, search_id: uuid.UUID, *, owner: User) -> Search:
    """Make a paused search active and due at once. Resuming an active search changes nothing.

    Raises PlanLimitExceeded when the plan's active searches are all taken, or when the
    search's marketplaces or frequency exceed the plan (e.g. after a downgrade).
    """
    search = await get(session, search_id, owner_id=owner.id)
    if search.is_active:
        return search
    await _lock_owner(session, owner.id)
    plans.check_new_active_search(owner.plan, await _active_count(session, owner.id))
    plans.check_search_settings(
        owner.plan,
        marketplaces=len(search.marketplaces),
        check_frequency_minutes=search.check_frequency_minutes,
    )
    search.is_active = True
    search.paused_at = None
    search.paused_reason = None
    # The scheduler looks at its marketplaces again and waits anew if still not set up.
    search.waiting_for_setup = False
    search.next_check_at = utcnow()
    await session.flush()
    return search


async def request_check(
    session: AsyncSession, search_id: uuid.UUID, *, owner: User, now: datetime | None = None
) -> Search:
    """Check now: make the search due at once, counted against the plan's daily allowance.

    Raises NotFound, Conflict (the search is paused) and TooManyRequests (allowance used up
    for this UTC day; retry_after_s is the time to the next UTC midnight).
    """
    search = await get(session, search_id, owner_id=owner.id)
    if not search.is_active:
        raise Conflict("This search is paused; resume it before asking for a check")
    now = now or utcnow()
    limit = plans.limits_for(owner.plan).manual_checks_per_day
    await usage.use_daily_allowance(
        session,
        owner.id,
        usage.MANUAL_CHECK,
        limit=limit,
        refusal=f"The {Plan(owner.plan).name} plan allows {limit} manual checks per day; "
        "try again after midnight UTC",
        now=now,
    )
    search.next_check_at = now
    await session.flush()
    return search


async def check_now(
    session: AsyncSession, runtime: MonitoringRuntime, search_id: uuid.UUID, *, owner: User
) -> tuple[Search, CycleReport]:
    """Run one check of the search at once and report what it found.

    Commits the allowance count before checking: the check runs in its own transactions
    (like any scheduled check) and must see the search free of this request's locks.
    Raises what `request_check` raises, and Conflict when none of the search's
    marketplaces can be checked on this server (nothing is counted then).
    """
    search = await get(session, search_id, owner_id=owner.id)
    missing = availability.search_setup(search.marketplaces, (), runtime.adapters, None)
    if search.marketplaces and len(missing) == len(search.marketplaces):
        raise Conflict(
            "This search cannot be checked until its marketplace is set up: "
            + "; ".join(item.message for item in missing)
        )
    await request_check(session, search_id, owner=owner)
    await session.commit()
    report = await cycle.check_searches_now(runtime, [search_id])
    search = await get(session, search_id, owner_id=owner.id)
    await session.refresh(search)
    return search, report


async def _apply(
    session: AsyncSession,
    search: Search,
    values: dict[str, Any],
    owner: User,
    url_policy: ssrf.URLPolicy | None,
) -> Search:
    frequency = values.get("check_frequency_minutes", search.check_frequency_minutes)
    _check_settings(
        owner,
        values,
        marketplaces=values.get("marketplaces", search.marketplaces),
        check_frequency_minutes=frequency,
    )
    if values.keys() & {"criteria", "marketplaces"}:
        await _check_marketplace_options(
            values,
            marketplaces=values.get("marketplaces", search.marketplaces),
            criteria=values.get("criteria", search.criteria),
            policy=url_policy,
        )
    restart = any(
        field in values and _differs(getattr(search, field), values[field])
        for field in _RESTART_FIELDS
    )
    frequency_changed = frequency != search.check_frequency_minutes
    if values.get("alert_mode", search.alert_mode) != search.alert_mode:
        # A new period starts now: what was alerted before is not sent again in a digest.
        search.last_digest_at = utcnow()
    for field, value in values.items():
        setattr(search, field, value)
    if restart:
        _start_afresh(search)
    elif frequency_changed and search.is_active:
        search.next_check_at = (
            search.last_checked_at + timedelta(minutes=search.check_frequency_minutes)
            if search.last_checked_at is not None
            else utcnow()
        )
    await session.flush()
    return search


def _values(data: SearchCreate | SearchUpdate, fields: set[str]) -> dict[str, Any]:
    """Model column values for the given fields of a validated body."""
    values: dict[str, Any] = {}
    for field in fields:
        value = getattr(data, field)
        if field == "criteria":
            value = value.stored()
        elif field in ("marketplaces", "alert_channels"):
            value = [item.value for item in value]
        elif field == "alert_mode":
            value = value.value
        values[field] = value
    return values


def _check_settings(
    owner: User, values: dict[str, Any], *, marketplaces: list[str], check_frequency_minutes: int
) -> None:
    """Plan limits on the resulting settings (when the body names them), then channels."""
    if values.keys() & {"marketplaces", "check_frequency_minutes"}:
        plans.check_search_settings(
            owner.plan,
            marketplaces=len(marketplaces),
            check_frequency_minutes=check_frequency_minutes,
        )
    _check_channels(owner, values.get("alert_channels", []))


async def _check_marketplace_options(
    values: dict[str, Any],
    *,
    marketplaces: list[str],
    criteria: dict[str, Any],
    policy: ssrf.URLPolicy | None,
) -> None:
    """Check the criteria's marketplace options against the resulting marketplaces and
    store them normalised in `values["criteria"]` (when the body gives criteria). Feed
    URLs pass the SSRF gate now, and again at every fetch."""
    options = marketplace_registry.check_options(
        marketplaces, criteria.get("marketplace_options") or {}
    )
    policy = policy or ssrf.URLPolicy(resolve=ssrf.system_resolver)
    for path, url in marketplace_registry.user_urls(options):
        try:
            await policy.check(url)
        except ssrf.UnsafeURL as exc:
            raise ssrf.UnsafeURL(f"{path}: {exc.detail}", field=path) from exc
    if "criteria" in values:
        values["criteria"] = {
            key: value for key, value in values["criteria"].items() if key != "marketplace_options"
        }
        if options:
            values["criteria"]["marketplace_options"] = options


def _check_channels(owner: User, channels: list[str]) -> None:
    missing = {
        AlertChannel.SMS.value: ("phone_number", not owner.phone_number),
        AlertChannel.WEBHOOK.value: ("webhook_url", not owner.webhook_url),
        AlertChannel.APPRISE.value: ("apprise_urls", not owner.apprise_urls),
    }
    for channel in channels:
        setting, is_missing = missing.get(channel, ("", False))
        if is_missing:
            raise InvalidInput(
                f"The {channel} alert channel needs your {setting}: "
                "set it with PUT /api/v1/users/me first"
            )


def _differs(current: Any, new: Any) -> bool:
    if isinstance(current, dict) and isinstance(new, dict):
        return _normalised_criteria(current) != new
    if isinstance(current, list) and isinstance(new, list):
        return set(current) != set(new)
    return bool(current != new)


def _normalised_criteria(stored: dict[str, Any]) -> dict[str, Any] | None:
    """Stored criteria in today's canonical form (rows written before may differ in form
    only, e.g. a price of 400 for "400.00"); None if they no longer validate."""
    try:
        return SearchCriteria.model_validate(stored).stored()
    except ValidationError:
        return None


def _start_afresh(search: Search) -> None:
    """Forget the previous check history: the next check is a first check again."""
    search.last_checked_at = None
    search.last_error = None
    search.consecutive_failures = 0
    search.waiting_for_setup = False
    search.next_check_at = utcnow() if search.is_active else None


async def _active_count(session: AsyncSession, owner_id: uuid.UUID) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(Search)
        .where(Search.owner_id == owner_id, Search.is_active.is_(True))
    )
    return count or 0


async def _lock_owner(session: AsyncSession, owner_id: uuid.UUID) -> None:
    """Serialise an owner's plan-limited writes, so two concurrent requests cannot both
    take the last free slot. A no-op UPDATE of the user row takes PostgreSQL's row lock
    and SQLite's write lock before anything is counted."""
    await session.execute(
        sql_update(User)
        .where(User.id == owner_id)
        .values(updated_at=User.updated_at)
        .execution_options(synchronize_session=False)
    )
