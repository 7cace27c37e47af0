"""Pieces of the monitoring tasks that need no running worker."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
import redis

from app.marketplaces.base import Query
from app.monitoring import scheduler
from app.workers.monitoring_tasks import _first_in_tick
from tests.conftest import ON_CI

BROKER = "redis://127.0.0.1:6379/13"


def test_a_group_survives_the_trip_through_a_task_message() -> None:
    group = scheduler.CheckGroup(
        marketplace="ebay",
        query=Query(
            keywords=("iphone 13", '"iphone 14"'),
            min_price=Decimal("10.50"),
            max_price=Decimal("400"),
            currency="GBP",
            location="london",
            condition="used",
        ),
        search_ids=(uuid.uuid4(), uuid.uuid4()),
        first_check_ids=frozenset({uuid.uuid4()}),
    )
    assert scheduler.group_from_payload(scheduler.group_to_payload(group)) == group


def test_only_the_first_beat_in_a_tick_does_the_work() -> None:
    client = redis.Redis.from_url(BROKER)
    try:
        client.ping()
    except redis.RedisError as exc:
        if ON_CI:
            pytest.fail(f"Redis is required on CI: {exc}")
        pytest.skip(f"Redis not reachable: {exc}")
    client.flushdb()
    try:
        # A long tick, so both calls surely fall in the same one.
        results = [_first_in_tick(BROKER, 300.0) for _ in range(3)]
        assert results == [True, False, False]
    finally:
        client.flushdb()
        client.close()


def test_without_redis_every_tick_runs() -> None:
    assert _first_in_tick("amqp://guest@127.0.0.1//", 10.0) is True
