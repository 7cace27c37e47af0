"""Runs the chosen scenarios one after the other and gathers their results with the
machine they ran on."""

from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench import alert_latency, api_load, check_cycle
from bench.sizes import Size

Scenario = Callable[[Size, Path], Awaitable[dict[str, Any]]]

SCENARIOS: dict[str, Scenario] = {
    "cycle": lambda size, workdir: check_cycle.run(size.cycle, workdir),
    "alert": lambda size, workdir: alert_latency.run(size.alert, workdir),
    "api": lambda size, workdir: api_load.run(size.api, workdir),
}


async def run_all(size: Size, names: Sequence[str]) -> dict[str, Any]:
    results: dict[str, Any] = {
        "size": size.name,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "scenarios": {},
    }
    workdir = Path(tempfile.mkdtemp(prefix="marketmon-bench-"))
    try:
        for name in names:
            print(f"bench: {name} ({size.name}) ...", file=sys.stderr, flush=True)  # noqa: T201
            started = time.monotonic()
            result = await SCENARIOS[name](size, workdir / name)
            result["duration_s"] = round(time.monotonic() - started, 1)
            results["scenarios"][name] = result
    finally:
        if not os.environ.get("BENCH_KEEP_LOGS"):
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"bench: logs kept in {workdir}", file=sys.stderr)  # noqa: T201
    return results


def _machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
