"""The `marketmon` command, run as users run it: as a separate process."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory

from app import db
from app.cli import alembic_config, mask_url
from app.config import Settings
from app.services.templates import BUILTIN_TEMPLATES
from tests.factories import make_search, make_user
from tests.fakes.ebay import EbayFake

MARKETMON = str(Path(sys.executable).parent / "marketmon")
COMMAND_TIMEOUT_S = 120
SERVER_START_TIMEOUT_S = 60
SERVER_STOP_TIMEOUT_S = 30
STRONG_KEY = "a-random-secret-key-that-is-longer-than-thirty-two-bytes"


def _environment(**overrides: str) -> dict[str, str]:
    """This process's environment without any app setting, plus the overrides."""
    fields = {name.lower() for name in Settings.model_fields}
    env = {
        key: value
        for key, value in os.environ.items()
        if key.lower() not in fields and key != "MARKETMON_ADMIN_PASSWORD"
    }
    return env | overrides


def marketmon(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the console script in `cwd` (never the checkout, so no developer .env is read)."""
    return subprocess.run(
        [MARKETMON, *args],
        cwd=cwd,
        env=_environment(**(env or {})),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )


def sqlite_rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as connection:
        return connection.execute(sql).fetchall()


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def test_help_lists_every_command(tmp_path: Path) -> None:
    result = marketmon("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in (
        "run",
        "migrate",
        "seed",
        "create-admin",
        "set-plan",
        "config-check",
        "check",
        "worker",
        "beat",
        "doctor",
    ):
        assert name in result.stdout


def test_migrate_then_seed_leaves_a_migrated_database_with_the_builtin_templates(
    tmp_path: Path,
) -> None:
    database = tmp_path / "cli.db"
    env = {"DATABASE_URL": f"sqlite:///{database}"}

    migrated = marketmon("migrate", cwd=tmp_path, env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert sqlite_rows(database, "SELECT version_num FROM alembic_version") == [(head_revision(),)]

    for _ in range(2):  # seeding again updates in place, it never duplicates
        seeded = marketmon("seed", cwd=tmp_path, env=env)
        assert seeded.returncode == 0, seeded.stderr
        assert sqlite_rows(database, "SELECT count(*) FROM search_templates") == [
            (len(BUILTIN_TEMPLATES),)
        ]
    slugs = {row[0] for row in sqlite_rows(database, "SELECT slug FROM search_templates")}
    assert slugs == {template["slug"] for template in BUILTIN_TEMPLATES}


def test_seed_on_a_database_without_tables_asks_for_migrate(tmp_path: Path) -> None:
    result = marketmon("seed", cwd=tmp_path, env={"DATABASE_URL": f"sqlite:///{tmp_path}/x.db"})
    assert result.returncode == 1
    assert "marketmon migrate" in result.stderr
    assert "Traceback" not in result.stderr


def test_create_admin_creates_an_admin_then_promotes_an_existing_user(tmp_path: Path) -> None:
    database = tmp_path / "admin.db"
    env = {"DATABASE_URL": f"sqlite:///{database}"}
    assert marketmon("migrate", cwd=tmp_path, env=env).returncode == 0

    created = marketmon(
        "create-admin",
        "Boss@Example.com",
        "--password",
        "long-enough-password",
        cwd=tmp_path,
        env=env,
    )
    assert created.returncode == 0, created.stderr
    assert "admin role granted" in created.stderr
    assert "created=True" in created.stderr
    assert "long-enough-password" not in created.stdout + created.stderr
    ((email, is_admin, password_hash),) = sqlite_rows(
        database, "SELECT email, is_admin, password_hash FROM users"
    )
    assert (email, is_admin) == ("boss@example.com", 1)
    assert str(password_hash).startswith("$argon2id$")

    sqlite_rows(database, "UPDATE users SET is_admin = 0")
    promoted = marketmon("create-admin", "boss@example.com", cwd=tmp_path, env=env)
    assert promoted.returncode == 0, promoted.stderr
    assert "created=False" in promoted.stderr
    assert sqlite_rows(database, "SELECT is_admin, password_hash FROM users") == [
        (1, password_hash)
    ]


def test_create_admin_refuses_a_short_password_without_writing(tmp_path: Path) -> None:
    database = tmp_path / "admin.db"
    env = {"DATABASE_URL": f"sqlite:///{database}"}
    assert marketmon("migrate", cwd=tmp_path, env=env).returncode == 0

    result = marketmon(
        "create-admin", "new@example.com", "--password", "short", cwd=tmp_path, env=env
    )

    assert result.returncode == 1
    assert "password" in result.stderr
    assert sqlite_rows(database, "SELECT count(*) FROM users") == [(0,)]


def test_config_check_refuses_production_with_the_default_secret_key(tmp_path: Path) -> None:
    result = marketmon("config-check", cwd=tmp_path, env={"DEBUG": "False"})
    assert result.returncode == 1
    assert "SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_check_refuses_production_on_sqlite_unless_allowed(tmp_path: Path) -> None:
    env = {"DEBUG": "False", "SECRET_KEY": STRONG_KEY}
    refused = marketmon("config-check", cwd=tmp_path, env=env)
    assert refused.returncode == 1
    assert "ALLOW_SQLITE_IN_PRODUCTION" in refused.stderr

    allowed = marketmon("config-check", cwd=tmp_path, env=env | {"ALLOW_SQLITE_IN_PRODUCTION": "1"})
    assert allowed.returncode == 0, allowed.stderr


def test_config_check_prints_every_setting_with_secrets_masked(tmp_path: Path) -> None:
    env = {
        "SECRET_KEY": STRONG_KEY,
        "STRIPE_SECRET_KEY": "sk_test_do_not_print_me",
        "DATABASE_URL": "postgresql://monitor:db-password@127.0.0.1:5432/marketmon",
        "CELERY_BROKER_URL": "redis://:broker-password@127.0.0.1:6379/0",
    }
    result = marketmon("config-check", cwd=tmp_path, env=env)

    assert result.returncode == 0, result.stderr
    for name in Settings.model_fields:
        assert name.upper() in result.stdout
    for secret in (STRONG_KEY, "sk_test_do_not_print_me", "db-password", "broker-password"):
        assert secret not in result.stdout + result.stderr
    assert "postgresql+asyncpg://monitor:********@127.0.0.1:5432/marketmon" in result.stdout


def test_mask_url_hides_only_the_password() -> None:
    assert mask_url("redis://:pw@host:6379/0") == "redis://:********@host:6379/0"
    assert mask_url("postgresql://user:pw@host/db") == "postgresql://user:********@host/db"
    assert mask_url("postgresql://user@host/db") == "postgresql://user@host/db"
    assert mask_url("sqlite+aiosqlite:///./data/marketmon.db") == (
        "sqlite+aiosqlite:///./data/marketmon.db"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until_healthy(base_url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"marketmon run exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(
        f"marketmon run did not answer within {SERVER_START_TIMEOUT_S}s:\n{log_path.read_text()}"
    )


def _start_run(tmp_path: Path, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`marketmon run` in `tmp_path` on a free port, answering /health; (process, base URL)."""
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [MARKETMON, "run", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp_path,
            env=_environment(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_until_healthy(base_url, process, log_path)
    except BaseException:
        _stop(process)
        raise
    return process, base_url


def _stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=SERVER_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=SERVER_STOP_TIMEOUT_S)
        raise


def test_run_serves_the_seed_guide_flow_on_sqlite_from_a_clean_directory(tmp_path: Path) -> None:
    log_path = tmp_path / "server.log"
    # No .env and no DATABASE_URL: the embedded defaults (SQLite under ./data) apply.
    process, base_url = _start_run(tmp_path, log_path)
    try:
        with httpx.Client(base_url=base_url, timeout=10) as http:
            assert http.get("/health").json() == {"status": "ok"}
            assert http.get("/api/v1/docs").status_code == 200
            # The bare address leads to the dashboard.
            for root in (http.get("/"), http.head("/")):
                assert root.status_code == 307
                assert root.headers["location"] == "/app/"
            # /metrics answers a local scraper, but not a client behind a trusted local proxy.
            assert http.get("/metrics").status_code == 200
            proxied = http.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
            assert proxied.status_code == 403

            registered = http.post(
                "/api/v1/auth/register",
                headers={"Content-Type": "application/json"},
                json={
                    "email": "test@example.com",
                    "password": "testpassword123",
                    "full_name": "Test User",
                },
            )
            assert registered.status_code == 201, registered.text

            login = http.post(
                "/api/v1/auth/login",
                headers={"Content-Type": "application/json"},
                json={"email": "test@example.com", "password": "testpassword123"},
            )
            assert login.status_code == 200, login.text
            token = login.json()["access_token"]

            created = http.post(
                "/api/v1/searches/",
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                json={
                    "name": "My First Search",
                    "description": "Looking for iPhone deals",
                    "criteria": {
                        "keywords": ["iPhone 13", "iPhone 14"],
                        "max_price": 400,
                        "exclude_keywords": ["broken", "faulty"],
                        "location": "London",
                    },
                    "marketplaces": ["ebay"],
                    "alert_channels": ["email"],
                    "check_frequency_minutes": 30,
                },
            )
            assert created.status_code == 201, created.text
            assert created.json()["name"] == "My First Search"
    finally:
        returncode = _stop(process)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells why.
    log_text = log_path.read_text()
    assert returncode in (0, -signal.SIGTERM), log_text
    # The banner names where to point a browser: the dashboard first, then the API docs.
    assert f"Dashboard: {base_url}/app/\nAPI docs:  {base_url}/api/v1/docs\n" in log_text
    assert "Application shutdown complete" in log_text
    assert (tmp_path / "data" / "marketmon.db").is_file()


@pytest.mark.parametrize(
    ("command", "explains"),
    [
        ("worker", ["--queue", "monitoring", "alerts", "--concurrency", "warm shutdown"]),
        ("beat", ["--schedule", "SCHEDULER_TICK_S"]),
        ("doctor", ["database", "Redis", "broker", "credentials", "exits 1"]),
        ("check", ["SEARCH_ID", "Exits 1"]),
    ],
)
def test_new_commands_explain_themselves(tmp_path: Path, command: str, explains: list[str]) -> None:
    result = marketmon(command, "--help", cwd=tmp_path, env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    for words in explains:
        assert words in result.stdout, words


def _migrated(tmp_path: Path) -> dict[str, str]:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'ops.db'}"}
    migrated = marketmon("migrate", cwd=tmp_path, env=env)
    assert migrated.returncode == 0, migrated.stderr
    return env


def _finding(output: str, subject: str) -> str:
    """The doctor's line about `subject` (level, subject, detail)."""
    lines = [line for line in output.splitlines() if f" {subject} " in f" {line} "]
    assert lines, output
    return lines[0]


def test_doctor_reports_a_missing_redis_and_a_bad_ebay_key(tmp_path: Path) -> None:
    env = _migrated(tmp_path)
    with EbayFake() as ebay:
        result = marketmon(
            "doctor",
            cwd=tmp_path,
            env=env
            | {
                "REDIS_URL": f"redis://127.0.0.1:{_free_port()}/0",
                "EBAY_APP_ID": ebay.app_id,
                "EBAY_CERT_ID": "not-the-right-secret",
                "EBAY_API_BASE_URL": ebay.base_url,
                "EBAY_OAUTH_BASE_URL": ebay.base_url,
                # Only marketplaces whose base URL points at a local fake.
                "MARKETPLACES_ENABLED": "demo,ebay",
            },
        )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert _finding(result.stdout, "database").startswith("ok")
    redis_line = _finding(result.stdout, "redis")
    assert redis_line.startswith("FAIL")
    assert "unreachable" in redis_line
    assert "Is Redis running" in redis_line
    assert _finding(result.stdout, "broker").startswith("FAIL")
    ebay_line = _finding(result.stdout, "ebay")
    assert ebay_line.startswith("FAIL")
    assert "credentials not accepted" in ebay_line
    assert "401" in ebay_line
    assert "not-the-right-secret" not in result.stdout + result.stderr
    assert _finding(result.stdout, "sms").startswith("warn")
    assert "TWILIO_ACCOUNT_SID" in _finding(result.stdout, "sms")
    assert "problem(s)" in result.stderr


def test_doctor_passes_when_everything_required_answers(tmp_path: Path) -> None:
    env = _migrated(tmp_path)
    with EbayFake() as ebay:
        result = marketmon(
            "doctor",
            cwd=tmp_path,
            env=env
            | {
                "EBAY_APP_ID": ebay.app_id,
                "EBAY_CERT_ID": ebay.cert_id,
                "EBAY_API_BASE_URL": ebay.base_url,
                "EBAY_OAUTH_BASE_URL": ebay.base_url,
                "MARKETPLACES_ENABLED": "demo,ebay",
            },
        )
        assert ebay.token_calls == 1
    assert result.returncode == 0, result.stdout + result.stderr
    assert _finding(result.stdout, "ebay").startswith("ok")
    assert "credentials accepted" in _finding(result.stdout, "ebay")
    assert _finding(result.stdout, "redis").startswith("off")
    assert "Everything required answers" in result.stdout


def test_doctor_asks_for_migrations_on_a_database_without_them(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}", "MARKETPLACES_ENABLED": "demo"}
    result = marketmon("doctor", cwd=tmp_path, env=env)
    assert result.returncode == 1
    database_line = _finding(result.stdout, "database")
    assert database_line.startswith("FAIL")
    assert "marketmon migrate" in database_line


async def _search_in(database_url: str, **fields: object) -> str:
    engine = db.create_engine(database_url)
    try:
        async with db.create_session_factory(engine)() as session:
            user = await make_user(session, email="cli-check@example.com")
            search = await make_search(session, owner=user, **fields)  # type: ignore[arg-type]
            return str(search.id)
    finally:
        await engine.dispose()


def test_check_runs_one_search_now_and_reports_what_it_found(tmp_path: Path) -> None:
    env = _migrated(tmp_path)
    search_id = asyncio.run(
        _search_in(
            f"sqlite+aiosqlite:///{tmp_path / 'ops.db'}",
            name="Lego on demo",
            keywords=["lego"],
            marketplaces=["demo"],
        )
    )
    result = marketmon("check", search_id, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Checked 'Lego on demo' on demo:" in result.stdout
    assert "new matches" in result.stdout
    ((last_checked_at,),) = sqlite_rows(
        tmp_path / "ops.db",
        f"SELECT last_checked_at FROM searches WHERE id = '{search_id.replace('-', '')}'",
    )
    assert last_checked_at is not None


def test_check_of_an_unknown_or_malformed_search_id_says_so(tmp_path: Path) -> None:
    env = _migrated(tmp_path)
    unknown = marketmon("check", str(uuid.uuid4()), cwd=tmp_path, env=env)
    assert unknown.returncode == 1
    assert "No search with the id" in unknown.stderr
    malformed = marketmon("check", "not-a-uuid", cwd=tmp_path, env=env)
    assert malformed.returncode == 2
    assert "Traceback" not in malformed.stderr


async def _unverified_user_in(database_url: str, **fields: object) -> None:
    engine = db.create_engine(database_url)
    try:
        async with db.create_session_factory(engine)() as session:
            await make_user(session, email="unverified@example.com", email_verified=False, **fields)
    finally:
        await engine.dispose()


def test_verify_user_marks_the_address_and_with_phone_the_number_verified(
    tmp_path: Path,
) -> None:
    env = _migrated(tmp_path)
    asyncio.run(
        _unverified_user_in(
            f"sqlite+aiosqlite:///{tmp_path / 'ops.db'}",
            phone_number="+447700900123",
            phone_verified=False,
        )
    )

    email_only = marketmon("verify-user", "Unverified@example.com", cwd=tmp_path, env=env)
    rows_after_email = sqlite_rows(
        tmp_path / "ops.db", "SELECT email_verified, phone_verified FROM users"
    )
    both = marketmon("verify-user", "unverified@example.com", "--phone", cwd=tmp_path, env=env)
    unknown = marketmon("verify-user", "nobody@example.com", cwd=tmp_path, env=env)

    assert email_only.returncode == 0, email_only.stderr
    assert "email address of unverified@example.com is now verified" in email_only.stdout
    assert rows_after_email == [(1, 0)]
    assert both.returncode == 0, both.stderr
    assert sqlite_rows(tmp_path / "ops.db", "SELECT email_verified, phone_verified FROM users") == [
        (1, 1)
    ]
    assert unknown.returncode == 1
    assert "No user with the email" in unknown.stderr


def test_run_answers_a_50000_character_url_while_other_requests_stay_fast(
    tmp_path: Path,
) -> None:
    """Every request's access line is redacted on the event loop: a long path or query must
    cost that request little, and others nothing they would notice."""
    log_path = tmp_path / "server.log"
    process, base_url = _start_run(tmp_path, log_path)
    try:
        long_urls = [f"/health?x={'a' * 50_000}", f"/{'b' * 50_000}", f"/api/v1/{'c1-' * 16_700}"]

        async def scenario() -> list[float]:
            async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
                await http.get("/health")  # a warm connection for the probes

                async def probe_latencies() -> list[float]:
                    latencies = []
                    for _ in range(10):
                        started = time.perf_counter()
                        assert (await http.get("/health")).status_code == 200
                        latencies.append(time.perf_counter() - started)
                        await asyncio.sleep(0.02)
                    return latencies

                async with httpx.AsyncClient(base_url=base_url, timeout=30) as attacker:
                    long_answers, latencies = await asyncio.gather(
                        asyncio.gather(*(attacker.get(url) for url in long_urls * 3)),
                        probe_latencies(),
                    )
                for answer in long_answers:
                    assert answer.status_code < 500, answer.status_code
                return latencies

        started = time.perf_counter()
        latencies = asyncio.run(scenario())
        # Before redaction was linear, one such URL stalled the process for many seconds.
        assert time.perf_counter() - started < 10
        assert sorted(latencies)[len(latencies) // 2] < 0.1, latencies
    finally:
        _stop(process)
    access_lines = [line for line in log_path.read_text().splitlines() if "GET /" in line]
    long_lines = [line for line in access_lines if "characters cut" in line]
    assert len(long_lines) >= 3, access_lines[-5:]
    assert max(len(line) for line in access_lines) < 3_000
