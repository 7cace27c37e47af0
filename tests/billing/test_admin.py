"""Setting a plan by hand: the admin endpoint and `marketmon set-plan`, both audited; and
no other route lets a user change their own plan."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import AuditLog, Plan, User
from tests.billing.conftest import count_audit, fresh_user
from tests.factories import make_search, make_user, token_headers

MARKETMON = str(Path(sys.executable).parent / "marketmon")


def marketmon(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The console script, run in `cwd` with no app setting but `env` (no .env is read)."""
    fields = {name.lower() for name in Settings.model_fields}
    clean = {key: value for key, value in os.environ.items() if key.lower() not in fields}
    return subprocess.run(
        [MARKETMON, *args],
        cwd=cwd,
        env=clean | env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def plan_url(user_id: uuid.UUID | str) -> str:
    return f"/api/v1/admin/users/{user_id}/plan"


async def test_an_admin_sets_a_users_plan_and_it_is_audited(
    client: httpx.AsyncClient, app: FastAPI, session: AsyncSession, user: User
) -> None:
    admin = await make_user(session, email="admin@example.com", is_admin=True)

    response = await client.put(
        plan_url(user.id),
        json={"plan": "business", "reason": "ticket 42"},
        headers=token_headers(app, admin),
    )

    assert response.status_code == 200, response.text
    assert response.json() == {
        "user_id": str(user.id),
        "previous_plan": "free",
        "plan": "business",
        "changed": True,
        "paused_search_ids": [],
        "adjusted_search_ids": [],
    }
    assert (await fresh_user(session, user)).plan == "business"
    (audit,) = await session.scalars(select(AuditLog).where(AuditLog.user_id == user.id))
    assert audit.actor_id == admin.id
    assert audit.action == "plan_changed"
    assert audit.details["source"] == "admin"
    assert audit.details["reason"] == "ticket 42"


async def test_an_admin_downgrade_reports_the_paused_searches(
    client: httpx.AsyncClient, app: FastAPI, session: AsyncSession
) -> None:
    admin = await make_user(session, email="admin@example.com", is_admin=True)
    customer = await make_user(session, email="pro@example.com", plan=Plan.PRO)
    searches = [await make_search(session, owner=customer, name=f"s{n}") for n in range(3)]

    response = await client.put(
        plan_url(customer.id), json={"plan": "FREE"}, headers=token_headers(app, admin)
    )

    assert response.status_code == 200, response.text
    assert response.json()["paused_search_ids"] == [str(searches[2].id)]


async def test_setting_the_plan_a_user_has_changes_nothing(
    client: httpx.AsyncClient, app: FastAPI, session: AsyncSession, user: User
) -> None:
    admin = await make_user(session, email="admin@example.com", is_admin=True)

    response = await client.put(
        plan_url(user.id), json={"plan": "free"}, headers=token_headers(app, admin)
    )

    assert response.status_code == 200
    assert response.json()["changed"] is False
    assert await count_audit(session, user) == 0


async def test_a_non_admin_gets_403_and_nothing_changes(
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    other_user: User,
    headers: dict[str, str],
) -> None:
    for target in (user, other_user):
        response = await client.put(plan_url(target.id), json={"plan": "pro"}, headers=headers)
        assert response.status_code == 403
        assert response.json() == {"detail": "Administrator access required", "code": "forbidden"}
    assert (await fresh_user(session, user)).plan == "free"
    assert (await fresh_user(session, other_user)).plan == "free"
    assert await count_audit(session, user) == 0


async def test_the_admin_endpoint_refuses_unknown_users_and_invalid_requests(
    client: httpx.AsyncClient, app: FastAPI, session: AsyncSession, user: User
) -> None:
    admin_headers = token_headers(
        app, await make_user(session, email="admin@example.com", is_admin=True)
    )

    unknown = await client.put(plan_url(uuid.uuid4()), json={"plan": "pro"}, headers=admin_headers)
    assert (unknown.status_code, unknown.json()) == (
        404,
        {"detail": "User not found", "code": "not_found"},
    )
    for url, body in (
        (plan_url("not-a-uuid"), {"plan": "pro"}),
        (plan_url(user.id), {"plan": "platinum"}),
        (plan_url(user.id), {}),
        (plan_url(user.id), {"plan": "pro", "stripe_customer_id": "cus_x"}),
        (plan_url(user.id), {"plan": "pro", "reason": "x" * 501}),
    ):
        response = await client.put(url, json=body, headers=admin_headers)
        assert response.status_code == 422, body
        assert response.json()["code"] == "validation_error"
    anonymous = await client.put(plan_url(user.id), json={"plan": "pro"})
    assert anonymous.status_code == 401
    assert (await fresh_user(session, user)).plan == "free"


async def test_users_me_never_changes_the_plan(
    client: httpx.AsyncClient, session: AsyncSession, user: User, headers: dict[str, str]
) -> None:
    for method in ("PUT", "PATCH"):
        for body in ({"plan": "business"}, {"subscription_status": "active"}):
            response = await client.request(method, "/api/v1/users/me", json=body, headers=headers)
            assert response.status_code == 422, (method, body)
    assert (await fresh_user(session, user)).plan == "free"


def test_set_plan_command_changes_the_plan_and_audits_it(tmp_path: Path) -> None:
    database = tmp_path / "plans.db"
    env = {"DATABASE_URL": f"sqlite:///{database}", "DEFAULT_PLAN": "free"}
    assert marketmon("migrate", cwd=tmp_path, env=env).returncode == 0
    created = marketmon(
        "create-admin",
        "help@example.com",
        "--password",
        "long-enough-password",
        cwd=tmp_path,
        env=env,
    )
    assert created.returncode == 0, created.stderr

    result = marketmon(
        "set-plan", "Help@Example.com", "PRO", "--reason", "goodwill", cwd=tmp_path, env=env
    )

    assert result.returncode == 0, result.stderr
    assert "help@example.com is now on the PRO plan (was FREE)" in result.stdout
    assert "plan set" in result.stderr
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT plan FROM users").fetchall() == [("pro",)]
        ((action, actor, details),) = connection.execute(
            "SELECT action, actor_id, details FROM audit_log"
        ).fetchall()
    assert (action, actor) == ("plan_changed", None)
    assert json.loads(details)["source"] == "cli"
    assert json.loads(details)["reason"] == "goodwill"


def test_set_plan_command_refuses_unknown_users_and_plans(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'plans.db'}"}
    assert marketmon("migrate", cwd=tmp_path, env=env).returncode == 0

    unknown_user = marketmon("set-plan", "nobody@example.com", "pro", cwd=tmp_path, env=env)
    unknown_plan = marketmon("set-plan", "nobody@example.com", "gold", cwd=tmp_path, env=env)

    assert unknown_user.returncode == 1
    assert "No user with the email nobody@example.com." in unknown_user.stderr
    assert unknown_plan.returncode == 2
    assert "gold" in unknown_plan.stderr
