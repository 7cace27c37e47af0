"""docker-compose.yml and the Dockerfile, checked without Docker (it does not run on our
machines or CI): the file parses, every command is a real entry point of this project and
parses as its program would parse it, every variable is a setting, every dependency exists.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from celery.app.utils import find_app
from celery.bin.base import CLIContext
from celery.bin.celery import celery as celery_cli
from flower.options import options as flower_options
from typer.main import get_command
from uvicorn.importer import import_from_string
from uvicorn.main import main as uvicorn_cli

from app.cli import cli as marketmon_cli
from app.config import Settings
from app.workers.celery_app import ALERTS_QUEUE, MONITORING_QUEUE

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
CELERY_APP = "app.workers.celery_app"
SETTING_NAMES = {name.upper() for name in Settings.model_fields}
# Read from the environment by a library, not by Settings; the README documents each.
LIBRARY_VARIABLES = {"PROMETHEUS_MULTIPROC_DIR"}
# Variables the compose file itself interpolates (from the shell or .env).
COMPOSE_VARIABLES = {"POSTGRES_PASSWORD"}
REQUIRED_SERVICES = {
    "migrate",
    "api",
    "worker-monitoring",
    "worker-alerts",
    "beat",
    "flower",
    "postgres",
    "redis",
}


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def app_services() -> dict[str, dict[str, Any]]:
    """The services that run this project's image."""
    return {name: s for name, s in services().items() if "build" in s}


def command_of(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def celery_params(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """(subcommand, its parsed options) of `celery --app=... <subcommand> ...`, parsed by
    Celery's own command line; a misspelt option or bad value raises."""
    assert argv[0] == "celery", argv
    assert argv[1] == f"--app={CELERY_APP}", "the celery app path must be the project's"
    subcommand, args = argv[2], argv[3:]
    assert subcommand in celery_cli.commands, f"celery has no '{subcommand}' command"
    context = celery_cli.commands[subcommand].make_context(
        subcommand,
        list(args),
        obj=CLIContext(app=find_app(CELERY_APP), no_color=True, workdir=None, quiet=True),
    )
    return subcommand, context.params


def check_uvicorn(argv: list[str]) -> dict[str, Any]:
    assert argv[0] == "uvicorn", argv
    params = uvicorn_cli.make_context("uvicorn", argv[1:]).params
    assert import_from_string(params["app"]).__class__.__name__ == "FastAPI"
    return params


def test_compose_file_parses_and_has_every_service_of_the_stack() -> None:
    assert set(services()) >= REQUIRED_SERVICES


@pytest.mark.parametrize("name", sorted(REQUIRED_SERVICES - {"postgres", "redis"}))
def test_every_app_service_runs_a_real_entry_point(name: str) -> None:
    service = app_services()[name]
    argv = command_of(service)
    if argv[0] == "uvicorn":
        check_uvicorn(argv)
    elif argv[0] == "marketmon":
        group = get_command(marketmon_cli)
        assert argv[1] in getattr(group, "commands", {}), f"marketmon has no '{argv[1]}' command"
    else:
        celery_params(argv)


def test_workers_consume_the_two_queues_of_the_celery_app() -> None:
    consumed = {}
    for name in ("worker-monitoring", "worker-alerts"):
        subcommand, params = celery_params(command_of(services()[name]))
        assert subcommand == "worker"
        consumed[name] = params["queues"]
    assert consumed == {"worker-monitoring": [MONITORING_QUEUE], "worker-alerts": [ALERTS_QUEUE]}


def test_api_serves_the_app_on_8000_behind_proxies() -> None:
    api = services()["api"]
    params = check_uvicorn(command_of(api))
    assert params["port"] == 8000
    assert params["proxy_headers"] is True
    assert params["timeout_graceful_shutdown"] is not None
    assert "8000:8000" in api["ports"]


def test_flower_listens_on_5555_for_the_local_host_only() -> None:
    flower = services()["flower"]
    subcommand, params = celery_params(command_of(flower))
    assert subcommand == "flower"
    for option in params["tornado_argv"]:
        assert option.split("=", 1)[0].lstrip("-") in flower_options, option
    assert "--port=5555" in params["tornado_argv"]
    assert flower["ports"] == ["127.0.0.1:5555:5555"]


def test_worker_healthchecks_ping_their_own_node() -> None:
    for name in ("worker-monitoring", "worker-alerts"):
        service = services()[name]
        _, worker = celery_params(command_of(service))
        kind, script = service["healthcheck"]["test"]
        assert kind == "CMD-SHELL"
        # $$ is compose's escape for a literal $ (the container's HOSTNAME).
        subcommand, ping = celery_params(shlex.split(script.replace("$$HOSTNAME", "host")))
        assert (subcommand, ping["command"]) == ("inspect", "ping")
        assert ping["destination"] == [worker["hostname"].split("@")[0] + "@host"]


def test_the_api_and_workers_start_after_the_one_shot_migration() -> None:
    every = services()
    assert command_of(every["migrate"]) == ["marketmon", "migrate"]
    assert every["migrate"]["restart"] == "no"
    for name in ("api", "worker-monitoring", "worker-alerts"):
        assert every[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
        assert every[name]["depends_on"]["postgres"] == {"condition": "service_healthy"}


def test_every_dependency_is_a_service_and_waits_on_a_healthcheck_it_has() -> None:
    every = services()
    for name, service in every.items():
        for target, rule in service.get("depends_on", {}).items():
            assert target in every, f"{name} depends on unknown service {target}"
            if rule["condition"] == "service_healthy":
                assert "test" in every[target].get("healthcheck", {}), target


def test_app_services_read_env_and_set_only_known_settings() -> None:
    for name, service in app_services().items():
        assert service["env_file"] == ".env", name
        unknown = set(service.get("environment", {})) - SETTING_NAMES - LIBRARY_VARIABLES
        assert not unknown, f"{name} sets variables no setting reads: {unknown}"


def test_interpolated_variables_are_the_documented_ones() -> None:
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE_FILE.read_text()))
    assert used <= COMPOSE_VARIABLES | SETTING_NAMES
    readme = (ROOT / "README.md").read_text()
    for variable in used | LIBRARY_VARIABLES:
        assert variable in readme, f"README.md should explain {variable}"


def test_processes_share_one_metrics_directory_on_a_volume() -> None:
    every = services()
    volumes = compose()["volumes"]
    for name in ("api", "worker-monitoring", "worker-alerts"):
        directory = every[name]["environment"]["PROMETHEUS_MULTIPROC_DIR"]
        mounts = dict(volume.split(":", 1)[::-1] for volume in every[name]["volumes"])
        assert mounts[directory] in volumes, name


def test_postgres_and_redis_keep_their_data_on_volumes_and_report_health() -> None:
    every, volumes = services(), compose()["volumes"]
    for name in ("postgres", "redis"):
        assert every[name]["healthcheck"]["test"]
        for volume in every[name]["volumes"]:
            assert volume.split(":", 1)[0] in volumes


def test_workers_get_longer_than_the_task_time_limit_to_stop() -> None:
    celery_app = find_app(CELERY_APP)
    for name in ("worker-monitoring", "worker-alerts"):
        grace_s = int(services()[name]["stop_grace_period"].rstrip("s"))
        assert grace_s > celery_app.conf.task_time_limit, name


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in (raw.strip() for raw in text.splitlines())
        if line and not line.startswith("#")
    ]


def test_dockerfile_is_slim_cached_non_root_and_checks_health() -> None:
    instructions = dockerfile_instructions()
    keywords = [keyword for keyword, _ in instructions]
    arguments = dict(reversed(instructions))  # first occurrence of each keyword
    assert arguments["FROM"] == "python:3.11-slim"
    copies = [argument for keyword, argument in instructions if keyword == "COPY"]
    # Dependencies are installed from pyproject.toml before the code is copied in.
    assert copies[0] == "pyproject.toml ./"
    second_copy = keywords.index("COPY", keywords.index("COPY") + 1)
    assert keywords.index("RUN") < second_copy
    user = [argument for keyword, argument in instructions if keyword == "USER"]
    assert user
    assert user[-1] not in {"root", "0"}
    assert "/health" in arguments["HEALTHCHECK"]
    default = arguments["CMD"]
    check_uvicorn([str(part) for part in yaml.safe_load(default)])


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_image() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for entry in (".env", ".venv", "data", ".git"):
        assert entry in ignored
