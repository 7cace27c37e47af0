"""Monitoring tasks: thin wrappers over app.monitoring, run on the worker's loop."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import redis

from app.config import get_settings
from app.db import utcnow
from app.monitoring import cycle, scheduler
from app.services import housekeeping
from app.workers import alert_tasks
from app.workers.celery_app import celery_app
from app.workers.worker_loop import run_on_worker_loop, worker_runtime

# A task checks a batch of groups: at most this many searches, so that one task's storing
# stays well inside the soft time limit.
MAX_SEARCHES_PER_TASK = 1_000


@celery_app.task(name="monitoring.check_all_active_searches")
def check_all_active_searches() -> int:
    """Claim the due searches and enqueue their groups (one per upstream query), a batch of
    groups per task; returns the groups.

    Several beat processes may send this at once: only the first in each tick does the work
    (a Redis lock), and the claim itself never hands a search out twice anyway.
    """
    settings = get_settings()
    if not _first_in_tick(settings.broker_url, settings.scheduler_tick_s):
        return 0
    groups = run_on_worker_loop(cycle.claim_and_group(worker_runtime()))
    batches = scheduler.batch_groups(
        groups, max_groups=settings.check_groups_per_task, max_searches=MAX_SEARCHES_PER_TASK
    )
    for batch in batches:
        check_search_groups.delay([scheduler.group_to_payload(group) for group in batch])
    return len(groups)


@celery_app.task(name="monitoring.check_search_groups")
def check_search_groups(payloads: list[dict[str, Any]]) -> int:
    """Check a batch of groups concurrently on this process's loop; returns new matches.

    Safe to run twice: listings, matches and alerts are all written idempotently.
    """
    groups = [scheduler.group_from_payload(payload) for payload in payloads]
    outcomes = run_on_worker_loop(
        cycle.check_groups(worker_runtime(), groups, concurrency=get_settings().check_concurrency)
    )
    if any(outcome.stored.alerts_created for outcome in outcomes):
        alert_tasks.deliver_due.delay()
    return sum(outcome.stored.matches_new for outcome in outcomes)


@celery_app.task(name="monitoring.check_search_group")
def check_search_group(payload: dict[str, Any]) -> int:
    """Check one group of searches sharing an upstream query; returns new matches. The beat
    task sends batches now; this stays for messages queued before, as a batch of one."""
    result: int = check_search_groups([payload])
    return result


@celery_app.task(name="monitoring.cleanup_old_listings")
def cleanup_old_listings() -> int:
    """The hourly housekeeping (app/services/housekeeping.py): stale listings, spent tokens
    and sessions. Returns how many listings were deleted."""
    return run_on_worker_loop(_cleanup(get_settings().listing_retention_days))


async def _cleanup(retention_days: int) -> int:
    async with worker_runtime().session_factory() as session:
        report = await housekeeping.run(
            session, now=utcnow(), listing_retention=timedelta(days=retention_days)
        )
    return report.stale_listings


def _first_in_tick(broker_url: str, tick_s: float) -> bool:
    if not broker_url.startswith(("redis://", "rediss://")):
        return True
    slot = int(utcnow().timestamp() // tick_s)
    client = redis.Redis.from_url(broker_url)
    try:
        return bool(
            client.set(f"marketmon:beat:check_all:{slot}", "1", nx=True, px=int(tick_s * 2000))
        )
    finally:
        client.close()
