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
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import db
from app.api import (
    admin,
    alerts,
    auth,
    billing,
    health,
    listings,
    marketplaces,
    searches,
    templates,
    unsubscribe,
    users,
    webhooks,
)
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
from app.security import ssrf
from app.security.throttle import AuthThrottle
from app.security.tokens import TokenPolicy, TokenSigner
from app.services import templates as template_service

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


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = db.create_engine(settings.database_url, echo=settings.database_echo)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.load_templates_on_startup:
            async for session in db.session_scope(app.state.session_factory):
                await template_service.load_builtin_templates(session)
        runtime = build_monitoring_runtime(settings, app.state.session_factory)
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
        yield
        if runner is not None:
            await runner.stop()
        await close_monitoring_runtime(runtime)
        await close_delivery_runtime(delivery_runtime)
        await app.state.throttle.aclose()
        await engine.dispose()

    app = FastAPI(
        title=settings.app_name,
        version="0.1.0",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=f"{API_PREFIX}/redoc",
        openapi_url=f"{API_PREFIX}/openapi.json",
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
        account_failure_limit=settings.login_account_failure_limit,
    )

    app.state.resolve_host = ssrf.system_resolver

    app.include_router(health.router)
    for module in (
        auth,
        users,
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

    app.add_exception_handler(DomainError, _on_domain_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _on_validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _on_http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _on_unexpected_error)

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


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


async def _on_domain_error(request: Request, exc: DomainError) -> JSONResponse:
    status = next(HTTP_STATUS[c] for c in type(exc).__mro__ if c in HTTP_STATUS)
    headers: dict[str, str] = {}
    if isinstance(exc, TooManyRequests):
        headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, AuthenticationFailed):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse({"detail": exc.detail, "code": exc.code}, status, headers=headers)


async def _on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    # Drop the rejected input from the echo: it may be a password.
    errors = [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]
    return JSONResponse({"detail": errors, "code": "validation_error"}, 422)


async def _on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = HTTP_CODES.get(exc.status_code, "error")
    headers: dict[str, Any] = dict(exc.headers or {})
    return JSONResponse({"detail": exc.detail, "code": code}, exc.status_code, headers=headers)


async def _on_unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error (request id %s)", _request_id(request))
    return JSONResponse(
        {"detail": "Internal server error", "code": "internal_error"},
        500,
        headers={"X-Request-ID": _request_id(request) or ""},
    )


app = create_app()
