"""Fixtures of the API fuzz suite: the app on its own migrated SQLite database, billing on
against the fake Stripe, accounts to act as, and no way out of 127.0.0.1.

Schemathesis calls the app in-process (ASGI) from its own event-loop thread and runs the
app's lifespan there, so these fixtures are plain sync ones: nothing here touches the
pytest-asyncio loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from fastapi import FastAPI

from app import db
from app.config import Settings
from app.main import create_app
from app.models import Plan
from app.services import templates as template_service
from tests.billing.conftest import billing_settings
from tests.conftest import alembic_config
from tests.factories import make_listing, make_match, make_search, make_user
from tests.fakes.stripe import StripeFake

# The user every generated request is made as. Its token is made when the test module is
# imported, because Schemathesis builds the schema's examples and coverage cases then.
OWNER_ID = uuid.UUID("0f0e0d0c-0b0a-4908-8706-050403020100")
# Every host name resolves here, so user URLs (webhooks) pass the SSRF check and their
# delivery paths run; the network guard then refuses the connection before a packet leaves.
PUBLIC_ADDRESS = "93.184.215.14"


class CurrentApp:
    """An ASGI app that forwards to the app of the running test, counting requests.

    The schema is loaded when the test module is imported, and Schemathesis copies it (app
    included) into every test it generates, so it is given this stand-in; each test points
    it at a fresh app. Schemathesis ends the lifespan after every test and starts it again
    on the next request, which then reaches the new app.
    """

    def __init__(self) -> None:
        self.app: FastAPI | None = None
        self.requests = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert self.app is not None, "no fuzz_app fixture in this test"
        if scope["type"] == "http":
            self.requests += 1
        await self.app(scope, receive, send)


class Accounts:
    """Makes users straight in the fuzz database, and Bearer headers for them.

    Signing up through the API costs an Argon2 hash (half a second on a busy machine); the
    factories reuse one hash, so a fresh user per stateful scenario is cheap. Users are on
    the Business plan, so that plan limits refuse as few requests as possible and the fuzzer
    reaches the paths behind them (the limits have tests of their own). Each has an active
    and a paused search and a matched listing: generated searches are mostly refused (see
    RULES_THE_SCHEMA_CANNOT_STATE), and call chains need real objects to start from.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._signer_app = create_app(settings)

    def new_user(self, user_id: uuid.UUID | None = None) -> dict[str, str]:
        user = asyncio.run(self._insert_user(user_id or uuid.uuid4()))
        return bearer_headers(self._signer_app, user.id)

    async def _insert_user(self, user_id: uuid.UUID) -> Any:
        engine = db.engine_from_settings(self._settings)
        try:
            async with db.create_session_factory(engine)() as session:
                user = await make_user(
                    session, id=user_id, email=f"fuzz-{user_id.hex}@example.com", plan=Plan.BUSINESS
                )
                active = await make_search(session, owner=user, marketplaces=["demo"])
                await make_search(session, owner=user, name="Paused", is_active=False)
                listing = await make_listing(session, external_id=f"fuzz-{user_id.hex}")
                await make_match(session, search=active, listing=listing)
                return user
        finally:
            await engine.dispose()


def bearer_headers(app: FastAPI, user_id: uuid.UUID) -> dict[str, str]:
    """A Bearer header for the user, signed with the app's key, valid for a day: the
    Schemathesis cases built when the tests are collected carry it until they run."""
    token, _ = app.state.token_policy.signer.issue(
        subject=user_id, token_type="access", now=db.utcnow(), lifetime=timedelta(days=1)
    )
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def fuzz_database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated SQLite database of the fuzz suite's own: what it leaves behind touches no
    other test."""
    path: Path = tmp_path_factory.mktemp("fuzz") / "fuzz.db"
    url = f"sqlite+aiosqlite:///{path}"
    command.upgrade(alembic_config(url), "head")
    return url


@pytest.fixture(scope="session")
def fuzz_stripe() -> Iterator[StripeFake]:
    """Billing is on, against the fake Stripe on 127.0.0.1."""
    with StripeFake() as fake:
        yield fake


@pytest.fixture(scope="session")
def fuzz_settings(fuzz_database_url: str, fuzz_stripe: StripeFake) -> Settings:
    settings = billing_settings(fuzz_database_url, fuzz_stripe)
    asyncio.run(_load_templates(settings))
    # Loaded once above; loading them at every app start would cost each test half a second.
    return settings.model_copy(update={"load_templates_on_startup": False})


@pytest.fixture(scope="session")
def fuzz_accounts(fuzz_settings: Settings) -> Accounts:
    """The accounts maker, once the fuzzing owner (OWNER_ID) exists."""
    accounts = Accounts(fuzz_settings)
    accounts.new_user(OWNER_ID)
    return accounts


@pytest.fixture
def no_outside_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse every name lookup and connection that is not loopback, process-wide.

    Fuzzed profiles can hold webhook and Apprise URLs and searches can name any
    marketplace; whatever the app then tries to reach fails here instead of leaving the
    machine.
    """
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_loopback_host(host):
            raise socket.gaierror(socket.EAI_NONAME, f"{host!r}: lookups are off in the fuzz suite")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self: socket.socket, address: Any) -> None:
        _refuse_outside(self, address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        _refuse_outside(self, address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


@pytest.fixture
def fuzz_app(fuzz_settings: Settings, no_outside_network: None) -> FastAPI:
    """A fresh app per test on the shared database; Schemathesis runs its lifespan and ends
    it when the test ends."""
    app = create_app(fuzz_settings)
    app.state.resolve_host = _resolve_to_public_address
    return app


async def _load_templates(settings: Settings) -> None:
    engine = db.engine_from_settings(settings)
    try:
        async for session in db.session_scope(db.create_session_factory(engine)):
            await template_service.load_builtin_templates(session)
    finally:
        await engine.dispose()


async def _resolve_to_public_address(host: str) -> list[str]:
    return [PUBLIC_ADDRESS]


def _is_loopback_host(host: Any) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if str(host).lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(str(host).split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _refuse_outside(sock: socket.socket, address: Any) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    if not _is_loopback_host(address[0]):
        raise ConnectionRefusedError(f"{address[0]}: connections are off in the fuzz suite")
