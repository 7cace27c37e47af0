"""The files a newcomer and CI rely on agree with the code: .env.example, scripts, README."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from app.config import DEFAULT_SECRET_KEY, Settings

ROOT = Path(__file__).resolve().parent.parent
ENV_EXAMPLE = ROOT / ".env.example"
SEED_GUIDE_VARIABLES = [
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "EBAY_APP_ID",
    "EBAY_CERT_ID",
    "EBAY_DEV_ID",
    "SENDGRID_API_KEY",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "STRIPE_SECRET_KEY",
    "DEBUG",
    "SECRET_KEY",
]
SETTING_NAMES = sorted(name.upper() for name in Settings.model_fields)
ASSIGNMENT = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$")


def env_example_entries() -> dict[str, tuple[str, str]]:
    """NAME -> (value, the line just above it) for every assignment in .env.example."""
    entries: dict[str, tuple[str, str]] = {}
    previous = ""
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = ASSIGNMENT.match(line)
        if match:
            assert match.group(1) not in entries, f"{match.group(1)} is set twice"
            entries[match.group(1)] = (match.group(2), previous)
        if line.strip():
            previous = line
    return entries


@pytest.mark.parametrize("name", SETTING_NAMES)
def test_every_setting_is_in_env_example_under_a_comment(name: str) -> None:
    entries = env_example_entries()
    assert name in entries, f"{name} is missing from .env.example"
    _, line_above = entries[name]
    assert line_above.startswith("# "), f"{name} needs a comment line above it"
    assert len(line_above) > 10, f"{name}'s comment should explain it"


def test_env_example_sets_only_known_settings() -> None:
    assert set(env_example_entries()) <= set(SETTING_NAMES)


def test_env_example_has_every_variable_of_the_seed_guide() -> None:
    assert set(SEED_GUIDE_VARIABLES) <= set(env_example_entries())


def test_env_example_parses_into_embedded_mode_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.upper() in SETTING_NAMES:
            monkeypatch.delenv(key)

    settings = Settings(_env_file=ENV_EXAMPLE)

    assert settings.debug is True
    assert settings.is_sqlite
    assert settings.broker_url == ""
    assert settings.secret_key.get_secret_value() == DEFAULT_SECRET_KEY
    assert settings.model_dump() == Settings(_env_file=None).model_dump()


@pytest.mark.parametrize("script", ["setup.sh", ".ci/run"])
def test_scripts_are_executable_strict_bash(script: str) -> None:
    path = ROOT / script
    assert os.access(path, os.X_OK), f"chmod +x {script}"
    lines = path.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines
    syntax = subprocess.run(
        ["bash", "-n", str(path)], capture_output=True, text=True, timeout=30, check=False
    )
    assert syntax.returncode == 0, syntax.stderr


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


def commands_in(markdown: str) -> list[str]:
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", markdown, re.S)
    return [
        line.strip()
        for block in blocks
        for line in block.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-zA-Z][a-zA-Z0-9_-]*):", text, re.M))


def test_readme_quick_start_is_two_make_commands_that_exist() -> None:
    commands = commands_in(readme_section("Quick start"))
    assert commands == ["make run", "make test"]
    for command in commands:
        assert command.split()[1] in makefile_targets()


def test_ci_runs_the_readme_test_command() -> None:
    ci_script = (ROOT / ".ci" / "run").read_text()
    assert "make lint" in ci_script
    assert "make test" in ci_script


def test_every_make_target_has_help() -> None:
    text = (ROOT / "Makefile").read_text()
    documented = set(re.findall(r"^([a-zA-Z][a-zA-Z0-9_-]*):.*## ", text, re.M))
    assert makefile_targets() == documented
    assert {"help", "setup", "run", "test", "lint", "fmt", "migrate"} <= documented
    assert {"worker-monitoring", "worker-alerts", "beat", "flower"} <= documented


def test_readme_configuration_table_lists_every_setting() -> None:
    table = readme_section("Configuration")
    missing = [name for name in SETTING_NAMES if f"`{name}`" not in table]
    assert not missing, f"README.md's configuration table lacks {missing}"
