"""What every scenario stands on: a throw-away PostgreSQL database, a clean Redis database,
child processes with a known environment, readiness waits and a memory sampler.

Everything listens on and talks to 127.0.0.1 only. Redis databases 10 and 11 belong to the
benchmarks (the test suites use 12-15 and the app 0); they are emptied before and after.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import psutil
import redis
from alembic.command import upgrade
from celery import Celery

from app.cli import alembic_config
from app.config import Settings

ROOT = Path(__file__).resolve().parent.parent
ADMIN_POSTGRES_URL = os.environ.get(
    "BENCH_POSTGRES_URL",
    os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
)
REDIS_BASE_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
# The only Redis databases the benchmarks touch.
CYCLE_REDIS_DB = 10
ALERT_REDIS_DB = 11
BENCH_SECRET_KEY = "bench-secret-key-" + "x" * 40
STOP_TIMEOUT_S = 20.0
# Log level of the app processes (their logs are in the work folder, see BENCH_KEEP_LOGS).
LOG_LEVEL = os.environ.get("BENCH_LOG_LEVEL", "warning")
_MIGRATION_LOCK = threading.Lock()


class BenchSetupError(RuntimeError):
    """PostgreSQL, Redis or a child process is not there; the message says which."""


# --- PostgreSQL -----------------------------------------------------------------------


@asynccontextmanager
async def postgres_database(label: str) -> AsyncIterator[str]:
    """A migrated throw-away database `marketmon_bench_<pid>_<label>` (asyncpg URL), dropped
    on the way out whatever happens."""
    name = f"marketmon_bench_{os.getpid()}_{label}"
    await _postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await _postgres_admin(f'CREATE DATABASE "{name}"')
    base = ADMIN_POSTGRES_URL.rsplit("/", 1)[0]
    url = base.replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}"
    try:
        await migrate(url)
        yield url
    finally:
        await _postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def migrate(database_url: str) -> None:
    # Alembic's env.py runs its own event loop, so it needs a thread without one; its
    # context is process-global, so two migrations must not overlap.
    def upgrade_alone() -> None:
        with _MIGRATION_LOCK:
            upgrade(alembic_config(database_url), "head")

    await asyncio.to_thread(upgrade_alone)


async def _postgres_admin(sql: str) -> None:
    try:
        connection = await asyncpg.connect(ADMIN_POSTGRES_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        raise BenchSetupError(
            f"PostgreSQL is not reachable at {ADMIN_POSTGRES_URL} (BENCH_POSTGRES_URL): {exc}"
        ) from exc
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


# --- Redis ----------------------------------------------------------------------------


@contextmanager
def clean_redis(db: int) -> Iterator[str]:
    """redis://.../<db>, emptied before and after. Only databases 10 and 11 are allowed."""
    if db not in (CYCLE_REDIS_DB, ALERT_REDIS_DB):
        raise ValueError(f"the benchmarks use Redis databases 10 and 11 only, not {db}")
    url = f"{REDIS_BASE_URL}/{db}"
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise BenchSetupError(f"Redis is not reachable at {url} (BENCH_REDIS_URL): {exc}") from exc
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


def flush_redis(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


# --- child processes ------------------------------------------------------------------


def app_environment(workdir: Path, **settings: object) -> dict[str, str]:
    """The environment of an app process: this one's, minus any app setting inherited from
    the shell, plus `settings` (upper-cased names). The process runs in `workdir`, so a
    developer's `.env` in the project folder is not read either."""
    setting_names = {name.upper() for name in Settings.model_fields}
    env = {key: value for key, value in os.environ.items() if key.upper() not in setting_names}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
            "SECRET_KEY": BENCH_SECRET_KEY,
            "LOAD_TEMPLATES_ON_STARTUP": "false",
            "DEMO_MARKETPLACE_ENABLED": "false",
        }
    )
    env.update({name.upper(): _env_value(value) for name, value in settings.items()})
    workdir.mkdir(parents=True, exist_ok=True)
    return env


def _env_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass
class Child:
    """A child process started by the benchmark, with its output in a log file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise BenchSetupError(
                f"{self.name} exited with {self.process.returncode}; last output:\n{self.tail()}"
            )

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start_child(name: str, args: Sequence[str], *, env: dict[str, str], workdir: Path) -> Child:
    """`python <args>` in its own session (so stopping it reaches its own children only)."""
    log = workdir / f"{name}.log"
    with log.open("wb") as output:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, *args],
            cwd=workdir,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Child(name, process, log)


def start_celery(
    name: str, args: Sequence[str], *, app: str, env: dict[str, str], workdir: Path
) -> Child:
    return start_child(name, ["-m", "celery", "-A", app, *args], env=env, workdir=workdir)


def stop_children(children: Sequence[Child]) -> None:
    """SIGTERM each (a warm shutdown), then SIGKILL the process group of any still running."""
    for child in children:
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for child in children:
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with _suppress_gone():
                os.killpg(child.process.pid, signal.SIGKILL)
            child.process.wait(timeout=5)
        # Prefork children left behind by a killed parent belong to the same group.
        with _suppress_gone():
            os.killpg(child.process.pid, signal.SIGKILL)


def _suppress_gone() -> suppress:
    return suppress(ProcessLookupError, PermissionError)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_until(
    condition: Callable[[], bool], *, timeout_s: float, what: str, children: Sequence[Child] = ()
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        for child in children:
            child.check_alive()
        if time.monotonic() > deadline:
            raise BenchSetupError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(0.1)


async def wait_for_celery(
    broker_url: str, workers: Sequence[Child], *, timeout_s: float = 60.0
) -> None:
    """Until every worker answers a control ping."""
    client = Celery("bench-ping", broker=broker_url)
    names = {f"{child.name}@bench" for child in workers}
    try:

        def all_answer() -> bool:
            replies = client.control.ping(timeout=0.5) or []
            return names <= {name for reply in replies for name in reply}

        deadline = time.monotonic() + timeout_s
        while not await asyncio.to_thread(all_answer):
            for child in workers:
                child.check_alive()
            if time.monotonic() > deadline:
                raise BenchSetupError(f"Celery workers {sorted(names)} did not start")
    finally:
        client.close()


def celery_client(broker_url: str) -> Celery:
    """A bare client that only sends tasks by name (it imports none of their code)."""
    return Celery(f"bench-client-{uuid.uuid4().hex[:6]}", broker=broker_url)


# --- memory ---------------------------------------------------------------------------


class RssSampler:
    """Samples the resident memory of some processes and their children in a thread."""

    def __init__(self, pids: Sequence[int], interval_s: float = 0.2) -> None:
        self._pids = list(pids)
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.peak_process_bytes = 0
        self.peak_total_bytes = 0

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self._interval_s)

    def _sample(self) -> None:
        total = 0
        for pid in self._pids:
            try:
                root = psutil.Process(pid)
                processes = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            for process in processes:
                try:
                    rss = int(process.memory_info().rss)
                except psutil.Error:
                    continue
                total += rss
                self.peak_process_bytes = max(self.peak_process_bytes, rss)
        self.peak_total_bytes = max(self.peak_total_bytes, total)


def megabytes(value: int) -> float:
    return round(value / 1_000_000, 1)
