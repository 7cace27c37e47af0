"""Turning a page template and its data into a response: the Jinja2 environment, the
filters the pages share (times in the user's zone, prices, "5 min ago"), redirects with
a notice, and the security headers every dashboard response carries."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import inspect as sa_inspect
from starlette.templating import Jinja2Templates

from app.config import Settings
from app.db import utcnow
from app.models import User
from app.web import session as web_session

WEB_ROOT = Path(__file__).resolve().parent

# Pages load only our own CSS and script; listing images come from the marketplaces.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' https: http: data:; script-src 'self'; "
        "style-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}

templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(WEB_ROOT / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
)


def _unverified_email(user: User | None) -> str | None:
    """The address to ask the user to confirm, or None. Read from what is loaded only: an
    error page renders after the request's rollback has expired the user's attributes."""
    if user is None:
        return None
    loaded = sa_inspect(user).dict
    if loaded.get("email_verified", True):
        return None
    email: str | None = loaded.get("email")
    return email


def _email_can_send(request: Request) -> bool:
    runtime = getattr(request.app.state, "delivery_runtime", None)
    channel = runtime.channels.get("email") if runtime is not None else None
    return channel is not None and channel.is_configured()


def render(
    request: Request, page: str, /, *, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """The page, with what every page needs: the user, a CSRF token for its forms and the
    pending notice (which is then cleared)."""
    settings: Settings = request.app.state.settings
    user = getattr(request.state, "user", None)
    anchor = getattr(request.state, "csrf_anchor", None)
    notice = web_session.take_notice(request, settings)
    response = templates.TemplateResponse(
        request,
        page,
        {
            "app_name": settings.app_name,
            "user": user,
            "csrf_token": web_session.csrf_token(settings, anchor) if anchor else "",
            "notice": notice,
            "url": lambda name, **params: page_url(request, name, **params),
            "static": lambda path: page_url(request, "static", path=path),
            "when": lambda moment: local_time(moment, user.timezone if user else "UTC"),
            "email_can_send": _email_can_send(request),
            "unverified_email": _unverified_email(user),
            # Counted before the route ran (web.alerts.unread_badge); None: no badge.
            "unread_alerts": getattr(request.state, "unread_alerts", None),
            **context,
        },
        status_code=status_code,
    )
    # Pages show private data: never kept by a shared cache or the back/forward cache.
    response.headers["Cache-Control"] = "no-store"
    if notice is not None:
        web_session.delete_cookie(request, response, settings, web_session.NOTICE_COOKIE)
    web_session.finish_cookies(request, response, settings)
    return response


def redirect(
    request: Request,
    url: str,
    *,
    notice: str | None = None,
    level: web_session.NoticeLevel = "ok",
) -> RedirectResponse:
    """303 to another dashboard page (a POST answered this way is not re-sent on reload)."""
    settings: Settings = request.app.state.settings
    response = RedirectResponse(url, status_code=303)
    if notice:
        web_session.set_notice(request, response, settings, notice, level)
    web_session.finish_cookies(request, response, settings)
    return response


def page_url(
    request: Request, name: str, /, query: dict[str, Any] | None = None, **params: Any
) -> str:
    """The path of a named dashboard route (with its mount prefix), plus a query string
    of the given values that are not empty."""
    # The dashboard's own routes: the API has routes of the same names (login, ...).
    dashboard: FastAPI = request.app
    path = str(request.scope.get("root_path") or "") + dashboard.url_path_for(name, **params)
    values = {key: value for key, value in (query or {}).items() if value not in (None, "")}
    return f"{path}?{urlencode(values, doseq=True)}" if values else path


def back_url(request: Request, fallback: str) -> str:
    """Where a form came from (a page of ours, by the Referer), so an action returns to the
    same filtered page; `fallback` when that is unknown or foreign."""
    referer = urlsplit(request.headers.get("referer", ""))
    if referer.netloc != request.url.netloc:
        return fallback
    came_from = referer.path + (f"?{referer.query}" if referer.query else "")
    return safe_next(request, came_from, fallback)


def safe_next(request: Request, value: str | None, fallback: str) -> str:
    """A `next` address only when it is a path of the dashboard (never another site)."""
    root = str(request.scope.get("root_path") or "")
    if value and value.startswith(f"{root}/") and not value.startswith("//") and "\\" not in value:
        return value
    return fallback


def pager(offset: int, size: int, total: int) -> dict[str, int | None]:
    """The offsets of the previous and next pages of a list (None at either end)."""
    return {
        "previous": max(0, offset - size) if offset > 0 else None,
        "next": offset + size if offset + size < total else None,
    }


def local_time(moment: datetime | None, timezone: str) -> str:
    """`25 Nov 2025, 17:58` in the user's zone; empty for no time."""
    if moment is None:
        return ""
    try:
        zone = zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = zoneinfo.ZoneInfo("UTC")
    return moment.astimezone(zone).strftime("%d %b %Y, %H:%M")


def time_ago(moment: datetime | None, now: datetime | None = None) -> str:
    """How long ago, in the largest whole unit: `just now`, `5 min ago`, `3 h ago`, `2 d ago`;
    `in 4 min` for a moment still to come."""
    if moment is None:
        return ""
    now = now or utcnow()
    seconds = int((now - moment.astimezone(UTC)).total_seconds())
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 60:
        return "in under a minute" if future else "just now"
    if seconds >= 86400:
        amount = f"{seconds // 86400} d"
    elif seconds >= 3600:
        amount = f"{seconds // 3600} h"
    else:
        amount = f"{seconds // 60} min"
    return f"in {amount}" if future else f"{amount} ago"


def money(price: Decimal | str | None, currency: str | None) -> str:
    """`£349.99`, `$12.00`, `120.00 SEK`; empty without a price."""
    if price is None:
        return ""
    amount = f"{Decimal(price):,.2f}"
    symbol = {"GBP": "£", "USD": "$", "EUR": "€"}.get((currency or "").upper())
    if symbol:
        return f"{symbol}{amount}"
    return f"{amount} {currency}".strip()


templates.env.filters["ago"] = time_ago
templates.env.filters["money"] = money
