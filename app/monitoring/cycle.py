"""One scheduling cycle run in-process: claim due searches, group them, check each group.

The embedded runner and `POST /searches/{id}/check` use this; Celery does the same in two
steps (a beat task claims and groups, one task per group checks).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.marketplaces.base import Capabilities
from app.monitoring import scheduler
from app.monitoring.fetch import GroupOutcome, MonitoringRuntime, check_group
from app.services import availability

logger = logging.getLogger(__name__)


@dataclass
class CycleReport:
    searches: int = 0
    groups: int = 0
    outcomes: list[GroupOutcome] = field(default_factory=list)

    @property
    def upstream_calls(self) -> int:
        return sum(o.upstream_calls for o in self.outcomes)

    @property
    def matches_new(self) -> int:
        return sum(o.stored.matches_new for o in self.outcomes)

    @property
    def alerts_created(self) -> int:
        return sum(o.stored.alerts_created for o in self.outcomes)

    @property
    def listings_fetched(self) -> int:
        return sum(o.listings_fetched for o in self.outcomes)

    @property
    def errors(self) -> list[str]:
        return [o.error for o in self.outcomes if o.error]


async def run_cycle(
    runtime: MonitoringRuntime, *, now: datetime | None = None, concurrency: int = 20
) -> CycleReport:
    """Check every due search once; groups run concurrently, at most `concurrency` at a time."""
    now = now or utcnow()
    async with runtime.session_factory() as session:
        await _review_setup_waits(runtime, session, now)
        due = await scheduler.claim_due_searches(session, now=now, lease=runtime.claim_lease)
    return await _check(runtime, due, concurrency)


async def claim_and_group(
    runtime: MonitoringRuntime, *, now: datetime | None = None
) -> list[scheduler.CheckGroup]:
    """The scheduler's half of a distributed cycle: claim due searches, record those on
    unavailable marketplaces, and return the groups for workers to check."""
    now = now or utcnow()
    async with runtime.session_factory() as session:
        await _review_setup_waits(runtime, session, now)
        due = await scheduler.claim_due_searches(session, now=now, lease=runtime.claim_lease)
    groups, _unavailable = await _group(runtime, due)
    return groups


async def check_searches_now(
    runtime: MonitoringRuntime, search_ids: Sequence[uuid.UUID], *, concurrency: int = 4
) -> CycleReport:
    """Check these searches at once, due or not (a search another worker is claiming right
    now is skipped: that check is already under way)."""
    async with runtime.session_factory() as session:
        due = await scheduler.claim_due_searches(
            session, now=utcnow(), only_ids=search_ids, lease=runtime.claim_lease
        )
    return await _check(runtime, due, concurrency)


async def _check(
    runtime: MonitoringRuntime, due: Sequence[scheduler.DueSearch], concurrency: int
) -> CycleReport:
    groups, unavailable = await _group(runtime, due)
    outcomes = await check_groups(runtime, groups, concurrency=concurrency)
    return CycleReport(searches=len(due), groups=len(groups), outcomes=[*unavailable, *outcomes])


async def check_groups(
    runtime: MonitoringRuntime, groups: Sequence[scheduler.CheckGroup], *, concurrency: int
) -> list[GroupOutcome]:
    """Check the groups concurrently, at most `concurrency` at a time: while one group
    waits for its marketplace, others store theirs."""
    gate = asyncio.Semaphore(concurrency)
    finished: set[int] = set()

    async def bounded(index: int, group: scheduler.CheckGroup) -> GroupOutcome:
        async with gate:
            try:
                outcome = await check_group(runtime, group)
            except SQLAlchemyError as exc:
                # One group's failed write (a lost connection, say) must not stop the
                # others: its searches stay claimed and are checked again when the lease ends.
                logger.exception("storing a check of %s failed", group.marketplace)
                outcome = GroupOutcome(
                    marketplace=group.marketplace,
                    error=f"{group.marketplace}: storing the check failed ({type(exc).__name__})",
                )
        finished.add(index)
        return outcome

    try:
        return await asyncio.gather(*(bounded(i, group) for i, group in enumerate(groups)))
    except asyncio.CancelledError:
        # Shutting down mid-cycle: what was not checked is due again now, not in minutes.
        cut_short = {
            search_id
            for i, group in enumerate(groups)
            if i not in finished
            for search_id in group.search_ids
        }
        try:
            async with runtime.session_factory() as session:
                await scheduler.release_claims(session, sorted(cut_short), now=utcnow())
                await session.commit()
        except (SQLAlchemyError, OSError) as exc:
            logger.warning("could not release %d searches (%s): leases expire", len(cut_short), exc)
        raise


async def _review_setup_waits(
    runtime: MonitoringRuntime, session: AsyncSession, now: datetime
) -> None:
    """Once per runtime: searches that waited for a marketplace this server can now check
    are due at once (settings only change with a restart, so once is enough)."""
    if runtime.setup_waits_reviewed:
        return
    usable = availability.usable_marketplaces(runtime.adapters)
    ready = await scheduler.resume_set_up(session, usable, now=now)
    await session.commit()
    runtime.setup_waits_reviewed = True
    if ready:
        logger.info("%d searches waiting for setup can be checked now", len(ready))


async def _group(
    runtime: MonitoringRuntime, due: Sequence[scheduler.DueSearch]
) -> tuple[list[scheduler.CheckGroup], list[GroupOutcome]]:
    """The groups to check, and what is reported for marketplaces this server cannot check."""
    capabilities = _usable_capabilities(runtime)
    unavailable = await _record_unavailable(
        runtime, due, scheduler.unavailable_marketplaces(due, capabilities)
    )
    return scheduler.group_by_query(due, capabilities), unavailable


def _usable_capabilities(runtime: MonitoringRuntime) -> dict[str, Capabilities]:
    # An adapter without its credentials is never called: it could only fail upstream.
    return {
        name: adapter.capabilities
        for name, adapter in runtime.adapters.items()
        if adapter.is_configured()
    }


async def _record_unavailable(
    runtime: MonitoringRuntime,
    due: Sequence[scheduler.DueSearch],
    missing: dict[str, list[uuid.UUID]],
) -> list[GroupOutcome]:
    """Marketplaces this server cannot check are not failures of the search: the owner
    could not fix them. A search with no marketplace left to check waits for the operator
    (out of the schedule, no failure notices); the others are checked on the rest."""
    if not missing:
        return []
    unusable = {search_id for ids in missing.values() for search_id in ids}
    capabilities = _usable_capabilities(runtime)
    waiting = [
        search.id
        for search in due
        if search.id in unusable and not any(m in capabilities for m in search.marketplaces)
    ]
    if waiting:
        async with runtime.session_factory() as session:
            await scheduler.wait_for_setup(session, waiting, now=utcnow())
            await session.commit()
    return [
        GroupOutcome(
            marketplace=name,
            error=availability.SetupNeeded(
                "marketplace", name, availability.marketplace_setup(name, runtime.adapters) or ""
            ).message,
        )
        for name in missing
    ]
