"""Alert tasks: thin wrappers over app.alerts, run on the worker's loop."""

from __future__ import annotations

import time

from app.alerts import delivery, outbox
from app.db import utcnow
from app.workers.celery_app import celery_app
from app.workers.worker_loop import run_on_worker_loop, worker_delivery_runtime

BATCH_SIZE = 100
# Well inside the task's soft time limit (60 s): stop claiming new batches after this.
TASK_BUDGET_S = 30.0
MAX_PARALLEL_DELIVERIES = 8


@celery_app.task(name="alerts.deliver_due")
def deliver_due() -> int:
    """Deliver due alerts batch by batch; hands over to a fresh task when time runs out.
    Returns the alerts claimed. Safe to run many at once: each row is claimed by one."""
    started = time.monotonic()
    total = 0
    while time.monotonic() - started < TASK_BUDGET_S:
        report = run_on_worker_loop(
            delivery.deliver_due(worker_delivery_runtime(), limit=BATCH_SIZE)
        )
        total += report.claimed
        if not report.full:
            return total
    deliver_due.delay()
    return total


@celery_app.task(name="alerts.sweep_outbox")
def sweep_outbox() -> int:
    """Write the periodic digests that are due, then wake deliveries for every due row (new,
    retrying, or left by a dead worker): the broker only speeds delivery up, this makes sure
    nothing waits on a lost message."""
    runtime = worker_delivery_runtime()
    run_on_worker_loop(delivery.write_due_digests(runtime))
    state = run_on_worker_loop(_inspect(runtime))
    wakeups = min(MAX_PARALLEL_DELIVERIES, -(-state.due // BATCH_SIZE))
    for _ in range(wakeups):
        deliver_due.delay()
    return state.due


async def _inspect(runtime: delivery.DeliveryRuntime) -> outbox.OutboxState:
    async with runtime.session_factory() as session:
        return await outbox.inspect(session, now=utcnow())
