"""The FastAPI application: routers, middleware and error handlers. Nothing else."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app import db, logs
from app.api import (
    admin,
    alerts,
    api_tokens,
    auth,
    billing,
    health,
    listings,
    marketplaces,
    metrics,
    openapi,
    phone_verification,
    searches,
    templates,
    unsubscribe,
    users,
    webhooks,
)
from app.api.listing_shortcut import ListingShortcut, ListingShortcutMiddleware
from app.config import Settings, get_settings
from app.errors import (
    AuthenticationFailed,
    Conflict,
    DomainError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    PlanLimitExceeded,
    ServiceUnavailable,
    TooManyRequests,
)
from app.middleware import BodySizeLimitMiddleware, RequestIdMiddleware
from app.runner import EmbeddedRunner
from app.runtime import (
    build_delivery_runtime,
    build_monitoring_runtime,
    close_delivery_runtime,
    close_monitoring_runtime,
)
from app.schemas.messages import human_message
from app.security import ssrf
from app.security.throttle import AuthThrottle
from app.security.tokens import TokenPolicy, TokenSigner
from app.services import templates as template_service
from app.services.listing_pages import PageCache
from app.web import demo_pages
from app.web.dashboard import create_dashboard

logger = logging.getLogger("app")

API_PREFIX = "/api/v1"

HTTP_STATUS: dict[type[DomainError], int] = {
    DomainError: 400,
    AuthenticationFailed: 401,
    PermissionDenied: 403,
    PlanLimitExceeded: 403,
    NotFound: 404,
    Conflict: 409,
    InvalidInput: 422,
    TooManyRequests: 429,
    ServiceUnavailable: 503,
}

_HTTP_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")

HTTP_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "service_unavailable",
}


# The database or the network to it is down (refused, reset, pool exhausted): a 503.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    ConnectionError,
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
)
DATABASE_RETRY_AFTER_S = 5


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    logs.configure(json=settings.logs_as_json, level=settings.log_level)
    engine = db.engine_from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.load_templates_on_startup:
            async for session in db.session_scope(app.state.session_factory):
                await template_service.load_builtin_templates(session)
        runtime = build_monitoring_runtime(
            settings,
            app.state.session_factory,
            resolve=lambda host: app.state.resolve_host(host),
        )
        app.state.monitoring_runtime = runtime
        # Resolved through app.state at call time, so tests can swap the resolver.
        delivery_runtime = build_delivery_runtime(
            settings,
            app.state.session_factory,
            resolve=lambda host: app.state.resolve_host(host),
        )
        app.state.delivery_runtime = delivery_runtime
        runner: EmbeddedRunner | None = None
        if settings.runs_embedded_worker:
            runner = EmbeddedRunner(
                runtime,
                delivery_runtime,
                tick_s=settings.embedded_tick_s,
                retention=timedelta(days=settings.listing_retention_days),
                concurrency=settings.check_concurrency,
            )
            runner.start()
        try:
            yield
        finally:
            # uvicorn has drained the requests by now; stop the loops, then close clients.
            if runner is not None:
                await runner.stop()
            await close_monitoring_runtime(runtime)
            await close_delivery_runtime(delivery_runtime)
            await app.state.throttle.aclose()
            await app.state.listing_shortcut.close()
            await engine.dispose()

    app = FastAPI(
        title=settings.app_name,
        version="0.1.0",
        # FastAPI's docs pages load their files from a CDN; openapi.install_docs serves ours.
        docs_url=None,
        redoc_url=None,
        openapi_url=f"{API_PREFIX}/openapi.json" if settings.api_docs_enabled else None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = db.create_session_factory(engine)
    app.state.token_policy = TokenPolicy(
        signer=TokenSigner(
            secret_key=settings.secret_key.get_secret_value(),
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
        ),
        access_lifetime=timedelta(minutes=settings.access_token_expire_minutes),
        refresh_lifetime=timedelta(days=settings.refresh_token_expire_days),
    )
    app.state.throttle = AuthThrottle(
        settings.rate_limit_storage_url,
        ip_limit=settings.login_ip_rate_limit,
        pair_failure_limit=settings.login_pair_failure_limit,
        address_failure_limit=settings.login_address_failure_limit,
        account_failure_limit=settings.login_account_failure_limit,
    )

    app.state.resolve_host = ssrf.system_resolver
    app.state.listing_pages = PageCache(settings.listings_page_cache_entries)
    app.state.listing_shortcut = ListingShortcut(
        app.state.listing_pages, engine, max_connections=settings.database_pool_size
    )

    app.include_router(health.router)
    app.include_router(metrics.router)
    for module in (
        auth,
        users,
        phone_verification,
        api_tokens,
        searches,
        listings,
        templates,
        marketplaces,
        alerts,
        billing,
        webhooks,
        admin,
        unsubscribe,
    ):
        app.include_router(module.router, prefix=API_PREFIX)
    if settings.demo_marketplace_enabled:
        app.include_router(demo_pages.router)
    app.mount("/app", create_dashboard(app, HTTP_STATUS))
    app.add_api_route("/", _to_dashboard, methods=["GET", "HEAD"], include_in_schema=False)

    openapi.install(app)
    openapi.install_docs(app, settings, prefix=API_PREFIX)
    app.add_exception_handler(DomainError, _on_domain_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _on_validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _on_http_error)  # type: ignore[arg-type]
    for unavailable in DATABASE_UNAVAILABLE:
        app.add_exception_handler(unavailable, _on_database_unavailable)
    app.add_exception_handler(Exception, _on_unexpected_error)

    # Innermost, so the request id and CORS headers go on its answers too.
    app.add_middleware(ListingShortcutMiddleware, shortcut=app.state.listing_shortcut)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_body_bytes)
    app.add_middleware(RequestIdMiddleware)
    return app


async def _to_dashboard(request: Request) -> RedirectResponse:
    # The server's address alone should lead somewhere; the dashboard's home then sends a
    # visitor on to their searches or to the login page.
    return RedirectResponse(f"{request.scope.get('root_path', '')}/app/", status_code=307)


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


async def _on_domain_error(request: Request, exc: DomainError) -> JSONResponse:
    status = next(HTTP_STATUS[c] for c in type(exc).__mro__ if c in HTTP_STATUS)
    headers: dict[str, str] = {}
    if isinstance(exc, TooManyRequests):
        headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, AuthenticationFailed):
        headers["WWW-Authenticate"] = "Bearer"
    body = {"detail": exc.detail, "code": exc.code}
    if exc.field is not None:
        body["field"] = exc.field
    return JSONResponse(body, status, headers=headers)


async def _on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    # Drop the rejected input from the echo: it may be a password.
    errors = [
        {"loc": list(err.get("loc", ())), "msg": human_message(err), "type": err.get("type", "")}
        for err in exc.errors()
    ]
    return JSONResponse({"detail": errors, "code": "validation_error"}, 422)


async def _on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = HTTP_CODES.get(exc.status_code, "error")
    headers: dict[str, Any] = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette names the methods of the first route on the path only.
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return JSONResponse({"detail": exc.detail, "code": code}, exc.status_code, headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    """The methods some route answers on the request's path, found by asking the router."""
    return [
        method
        for method in _HTTP_METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in request.app.router.routes
        )
    ]


async def _on_database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # An outage is not a bug: one log line per request, and an answer clients retry.
    logger.warning(
        "database unavailable (request id %s): %s", _request_id(request), type(exc).__name__
    )
    return JSONResponse(
        {"detail": "The database is unavailable; try again shortly", "code": "service_unavailable"},
        503,
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
    )


async def _on_unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error (request id %s)", _request_id(request))
    return JSONResponse(
        {"detail": "Internal server error", "code": "internal_error"},
        500,
        headers={"X-Request-ID": _request_id(request) or ""},
    )


app = create_app()
