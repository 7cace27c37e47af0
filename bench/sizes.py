"""How big each scenario runs: `smoke` (CI, seconds), `quick` (`make bench`, about a
minute each) and `full` (`make bench-full`, the sizes the targets are stated for)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CycleSize:
    searches: int
    users: int
    distinct_queries: int
    # The seed-design baseline checks this many of the searches (a random sample) and its
    # wall time is scaled up to all of them: it is one independent task per search.
    baseline_searches: int
    listings_per_query: int = 50
    zipf_exponent: float = 1.0
    latency_ms: float = 150.0
    # Prefork children per Celery worker: the README's `-c 4`, for the engine and baseline.
    worker_concurrency: int = 4
    timeout_s: float = 600.0


@dataclass(frozen=True)
class AlertSize:
    searches: int
    # 60 = the real 1-minute frequency. Below that the benchmark compresses the schedule:
    # after each check it moves the search's next check to `interval_s` later.
    interval_s: float
    publish_window_s: float
    publish_rate_per_s: float
    latency_ms: float = 150.0
    tick_s: float = 1.0
    # Prefork children of the Celery workers (the README's `-c 4` and `-c 2`).
    monitoring_workers: int = 4
    alert_workers: int = 2


@dataclass(frozen=True)
class ApiSize:
    listings: int
    matches: int
    connections: int
    duration_s: float
    warmup_s: float
    api_workers: int = 2


@dataclass(frozen=True)
class Size:
    name: str
    cycle: CycleSize
    alert: AlertSize
    api: ApiSize


SIZES = {
    "smoke": Size(
        "smoke",
        CycleSize(
            searches=40,
            users=4,
            distinct_queries=8,
            baseline_searches=12,
            listings_per_query=5,
            worker_concurrency=2,
            timeout_s=60,
        ),
        AlertSize(
            searches=4,
            interval_s=3,
            publish_window_s=4,
            publish_rate_per_s=1.5,
            monitoring_workers=1,
            alert_workers=1,
        ),
        ApiSize(
            listings=1_000, matches=200, connections=8, duration_s=1, warmup_s=0.5, api_workers=1
        ),
    ),
    "quick": Size(
        "quick",
        CycleSize(searches=1_000, users=100, distinct_queries=100, baseline_searches=40),
        AlertSize(searches=40, interval_s=10, publish_window_s=20, publish_rate_per_s=2),
        ApiSize(listings=20_000, matches=5_000, connections=64, duration_s=5, warmup_s=2),
    ),
    "full": Size(
        "full",
        CycleSize(searches=10_000, users=1_000, distinct_queries=1_000, baseline_searches=200),
        AlertSize(searches=200, interval_s=60, publish_window_s=120, publish_rate_per_s=2),
        ApiSize(listings=100_000, matches=5_000, connections=64, duration_s=15, warmup_s=3),
    ),
}
