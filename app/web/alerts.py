"""The alert log: every alert of the user, newest first, and how its delivery went."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from app.api.deps import SessionDep
from app.models import AlertChannel, AlertStatus
from app.schemas.alerts import AlertFilters, AlertOut
from app.services import alerts
from app.web import forms
from app.web.render import pager, render
from app.web.session import WebUser

router = APIRouter()

PAGE_SIZE = 25
FILTER_FIELDS = ("channel", "status")


@router.get("/alerts", name="alerts")
async def alerts_page(request: Request, session: SessionDep, user: WebUser) -> Response:
    params = request.query_params
    filters = {name: params[name] for name in FILTER_FIELDS if params.get(name)}
    context: dict[str, Any] = {
        "filters": filters,
        "channels": list(AlertChannel),
        "statuses": list(AlertStatus),
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
    rows, total = await alerts.list_alerts(session, owner_id=user.id, filters=query)
    return render(
        request,
        "alerts.html",
        errors={},
        rows=[AlertOut.model_validate(row) for row in rows],
        total=total,
        pages=pager(query.offset, PAGE_SIZE, total),
        **context,
    )
