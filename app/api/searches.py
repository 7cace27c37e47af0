"""Routes of /api/v1/searches: the owner's saved searches."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from app.api.deps import CurrentUser, MonitoringDep, ServerSetupDep, SessionDep, URLPolicyDep
from app.schemas.common import Page, PageParams
from app.schemas.listings import ListingFilters, ListingPage, ListingQuery
from app.schemas.searches import CheckResult, SearchCreate, SearchOut, SearchUpdate
from app.services import listings, marketplaces, searches

router = APIRouter(prefix="/searches", tags=["searches"])

_AUTH: dict[int | str, dict[str, Any]] = {401: {"description": "Missing or invalid token"}}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such search of yours"}}
_INVALID: dict[int | str, dict[str, Any]] = {
    422: {
        "description": "Invalid body or marketplace options, an unsafe feed URL, or an alert "
        "channel you have not set up"
    }
}
_PLAN: dict[int | str, dict[str, Any]] = {
    403: {"description": "Over your plan's limits (searches, marketplaces, frequency)"}
}


@router.post(
    "/",
    response_model=SearchOut,
    status_code=status.HTTP_201_CREATED,
    responses={**_AUTH, **_PLAN, **_INVALID},
)
async def create_search(
    body: SearchCreate,
    session: SessionDep,
    user: CurrentUser,
    url_policy: URLPolicyDep,
    monitoring: MonitoringDep,
    setup: ServerSetupDep,
) -> SearchOut:
    """Save a search; it is active and checked at once."""
    marketplaces.check_can_search(body.marketplaces, monitoring)
    search = await searches.create(session, body, owner=user, url_policy=url_policy)
    return SearchOut.on_server(search, setup)


@router.get("/", response_model=Page[SearchOut], responses={**_AUTH, **_INVALID})
async def list_searches(
    session: SessionDep,
    user: CurrentUser,
    page: Annotated[PageParams, Query()],
    setup: ServerSetupDep,
    is_active: bool | None = None,
) -> Page[SearchOut]:
    """Your searches, newest first."""
    rows, total = await searches.list_for_owner(
        session, owner_id=user.id, is_active=is_active, limit=page.limit, offset=page.offset
    )
    return Page[SearchOut](
        items=[SearchOut.on_server(row, setup) for row in rows],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@router.get("/{search_id}", response_model=SearchOut, responses={**_AUTH, **_NOT_FOUND})
async def get_search(
    search_id: uuid.UUID, session: SessionDep, user: CurrentUser, setup: ServerSetupDep
) -> SearchOut:
    search = await searches.get(session, search_id, owner_id=user.id)
    return SearchOut.on_server(search, setup)


@router.put(
    "/{search_id}",
    response_model=SearchOut,
    responses={**_AUTH, **_PLAN, **_NOT_FOUND, **_INVALID},
)
async def replace_search(
    search_id: uuid.UUID,
    body: SearchCreate,
    session: SessionDep,
    user: CurrentUser,
    url_policy: URLPolicyDep,
    monitoring: MonitoringDep,
    setup: ServerSetupDep,
) -> SearchOut:
    """Replace every setting; new criteria or marketplaces restart the search afresh."""
    marketplaces.check_can_search(body.marketplaces, monitoring)
    search = await searches.replace(session, search_id, body, owner=user, url_policy=url_policy)
    return SearchOut.on_server(search, setup)


@router.patch(
    "/{search_id}",
    response_model=SearchOut,
    responses={**_AUTH, **_PLAN, **_NOT_FOUND, **_INVALID},
)
async def update_search(
    search_id: uuid.UUID,
    body: SearchUpdate,
    session: SessionDep,
    user: CurrentUser,
    url_policy: URLPolicyDep,
    monitoring: MonitoringDep,
    setup: ServerSetupDep,
) -> SearchOut:
    """Change some settings; `criteria` is replaced as a whole."""
    marketplaces.check_can_search(body.marketplaces or (), monitoring)
    search = await searches.update(session, search_id, body, owner=user, url_policy=url_policy)
    return SearchOut.on_server(search, setup)


@router.delete(
    "/{search_id}", status_code=status.HTTP_204_NO_CONTENT, responses={**_AUTH, **_NOT_FOUND}
)
async def delete_search(search_id: uuid.UUID, session: SessionDep, user: CurrentUser) -> Response:
    """Delete the search and its matches."""
    await searches.delete(session, search_id, owner_id=user.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{search_id}/pause", response_model=SearchOut, responses={**_AUTH, **_NOT_FOUND})
async def pause_search(
    search_id: uuid.UUID, session: SessionDep, user: CurrentUser, setup: ServerSetupDep
) -> SearchOut:
    search = await searches.pause(session, search_id, owner_id=user.id)
    return SearchOut.on_server(search, setup)


@router.post(
    "/{search_id}/resume", response_model=SearchOut, responses={**_AUTH, **_PLAN, **_NOT_FOUND}
)
async def resume_search(
    search_id: uuid.UUID, session: SessionDep, user: CurrentUser, setup: ServerSetupDep
) -> SearchOut:
    search = await searches.resume(session, search_id, owner=user)
    return SearchOut.on_server(search, setup)


@router.post(
    "/{search_id}/check",
    response_model=CheckResult,
    responses={
        **_AUTH,
        **_NOT_FOUND,
        409: {"description": "The search is paused"},
        429: {"description": "Daily manual checks used up; see Retry-After"},
    },
)
async def check_search(
    search_id: uuid.UUID,
    session: SessionDep,
    user: CurrentUser,
    runtime: MonitoringDep,
    setup: ServerSetupDep,
) -> CheckResult:
    """Check the search now (within the plan's daily allowance) and report what was found."""
    search, report = await searches.check_now(session, runtime, search_id, owner=user)
    return CheckResult.from_report(SearchOut.on_server(search, setup), report)


@router.get(
    "/{search_id}/listings",
    response_model=ListingPage,
    responses={**_AUTH, **_NOT_FOUND, **_INVALID},
)
async def list_search_listings(
    search_id: uuid.UUID,
    query: Annotated[ListingQuery, Query()],
    session: SessionDep,
    user: CurrentUser,
) -> ListingPage:
    """The listings this search matched, with the same filters and sorting as /listings/."""
    filters = ListingFilters.model_validate(
        {**query.filters().model_dump(), "search_id": search_id}
    )
    return await listings.list_listings(
        session, owner_id=user.id, filters=filters, limit=query.limit, offset=query.offset
    )
