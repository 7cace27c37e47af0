"""The dashboard application, mounted by app.main under /app/: its pages, static files, and
error handling that answers with pages instead of the API's JSON. Nothing else.

It shares the API's state (database, settings, throttle, engine and delivery runtimes),
so its pages call the very service functions the API routes call.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import DomainError, NotFound
from app.web import account, alerts, api_tokens, billing, email_links, matches, searches, settings
from app.web.render import SECURITY_HEADERS, WEB_ROOT, back_url, page_url, redirect, render
from app.web.session import CsrfRejected, LoginRequired

ERROR_TITLES = {
    400: "That did not work",
    401: "Please log in",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    409: "That did not work",
    413: "Too much data",
    422: "Check what you entered",
    429: "Too many requests",
    500: "Something went wrong",
    503: "Not available right now",
}


def create_dashboard(parent: FastAPI, http_status: dict[type[DomainError], int]) -> FastAPI:
    """The dashboard app over `parent`'s state; `http_status` maps domain errors to the
    same statuses the API answers with."""
    # Every page's nav shows the unread alerts: counted once per request, before the route.
    web = FastAPI(
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(alerts.unread_badge)],
    )
    web.state = parent.state
    for module in (account, searches, matches, alerts, settings, api_tokens, billing, email_links):
        web.include_router(module.router)
    web.mount("/static", StaticFiles(directory=WEB_ROOT / "static"), name="static")

    async def on_domain_error(request: Request, exc: DomainError) -> Response:
        status = next(http_status[c] for c in type(exc).__mro__ if c in http_status)
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse({"detail": exc.detail, "code": exc.code}, status)
        if request.method == "POST" and not isinstance(exc, NotFound):
            # A refused action (plan limit, allowance used up, paused search): back to the
            # page it came from, with the reason on top.
            fallback = page_url(request, "searches")
            return redirect(request, back_url(request, fallback), notice=exc.detail, level="error")
        return _error_page(request, status, exc.detail)

    web.add_exception_handler(LoginRequired, _on_login_required)
    web.add_exception_handler(CsrfRejected, _on_csrf_rejected)
    web.add_exception_handler(DomainError, on_domain_error)  # type: ignore[arg-type]
    web.add_exception_handler(RequestValidationError, _on_validation_error)  # type: ignore[arg-type]
    web.add_exception_handler(StarletteHTTPException, _on_http_error)  # type: ignore[arg-type]
    web.add_exception_handler(Exception, _on_unexpected_error)
    web.add_middleware(SecurityHeadersMiddleware)
    return web


class SecurityHeadersMiddleware:
    """Adds SECURITY_HEADERS to every dashboard response (pages and static files)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                headers = list(message.get("headers", []))
                for name, value in SECURITY_HEADERS.items():
                    if name.lower().encode() not in names:
                        headers.append((name.lower().encode(), value.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _on_login_required(request: Request, exc: Exception) -> Response:
    login = page_url(request, "login")
    if request.method == "GET":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        login = f"{login}?{urlencode({'next': target})}"
    return redirect(request, login)


async def _on_csrf_rejected(request: Request, exc: Exception) -> Response:
    return _error_page(
        request,
        403,
        "This form has expired or did not come from this site. Go back, reload the page "
        "and try again.",
    )


async def _on_validation_error(request: Request, exc: RequestValidationError) -> Response:
    # A malformed id in the address names nothing, exactly like someone else's id.
    if any((error.get("loc") or ("",))[0] == "path" for error in exc.errors()):
        return _error_page(request, 404, "There is nothing here, or it is not yours.")
    return _error_page(request, 422, "Some values in the address are not valid.")


async def _on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
    message = "There is nothing here." if exc.status_code == 404 else str(exc.detail)
    return _error_page(request, exc.status_code, message)


async def _on_unexpected_error(request: Request, exc: Exception) -> Response:
    # The exception goes on up to app.main's handler, which logs it with the request id.
    return _error_page(request, 500, "Please try again in a moment.")


def _error_page(request: Request, status: int, message: str) -> Response:
    title = ERROR_TITLES.get(status, "Something went wrong")
    return render(request, "error.html", status_code=status, title=title, message=message)
