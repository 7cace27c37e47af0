"""Scenario 1, the check cycle: N searches from M users, queries Zipf-distributed over D
distinct ones, all due at once, checked against a fake eBay answering in 150 ms.

Three runs on the same data, each from empty listing tables:
- engine (Celery): the beat task (sent once) claims, groups by upstream query and queues
  one task per group; a real worker (`-c 4`) checks the groups. PostgreSQL; Redis as the
  broker, cache and rate-limit store.
- engine (in-process): the same claim and groups checked by `cycle.run_cycle` in one
  process, CHECK_CONCURRENCY groups at a time (the embedded runner's way, on PostgreSQL).
- baseline: the seed's design (`bench/baseline.py`), one task and one call per search,
  per-listing SELECT-then-INSERT, on a real worker with the same `-c 4`.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app import db
from app.config import Settings
from app.models import Search, User
from app.monitoring import cycle
from app.runtime import build_monitoring_runtime, close_monitoring_runtime
from bench import data
from bench.baseline import QUEUE as BASELINE_QUEUE
from bench.fake_marketplace import FakeMarketplace
from bench.infra import (
    CYCLE_REDIS_DB,
    LOG_LEVEL,
    BenchSetupError,
    Child,
    RssSampler,
    app_environment,
    celery_client,
    clean_redis,
    flush_redis,
    megabytes,
    postgres_database,
    start_celery,
    stop_children,
    wait_for_celery,
)
from bench.sizes import CycleSize

SEED = 20_251_125
EBAY_APP_ID = "bench-app-id"
EBAY_CERT_ID = "bench-cert-id"
# The fake has no quota: let the engine's shared rate limiter run without ever waiting.
UNLIMITED_RPM = 100_000


async def run(size: CycleSize, workdir: Path) -> dict[str, Any]:
    rng = random.Random(SEED)
    queries = data.zipf_choices(
        rng, data.distinct_queries(size.distinct_queries), size.searches, size.zipf_exponent
    )
    users = data.user_rows(size.users)
    specs = [
        data.SearchSpec(id=uuid.uuid4(), owner_id=users[n % len(users)]["id"], query=query)
        for n, query in enumerate(queries)
    ]
    sample = (
        specs if size.baseline_searches >= len(specs) else rng.sample(specs, size.baseline_searches)
    )
    env = app_environment(workdir)
    fake = FakeMarketplace.start(
        workdir, env, latency_ms=size.latency_ms, listings_per_query=size.listings_per_query
    )
    try:
        async with postgres_database("cycle") as database_url:
            engine = db.create_engine(database_url)
            try:
                await data.insert_rows(engine, User, users)
                due = [db.utcnow()] * len(specs)
                rows = data.search_rows(
                    specs, channels=["email"], frequency_minutes=5, next_check_at=due
                )
                await data.insert_rows(engine, Search, rows)
                with clean_redis(CYCLE_REDIS_DB) as redis_url:
                    settings = dict(
                        database_url=database_url,
                        redis_url=redis_url,
                        ebay_app_id=EBAY_APP_ID,
                        ebay_cert_id=EBAY_CERT_ID,
                        ebay_api_base_url=fake.base_url,
                        ebay_oauth_base_url=fake.base_url,
                        ebay_requests_per_minute=UNLIMITED_RPM,
                    )
                    worker_env = app_environment(workdir, **settings)
                    # Both workers start together (it takes a while) and idle until used.
                    workers = {
                        name: _start_worker(name, app, queue, size, worker_env, workdir)
                        for name, app, queue in (
                            ("engine", "app.workers.celery_app", "marketplace_monitoring"),
                            ("baseline", "bench.baseline", BASELINE_QUEUE),
                        )
                    }
                    try:
                        await wait_for_celery(redis_url, list(workers.values()))
                        celery_run = await _celery_run(
                            engine,
                            fake,
                            size,
                            workers["engine"],
                            redis_url,
                            len(specs),
                            queue="marketplace_monitoring",
                            task="monitoring.check_all_active_searches",
                        )
                        flush_redis(redis_url)
                        in_process = await _in_process_run(engine, fake, settings, len(specs))
                        flush_redis(redis_url)
                        await data.reset_checks(
                            engine,
                            due_at=db.utcnow(),
                            only=[s.id for s in sample] if len(sample) < len(specs) else (),
                        )
                        baseline = await _celery_run(
                            engine,
                            fake,
                            size,
                            workers["baseline"],
                            redis_url,
                            len(sample),
                            queue=BASELINE_QUEUE,
                            task="baseline.check_all_active_searches",
                        )
                    finally:
                        stop_children(list(workers.values()))
            finally:
                await engine.dispose()
    finally:
        fake.close()
        stop_children([fake.child])
    return _report(size, specs, sample, celery_run, in_process, baseline)


def _start_worker(
    name: str, app: str, queue: str, size: CycleSize, env: dict[str, str], workdir: Path
) -> Child:
    return start_celery(
        name,
        [
            "worker",
            "-Q",
            queue,
            "-c",
            str(size.worker_concurrency),
            "-n",
            f"{name}@bench",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            LOG_LEVEL,
        ],
        app=app,
        env=env,
        workdir=workdir,
    )


async def _celery_run(
    engine: AsyncEngine,
    fake: FakeMarketplace,
    size: CycleSize,
    worker: Child,
    broker_url: str,
    expected: int,
    *,
    queue: str,
    task: str,
) -> dict[str, Any]:
    """Queue the cycle's first task and time it until `expected` searches are checked."""
    client = celery_client(broker_url)
    try:
        fake.reset()
        with RssSampler([worker.pid]) as rss:
            started = time.monotonic()
            client.send_task(task, queue=queue)
            await _wait_for_checks(engine, expected, size.timeout_s, worker)
            wall_s = time.monotonic() - started
        measured = _measure(fake, await data.table_counts(engine), wall_s, expected)
        measured["peak_worker_rss_mb"] = megabytes(rss.peak_process_bytes)
        measured["peak_worker_tree_rss_mb"] = megabytes(rss.peak_total_bytes)
        return measured
    finally:
        client.close()


async def _in_process_run(
    engine: AsyncEngine, fake: FakeMarketplace, settings: dict[str, Any], expected: int
) -> dict[str, Any]:
    await data.reset_checks(engine, due_at=db.utcnow())
    fake.reset()
    # In-memory cache and limiter, as in the embedded runner.
    app_settings = Settings(_env_file=None, **{**settings, "redis_url": ""})
    runtime = build_monitoring_runtime(app_settings, db.create_session_factory(engine))
    try:
        started = time.monotonic()
        await cycle.run_cycle(runtime, concurrency=app_settings.check_concurrency)
        wall_s = time.monotonic() - started
    finally:
        await close_monitoring_runtime(runtime)
    measured = _measure(fake, await data.table_counts(engine), wall_s, expected)
    measured["concurrency"] = app_settings.check_concurrency
    return measured


async def _wait_for_checks(
    engine: AsyncEngine, expected: int, timeout_s: float, worker: Child
) -> None:
    deadline = time.monotonic() + timeout_s
    while await data.count_checked(engine) < expected:
        worker.check_alive()
        if time.monotonic() > deadline:
            raise BenchSetupError(
                f"{worker.name}: only {await data.count_checked(engine)} of {expected} searches "
                f"checked after {timeout_s:g} s; worker output:\n{worker.tail()}"
            )
        await asyncio.sleep(0.1)


def _measure(
    fake: FakeMarketplace, counts: dict[str, Any], wall_s: float, searches: int
) -> dict[str, Any]:
    stats = fake.stats()
    return {
        "searches_checked": searches,
        "wall_s": round(wall_s, 2),
        "upstream_calls": stats["search_requests"],
        "token_calls": stats["token_requests"],
        "calls_per_search_check": round(stats["search_requests"] / searches, 4),
        "listings_upserted": stats["items_served"],
        "listings_upserted_per_s": round(stats["items_served"] / wall_s, 1),
        "search_checks_per_s": round(searches / wall_s, 1),
        "listings_stored": counts["listings"],
        "matches_stored": counts["matches"],
        "failed_checks": counts["failed_checks"],
        "errors": counts["errors"],
    }


def _report(
    size: CycleSize,
    specs: list[data.SearchSpec],
    sample: list[data.SearchSpec],
    engine: dict[str, Any],
    in_process: dict[str, Any],
    baseline: dict[str, Any],
) -> dict[str, Any]:
    searches = len(specs)
    distinct = len({spec.query for spec in specs})
    scale = searches / len(sample)
    baseline["wall_s_all_searches"] = round(baseline["wall_s"] * scale, 1)
    baseline["is_scaled_from_sample"] = scale != 1
    expected_matches = searches * size.listings_per_query
    speedup = baseline["wall_s_all_searches"] / engine["wall_s"]
    d_over_n = size.distinct_queries / searches
    return {
        "params": {
            "searches": searches,
            "users": size.users,
            "distinct_queries": size.distinct_queries,
            "distinct_queries_drawn": distinct,
            "zipf_exponent": size.zipf_exponent,
            "listings_per_query": size.listings_per_query,
            "upstream_latency_ms": size.latency_ms,
            "worker_concurrency": size.worker_concurrency,
            "baseline_searches": len(sample),
        },
        "engine_celery": {**engine, "matches_expected": expected_matches},
        "engine_in_process": {**in_process, "matches_expected": expected_matches},
        "baseline": {**baseline, "matches_expected": len(sample) * size.listings_per_query},
        "ratios": {
            "speedup_celery_vs_baseline": round(speedup, 2),
            "speedup_in_process_vs_baseline": round(
                baseline["wall_s_all_searches"] / in_process["wall_s"], 2
            ),
            "calls_per_search_check_engine_vs_baseline": round(
                engine["calls_per_search_check"] / baseline["calls_per_search_check"], 4
            ),
            "listings_upserted_per_s_engine_vs_baseline": round(
                engine["listings_upserted_per_s"] / baseline["listings_upserted_per_s"], 2
            ),
        },
        "targets": [
            _target("cycle speed-up vs seed design (Celery)", speedup, ">=", 20),
            _target("cycle wall time, s (Celery)", engine["wall_s"], "<=", 20),
            _target(
                "upstream calls per search-check", engine["calls_per_search_check"], "<=", d_over_n
            ),
            _target("peak worker RSS, MB", engine["peak_worker_rss_mb"], "<=", 250),
        ],
    }


def _target(name: str, value: float, op: str, goal: float) -> dict[str, Any]:
    met = value >= goal if op == ">=" else value <= goal
    return {"name": name, "value": round(value, 4), "target": f"{op} {goal:g}", "met": met}
