"""GET /metrics: the series after real checks and deliveries, the engine state read from the
database at scrape time, who may scrape, and several processes adding up (multiprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts import delivery
from app.config import Settings
from app.db import utcnow
from app.main import create_app
from app.models import Alert, Search, User
from app.monitoring import cycle
from tests.conftest import empty_tables, make_settings
from tests.factories import make_search, make_user
from tests.fakes.ebay import EbayFake, item_summary

ROOT = Path(__file__).resolve().parent.parent
METRICS_TOKEN = "scrape-token-for-tests"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


@pytest.fixture
def ebay() -> Iterator[EbayFake]:
    with EbayFake() as fake:
        yield fake


@pytest.fixture
def settings(database_url: str, ebay: EbayFake) -> Settings:
    return make_settings(
        database_url,
        ebay_api_base_url=ebay.base_url,
        ebay_oauth_base_url=ebay.base_url,
        ebay_app_id=ebay.app_id,
        ebay_cert_id=ebay.cert_id,
        fetch_cache_ttl_s=0,
    )


async def make_due(session: AsyncSession, search: Search, *, overdue_s: float = 0.0) -> None:
    await session.execute(
        update(Search)
        .where(Search.id == search.id)
        .values(next_check_at=utcnow() - timedelta(seconds=overdue_s))
    )
    await session.commit()


async def test_metrics_count_checks_upstream_calls_listings_matches_and_alerts(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession, user: User, ebay: EbayFake
) -> None:
    search = await make_search(
        session,
        owner=user,
        keywords=["iphone 13"],
        marketplaces=["ebay"],
        alert_channels=["in_app"],
        alert_on_first_check=True,
    )
    runtime = app.state.monitoring_runtime
    before = await scrape(client)

    ebay.set_items([item_summary(1, "iPhone 13 blue"), item_summary(2, "iPhone 13 red")])
    first = await cycle.run_cycle(runtime)
    ebay.add_items([item_summary(3, "iPhone 13 green")])
    await make_due(session, search)
    second = await cycle.run_cycle(runtime)
    assert (first.matches_new, second.matches_new) == (2, 1)

    waiting = await scrape(client)
    # A digest for the first two, one alert for the third: both wait in the outbox.
    assert value(waiting, "marketmon_outbox_pending") == 2

    delivered = await delivery.deliver_due(app.state.delivery_runtime)
    assert delivered.outcomes == {"sent": 2}

    ebay.fail_search(12001)  # eBay answers 400
    await make_due(session, search)
    failed = await cycle.run_cycle(runtime)
    assert failed.errors

    after = await scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("marketmon_search_checks_total", marketplace="ebay", outcome="ok") == 2
    assert grew("marketmon_search_checks_total", marketplace="ebay", outcome="failed") == 1
    assert grew("marketmon_upstream_requests_total", marketplace="ebay", status="ok") == 2
    assert grew("marketmon_upstream_requests_total", marketplace="ebay", status="400") == 1
    assert (
        grew("marketmon_upstream_request_duration_seconds_count", marketplace="ebay", status="ok")
        == 2
    )
    assert grew("marketmon_listings_stored_total", marketplace="ebay", kind="new") == 3
    assert grew("marketmon_listings_stored_total", marketplace="ebay", kind="updated") == 2
    assert grew("marketmon_matches_total", marketplace="ebay") == 3
    assert grew("marketmon_alerts_total", channel="in_app", status="sent") == 2
    assert grew("marketmon_time_to_alert_seconds_count", channel="in_app") == 2
    # Delivered within the test, so well inside the smallest buckets but one.
    assert grew("marketmon_time_to_alert_seconds_bucket", channel="in_app", le="60.0") == 2
    assert value(after, "marketmon_outbox_pending") == 0
    assert value(after, "marketmon_outbox_oldest_pending_age_seconds") == 0


async def test_outbox_backlog_and_scheduler_lag_are_read_from_the_database_at_scrape_time(
    client: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    now = utcnow()
    for n, age_s in enumerate((600, 60)):
        session.add(
            Alert(
                user_id=user.id,
                channel="email",
                kind="new_listing",
                idempotency_key=f"metrics:{n}",
                payload={"title": "x"},
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now - timedelta(seconds=age_s),
            )
        )
    await session.commit()
    overdue = await make_search(session, owner=user)
    await make_due(session, overdue, overdue_s=300)
    # A paused search or an inactive owner's search is not late: nobody would check it.
    paused = await make_search(session, owner=user, name="paused")
    await make_due(session, paused, overdue_s=3600)
    await session.execute(update(Search).where(Search.id == paused.id).values(is_active=False))
    await session.commit()
    sleeper = await make_user(session, email="inactive@example.com", is_active=False)
    await make_due(session, await make_search(session, owner=sleeper), overdue_s=3600)

    samples = await scrape(client)

    assert value(samples, "marketmon_outbox_pending") == 2
    assert 600 <= value(samples, "marketmon_outbox_oldest_pending_age_seconds") < 660
    assert 300 <= value(samples, "marketmon_scheduler_lag_seconds") < 360


async def test_scheduler_lag_is_zero_when_nothing_is_due(client: httpx.AsyncClient) -> None:
    samples = await scrape(client)
    assert value(samples, "marketmon_scheduler_lag_seconds") == 0
    assert value(samples, "marketmon_outbox_pending") == 0


@pytest.fixture
async def remote_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Requests that come from another machine (in-process: nothing leaves the test)."""
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def test_without_a_token_only_loopback_clients_may_scrape(
    client: httpx.AsyncClient, remote_client: httpx.AsyncClient
) -> None:
    assert (await client.get("/metrics")).status_code == 200
    refused = await remote_client.get("/metrics")
    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden"
    assert "METRICS_TOKEN" in refused.json()["detail"]


async def test_an_ipv4_mapped_loopback_client_is_local(app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=app, client=("::ffff:127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        assert (await http.get("/metrics")).status_code == 200


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_with_a_token_every_client_must_present_it(database_url: str) -> None:
    app = create_app(make_settings(database_url, metrics_token=METRICS_TOKEN))
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as http,
    ):
        missing = await http.get("/metrics")
        assert missing.status_code == 401
        assert missing.json()["code"] == "not_authenticated"
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = await http.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert right.status_code == 200
        assert "marketmon_outbox_pending" in right.text
        local = httpx.ASGITransport(app=app)  # loopback is no excuse once a token is set
        async with httpx.AsyncClient(transport=local, base_url="http://test") as loopback:
            assert (await loopback.get("/metrics")).status_code == 401
        await empty_tables(app)
    await app.state.engine.dispose()


COUNT_CHECKS = """
from app import metrics
metrics.record_checks("ebay", {count}, ok=True)
"""
RENDER = """
import sys
from app import metrics
sys.stdout.write(metrics.render(None).decode())
"""


def run_python(code: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_multiprocess_mode_adds_up_every_process(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    for count in (2, 3):  # two processes, like two Celery worker processes
        run_python(COUNT_CHECKS.format(count=count), env)

    text = run_python(RENDER, env)  # a third, like the API serving /metrics

    checks = value(parse(text), "marketmon_search_checks_total", marketplace="ebay", outcome="ok")
    assert checks == 5
    files = sorted(path.name for path in directory.iterdir())
    assert len(files) == 2, files
    assert all(name.startswith("counter_") for name in files)


def test_without_the_directory_a_process_reports_only_itself(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    text = run_python(COUNT_CHECKS.format(count=4) + RENDER, env)
    checks = value(parse(text), "marketmon_search_checks_total", marketplace="ebay", outcome="ok")
    assert checks == 4
    assert "process_cpu_seconds_total" in text  # the default in-process registry
