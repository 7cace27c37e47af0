"""Broken object-level authorisation: every route x method with an id, called by another user.

Routes are read from the app's own OpenAPI document, so a new route is covered the day it
is added. Another user's ids must be a 404 (never 403, never a leak) and change nothing.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Listing, Search, SearchMatch, User
from app.services import api_tokens
from tests.factories import make_listing, make_match, make_search

ID_PARAM = re.compile(r"\{(\w+_id)\}")
# Bodies valid for the owner, so a 404 proves the ownership check and not a validation error.
VALID_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("put", "/api/v1/searches/{search_id}"): {
        "name": "renamed",
        "criteria": {"keywords": ["ps5"]},
        "marketplaces": ["ebay"],
        "alert_channels": ["email"],
        "check_frequency_minutes": 30,
    },
    ("patch", "/api/v1/searches/{search_id}"): {"name": "renamed"},
    ("put", "/api/v1/listings/{listing_id}"): {"is_saved": True},
    ("patch", "/api/v1/listings/{listing_id}"): {"is_hidden": True},
}
# Ids that belong to nobody in particular (templates are shared by design).
SHARED_RESOURCES = {"template_id"}
# Administrators act on other users' ids by design; a plain user gets 403 there.
ADMIN_PREFIX = "/api/v1/admin/"


def owned_routes(app: FastAPI) -> list[tuple[str, str, str]]:
    """(method, path template, id parameter) for every route addressing a user's object."""
    routes = []
    for path, operations in app.openapi()["paths"].items():
        found = ID_PARAM.search(path)
        if found is None or found.group(1) in SHARED_RESOURCES or path.startswith(ADMIN_PREFIX):
            continue
        routes.extend((method, path, found.group(1)) for method in operations)
    return routes


async def _owner_objects(session: AsyncSession, owner: User) -> dict[str, str]:
    search = await make_search(session, owner=owner)
    listing = await make_listing(session)
    await make_match(session, search=search, listing=listing)
    token, _ = await api_tokens.create(
        session, owner, name="Script", scopes=["read"], expires_at=None
    )
    await session.commit()
    return {"search_id": str(search.id), "listing_id": str(listing.id), "token_id": str(token.id)}


async def _snapshot(session: AsyncSession) -> list[tuple[Any, ...]]:
    session.expire_all()
    searches = (await session.execute(select(Search).order_by(Search.id))).scalars().all()
    matches = (await session.execute(select(SearchMatch))).scalars().all()
    listings = (await session.execute(select(Listing))).scalars().all()
    return [
        *((s.id, s.name, s.is_active, s.criteria, s.next_check_at, s.updated_at) for s in searches),
        *((m.id, m.is_saved, m.is_hidden, m.viewed_at) for m in matches),
        *((row.id, row.title, row.price) for row in listings),
    ]


async def test_every_id_route_is_covered(app: FastAPI) -> None:
    covered = {param for _, _, param in owned_routes(app)}
    assert {"search_id", "listing_id"} <= covered


async def test_other_user_gets_404_on_every_route_and_method(
    app: FastAPI,
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    headers: dict[str, str],
    other_headers: dict[str, str],
) -> None:
    ids = await _owner_objects(session, user)
    before = await _snapshot(session)
    routes = owned_routes(app)
    assert routes
    for method, template, param in routes:
        url = template.replace("{" + param + "}", ids[param])
        body = VALID_BODIES.get((method, template))
        response = await client.request(method, url, headers=other_headers, json=body)
        assert response.status_code == 404, (method, template, response.text)
        assert response.json()["code"] == "not_found"
    assert await _snapshot(session) == before
    # The owner still reaches every object, so the 404s above were about ownership.
    for param, path in (("search_id", "searches"), ("listing_id", "listings")):
        response = await client.get(f"/api/v1/{path}/{ids[param]}", headers=headers)
        assert response.status_code == 200, response.text


async def test_other_users_lists_hold_none_of_the_owners_rows(
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    other_headers: dict[str, str],
) -> None:
    await _owner_objects(session, user)
    for path in ("/api/v1/searches/", "/api/v1/listings/", "/api/v1/listings/recent"):
        response = await client.get(path, headers=other_headers)
        assert response.status_code == 200, (path, response.text)
        assert response.json()["items"] == [], path
        assert response.json()["total"] == 0, path
