"""Embedded mode: the scheduler loop inside the API process (SQLite, no broker).

It calls the same functions as the Celery tasks: `cycle.run_cycle` and
`delivery.deliver_due` every tick, the listing cleanup once an hour. Stops with the app
(Ctrl-C, SIGTERM) within one tick, handing back what it had claimed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import timedelta

from sqlalchemy.exc import SQLAlchemyError

from app.alerts import delivery, outbox
from app.alerts.delivery import DeliveryRuntime
from app.db import utcnow
from app.monitoring import cycle
from app.monitoring.fetch import MonitoringRuntime
from app.services import housekeeping

logger = logging.getLogger(__name__)

CLEANUP_INTERVAL_S = 3600.0
DELIVERY_BATCH = 100


class EmbeddedRunner:
    def __init__(
        self,
        runtime: MonitoringRuntime,
        delivery_runtime: DeliveryRuntime,
        *,
        tick_s: float,
        retention: timedelta,
        concurrency: int,
    ) -> None:
        self._runtime = runtime
        self._delivery = delivery_runtime
        self._tick_s = tick_s
        self._retention = retention
        self._concurrency = concurrency
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_cleanup = 0.0

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="embedded-scheduler")

    def wake(self) -> None:
        """Run the next cycle now rather than at the next tick."""
        self._wake.set()

    async def stop(self) -> None:
        """End the loop within one tick: a cycle still running by then is cancelled, and
        what it had claimed (searches, alerts) is handed back at once rather than when its
        lease runs out."""
        self._stopping.set()
        self._wake.set()
        if self._task is None:
            return
        done, _ = await asyncio.wait({self._task}, timeout=self._tick_s)
        if not done:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        try:
            while not self._stopping.is_set():
                await self._run_once()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._tick_s)
        except asyncio.CancelledError:
            # The searches of a cut-short cycle are released by cycle itself; the alerts
            # being sent are this process's claims.
            await self._release_alerts()
            raise

    async def _release_alerts(self) -> None:
        try:
            async with self._delivery.session_factory() as session:
                released = await outbox.release_claims(
                    session, worker_id=self._delivery.worker_id, now=utcnow()
                )
                await session.commit()
        except (SQLAlchemyError, OSError) as exc:
            logger.warning("could not hand back alerts at shutdown (%s): leases expire", exc)
            return
        if released:
            logger.info("handed back %d alerts being sent at shutdown", released)

    async def _deliver_due(self) -> None:
        # A full batch means more may be waiting: keep going until the outbox is drained.
        while not self._stopping.is_set():
            report = await delivery.deliver_due(self._delivery, limit=DELIVERY_BATCH)
            if not report.full:
                return

    async def _run_once(self) -> None:
        # One bad cycle (a database hiccup) must not end the loop for good.
        try:
            report = await cycle.run_cycle(self._runtime, concurrency=self._concurrency)
            if report.searches:
                logger.info(
                    "checked %d searches in %d groups: %d upstream calls, %d new matches",
                    report.searches,
                    report.groups,
                    report.upstream_calls,
                    report.matches_new,
                )
            await delivery.write_due_digests(self._delivery)
            await self._deliver_due()
            if time.monotonic() - self._last_cleanup >= CLEANUP_INTERVAL_S:
                self._last_cleanup = time.monotonic()
                async with self._runtime.session_factory() as session:
                    await housekeeping.run(session, now=utcnow(), listing_retention=self._retention)
        except Exception:
            logger.exception("embedded scheduler cycle failed")
