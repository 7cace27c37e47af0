"""Scenario 2, time-to-alert: searches with a 1-minute frequency, a fake eBay publishing new
listings at random moments, a local webhook receiver noting when each alert arrives.

For every published listing: arrival - publish (what a user waits), and arrival minus the
moment the first search request that could see it reached the fake (the wait for the
next scheduled check taken out: fetching, storing, the outbox and delivery).

Celery mode (PostgreSQL, Redis DB 11, a monitoring worker, an alerts worker and beat) and
embedded mode (`uvicorn app.main:app` with the scheduler inside, SQLite) run side by
side, each with its own fake marketplace and receiver: both are light, mostly waiting.
Each search has a query of its own, so every listing published has exactly one alert to
wait for. After a first round that checks every search (and warms every worker process),
the next checks are spread evenly over one interval.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import random
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app import db
from app.models import Search, User
from app.security.signing import generate_secret
from bench import data
from bench.fake_marketplace import FakeMarketplace, Published
from bench.infra import (
    ALERT_REDIS_DB,
    LOG_LEVEL,
    BenchSetupError,
    Child,
    app_environment,
    clean_redis,
    free_port,
    migrate,
    postgres_database,
    start_celery,
    start_child,
    stop_children,
    wait_for_celery,
    wait_until,
)
from bench.sizes import AlertSize
from bench.stats import percentiles

SEED = 7_2025
REAL_INTERVAL_S = 60.0
SEARCHES_PER_USER = 5
# After the last publish, wait this much beyond one interval for the last alerts.
DRAIN_MARGIN_S = 10.0
WARM_UP_TIMEOUT_S = 60.0
PUBLISHED_TITLE = re.compile(r"pub-(\d+)$")


async def run(size: AlertSize, workdir: Path) -> dict[str, Any]:
    # Each mode on its own thread and event loop: one's waits never hold up the other.
    celery, embedded = await asyncio.gather(
        asyncio.to_thread(asyncio.run, _run_mode("celery", size, workdir / "celery")),
        asyncio.to_thread(asyncio.run, _run_mode("embedded", size, workdir / "embedded")),
    )
    compressed = size.interval_s < REAL_INTERVAL_S
    target_s = size.interval_s + 3
    return {
        "params": {
            "searches": size.searches,
            "interval_s": size.interval_s,
            "schedule_compressed": compressed,
            "publish_window_s": size.publish_window_s,
            "publish_rate_per_s": size.publish_rate_per_s,
            "upstream_latency_ms": size.latency_ms,
            "tick_s": size.tick_s,
        },
        "celery": celery,
        "embedded": embedded,
        "targets": [
            {
                "name": f"time-to-alert p99, s ({mode}; interval {size.interval_s:g} s + 3 s)",
                "value": result["arrival_minus_publish_s"]["p99"],
                "target": f"<= {target_s:g}",
                "met": result["lost"] == 0
                and (result["arrival_minus_publish_s"]["p99"] or 0) <= target_s,
            }
            for mode, result in (("Celery", celery), ("embedded", embedded))
        ],
    }


async def _run_mode(mode: str, size: AlertSize, workdir: Path) -> dict[str, Any]:
    env = app_environment(workdir)
    fake = FakeMarketplace.start(workdir, env, latency_ms=size.latency_ms, listings_per_query=0)
    receiver = WebhookReceiver().start()
    try:
        async with _database(mode, workdir) as database_url:
            engine = db.create_engine(database_url)
            try:
                queries = [f"{mode} {query}" for query in data.distinct_queries(size.searches)]
                await _seed(engine, queries, receiver.url)
                async with _app_processes(mode, size, workdir, database_url, fake) as children:
                    return await _measure(engine, size, fake, receiver, queries, children)
            finally:
                await engine.dispose()
    finally:
        receiver.close()
        fake.close()
        stop_children([fake.child])


@asynccontextmanager
async def _database(mode: str, workdir: Path) -> AsyncIterator[str]:
    if mode == "celery":
        async with postgres_database("alert") as url:
            yield url
    else:
        url = f"sqlite+aiosqlite:///{workdir / 'embedded.db'}"
        await migrate(url)
        yield url


async def _seed(engine: AsyncEngine, queries: list[str], webhook_base_url: str) -> None:
    user_count = max(1, len(queries) // SEARCHES_PER_USER)
    users = data.user_rows(user_count)
    for n, user in enumerate(users):
        user["webhook_url"] = f"{webhook_base_url}/hook/{n}"
        user["webhook_secret"] = generate_secret()
    specs = [
        data.SearchSpec(id=uuid.uuid4(), owner_id=users[n % user_count]["id"], query=query)
        for n, query in enumerate(queries)
    ]
    # Not due until the app is up; `_measure` spreads their first checks.
    later = [db.utcnow() + timedelta(days=1)] * len(specs)
    rows = data.search_rows(specs, channels=["webhook"], frequency_minutes=1, next_check_at=later)
    await data.insert_rows(engine, User, users)
    await data.insert_rows(engine, Search, rows)


@asynccontextmanager
async def _app_processes(
    mode: str, size: AlertSize, workdir: Path, database_url: str, fake: FakeMarketplace
) -> AsyncIterator[list[Child]]:
    settings: dict[str, object] = {
        "database_url": database_url,
        "debug": True,  # plain-http webhook URLs
        "ssrf_allow_loopback": True,  # the receiver is on 127.0.0.1
        "ebay_app_id": "bench-app-id",
        "ebay_cert_id": "bench-cert-id",
        "ebay_api_base_url": fake.base_url,
        "ebay_oauth_base_url": fake.base_url,
        "ebay_requests_per_minute": 100_000,
        # The response cache (10 s by default) shrinks with a compressed schedule, or a
        # search re-checked within it would be answered from the cache.
        "fetch_cache_ttl_s": 10 * min(1.0, size.interval_s / REAL_INTERVAL_S),
    }
    children: list[Child] = []
    if mode == "celery":
        with clean_redis(ALERT_REDIS_DB) as redis_url:
            env = app_environment(
                workdir, **settings, redis_url=redis_url, scheduler_tick_s=size.tick_s
            )
            try:
                children = [
                    _worker(
                        "monitoring",
                        "marketplace_monitoring",
                        size.monitoring_workers,
                        env,
                        workdir,
                    ),
                    _worker("alerts", "alerts", size.alert_workers, env, workdir),
                ]
                await wait_for_celery(redis_url, children)
                schedule = workdir / "celerybeat-schedule"
                children.append(
                    start_celery(
                        "beat",
                        ["beat", "-s", str(schedule), "-l", LOG_LEVEL],
                        app="app.workers.celery_app",
                        env=env,
                        workdir=workdir,
                    )
                )
                yield children
            finally:
                stop_children(children)
    else:
        port = free_port()
        env = app_environment(
            workdir, **settings, redis_url="", embedded_worker=True, embedded_tick_s=size.tick_s
        )
        api = start_child(
            "api",
            [
                "-m",
                "uvicorn",
                "app.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                LOG_LEVEL,
                "--no-access-log",
            ],
            env=env,
            workdir=workdir,
        )
        try:
            await wait_until(
                lambda: _answers(f"http://127.0.0.1:{port}/health"),
                timeout_s=60,
                what="the embedded app",
                children=[api],
            )
            yield [api]
        finally:
            stop_children([api])


def _worker(name: str, queue: str, concurrency: int, env: dict[str, str], workdir: Path) -> Child:
    return start_celery(
        name,
        [
            "worker",
            "-Q",
            queue,
            "-c",
            str(concurrency),
            "-n",
            f"{name}@bench",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            LOG_LEVEL,
        ],
        app="app.workers.celery_app",
        env=env,
        workdir=workdir,
    )


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


async def _measure(
    engine: AsyncEngine,
    size: AlertSize,
    fake: FakeMarketplace,
    receiver: WebhookReceiver,
    queries: list[str],
    children: list[Child],
) -> dict[str, Any]:
    # A first round checks every search at once: each worker process builds its database
    # pool and HTTP client (and eBay token) before anything is timed.
    async with engine.begin() as connection:
        await connection.execute(update(Search).values(next_check_at=db.utcnow()))
    deadline = time.monotonic() + WARM_UP_TIMEOUT_S
    while await data.count_checked(engine) < len(queries):
        if time.monotonic() > deadline:
            raise BenchSetupError(f"the first checks did not finish in {WARM_UP_TIMEOUT_S:g} s")
        await _sleep_watching(0.2, children)
    # Then the next checks spread over one interval, as a long-running service has them.
    rng = random.Random(SEED)
    now = db.utcnow()
    async with engine.begin() as connection:
        ids = list(await connection.scalars(select(Search.id).order_by(Search.name)))
        for search_id in ids:
            next_check = now + timedelta(seconds=rng.uniform(0, size.interval_s))
            await connection.execute(
                update(Search).where(Search.id == search_id).values(next_check_at=next_check)
            )
    stop = asyncio.Event()
    compressor = (
        asyncio.create_task(_compress_schedule(engine, size.interval_s, stop))
        if size.interval_s < REAL_INTERVAL_S
        else None
    )
    try:
        fake.publish_randomly(
            queries, rate_per_s=size.publish_rate_per_s, duration_s=size.publish_window_s, seed=SEED
        )
        await _sleep_watching(size.publish_window_s, children)
        published = fake.published()
        deadline = time.monotonic() + size.interval_s + DRAIN_MARGIN_S
        while time.monotonic() < deadline and not receiver.has_all(p.id for p in published):
            await _sleep_watching(0.5, children)
    finally:
        stop.set()
        if compressor is not None:
            await compressor
    return _latencies(published, fake.request_times(), receiver)


async def _sleep_watching(seconds: float, children: list[Child]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for child in children:
            child.check_alive()
        await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


async def _compress_schedule(engine: AsyncEngine, interval_s: float, stop: asyncio.Event) -> None:
    """After each check, bring the next one forward to `interval_s` after it (instead of a
    minute), so a short run still sees many intervals. A claimed search (leased for
    minutes) is left alone, and a row changed meanwhile is not overwritten."""
    interval = timedelta(seconds=interval_s)
    while not stop.is_set():
        async with engine.begin() as connection:
            rows = await connection.execute(
                select(Search.id, Search.last_checked_at, Search.next_check_at).where(
                    Search.last_checked_at.is_not(None)
                )
            )
            for row in rows.all():
                gap = row.next_check_at - row.last_checked_at
                if interval + timedelta(seconds=0.5) < gap <= timedelta(seconds=REAL_INTERVAL_S):
                    await connection.execute(
                        update(Search)
                        .where(Search.id == row.id, Search.next_check_at == row.next_check_at)
                        .values(next_check_at=row.last_checked_at + interval)
                    )
        await asyncio.sleep(0.2)


def _latencies(
    published: list[Published], request_times: dict[str, list[float]], receiver: WebhookReceiver
) -> dict[str, Any]:
    arrivals = receiver.arrivals()
    totals: list[float] = []
    overheads: list[float] = []
    lost = 0
    for pub in published:
        seen = arrivals.get(pub.id)
        if not seen:
            lost += 1
            continue
        arrival = min(seen)
        totals.append(arrival - pub.at)
        times = request_times.get(pub.q, [])
        index = bisect.bisect_left(times, pub.at)
        if index < len(times):
            overheads.append(arrival - times[index])
    return {
        "published": len(published),
        "alerted": len(published) - lost,
        "lost": lost,
        "repeats": sum(len(times) - 1 for times in arrivals.values() if times),
        "webhook_requests": receiver.request_count,
        "arrival_minus_publish_s": percentiles(totals),
        "arrival_minus_next_check_s": percentiles(overheads),
        "observed_check_interval_s": percentiles(
            [b - a for times in request_times.values() for a, b in itertools.pairwise(times)]
        ),
    }


class WebhookReceiver:
    """A webhook endpoint on 127.0.0.1 noting when each published listing arrives."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._arrivals: dict[int, list[float]] = {}
        self.request_count = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                arrived = time.time()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver._record(arrived, body)
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _record(self, arrived: float, body: bytes) -> None:
        try:
            listings = json.loads(body)["data"]["listings"]
        except (ValueError, KeyError, TypeError) as exc:
            raise BenchSetupError(f"unexpected webhook body: {body[:200]!r}") from exc
        with self._lock:
            self.request_count += 1
            for listing in listings:
                match = PUBLISHED_TITLE.search(listing.get("title") or "")
                if match:
                    self._arrivals.setdefault(int(match.group(1)), []).append(arrived)

    def arrivals(self) -> dict[int, list[float]]:
        with self._lock:
            return {key: list(times) for key, times in self._arrivals.items()}

    def has_all(self, ids: Any) -> bool:
        with self._lock:
            return all(key in self._arrivals for key in ids)
