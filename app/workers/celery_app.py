"""The Celery application: broker, queues, routes and the delivery guarantees.

Start it with the seed's commands, e.g.
`celery -A app.workers.celery_app worker -Q marketplace_monitoring -l info -c 4`,
`celery -A app.workers.celery_app worker -Q alerts -l info -c 2`,
`celery -A app.workers.celery_app beat -l info` and `celery -A app.workers.celery_app flower`.

Messages only wake workers: the database rows (claimed searches, the alert outbox) are the
truth, so a lost or repeated message delays or repeats work harmlessly, never loses it.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from celery.signals import setup_logging, task_postrun, task_prerun
from kombu import Exchange, Queue

from app import logs
from app.config import Settings, get_settings

MONITORING_QUEUE = "marketplace_monitoring"
ALERTS_QUEUE = "alerts"
DEFAULT_BROKER_URL = "redis://localhost:6379/0"

# Task modules, listed explicitly so a worker registers exactly these and nothing by accident.
TASK_MODULES: list[str] = ["app.workers.monitoring_tasks", "app.workers.alert_tasks"]

# Hard time limit (90 s) < outbox lease (120 s) < visibility timeout (900 s): a task killed
# for running too long is recovered by its lease before Redis would hand the message out again.
VISIBILITY_TIMEOUT_S = 900
SOFT_TIME_LIMIT_S = 60
HARD_TIME_LIMIT_S = 90
BEAT_MAX_LOOP_INTERVAL_S = 30
CLEANUP_INTERVAL_S = 60 * 60


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings for these Settings (pure, so tests can read it without a broker)."""
    transport_options = {"visibility_timeout": VISIBILITY_TIMEOUT_S}
    return {
        "broker_url": settings.broker_url or DEFAULT_BROKER_URL,
        "result_backend": settings.celery_result_backend or None,
        "broker_transport_options": dict(transport_options),
        # Apps sharing one Redis use the shortest visibility timeout, so set it on both sides.
        "result_backend_transport_options": dict(transport_options),
        "broker_connection_retry_on_startup": True,
        "task_queues": (_queue(MONITORING_QUEUE), _queue(ALERTS_QUEUE)),
        "task_default_queue": MONITORING_QUEUE,
        "task_default_exchange": MONITORING_QUEUE,
        "task_default_routing_key": MONITORING_QUEUE,
        "task_routes": {
            "monitoring.*": {"queue": MONITORING_QUEUE},
            "alerts.*": {"queue": ALERTS_QUEUE},
        },
        # SIGTERM is a warm shutdown: running tasks finish (within the hard time limit, so
        # give containers a longer stop grace period) and reserved, unstarted messages are
        # never acknowledged, so Redis hands them to another worker.
        # Ack after the task returns, so a crash means redelivery (tasks are idempotent) ...
        "task_acks_late": True,
        # ... and a SIGKILLed/OOM-killed child's message is requeued, not acked.
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # Otherwise late-ack tasks keep running after a reconnect while Redis redelivers them.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_soft_time_limit": SOFT_TIME_LIMIT_S,
        "task_time_limit": HARD_TIME_LIMIT_S,
        "beat_max_loop_interval": BEAT_MAX_LOOP_INTERVAL_S,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "timezone": "UTC",
        "enable_utc": True,
        "result_expires": 24 * 60 * 60,
        "beat_schedule": {
            # Frequent ticks keep time-to-alert close to each search's own frequency; a tick
            # with nothing due costs one indexed query.
            "check-all-active-searches": {
                "task": "monitoring.check_all_active_searches",
                "schedule": settings.scheduler_tick_s,
                "options": {"expires": settings.scheduler_tick_s * 2},
            },
            "sweep-alert-outbox": {
                "task": "alerts.sweep_outbox",
                "schedule": settings.alert_sweep_interval_s,
                "options": {"expires": settings.alert_sweep_interval_s},
            },
            "cleanup-old-listings": {
                "task": "monitoring.cleanup_old_listings",
                "schedule": CLEANUP_INTERVAL_S,
            },
        },
    }


def _queue(name: str) -> Queue:
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


def create_celery_app(settings: Settings | None = None) -> Celery:
    """A Celery app configured from the settings (the environment and `.env` by default)."""
    application = Celery("marketmon", include=list(TASK_MODULES))
    application.conf.update(celery_config(settings or get_settings()))
    return application


@setup_logging.connect
def _configure_logging(loglevel: int | str | None = None, **_kwargs: Any) -> None:
    """Workers and beat log like the API (JSON in production, secrets masked) at `-l`."""
    settings = get_settings()
    logs.configure(json=settings.logs_as_json, level=loglevel or settings.log_level)


@task_prerun.connect
def _bind_task(
    task_id: str | None = None, task: Task[Any, Any] | None = None, **_kwargs: Any
) -> None:
    logs.bind_task(task_id, task.name if task is not None else None)


@task_postrun.connect
def _unbind_task(**_kwargs: Any) -> None:
    logs.unbind_task()


celery_app = create_celery_app()
