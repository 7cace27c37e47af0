"""The alert log: every alert of the user, newest first, how its delivery went, and what
arrived since the log was last opened (the nav's unread badge)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from app.alerts.render import web_url
from app.api.deps import SessionDep
from app.db import utcnow
from app.models import Alert, AlertChannel, AlertStatus
from app.schemas.alerts import AlertFilters, AlertOut
from app.services import alerts
from app.web import forms
from app.web.render import pager, render
from app.web.session import Visitor, WebUser

router = APIRouter()

PAGE_SIZE = 25
FILTER_FIELDS = ("channel", "status")
# The nav badge counts up to here and then shows "99+".
BADGE_CAP = 100


async def unread_badge(request: Request, session: SessionDep, user: Visitor) -> int | None:
    """How many alerts are unread (up to BADGE_CAP), for the nav of the page being shown;
    None for a visitor or a form post, which answers with a redirect and shows no nav.

    The dashboard runs it before every route; `render` puts the number in the page."""
    if user is None or request.method != "GET":
        return None
    count = await alerts.unread_count(session, user, cap=BADGE_CAP)
    request.state.unread_alerts = count
    return count


UnreadBadge = Annotated[int | None, Depends(unread_badge)]


@dataclass(frozen=True)
class AlertRow:
    """One line of the log: the alert and the links that lead on from it."""

    alert: AlertOut
    unread: bool
    # The first listing's page on its marketplace, only when it is an http(s) address.
    listing_url: str | None
    search_name: str | None


@router.get("/alerts", name="alerts")
async def alerts_page(request: Request, session: SessionDep, user: WebUser) -> Response:
    params = request.query_params
    filters = {name: params[name] for name in FILTER_FIELDS if params.get(name)}
    context: dict[str, Any] = {
        "filters": filters,
        "channels": list(AlertChannel),
        "statuses": list(AlertStatus),
        "outlook": None,
        "now": utcnow(),
    }
    try:
        query = AlertFilters.model_validate(
            {**filters, "limit": PAGE_SIZE, "offset": params.get("offset") or 0}
        )
    except ValidationError as exc:
        errors = forms.field_errors(exc, prefix_lists=False)
        return render(
            request,
            "alerts.html",
            status_code=422,
            errors=errors,
            rows=[],
            total=0,
            pages=pager(0, PAGE_SIZE, 0),
            **context,
        )
    found, total = await alerts.list_alerts(session, owner_id=user.id, filters=query)
    seen_before = user.alerts_seen_at
    names = await alerts.search_names(
        session, (row.search_id for row in found if row.search_id), owner_id=user.id
    )
    rows = [_row(alert, names, seen_before) for alert in found]
    if found and not filters and query.offset == 0:
        # The newest alert is on screen: everything up to it has been seen.
        await alerts.mark_seen(session, user, until=found[0].created_at)
        request.state.unread_alerts = 0
    if not found and not filters:
        context["outlook"] = await alerts.search_outlook(session, owner_id=user.id)
    return render(
        request,
        "alerts.html",
        errors={},
        rows=rows,
        total=total,
        pages=pager(query.offset, PAGE_SIZE, total),
        **context,
    )


@router.get("/alerts/unread", name="alerts_unread")
async def unread_alerts(session: SessionDep, user: WebUser, unread: UnreadBadge) -> JSONResponse:
    """For the page script: the nav badge's number and the newest unread alert, to
    announce one that arrived while the page was open."""
    latest = await alerts.latest_unread(session, user) if unread else None
    return JSONResponse(
        {
            "unread": unread or 0,
            "latest": None
            if latest is None
            else {
                "id": str(latest.alert.id),
                "subject": latest.subject,
                "search_name": latest.search_name,
                "created_at": latest.alert.created_at.isoformat(),
            },
        },
        headers={"Cache-Control": "no-store"},
    )


def _row(alert: Alert, names: dict[uuid.UUID, str], seen_before: datetime | None) -> AlertRow:
    out = AlertOut.model_validate(alert)
    first = out.listings[0] if out.listings else None
    return AlertRow(
        alert=out,
        unread=seen_before is None or alert.created_at > seen_before,
        listing_url=web_url(first.url) if first else None,
        search_name=names.get(alert.search_id) if alert.search_id else None,
    )
