"""Routes of /api/v1/listings: listings your searches matched, with your own state of each."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from starlette.convertors import StringConvertor, register_url_convertor

from app.api.deps import (
    AccessTokenDep,
    CurrentUser,
    ListingPagesDep,
    PageOwnerDep,
    ServedRequestsDep,
    SessionDep,
    SessionFactoryDep,
)
from app.api.listing_shortcut import ServedRequest
from app.schemas.listings import (
    ListingDetail,
    ListingPage,
    ListingQuery,
    ListingStateUpdate,
    RecentListingQuery,
)
from app.services import listing_pages, listings

router = APIRouter(prefix="/listings", tags=["listings"])

_AUTH: dict[int | str, dict[str, Any]] = {401: {"description": "Missing or invalid token"}}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No listing matched by your searches has this id"}
}
_INVALID: dict[int | str, dict[str, Any]] = {422: {"description": "Invalid parameters or body"}}


class _ListingIdConvertor(StringConvertor):
    """Any path segment but "recent", which is a route of its own: without this, a PUT to
    /listings/recent would reach PUT /listings/{listing_id} and be refused as a malformed
    id (422) instead of with 405. Other malformed ids still get the 422."""

    regex = "(?!recent$)[^/]+"


register_url_convertor("listing_id", _ListingIdConvertor())
_LISTING_PATH = "/{listing_id:listing_id}"


@router.get(
    "/",
    response_model=ListingPage,
    responses={
        **_AUTH,
        **_INVALID,
        404: {"description": "search_id is not one of your searches"},
    },
)
async def list_listings(
    request: Request,
    query: Annotated[ListingQuery, Query()],
    token: AccessTokenDep,
    owner: PageOwnerDep,
    pages: ListingPagesDep,
    sessions: SessionFactoryDep,
    served: ServedRequestsDep,
) -> Response:
    """Listings your searches matched, one entry per listing; hidden ones only on request."""
    # The page is already the JSON of a ListingPage: returning it as is spares validating
    # and serialising every listing again, cached or not. No SessionDep: a page served
    # from the cache needs no session, and a computed one only reads.
    key, body = await listing_pages.page_json(
        sessions,
        pages,
        owner=owner,
        filters=query.filters(),
        limit=query.limit,
        offset=query.offset,
    )
    # The same request again is answered by app/api/listing_shortcut.py, without this route;
    # never one with an API token: the shortcut would go on answering it once revoked.
    if not token.is_api_token:
        served.remember(
            request.scope,
            ServedRequest(owner.id, key, token.expires_at, token.credentials_version),
        )
    return Response(body, media_type="application/json")


@router.get("/recent", response_model=ListingPage, responses={**_AUTH, **_INVALID})
async def list_recent_listings(
    query: Annotated[RecentListingQuery, Query()], session: SessionDep, user: CurrentUser
) -> ListingPage:
    """Listings your searches matched in the last `hours` (1 to 168), newest first, without
    hidden ones."""
    return await listings.list_recent(
        session, owner_id=user.id, hours=query.hours, limit=query.limit, offset=query.offset
    )


@router.get(
    _LISTING_PATH, response_model=ListingDetail, responses={**_AUTH, **_NOT_FOUND, **_INVALID}
)
async def get_listing(
    listing_id: uuid.UUID, session: SessionDep, user: CurrentUser
) -> ListingDetail:
    """The listing, your state of it and its price history (oldest first)."""
    return await listings.get_listing(session, listing_id, owner_id=user.id)


@router.put(
    _LISTING_PATH, response_model=ListingDetail, responses={**_AUTH, **_NOT_FOUND, **_INVALID}
)
async def replace_listing_state(
    listing_id: uuid.UUID, body: ListingStateUpdate, session: SessionDep, user: CurrentUser
) -> ListingDetail:
    """Save, hide or mark viewed (same as PATCH: only the fields sent change)."""
    return await listings.update_state(session, listing_id, body, owner_id=user.id)


@router.patch(
    _LISTING_PATH, response_model=ListingDetail, responses={**_AUTH, **_NOT_FOUND, **_INVALID}
)
async def update_listing_state(
    listing_id: uuid.UUID, body: ListingStateUpdate, session: SessionDep, user: CurrentUser
) -> ListingDetail:
    """Save, hide or mark viewed; applies to all your matches of the listing."""
    return await listings.update_state(session, listing_id, body, owner_id=user.id)
