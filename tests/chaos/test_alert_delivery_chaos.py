"""Chaos: 1,000 webhook alerts delivered by real Celery workers on PostgreSQL + Redis while
worker processes are SIGKILLed at least 20 times.

Afterwards every alert has arrived (0 lost), no row is stuck, every arrival verified its
Standard Webhooks signature, and any repeat carries the same webhook-id (so a receiver can
drop it). Repeats can only come from a kill between a send and its commit, so with one
delivery in flight per process (ALERT_DELIVERY_CONCURRENCY=1) there are at most as many
repeats as kills; with N in flight it is at most N per kill. Requests cut off mid-body by a
kill fail verification at the receiver, as they must. Bounded: about a minute.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.models import Alert, User
from app.security.signing import generate_secret
from tests.celery_processes import clean_redis, start_celery, stop
from tests.fakes.webhook_receiver import Reply, WebhookReceiver

BROKER_URL = "redis://127.0.0.1:6379/12"
ALERTS = 1_000
KILLS = 20
IN_FLIGHT_PER_PROCESS = 1
pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
def broker() -> Iterator[str]:
    with clean_redis(BROKER_URL) as url:
        yield url


async def test_no_alert_is_lost_or_sent_twice_while_workers_are_killed(
    database_url: str,
    broker: str,
    session: AsyncSession,
    user: User,
    tmp_path: Path,
) -> None:
    secret = generate_secret()
    with WebhookReceiver(secret) as receiver:
        # Slow enough that kills land while deliveries are in flight.
        receiver.answer_always(Reply(200, delay_s=0.1))
        user.webhook_url, user.webhook_secret = receiver.url, secret
        await session.commit()
        now = utcnow()
        rows = [
            {
                "id": uuid.uuid4(),
                "user_id": user.id,
                "channel": "webhook",
                "kind": "new_listing",
                "idempotency_key": f"chaos:{n}",
                "payload": {"title": f"Listing {n}", "url": f"https://example.com/{n}"},
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for n in range(ALERTS)
        ]
        await session.execute(insert(Alert), rows)
        await session.commit()
        expected = {f"msg_{row['id']}" for row in rows}

        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": broker,
            "REDIS_URL": broker,
            "DEBUG": "true",
            "SSRF_ALLOW_LOOPBACK": "true",
            "ALERT_LEASE_S": "10",
            "ALERT_DELIVERY_CONCURRENCY": str(IN_FLIGHT_PER_PROCESS),
            "ALERT_SWEEP_INTERVAL_S": "2",
            "SCHEDULER_TICK_S": "60",
            "SECRET_KEY": "chaos-secret-key-with-more-than-thirty-two-bytes",
        }
        worker = start_celery(
            [
                "worker",
                "-Q",
                "alerts",
                "-c",
                "2",
                "-l",
                "info",
                "--without-mingle",
                "--without-gossip",
                "-n",
                "chaos@%h",
            ],
            env,
            tmp_path / "worker.log",
        )
        beat = start_celery(
            ["beat", "-l", "info", "-s", str(tmp_path / "beat-schedule")],
            env,
            tmp_path / "beat.log",
        )
        kills = 0
        try:
            deadline = time.monotonic() + 60
            while kills < KILLS and time.monotonic() < deadline:
                await asyncio.sleep(random.uniform(0.5, 1.5))
                children = psutil.Process(worker.pid).children()
                if children and receiver.accepted:  # deliveries are under way
                    random.choice(children).send_signal(signal.SIGKILL)
                    kills += 1
            assert kills >= KILLS, (tmp_path / "worker.log").read_text()[-3000:]

            async def pending() -> int:
                session.expire_all()
                return (
                    await session.scalar(
                        select(func.count()).select_from(Alert).where(Alert.status != "sent")
                    )
                    or 0
                )

            drain_deadline = time.monotonic() + 180
            while await pending() and time.monotonic() < drain_deadline:
                assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
                await asyncio.sleep(1)
            left = await pending()
        finally:
            stop([beat, worker])

        stuck = (
            await session.execute(
                select(Alert.status, Alert.attempts, Alert.last_error).where(Alert.status != "sent")
            )
        ).all()
        print(  # noqa: T201  (the report the issue asks for; shown with -s)
            f"\nchaos: {ALERTS} alerts, {kills} SIGKILLs, {len(receiver.accepted)} requests, "
            f"{len(receiver.delivered_ids)} distinct delivered, {receiver.repeats} repeats"
        )
        assert left == 0, f"rows stuck outside 'sent': {stuck[:5]}"
        # Only requests cut off mid-body by a kill fail verification; never a whole one.
        for request in receiver.rejected:
            assert len(request.body) < int(request.headers.get("content-length", "0"))
        assert receiver.delivered_ids == expected  # 0 lost
        assert receiver.repeats <= kills * IN_FLIGHT_PER_PROCESS
