"""The request's unit of work (api/deps.py): one session per request, closed with it."""

from __future__ import annotations

import uuid

import httpx
from fastapi import FastAPI


async def test_a_request_that_fails_gives_its_connection_back_before_the_response(
    app: FastAPI, client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    # The session used to stay open (not rolled back, its connection out of the pool)
    # until its abandoned generator was finalised some time later; the fuzz suite saw
    # such connections deleted unclosed.
    for _ in range(3):
        response = await client.get(f"/api/v1/searches/{uuid.uuid4()}", headers=headers)
        assert response.status_code == 404

    assert app.state.engine.pool.checkedout() == 0


async def test_a_request_that_succeeds_gives_its_connection_back_too(
    app: FastAPI, client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get("/api/v1/users/me", headers=headers)

    assert response.status_code == 200
    assert app.state.engine.pool.checkedout() == 0
