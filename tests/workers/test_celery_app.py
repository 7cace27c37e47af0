"""The Celery app's configuration, and a real worker process answering on the broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from celery.app.utils import find_app

from app.config import Settings
from app.workers import celery_app as celery_module
from app.workers.celery_app import (
    ALERTS_QUEUE,
    DEFAULT_BROKER_URL,
    MONITORING_QUEUE,
    create_celery_app,
)

ON_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
WORKER_START_TIMEOUT_S = 60
WORKER_STOP_TIMEOUT_S = 30


def settings(**values: Any) -> Settings:
    defaults: dict[str, Any] = {
        "redis_url": "",
        "celery_broker_url": "",
        "celery_result_backend": "",
    }
    return Settings(_env_file=None, **(defaults | values))


def celery_for(**values: Any) -> Celery:
    return create_celery_app(settings(**values))


def test_broker_defaults_to_local_redis_when_nothing_is_configured() -> None:
    assert celery_for().conf.broker_url == DEFAULT_BROKER_URL == "redis://localhost:6379/0"


def test_redis_url_is_the_broker_when_no_celery_broker_url_is_set() -> None:
    app = celery_for(redis_url="redis://127.0.0.1:6379/3")
    assert app.conf.broker_url == "redis://127.0.0.1:6379/3"


def test_celery_broker_url_wins_over_redis_url() -> None:
    app = celery_for(redis_url="redis://127.0.0.1:6379/3", celery_broker_url="redis://broker:1/0")
    assert app.conf.broker_url == "redis://broker:1/0"


def test_results_are_not_stored_unless_a_backend_is_configured() -> None:
    assert celery_for().conf.result_backend is None
    backend = "redis://127.0.0.1:6379/4"
    assert celery_for(celery_result_backend=backend).conf.result_backend == backend


def test_workers_know_the_monitoring_and_alerts_queues() -> None:
    conf = celery_for().conf
    assert {queue.name for queue in conf.task_queues} == {MONITORING_QUEUE, ALERTS_QUEUE}
    assert MONITORING_QUEUE == "marketplace_monitoring"
    assert ALERTS_QUEUE == "alerts"
    assert conf.task_default_queue == MONITORING_QUEUE


@pytest.mark.parametrize(
    ("task_name", "queue"),
    [
        ("monitoring.check_all_active_searches", MONITORING_QUEUE),
        ("monitoring.check_search", MONITORING_QUEUE),
        ("alerts.deliver", ALERTS_QUEUE),
        ("anything.else", MONITORING_QUEUE),
    ],
)
def test_tasks_are_routed_by_name_prefix(task_name: str, queue: str) -> None:
    route = celery_for().amqp.router.route({}, task_name)
    assert route["queue"].name == queue


def test_delivery_settings_follow_the_reliability_reference() -> None:
    conf = celery_for(celery_result_backend="redis://127.0.0.1:6379/4").conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] == 900
    assert conf.result_backend_transport_options["visibility_timeout"] == 900
    assert conf.task_soft_time_limit == 60
    assert conf.task_time_limit == 90
    assert conf.worker_cancel_long_running_tasks_on_connection_loss is True
    assert conf.beat_max_loop_interval == 30


def test_hard_time_limit_stays_below_the_visibility_timeout() -> None:
    conf = celery_for().conf
    assert conf.task_soft_time_limit < conf.task_time_limit
    assert conf.task_time_limit < conf.broker_transport_options["visibility_timeout"]


def test_messages_are_json_and_times_utc() -> None:
    conf = celery_for().conf
    assert conf.task_serializer == "json"
    assert conf.result_serializer == "json"
    assert conf.accept_content == ["json"]
    assert str(conf.timezone) == "UTC"
    assert conf.enable_utc is True


def test_task_modules_are_an_explicit_list() -> None:
    assert isinstance(celery_module.TASK_MODULES, list)
    assert list(celery_for().conf.include) == celery_module.TASK_MODULES


def test_celery_command_line_finds_the_app_by_module_path() -> None:
    assert find_app("app.workers.celery_app") is celery_module.celery_app


@pytest.fixture
def redis_broker_url() -> str:
    """The local Redis used as a throw-away broker; missing Redis fails on CI, skips locally."""
    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        if ON_CI:
            pytest.fail(f"Redis is required on CI and is not reachable at {TEST_REDIS_URL}: {exc}")
        pytest.skip(f"Redis not reachable at {TEST_REDIS_URL} (start redis-server): {exc}")
    finally:
        client.close()
    return TEST_REDIS_URL


def _environment(**overrides: str) -> dict[str, str]:
    """This process's environment without any app setting, plus the overrides."""
    fields = {name.lower() for name in Settings.model_fields}
    env = {key: value for key, value in os.environ.items() if key.lower() not in fields}
    return env | overrides


@pytest.fixture
def inspector(redis_broker_url: str) -> Iterator[Celery]:
    app = celery_for(celery_broker_url=redis_broker_url)
    yield app
    app.close()


def _stop(process: subprocess.Popen[bytes]) -> int:
    """Warm shutdown (SIGTERM), then SIGKILL of the process group this test started."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=WORKER_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=WORKER_STOP_TIMEOUT_S)
        raise


def test_alerts_worker_starts_consumes_its_queue_and_answers_ping(
    redis_broker_url: str, inspector: Celery, tmp_path: Path
) -> None:
    node = f"test-{uuid.uuid4().hex[:12]}@127.0.0.1"
    log_path = tmp_path / "worker.log"
    command = [
        *(str(Path(sys.executable).parent / "celery"), "-A", "app.workers.celery_app"),
        *("worker", "-Q", ALERTS_QUEUE, "-l", "info", "-c", "1", "-n", node),
        *("--without-gossip", "--without-mingle"),
    ]
    with log_path.open("wb") as log:
        # Run outside the checkout so a developer's .env cannot change what is tested.
        process = subprocess.Popen(
            command,
            cwd=tmp_path,
            env=_environment(CELERY_BROKER_URL=redis_broker_url),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        control = inspector.control.inspect(destination=[node], timeout=1.0)
        deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        replies = None
        while replies is None and time.monotonic() < deadline and process.poll() is None:
            replies = control.ping()
        assert replies == {node: {"ok": "pong"}}, log_path.read_text()

        queues = control.active_queues()
        assert queues is not None, log_path.read_text()
        assert [queue["name"] for queue in queues[node]] == [ALERTS_QUEUE]
    finally:
        returncode = _stop(process)
    assert returncode == 0, log_path.read_text()
