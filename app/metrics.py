"""Prometheus metrics: every series the service exports, defined in this one place.

Counters and histograms are updated where the work happens (one call each in fetch, store
and the outbox). What describes the database as a whole (the outbox backlog, how late the
scheduler runs) is computed when `/metrics` is scraped, so every process reports the same.

With PROMETHEUS_MULTIPROC_DIR set in the environment before the process starts, each process
(uvicorn workers, Celery worker processes) writes its values to files in that directory and
`/metrics` adds them all up; files are named by host and pid, so containers can share one
directory. Without it, each process keeps its own in-memory registry (embedded mode).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from app.marketplaces.base import Blocked, RateLimited
from app.models.enums import AlertKind, AlertStatus

MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# Only alerts about listings have a time-to-alert: not the service's own notices or tests.
LISTING_ALERT_KINDS = frozenset({AlertKind.NEW_LISTING, AlertKind.PRICE_DROP, AlertKind.DIGEST})


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROCESS_DIR_ENV) or None


# Containers sharing the directory each have a pid 1: the host name tells them apart.
# ("_" separates the parts of the file names prometheus-client reads back.)
_HOST = socket.gethostname().replace("_", "-")


def _process_identifier() -> str:
    # Called on every update, so that a forked child (a Celery worker process) gets files
    # of its own.
    return f"{_HOST}-{os.getpid()}"


if (_directory := multiprocess_dir()) is not None:
    os.makedirs(_directory, exist_ok=True)
    values.ValueClass = values.MultiProcessValue(  # type: ignore[no-untyped-call]
        process_identifier=_process_identifier
    )


SEARCH_CHECKS = Counter(
    "marketmon_search_checks",
    "Search checks, by marketplace and outcome (ok or failed).",
    ["marketplace", "outcome"],
)
UPSTREAM_REQUESTS = Counter(
    "marketmon_upstream_requests",
    "Searches sent to a marketplace, by marketplace and status "
    "(ok, rate_limited, the HTTP status of an error, or error).",
    ["marketplace", "status"],
)
UPSTREAM_LATENCY = Histogram(
    "marketmon_upstream_request_duration_seconds",
    "Time a marketplace took to answer a search, by marketplace and status.",
    ["marketplace", "status"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
LISTINGS_STORED = Counter(
    "marketmon_listings_stored",
    "Listings stored, by marketplace and kind (new, or updated: seen before).",
    ["marketplace", "kind"],
)
CARDS_SKIPPED = Counter(
    "marketmon_listing_cards_skipped",
    "Listing cards (or feed entries) of a scraped page that could not be read and were "
    "skipped, by marketplace: a rising rate means the site changed its layout.",
    ["marketplace"],
)
MATCHES = Counter(
    "marketmon_matches",
    "New matches of a listing with a search, by marketplace.",
    ["marketplace"],
)
ALERTS = Counter(
    "marketmon_alerts",
    "Alert delivery attempts, by channel and the status they left the alert in "
    "(sent, pending = will retry, failed, dead = retries used up).",
    ["channel", "status"],
)
TIME_TO_ALERT = Histogram(
    "marketmon_time_to_alert_seconds",
    "From the check that first saw a listing (or its price drop) to the alert's delivery.",
    ["channel"],
    buckets=(1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 12 * 3600, 86400),
)


class _StoreResult(Protocol):
    listings_new: int
    listings_updated: int
    matches_new: int


class _FinishedAlert(Protocol):
    channel: str
    kind: str
    status: str
    created_at: datetime


def record_checks(marketplace: str, searches: int, *, ok: bool) -> None:
    """`searches` searches were checked on `marketplace` (or failed to be)."""
    SEARCH_CHECKS.labels(marketplace, "ok" if ok else "failed").inc(searches)


@contextmanager
def upstream_call(marketplace: str) -> Iterator[None]:
    """Count and time one search sent to a marketplace; an error's status is its HTTP
    status when the adapter reports one."""
    started = time.perf_counter()
    status = "ok"
    try:
        yield
    except Exception as exc:
        status = _error_status(exc)
        raise
    finally:
        UPSTREAM_REQUESTS.labels(marketplace, status).inc()
        UPSTREAM_LATENCY.labels(marketplace, status).observe(time.perf_counter() - started)


def record_cards_skipped(marketplace: str, count: int) -> None:
    CARDS_SKIPPED.labels(marketplace).inc(count)


def record_stored(marketplace: str, result: _StoreResult) -> None:
    """Listings and matches one fetch stored."""
    LISTINGS_STORED.labels(marketplace, "new").inc(result.listings_new)
    LISTINGS_STORED.labels(marketplace, "updated").inc(result.listings_updated)
    MATCHES.labels(marketplace).inc(result.matches_new)


def record_alert(alert: _FinishedAlert, now: datetime) -> None:
    """A delivery attempt finished and left `alert` in its new status."""
    ALERTS.labels(alert.channel, alert.status).inc()
    if alert.status == AlertStatus.SENT and alert.kind in LISTING_ALERT_KINDS:
        TIME_TO_ALERT.labels(alert.channel).observe(
            max(0.0, (now - alert.created_at).total_seconds())
        )


@dataclass(frozen=True)
class EngineState:
    """What the database says about the engine at scrape time."""

    outbox_pending: int
    outbox_oldest_pending_age_s: float
    scheduler_lag_s: float


def render(state: EngineState | None) -> bytes:
    """The exposition text: this process's (or every process's) series, then the engine
    state gauges (left out when the database could not be read)."""
    text = generate_latest(_process_registry())
    if state is not None:
        gauges = CollectorRegistry(auto_describe=False)
        gauges.register(_EngineStateCollector(state))
        text += generate_latest(gauges)
    return text


def _process_registry() -> CollectorRegistry:
    directory = multiprocess_dir()
    if directory is None:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return registry


class _EngineStateCollector(Collector):
    def __init__(self, state: EngineState) -> None:
        self._state = state

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "marketmon_outbox_pending",
            "Alerts waiting to be delivered (pending or being sent).",
            value=self._state.outbox_pending,
        )
        yield GaugeMetricFamily(
            "marketmon_outbox_oldest_pending_age_seconds",
            "Age of the oldest alert not yet delivered; 0 when none waits.",
            value=self._state.outbox_oldest_pending_age_s,
        )
        yield GaugeMetricFamily(
            "marketmon_scheduler_lag_seconds",
            "How long the most overdue active search has been due; 0 when none is.",
            value=self._state.scheduler_lag_s,
        )


def _error_status(exc: Exception) -> str:
    if isinstance(exc, RateLimited):
        return "rate_limited"
    if isinstance(exc, Blocked):
        return "blocked"
    status = getattr(exc, "status_code", None)
    return str(status) if isinstance(status, int) else "error"
