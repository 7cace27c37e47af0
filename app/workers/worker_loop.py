"""One asyncio loop and one engine runtime per worker process.

Built after the fork (worker_process_init) so database pools and HTTP clients belong to
the child; every task runs its coroutine on that loop with run_until_complete. A fresh
`asyncio.run()` per task would rebuild pools each time and break asyncpg ("attached to a
different loop").
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from celery.signals import worker_process_init, worker_process_shutdown
from sqlalchemy.ext.asyncio import AsyncEngine

from app import db
from app.alerts.delivery import DeliveryRuntime
from app.config import get_settings
from app.monitoring.fetch import MonitoringRuntime
from app.runtime import (
    build_delivery_runtime,
    build_monitoring_runtime,
    close_delivery_runtime,
    close_monitoring_runtime,
)

ResultT = TypeVar("ResultT")

_loop: asyncio.AbstractEventLoop | None = None
_engine: AsyncEngine | None = None
_runtime: MonitoringRuntime | None = None
_delivery: DeliveryRuntime | None = None


def run_on_worker_loop(coroutine: Coroutine[Any, Any, ResultT]) -> ResultT:
    """Run a coroutine to completion on this process's long-lived loop."""
    return _worker_loop().run_until_complete(coroutine)


def worker_runtime() -> MonitoringRuntime:
    """This process's engine runtime (adapters, cache, limiter, session factory)."""
    global _engine, _runtime
    if _runtime is None:
        _worker_loop()  # the runtime's clients must be created on the worker loop
        settings = get_settings()
        _engine = db.engine_from_settings(settings)
        _runtime = build_monitoring_runtime(settings, db.create_session_factory(_engine))
    return _runtime


def worker_delivery_runtime() -> DeliveryRuntime:
    """This process's alert delivery runtime (channels, retry policy, its worker id)."""
    global _delivery
    if _delivery is None:
        worker_runtime()  # shares the engine and session factory
        assert _runtime is not None
        _delivery = build_delivery_runtime(get_settings(), _runtime.session_factory)
    return _delivery


def _worker_loop() -> asyncio.AbstractEventLoop:
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
        asyncio.set_event_loop(_loop)
    return _loop


@worker_process_init.connect
def _on_process_init(**_kwargs: Any) -> None:
    # Whatever the parent built before the fork is not ours to use.
    global _loop, _engine, _runtime, _delivery
    _loop, _engine, _runtime, _delivery = None, None, None, None
    _worker_loop()


@worker_process_shutdown.connect
def _on_process_shutdown(**_kwargs: Any) -> None:
    global _loop, _engine, _runtime, _delivery
    if _loop is None or _loop.is_closed():
        return
    # A task stopped by a signal (SIGTERM from Celery cancelling it after a broker connection
    # loss) left its coroutine pending here: cancel it, or closing the clients below would
    # resume it and have it report a marketplace failure that never happened.
    interrupted = asyncio.all_tasks(_loop)
    for task in interrupted:
        task.cancel()
    _loop.run_until_complete(asyncio.gather(*interrupted, return_exceptions=True))
    if _delivery is not None:
        _loop.run_until_complete(close_delivery_runtime(_delivery))
    if _runtime is not None:
        _loop.run_until_complete(close_monitoring_runtime(_runtime))
    if _engine is not None:
        _loop.run_until_complete(_engine.dispose())
    _loop.close()
    _loop, _engine, _runtime, _delivery = None, None, None, None
