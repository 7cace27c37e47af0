"""Routes of /api/v1/alerts: the user's in-app feed and delivery log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from app.api.deps import CurrentUser, SessionDep
from app.schemas.alerts import AlertFilters, AlertOut, UnreadAlerts
from app.schemas.common import Page
from app.services import alerts

router = APIRouter(prefix="/alerts", tags=["alerts"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid token"},
    422: {"description": "Invalid filters"},
}


@router.get("/", response_model=Page[AlertOut], responses=_ERRORS)
async def list_alerts(
    filters: Annotated[AlertFilters, Query()], session: SessionDep, user: CurrentUser
) -> Page[AlertOut]:
    """Your alerts, newest first: what each was about, its channel and how delivery went."""
    rows, total = await alerts.list_alerts(session, owner_id=user.id, filters=filters)
    return Page[AlertOut](
        items=[AlertOut.model_validate(row) for row in rows],
        total=total,
        limit=filters.limit,
        offset=filters.offset,
    )


@router.get("/unread-count", response_model=UnreadAlerts, responses={401: _ERRORS[401]})
async def count_unread_alerts(session: SessionDep, user: CurrentUser) -> UnreadAlerts:
    """How many alerts arrived since you last opened the alert log in the dashboard."""
    return UnreadAlerts(unread=await alerts.unread_count(session, user))
