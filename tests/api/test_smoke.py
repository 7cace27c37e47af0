"""The seed guide's curl examples, verbatim, and the basic ops endpoints."""

from __future__ import annotations

import httpx


async def test_seed_guide_register_login_and_create_search(client: httpx.AsyncClient) -> None:
    registered = await client.post(
        "/api/v1/auth/register",
        json={"email": "test@example.com", "password": "testpassword123", "full_name": "Test User"},
    )
    assert registered.status_code == 201, registered.text
    assert registered.json()["email"] == "test@example.com"
    assert "password_hash" not in registered.json()

    login = await client.post(
        "/api/v1/auth/login", json={"email": "test@example.com", "password": "testpassword123"}
    )
    assert login.status_code == 200, login.text
    tokens = login.json()
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 15 * 60
    assert tokens["refresh_token"]


async def test_health_is_ok_and_ready_checks_the_database(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"] == "ok"
    assert ready.headers["x-request-id"]
