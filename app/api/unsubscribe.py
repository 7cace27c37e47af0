"""Routes of /api/v1/unsubscribe: the one-click links in alert emails (RFC 8058).

The signed token in the path stands in for a login. GET only shows what the link does (mail
scanners follow links), POST does it: from a mail provider's "Unsubscribe" button or from
the page's own button.
"""

from __future__ import annotations

import uuid
from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app.api.deps import SessionDep, SettingsDep
from app.errors import NotFound
from app.models import Search
from app.schemas.unsubscribe import UnsubscribeResult
from app.security.unsubscribe import search_id_from_token
from app.services import searches

router = APIRouter(prefix="/unsubscribe", tags=["unsubscribe"])

_INVALID = "This unsubscribe link is no longer valid"
_ERRORS: dict[int | str, dict[str, str]] = {404: {"description": _INVALID}}
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title></head>
<body style="font-family:sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;">
<h1 style="font-size:1.4rem;">{title}</h1><p>{text}</p>{form}</body></html>"""


def _search_id(settings: SettingsDep, token: str) -> uuid.UUID:
    search_id = search_id_from_token(settings.secret_key.get_secret_value(), token)
    if search_id is None:
        raise NotFound(_INVALID)
    return search_id


@router.get(
    "/{token}",
    response_class=HTMLResponse,
    responses={**_ERRORS, 200: {"content": {"text/html": {}}, "description": "Confirmation page"}},
)
async def confirm_unsubscribe(
    token: str, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    """A page asking to confirm: stop email alerts for this search."""
    search = await session.get(Search, _search_id(settings, token))
    if search is None:
        raise NotFound(_INVALID)
    name = escape(search.name)
    form = (
        f'<form method="post" action="{escape(token)}">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Stop email alerts</button></form>'
    )
    return HTMLResponse(
        _PAGE.format(
            title="Stop email alerts?",
            text=f"You will no longer get emails for your search &lsquo;{name}&rsquo;. "
            "Its other alert channels and the in-app feed stay as they are.",
            form=form,
        )
    )


@router.post(
    "/{token}",
    response_model=UnsubscribeResult,
    responses={**_ERRORS, 200: {"content": {"text/html": {}}}},
)
async def unsubscribe(
    token: str, request: Request, session: SessionDep, settings: SettingsDep
) -> UnsubscribeResult | Response:
    """Stop email alerts for the link's search. Any body is accepted (RFC 8058 sends
    `List-Unsubscribe=One-Click`); doing it twice is harmless."""
    # The service loads the search itself and answers NotFound when it is gone.
    search = await searches.stop_email_alerts(session, _search_id(settings, token))
    result = UnsubscribeResult(
        search_id=search.id,
        search_name=search.name,
        alert_channels=list(search.alert_channels),
        detail="Email alerts for this search are off",
    )
    if "text/html" in request.headers.get("accept", ""):
        return HTMLResponse(
            _PAGE.format(
                title="Email alerts are off",
                text=f"You will get no more emails for &lsquo;{escape(search.name)}&rsquo;. "
                "Turn them back on in the search's settings.",
                form="",
            )
        )
    return result
