"""Embedded mode: the scheduler runs inside the API process and stops with it."""

from __future__ import annotations

import asyncio

import httpx

from app.main import create_app
from tests.conftest import empty_tables, make_settings
from tests.factories import make_user, token_headers

DEMO_SEARCH = {
    "name": "Lego on the demo marketplace",
    "criteria": {"keywords": ["Lego Star Wars"]},
    "marketplaces": ["demo"],
    "alert_channels": ["in_app"],
    "check_frequency_minutes": 30,
}


async def test_embedded_runner_checks_new_searches_and_stops_with_the_app(
    database_url: str,
) -> None:
    app = create_app(make_settings(database_url, embedded_worker=True, embedded_tick_s=0.2))
    async with app.router.lifespan_context(app):
        async with app.state.session_factory() as session:
            user = await make_user(session, email="embedded@example.com")
        headers = token_headers(app, user)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            created = await client.post("/api/v1/searches/", json=DEMO_SEARCH, headers=headers)
            assert created.status_code == 201, created.text
            search_url = f"/api/v1/searches/{created.json()['id']}"
            found = 0
            for _ in range(100):  # bounded: at most ~10 s
                found = (await client.get(f"{search_url}/listings", headers=headers)).json()[
                    "total"
                ]
                if found:
                    break
                await asyncio.sleep(0.1)
            assert found > 0
            search = (await client.get(search_url, headers=headers)).json()
            assert search["last_checked_at"] is not None
            assert search["last_error"] is None
    # Its own app, not the `app` fixture: clean up as that fixture does, listings included,
    # once the scheduler has stopped and can add nothing more.
    await empty_tables(app)
    await app.state.engine.dispose()
    tasks = [t for t in asyncio.all_tasks() if t.get_name() == "embedded-scheduler"]
    assert tasks == []
