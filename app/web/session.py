"""Who is visiting: the session cookie, CSRF tokens on every form, and one-shot notices.

The session cookie holds a signed `session` token (see `services.accounts.open_session`);
it is HttpOnly, SameSite=Lax, limited to the dashboard's path, and Secure outside
development. Every form carries a CSRF token: an HMAC of the session's id, or before
logging in of a random value kept in a cookie of its own (signed double submit).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Annotated, Literal

from fastapi import Depends, Request
from fastapi.responses import Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.datastructures import FormData

from app.api.deps import SessionDep, SettingsDep, TokenPolicyDep
from app.config import Settings
from app.errors import AuthenticationFailed
from app.models import User
from app.services import accounts

SESSION_COOKIE = "marketmon_session"
CSRF_COOKIE = "marketmon_csrf"
NOTICE_COOKIE = "marketmon_notice"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
NOTICE_MAX_AGE_S = 120
NoticeLevel = Literal["ok", "error"]


class LoginRequired(Exception):
    """The page needs a signed-in user; the dashboard answers with the login page."""


class CsrfRejected(Exception):
    """A form arrived without the token of the page it came from."""


async def resolve_visitor(
    request: Request, session: SessionDep, policy: TokenPolicyDep
) -> User | None:
    """The signed-in user, or None. Leaves on `request.state` what rendering needs: the
    user, the CSRF anchor (the session's id, or the anonymous cookie's value) and whether
    cookies must be set or cleared."""
    user: User | None = None
    session_id: str | None = None
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        try:
            user, session_id = await accounts.session_user(session, token, policy)
        except AuthenticationFailed:
            request.state.clear_session = True
    request.state.user = user
    request.state.session_id = session_id
    if session_id is not None:
        anchor = f"session:{session_id}"
    else:
        nonce = request.cookies.get(CSRF_COOKIE, "")
        if not (16 <= len(nonce) <= 64 and nonce.isascii()):
            nonce = secrets.token_urlsafe(24)
            request.state.new_csrf_nonce = nonce
        anchor = f"anonymous:{nonce}"
    request.state.csrf_anchor = anchor
    return user


Visitor = Annotated[User | None, Depends(resolve_visitor)]


async def require_user(user: Visitor) -> User:
    if user is None:
        raise LoginRequired
    return user


WebUser = Annotated[User, Depends(require_user)]


async def checked_form(request: Request, settings: SettingsDep, _visitor: Visitor) -> FormData:
    """The posted form, once its CSRF token (field or X-CSRF-Token header) proved that it
    came from one of our own pages for this visitor; CsrfRejected otherwise."""
    form = await request.form()
    submitted = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    expected = csrf_token(settings, request.state.csrf_anchor)
    if not isinstance(submitted, str) or not hmac.compare_digest(submitted, expected):
        raise CsrfRejected
    return form


CheckedForm = Annotated[FormData, Depends(checked_form)]


def csrf_token(settings: Settings, anchor: str) -> str:
    key = settings.secret_key.get_secret_value().encode()
    return hmac.new(key, f"csrf|{anchor}".encode(), hashlib.sha256).hexdigest()


def cookie_path(request: Request) -> str:
    """The dashboard's own path (/app), so no cookie of it reaches the API."""
    return str(request.scope.get("root_path") or "/")


def set_cookie(
    request: Request,
    response: Response,
    settings: Settings,
    name: str,
    value: str,
    *,
    max_age_s: int | None = None,
) -> None:
    """A dashboard cookie: HttpOnly, SameSite=Lax, Secure unless in development."""
    response.set_cookie(
        name,
        value,
        max_age=max_age_s,
        path=cookie_path(request),
        secure=not settings.debug,
        httponly=True,
        samesite="lax",
    )


def delete_cookie(request: Request, response: Response, settings: Settings, name: str) -> None:
    response.delete_cookie(
        name, path=cookie_path(request), secure=not settings.debug, httponly=True, samesite="lax"
    )


def finish_cookies(request: Request, response: Response, settings: Settings) -> None:
    """Set or clear what `resolve_visitor` found missing or stale."""
    nonce = getattr(request.state, "new_csrf_nonce", None)
    if nonce:
        set_cookie(request, response, settings, CSRF_COOKIE, nonce)
    if getattr(request.state, "clear_session", False):
        delete_cookie(request, response, settings, SESSION_COOKIE)


def set_notice(
    request: Request, response: Response, settings: Settings, text: str, level: NoticeLevel
) -> None:
    """A message for the next page shown (after a redirect), signed so nobody else can
    put words on our pages."""
    value = _notice_signer(settings).dumps({"text": text, "level": level})
    set_cookie(request, response, settings, NOTICE_COOKIE, value, max_age_s=NOTICE_MAX_AGE_S)


def take_notice(request: Request, settings: Settings) -> dict[str, str] | None:
    """The pending notice, if any (the caller clears the cookie)."""
    value = request.cookies.get(NOTICE_COOKIE)
    if not value:
        return None
    try:
        notice = _notice_signer(settings).loads(value, max_age=NOTICE_MAX_AGE_S)
    except BadSignature:
        return None
    if not isinstance(notice, dict):
        return None
    return {"text": str(notice.get("text", "")), "level": str(notice.get("level", "ok"))}


def _notice_signer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key.get_secret_value(), salt="dashboard-notice")
