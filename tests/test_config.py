"""Settings: production refuses unsafe defaults; URLs and origins are read as people write them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from app import db
from app.config import DEFAULT_SECRET_KEY, ConfigurationError, Settings
from app.main import create_app

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = "postgresql+asyncpg://marketmon@db.internal:5432/marketmon"
STRONG_KEY = "k" * 32


def _settings_env_names() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


@pytest.fixture(autouse=True)
def _no_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.upper() in _settings_env_names():
            monkeypatch.delenv(name)


def _production(**values: Any) -> Settings:
    values = {"debug": False, "secret_key": STRONG_KEY, "database_url": POSTGRES_URL} | values
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


# --- refusing to run unsafely --------------------------------------------------------------


def test_production_refuses_the_default_secret_key() -> None:
    with pytest.raises(ConfigurationError, match="SECRET_KEY"):
        _production(secret_key=DEFAULT_SECRET_KEY)


def test_production_refuses_the_default_when_no_key_is_given() -> None:
    with pytest.raises(ConfigurationError, match="SECRET_KEY"):
        Settings(_env_file=None, debug=False, database_url=POSTGRES_URL)


def test_production_refuses_a_key_one_byte_short_of_32() -> None:
    with pytest.raises(ConfigurationError, match="at least 32 bytes"):
        _production(secret_key="k" * 31)


def test_the_refusal_tells_how_to_make_a_key() -> None:
    with pytest.raises(ConfigurationError) as refused:
        _production(secret_key="short")

    assert "secrets.token_urlsafe" in str(refused.value)


def test_production_refuses_sqlite_unless_explicitly_allowed() -> None:
    sqlite = "sqlite+aiosqlite:///./data/marketmon.db"

    with pytest.raises(ConfigurationError, match="SQLite"):
        _production(database_url=sqlite)

    assert _production(database_url=sqlite, allow_sqlite_in_production=True).is_sqlite


def test_production_accepts_postgresql_and_a_32_byte_key() -> None:
    settings = _production()

    assert settings.debug is False
    assert settings.secret_key.get_secret_value() == STRONG_KEY
    assert not settings.is_sqlite


def test_development_runs_on_the_defaults() -> None:
    settings = Settings(_env_file=None)

    assert settings.debug is True
    assert settings.is_sqlite
    assert settings.secret_key.get_secret_value() == DEFAULT_SECRET_KEY


def test_debug_false_from_the_environment_is_enforced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEBUG", "false")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db.internal/marketmon")

    with pytest.raises(ConfigurationError, match="SECRET_KEY"):
        Settings(_env_file=None)

    monkeypatch.setenv("SECRET_KEY", STRONG_KEY)
    assert Settings(_env_file=None).debug is False


def test_the_secret_key_is_not_shown_in_the_settings_repr() -> None:
    assert STRONG_KEY not in repr(_production())


# --- the service refuses to start ----------------------------------------------------------


def _import_app_main(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k.upper() not in _settings_env_names()}
    clean["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-c", "import app.main"],
        cwd=tmp_path,  # no .env here
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_service_refuses_to_start_in_production_with_the_default_key(
    tmp_path: Path,
) -> None:
    result = _import_app_main(tmp_path, DEBUG="False", DATABASE_URL=POSTGRES_URL)

    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert "ConfigurationError" in last_line
    assert "SECRET_KEY" in last_line


def test_the_service_starts_in_production_with_safe_settings(tmp_path: Path) -> None:
    result = _import_app_main(
        tmp_path, DEBUG="False", DATABASE_URL=POSTGRES_URL, SECRET_KEY=STRONG_KEY
    )

    assert result.returncode == 0, result.stderr


# --- reading values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@db:5432/mm", "postgresql+asyncpg://u:p@db:5432/mm"),
        ("postgres://u:p@db:5432/mm", "postgresql+asyncpg://u:p@db:5432/mm"),
        ("postgresql+psycopg2://u@db/mm", "postgresql+asyncpg://u@db/mm"),
        ("postgresql+asyncpg://u@db/mm", "postgresql+asyncpg://u@db/mm"),
        ("sqlite:///./data/mm.db", "sqlite+aiosqlite:///./data/mm.db"),
        ("sqlite:////var/lib/mm.db", "sqlite+aiosqlite:////var/lib/mm.db"),
        ("sqlite+aiosqlite:///./x.db", "sqlite+aiosqlite:///./x.db"),
    ],
)
def test_database_urls_get_the_async_driver(given: str, expected: str) -> None:
    assert Settings(_env_file=None, database_url=given).database_url == expected


def test_a_database_url_from_the_environment_is_normalised_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u@db/mm")

    assert Settings(_env_file=None).database_url == "postgresql+asyncpg://u@db/mm"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://app.example.com", ["https://app.example.com"]),
        (
            "https://app.example.com, https://admin.example.com",
            ["https://app.example.com", "https://admin.example.com"],
        ),
        ("https://a.example,,https://b.example,", ["https://a.example", "https://b.example"]),
        ('["https://app.example.com"]', ["https://app.example.com"]),
        ("", []),
    ],
)
def test_cors_origins_are_read_from_a_comma_separated_variable(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: list[str]
) -> None:
    monkeypatch.setenv("CORS_ORIGINS", raw)

    assert Settings(_env_file=None).cors_origins == expected


def test_cors_origins_are_read_from_a_dotenv_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("CORS_ORIGINS=https://a.example,https://b.example\n")

    settings = Settings(_env_file=env_file)

    assert settings.cors_origins == ["https://a.example", "https://b.example"]


def test_the_broker_is_the_celery_broker_url_or_else_redis_url() -> None:
    redis_only = Settings(_env_file=None, redis_url="redis://r:6379/0")
    both = Settings(
        _env_file=None, redis_url="redis://r:6379/0", celery_broker_url="amqp://mq:5672//"
    )

    assert redis_only.broker_url == "redis://r:6379/0"
    assert both.broker_url == "amqp://mq:5672//"
    assert Settings(_env_file=None).broker_url == ""


# --- production HTTP settings ---------------------------------------------------------------


def test_production_refuses_cors_for_every_origin() -> None:
    with pytest.raises(ConfigurationError, match="CORS_ORIGINS"):
        _production(cors_origins="https://app.example.com,*")
    assert _production(cors_origins="https://app.example.com").cors_origins == [
        "https://app.example.com"
    ]
    assert Settings(_env_file=None, cors_origins="*").cors_origins == ["*"]  # development


async def test_docs_can_be_switched_off() -> None:
    for enabled, status in ((True, 200), (False, 404)):
        app = create_app(
            Settings(_env_file=None, database_url="sqlite+aiosqlite://", api_docs_enabled=enabled)
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            assert (await http.get("/api/v1/docs")).status_code == status
            assert (await http.get("/api/v1/openapi.json")).status_code == status
            assert (await http.get("/health")).status_code == 200
        await app.state.engine.dispose()


def test_pool_sizes_reach_the_postgresql_engine() -> None:
    engine = db.engine_from_settings(_production(database_pool_size=3, database_max_overflow=7))
    try:
        assert engine.pool.size() == 3  # type: ignore[attr-defined]
        assert engine.pool._max_overflow == 7  # type: ignore[attr-defined]
    finally:
        engine.sync_engine.dispose()
