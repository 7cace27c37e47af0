"""SIGTERM to a real alerts worker (started with `marketmon worker`) in the middle of a
delivery: the deliveries under way finish, each alert arrives exactly once, and the task
messages the worker had not started stay queued for the next worker. Nothing is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db import utcnow
from app.models import Alert, User
from app.security.signing import generate_secret
from app.workers.celery_app import ALERTS_QUEUE, create_celery_app
from tests.celery_processes import clean_redis
from tests.fakes.webhook_receiver import Reply, WebhookReceiver

BROKER_URL = "redis://127.0.0.1:6379/11"
MARKETMON = str(Path(sys.executable).parent / "marketmon")
ALERTS = 20
QUEUED_TASKS = 3
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 60
pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
def broker() -> Iterator[str]:
    with clean_redis(BROKER_URL) as url:
        yield url


def worker_environment(database_url: str, broker: str) -> dict[str, str]:
    fields = {name.lower() for name in Settings.model_fields}
    env = {key: value for key, value in os.environ.items() if key.lower() not in fields}
    return env | {
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker,
        "REDIS_URL": broker,
        "DEBUG": "true",
        "SSRF_ALLOW_LOOPBACK": "true",
        "SECRET_KEY": "shutdown-secret-key-with-more-than-thirty-two-bytes",
    }


def start_worker(env: dict[str, str], cwd: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """`marketmon worker` for the alerts queue, one process; run outside the checkout, so a
    developer's .env cannot change what is tested."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [MARKETMON, "worker", "--queue", "alerts", "-c", "1", "-n", "sigterm@%h"],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def test_sigterm_mid_delivery_finishes_what_runs_and_loses_nothing(
    database_url: str, broker: str, session: AsyncSession, user: User, tmp_path: Path
) -> None:
    secret = generate_secret()
    with WebhookReceiver(secret) as receiver:
        # Slow enough that SIGTERM surely lands while deliveries are in flight.
        receiver.answer_always(Reply(200, delay_s=1.5))
        user.webhook_url, user.webhook_secret = receiver.url, secret
        await session.commit()
        now = utcnow()
        rows = [
            {
                "id": uuid.uuid4(),
                "user_id": user.id,
                "channel": "webhook",
                "kind": "new_listing",
                "idempotency_key": f"sigterm:{n}",
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

        sender = create_celery_app(Settings(_env_file=None, celery_broker_url=broker))
        for _ in range(QUEUED_TASKS):
            sender.send_task("alerts.deliver_due")
        sender.close()

        log_path = tmp_path / "worker.log"
        worker = start_worker(worker_environment(database_url, broker), tmp_path, log_path)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not receiver.requests:
                assert worker.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                await asyncio.sleep(0.05)
            worker.send_signal(signal.SIGTERM)  # what `docker stop` sends to the main process
            returncode = await asyncio.to_thread(worker.wait, STOP_TIMEOUT_S)
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(timeout=10)
        log_text = log_path.read_text()
        assert returncode == 0, log_text
        assert "Warm shutdown" in log_text or "warm shutdown" in log_text.lower(), log_text

        statuses = dict(
            (await session.execute(select(Alert.status, func.count()).group_by(Alert.status))).all()
        )
        # The task under way finished its whole batch before the worker exited ...
        assert statuses == {"sent": ALERTS}, log_text[-3000:]
        assert receiver.delivered_ids == {f"msg_{row['id']}" for row in rows}
        assert receiver.repeats == 0
        # ... and the task messages it had not started are still queued, none half-taken.
        queue = redis.Redis.from_url(broker)
        try:
            assert queue.llen(ALERTS_QUEUE) == QUEUED_TASKS - 1
            assert queue.hlen("unacked") == 0
        finally:
            queue.close()
