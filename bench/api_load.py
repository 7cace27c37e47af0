"""Scenario 3, the API under load: `uvicorn app.main:app --workers 2` on PostgreSQL with
100,000 listings and a user with 5,000 matches; `GET /health` and
`GET /api/v1/listings/?limit=50` each loaded by a separate load-generator process with 64
connections (wrk when installed). /health is the baseline: the most a request can cost
here is what the framework and server cost."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from app import db
from app.models import Listing as ListingRow
from app.models import Search, SearchMatch, User
from app.security.tokens import TokenSigner
from bench import data
from bench.infra import (
    BENCH_SECRET_KEY,
    LOG_LEVEL,
    BenchSetupError,
    app_environment,
    free_port,
    postgres_database,
    start_child,
    stop_children,
    wait_until,
)
from bench.loadgen import run_load
from bench.sizes import ApiSize

LISTINGS_PATH = "/api/v1/listings/?limit=50"
OTHER_USERS = 20
SEARCHES_PER_USER = 5


async def run(size: ApiSize, workdir: Path) -> dict[str, Any]:
    async with postgres_database("api") as database_url:
        user_id = await _seed(database_url, size)
        port = free_port()
        env = app_environment(
            workdir, database_url=database_url, debug=False, embedded_worker=False, redis_url=""
        )
        api = start_child(
            "api",
            [
                "-m",
                "uvicorn",
                "app.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(size.api_workers),
                "--log-level",
                LOG_LEVEL,
                "--no-access-log",
            ],
            env=env,
            workdir=workdir,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            await wait_until(
                lambda: _status(f"{base}/health") == 200,
                timeout_s=60,
                what="the API",
                children=[api],
            )
            auth = f"Authorization: Bearer {_token(user_id)}"
            first_page = _check_listings(f"{base}{LISTINGS_PATH}", auth)
            health, listings = await asyncio.to_thread(_load_both, base, auth, size)
        finally:
            stop_children([api])
    ratio = listings["rps"] / health["rps"]
    return {
        "params": {
            "listings": size.listings,
            "matches": size.matches,
            "matches_visible": first_page["total"],
            "connections": size.connections,
            "duration_s": size.duration_s,
            "api_workers": size.api_workers,
            "load_generator": health["tool"],
        },
        "health": health,
        "listings": listings,
        "ratios": {"rps": round(ratio, 3)},
        "targets": [
            {
                "name": "listings rps vs /health",
                "value": round(ratio, 3),
                "target": ">= 0.35",
                "met": ratio >= 0.35,
            },
            {
                "name": "listings p99, ms",
                "value": listings["p99_ms"],
                "target": "<= 50",
                "met": listings["p99_ms"] is not None and listings["p99_ms"] <= 50,
            },
        ],
    }


def _load_both(base: str, auth: str, size: ApiSize) -> tuple[dict[str, Any], dict[str, Any]]:
    for url, headers in ((f"{base}/health", []), (f"{base}{LISTINGS_PATH}", [auth])):
        run_load(url, connections=size.connections, duration_s=size.warmup_s, headers=headers)
    health = run_load(f"{base}/health", connections=size.connections, duration_s=size.duration_s)
    listings = run_load(
        f"{base}{LISTINGS_PATH}",
        connections=size.connections,
        duration_s=size.duration_s,
        headers=[auth],
    )
    return health, listings


async def _seed(database_url: str, size: ApiSize) -> uuid.UUID:
    """The user's matches cover the newest `size.matches` listings; other users' searches
    match the rest, so the tables and indexes hold everyone's rows, not only theirs."""
    engine = db.create_engine(database_url)
    try:
        now = db.utcnow()
        users = data.user_rows(1 + OTHER_USERS)
        specs = [
            data.SearchSpec(id=uuid.uuid4(), owner_id=user["id"], query=f"query {n}")
            for user in users
            for n in range(SEARCHES_PER_USER)
        ]
        later = [now + timedelta(days=1)] * len(specs)
        listings = data.listing_rows(size.listings, now=now)
        matches = data.match_rows(
            [s.id for s in specs[:SEARCHES_PER_USER]],
            users[0]["id"],
            listings[: size.matches],
            now=now,
        )
        rest = listings[size.matches :]
        for n, user in enumerate(users[1:], start=1):
            own = [s.id for s in specs if s.owner_id == user["id"]]
            matches += data.match_rows(own, user["id"], rest[n - 1 :: OTHER_USERS], now=now)
        await data.insert_rows(engine, User, users)
        await data.insert_rows(
            engine,
            Search,
            data.search_rows(specs, channels=["email"], frequency_minutes=30, next_check_at=later),
        )
        await data.insert_rows(engine, ListingRow, listings)
        await data.insert_rows(engine, SearchMatch, matches)
        async with engine.begin() as connection:
            await connection.exec_driver_sql("ANALYZE")
        return uuid.UUID(str(users[0]["id"]))
    finally:
        await engine.dispose()


def _token(user_id: uuid.UUID) -> str:
    signer = TokenSigner(secret_key=BENCH_SECRET_KEY, audience="marketmon", issuer="marketmon")
    token, _ = signer.issue(
        subject=user_id, token_type="access", now=db.utcnow(), lifetime=timedelta(hours=1)
    )
    return token


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2, trust_env=False).status_code
    except httpx.HTTPError:
        return None


def _check_listings(url: str, auth: str) -> dict[str, Any]:
    name, _, value = auth.partition(": ")
    response = httpx.get(url, headers={name: value}, timeout=10, trust_env=False)
    page: dict[str, Any] = response.json()
    if response.status_code != 200 or len(page.get("items", [])) != 50:
        raise BenchSetupError(
            f"GET {LISTINGS_PATH} answered {response.status_code}: {response.text[:300]}"
        )
    return page
