"""Real Celery processes for the end-to-end and chaos suites: a clean Redis database as
the broker, `celery worker` / `celery beat` subprocesses, and a bounded shutdown."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from tests.conftest import ON_CI

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def clean_redis(url: str) -> Iterator[str]:
    """A Redis database emptied before and after; skipped locally (failed on CI) without Redis."""
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.RedisError as exc:
        if ON_CI:
            pytest.fail(f"Redis is required on CI: {exc}")
        pytest.skip(f"Redis not reachable: {exc}")
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


def start_celery(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`celery -A app.workers.celery_app <args>` with its output in `log`."""
    with log.open("wb") as output:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "app.workers.celery_app", *args],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def stop(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM (a warm shutdown), then SIGKILL whatever is still there after 20 s."""
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
