"""Chaos: 200 eBay searches over 20 queries checked by a real `marketplace_monitoring` worker
(two processes) and beat on PostgreSQL + Redis, while worker processes are SIGKILLed again
and again in the middle of the cycle.

A killed check is redelivered (late ack, reject on worker lost) and re-run; the writes are
idempotent. Afterwards every search has been checked, every (search, listing) match is
stored once, every matched listing is announced once per channel, and no search is left
waiting on a lease. Run with `-s` for the report line. Bounded: about a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tests.celery_processes import clean_redis, start_celery, stop
from tests.chaos.search_cycle import (
    audit,
    celery_env,
    monitoring_worker_args,
    populate,
    tail_logs,
    unchecked,
    wait_until_checked,
)
from tests.fakes.ebay import EbayFake

BROKER_URL = "redis://127.0.0.1:6379/9"
SEARCHES = 200
QUERIES = 20
KILLS = 10
pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
def broker() -> Iterator[str]:
    with clean_redis(BROKER_URL) as url:
        yield url


@pytest.fixture
def ebay() -> Iterator[EbayFake]:
    with EbayFake() as fake:
        # Slow enough that every check is in flight for a while: kills land mid-check, and
        # the cycle outlasts all the kills.
        fake.search_delay_s = 1.2
        yield fake


def children_waiting_on(worker_pid: int, port: int) -> list[psutil.Process]:
    """The worker's child processes with a request open to 127.0.0.1:`port` (the fake closes
    every connection after its answer, so an open one is a request in flight)."""
    waiting = []
    for child in psutil.Process(worker_pid).children():
        with contextlib.suppress(psutil.NoSuchProcess):
            if any(c.raddr and c.raddr.port == port for c in child.net_connections("tcp")):
                waiting.append(child)
    return waiting


async def test_no_search_is_lost_or_stored_twice_while_workers_are_killed_mid_cycle(
    session: AsyncSession,
    ebay: EbayFake,
    database_url: str,
    broker: str,
    tmp_path: Path,
) -> None:
    population = await populate(
        session, ebay, searches=SEARCHES, queries=QUERIES, items_per_query=3, users=20
    )
    # One group per task: twenty tasks make a cycle long enough for every kill to land in it
    # (test_redis_restart_chaos covers batches of groups).
    env = {**celery_env(database_url, broker, ebay), "CHECK_GROUPS_PER_TASK": "1"}
    worker = start_celery(monitoring_worker_args("chaos-check"), env, tmp_path / "worker.log")
    beat = start_celery(
        ["beat", "-l", "info", "-s", str(tmp_path / "beat-schedule")], env, tmp_path / "beat.log"
    )
    processes = [worker, beat]
    kills = 0
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        for _ in range(600):
            if ebay.search_calls:
                break
            await asyncio.sleep(0.1)
        assert ebay.search_calls, tail_logs(tmp_path)
        # The tick that claimed the cycle has handed out its checks by now; kill only checks.
        await asyncio.sleep(0.5)
        while kills < KILLS and loop.time() < deadline:
            if not await unchecked(session, population):
                break  # the cycle is over
            fetching = children_waiting_on(worker.pid, ebay.port)
            if not fetching:
                await asyncio.sleep(0.05)
                continue
            # Somewhere between waiting on eBay and storing what it answered.
            await asyncio.sleep(random.uniform(0.0, 1.0))
            with contextlib.suppress(psutil.NoSuchProcess):
                random.choice(fetching).send_signal(signal.SIGKILL)
                kills += 1
            await asyncio.sleep(random.uniform(0.2, 0.6))
        await wait_until_checked(session, population, processes, tmp_path, timeout_s=90)
    finally:
        stop(processes)

    report = await audit(session, population)
    # Celery reports a lost worker only when the killed process was running a task.
    mid_task = (
        (tmp_path / "worker.log")
        .read_text(errors="replace")
        .count("raised error: WorkerLostError('Worker exited prematurely: signal 9")
    )
    print(  # noqa: T201  (the report the issue asks for; shown with -s)
        f"\nchaos check cycle: {kills} SIGKILLs ({mid_task} mid-task), {ebay.search_calls} "
        f"eBay search calls for {QUERIES} queries; {report.line()}"
    )
    assert kills == KILLS, tail_logs(tmp_path)
    assert mid_task >= KILLS // 2
    assert report.unchecked == 0, tail_logs(tmp_path)
    assert report.stale_leases == 0
    assert (report.matches_lost, report.matches_duplicated) == (0, 0)
    assert (report.announcements_lost, report.announcements_duplicated) == (0, 0)
    assert report.keys_duplicated == 0
    assert report.problems == []
