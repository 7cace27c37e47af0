"""The matches feed: what the user's searches found, newest first, with the API's filters,
and save / hide / mark viewed on each listing."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from app.api.deps import SessionDep
from app.errors import InvalidInput
from app.models import Marketplace
from app.schemas.listings import ListingQuery, ListingSort, ListingStateUpdate
from app.services import listings, searches
from app.web import forms
from app.web.render import back_url, page_url, pager, redirect, render
from app.web.session import CheckedForm, WebUser

router = APIRouter()

PAGE_SIZE = 20
MAX_SEARCHES_IN_FILTER = 100
FILTER_FIELDS = ("search_id", "marketplace", "q", "min_price", "max_price", "saved", "sort")

# What each button on a listing does to the user's state of it.
CHANGES: dict[str, dict[str, bool]] = {
    "save": {"is_saved": True},
    "unsave": {"is_saved": False},
    "hide": {"is_hidden": True},
    "unhide": {"is_hidden": False},
    "viewed": {"is_viewed": True},
    "unviewed": {"is_viewed": False},
}


@router.get("/matches", name="matches")
async def matches_page(request: Request, session: SessionDep, user: WebUser) -> Response:
    params = request.query_params
    filters = {name: params[name] for name in FILTER_FIELDS if params.get(name)}
    if params.get("include_hidden"):
        filters["include_hidden"] = "true"
    own_searches, _ = await searches.list_for_owner(
        session, owner_id=user.id, limit=MAX_SEARCHES_IN_FILTER, offset=0
    )
    context: dict[str, Any] = {
        "filters": filters,
        "searches": own_searches,
        "search_names": {search.id: search.name for search in own_searches},
        "marketplaces": list(Marketplace),
        "sorts": list(ListingSort),
    }
    try:
        query = ListingQuery.model_validate(
            {**filters, "limit": PAGE_SIZE, "offset": params.get("offset") or 0}
        )
    except ValidationError as exc:
        errors = forms.field_errors(exc, prefix_lists=False)
        return render(request, "matches.html", status_code=422, errors=errors, page=None, **context)
    page = await listings.list_listings(
        session, owner_id=user.id, filters=query.filters(), limit=query.limit, offset=query.offset
    )
    return render(
        request,
        "matches.html",
        errors={},
        page=page,
        pages=pager(query.offset, PAGE_SIZE, page.total),
        **context,
    )


@router.post("/matches/{listing_id}", name="update_match")
async def update_match(
    request: Request,
    listing_id: uuid.UUID,
    form: CheckedForm,
    session: SessionDep,
    user: WebUser,
) -> Response:
    """Save, hide or mark viewed. A script asking for JSON gets the new state; a plain
    form goes back to the page it came from."""
    change = CHANGES.get(forms.text(form, "change"))
    if change is None:
        raise InvalidInput(f"Unknown change; use one of: {', '.join(CHANGES)}")
    listing = await listings.update_state(
        session, listing_id, ListingStateUpdate(**change), owner_id=user.id
    )
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse(
            {
                "is_saved": listing.is_saved,
                "is_hidden": listing.is_hidden,
                "is_viewed": listing.viewed_at is not None,
            }
        )
    return redirect(request, back_url(request, page_url(request, "matches")))
