"""The dashboard follows the API's ownership rule: another user's ids are "not found"."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import User
from tests.factories import make_listing, make_match, make_search
from tests.web.conftest import csrf_of


@pytest.mark.parametrize("path", ["/app/searches/{id}/edit", "/app/matches?search_id={id}"])
async def test_another_users_search_pages_are_not_found(
    signed_in: httpx.AsyncClient, session: AsyncSession, other_user: User, path: str
) -> None:
    theirs = await make_search(session, owner=other_user, name="Their secret search")

    response = await signed_in.get(path.format(id=theirs.id))

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "Not found" in response.text
    assert "Their secret search" not in response.text


@pytest.mark.parametrize("action", ["pause", "resume", "delete", "check", "edit"])
async def test_another_users_search_cannot_be_changed(
    signed_in: httpx.AsyncClient, session: AsyncSession, other_user: User, action: str
) -> None:
    theirs = await make_search(session, owner=other_user, marketplaces=["demo"])
    token = await csrf_of(signed_in, "/app/searches")

    response = await signed_in.post(
        f"/app/searches/{theirs.id}/{action}",
        data={"csrf_token": token, "name": "mine now", "keywords": "x", "marketplaces": "demo"},
    )

    assert response.status_code == 404
    await session.refresh(theirs)
    assert theirs.is_active
    assert theirs.name == "iPhone deals"
    assert theirs.last_checked_at is None


async def test_another_users_listing_cannot_be_saved_or_hidden(
    signed_in: httpx.AsyncClient, session: AsyncSession, other_user: User
) -> None:
    theirs = await make_search(session, owner=other_user)
    listing = await make_listing(session)
    match = await make_match(session, search=theirs, listing=listing)
    token = await csrf_of(signed_in, "/app/matches")

    response = await signed_in.post(
        f"/app/matches/{listing.id}", data={"change": "hide", "csrf_token": token}
    )

    assert response.status_code == 404
    await session.refresh(match)
    assert not match.is_hidden


async def test_malformed_ids_are_not_found_either(signed_in: httpx.AsyncClient) -> None:
    response = await signed_in.get("/app/searches/not-a-uuid/edit")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")


async def test_unknown_dashboard_addresses_are_a_404_page(signed_in: httpx.AsyncClient) -> None:
    response = await signed_in.get("/app/nowhere")
    assert response.status_code == 404
    assert "There is nothing here." in response.text
