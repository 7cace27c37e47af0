"""Test fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL gets a fresh database per run (created here, dropped at the end); on CI a
missing PostgreSQL fails the run instead of skipping half the suite.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from alembic import command
from alembic.config import Config
from fastapi import FastAPI
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db import Base
from app.main import create_app
from app.models import User
from tests.factories import make_user, token_headers
from tests.fakes.sendgrid import SendGridFake

ROOT = Path(__file__).resolve().parent.parent
ADMIN_POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
TEST_SECRET_KEY = "test-secret-key-with-more-than-thirty-two-bytes"
ON_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def alembic_config(database_url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "alembic"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logger"] = False
    return config


async def _postgres_admin(sql: str) -> None:
    connection = await asyncpg.connect(ADMIN_POSTGRES_URL, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def postgresql_database() -> Iterator[str]:
    """A throw-away PostgreSQL database URL (asyncpg driver), dropped after the run."""
    name = f"marketmon_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_postgres_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        if ON_CI:
            pytest.fail(f"PostgreSQL is required on CI and is not reachable: {exc}")
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    base = ADMIN_POSTGRES_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    yield f"{base}/{name}"
    asyncio.run(_postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """The URL of a migrated database; every test using it runs once per backend."""
    url: str = request.getfixturevalue(f"{request.param}_database")
    command.upgrade(alembic_config(url), "head")
    return url


UNREACHABLE_URL = "http://127.0.0.1:9"


def make_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "debug": True,
        "secret_key": TEST_SECRET_KEY,
        "login_ip_rate_limit": "10000/minute",
        "redis_url": "",
        "celery_broker_url": "",
        # Tests drive the engine themselves; no background scheduler touches their data.
        "embedded_worker": False,
        # Scraped marketplaces never leave the machine: without a fake, a check that reaches
        # one is refused at once by the discard port of 127.0.0.1.
        "gumtree_base_url": UNREACHABLE_URL,
        "craigslist_base_url": UNREACHABLE_URL + "/{city}",
        "craigslist_api_base_url": UNREACHABLE_URL,
        "vinted_base_url": UNREACHABLE_URL + "/{domain}",
        "reddit_base_url": UNREACHABLE_URL,
        "facebook_base_url": UNREACHABLE_URL,
        # No browser: facebook is unavailable unless a test gives it one.
        "facebook_browser_path": "/nonexistent/chromium",
        # The suite's plan rules are written from the free plan up; DEFAULT_PLAN=auto has
        # tests of its own.
        "default_plan": "free",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def sendgrid() -> Iterator[SendGridFake]:
    """A SendGrid fake on 127.0.0.1; read what it received from `accepted`."""
    with SendGridFake() as fake:
        yield fake


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app with its lifespan run; every table is emptied afterwards."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application
        await empty_tables(application)


async def empty_tables(application: FastAPI) -> None:
    """Delete every row, so the next test on this database starts from nothing."""
    async with application.state.engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            await connection.execute(delete(table))


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@pytest.fixture
async def session(app: FastAPI) -> AsyncIterator[AsyncSession]:
    """A session on the app's database for arranging and inspecting state; commit explicitly."""
    async with app.state.session_factory() as db_session:
        yield db_session


@pytest.fixture
async def user(session: AsyncSession) -> User:
    return await make_user(session, email="owner@example.com")


@pytest.fixture
async def other_user(session: AsyncSession) -> User:
    return await make_user(session, email="other@example.com")


@pytest.fixture
def headers(app: FastAPI, user: User) -> dict[str, str]:
    return token_headers(app, user)


@pytest.fixture
def other_headers(app: FastAPI, other_user: User) -> dict[str, str]:
    return token_headers(app, other_user)
