"""`python -m bench --smoke`: every scenario end to end at a tiny size, through real
PostgreSQL, Redis (databases 10 and 11), Celery workers, uvicorn and the fake marketplace.

It asserts the shape of the results and what does not depend on the machine: the engine
asks upstream less often per search than the seed design, stores what it should, and no
alert is lost. Never timing: that is what `make bench` is for.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis

from tests.conftest import ADMIN_POSTGRES_URL, ON_CI

ROOT = Path(__file__).resolve().parent.parent.parent
SMOKE_TIMEOUT_S = 600


def _services_or_skip() -> None:
    async def postgres() -> None:
        connection = await asyncpg.connect(ADMIN_POSTGRES_URL, timeout=5)
        await connection.close()

    try:
        asyncio.run(postgres())
        redis.Redis.from_url("redis://127.0.0.1:6379/10").ping()
    except (OSError, asyncpg.PostgresError, redis.RedisError) as exc:
        if ON_CI:
            pytest.fail(f"PostgreSQL and Redis are required on CI: {exc}")
        pytest.skip(f"PostgreSQL or Redis not reachable: {exc}")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    _services_or_skip()
    output = tmp_path_factory.mktemp("bench") / "smoke.json"
    finished = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--output", str(output)],
        cwd=ROOT,
        env={**os.environ, "BENCH_POSTGRES_URL": ADMIN_POSTGRES_URL},
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_S,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    results: dict[str, Any] = json.loads(output.read_text())
    results["printed"] = finished.stdout
    return results


def test_smoke_run_reports_every_scenario_in_the_table_and_the_json(smoke: dict[str, Any]) -> None:
    assert smoke["size"] == "smoke"
    assert set(smoke["scenarios"]) == {"cycle", "alert", "api"}
    for heading in ("1. Check cycle", "2. Time-to-alert", "3. API", "Targets"):
        assert heading in smoke["printed"]
    targets = [t for s in smoke["scenarios"].values() for t in s["targets"]]
    assert all({"name", "value", "target", "met"} <= set(t) for t in targets)


def test_engine_calls_upstream_once_per_query_and_the_seed_design_once_per_search(
    smoke: dict[str, Any],
) -> None:
    cycle = smoke["scenarios"]["cycle"]
    engine, in_process, baseline = (
        cycle["engine_celery"],
        cycle["engine_in_process"],
        cycle["baseline"],
    )
    drawn = cycle["params"]["distinct_queries_drawn"]
    assert engine["upstream_calls"] == in_process["upstream_calls"] == drawn
    assert baseline["calls_per_search_check"] == 1
    assert engine["calls_per_search_check"] < baseline["calls_per_search_check"]
    assert cycle["ratios"]["calls_per_search_check_engine_vs_baseline"] < 1
    for run in (engine, in_process, baseline):
        assert run["matches_stored"] == run["matches_expected"]
        assert run["failed_checks"] == 0
        assert run["wall_s"] > 0
    assert engine["peak_worker_rss_mb"] > 0


def test_every_published_listing_is_alerted_in_both_modes(smoke: dict[str, Any]) -> None:
    alert = smoke["scenarios"]["alert"]
    for mode in ("celery", "embedded"):
        result = alert[mode]
        assert result["published"] > 0
        assert result["lost"] == 0
        latency = result["arrival_minus_publish_s"]
        assert latency["count"] == result["published"]
        assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]


def test_api_answers_every_request_under_load(smoke: dict[str, Any]) -> None:
    api = smoke["scenarios"]["api"]
    assert api["params"]["matches_visible"] > 0
    for endpoint in ("health", "listings"):
        assert api[endpoint]["requests"] > 0
        assert api[endpoint]["errors"] == 0
    assert api["ratios"]["rps"] > 0
