"""The OpenAPI document: FastAPI's, plus the error responses every operation shares.

Routes declare the errors of their own rules (404, 409, 403, ...). What any operation can
answer is added here, once: the error body `{"detail", "code"}` on every error response,
401 where a token is needed, and 400/413 where a body is read. Clients generated from the
document then know every status and shape they can get.

The docs pages (Swagger UI, ReDoc) are served here too, with their files from the
fastapi-offline package: FastAPI's own pages load them from a CDN, so they stay blank on a
server without internet, and tell a CDN who reads the docs.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from app.config import Settings
from app.schemas.common import ErrorOut

ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}
_ERROR_CONTENT = {"application/json": {"schema": ERROR_REF}}
_SHARED_ERRORS: dict[str, tuple[Callable[[dict[str, Any]], bool], str]] = {
    "400": (
        lambda operation: "requestBody" in operation,
        "Malformed request: a body that is not UTF-8 or JSON, or a bad Content-Length",
    ),
    "401": (lambda operation: "security" in operation, "Missing or invalid token"),
    "413": (lambda operation: "requestBody" in operation, "Request body too large"),
}
_METHODS = frozenset({"get", "put", "post", "delete", "patch", "options", "head", "trace"})

DOCS_ASSETS = Path(str(files("fastapi_offline") / "static"))
# The pages may load from their own server only. ReDoc's menu shows Redocly's logo from
# cdn.redoc.ly whatever its options, and hides it when it does not load; inline scripts and
# styles are how both pages start and theme themselves.
DOCS_CONTENT_SECURITY_POLICY = (
    "default-src 'self' 'unsafe-inline' data: blob:; object-src 'none'; base-uri 'self'; "
    "frame-ancestors 'none'"
)
# Swagger UI shows a badge image from validator.swagger.io unless told not to.
_SWAGGER_UI_PARAMETERS = {"validatorUrl": None}


def install(app: FastAPI) -> None:
    """Make `app.openapi()` return the document with the shared errors (built once)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        add_shared_errors(document)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def install_docs(app: FastAPI, settings: Settings, *, prefix: str) -> None:
    """Serve Swagger UI at `{prefix}/docs` and ReDoc at `{prefix}/redoc`, their files under
    `{prefix}/docs-assets/`; nothing when API_DOCS_ENABLED is off.

    The app must be built with `docs_url=None, redoc_url=None`, and with its OpenAPI
    document at `openapi_url` only when the docs are on.
    """
    if not settings.api_docs_enabled or app.openapi_url is None:
        return
    openapi_url = app.openapi_url
    assets = f"{prefix}/docs-assets"
    oauth2_redirect_url = f"{prefix}/docs/oauth2-redirect"
    app.mount(assets, StaticFiles(directory=DOCS_ASSETS), name="docs-assets")

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = _root_path(request)
        page = get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{assets}/swagger-ui.css",
            swagger_favicon_url=f"{root}{assets}/favicon.png",
            oauth2_redirect_url=root + oauth2_redirect_url,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters={**(app.swagger_ui_parameters or {}), **_SWAGGER_UI_PARAMETERS},
        )
        return _confined(page)

    async def swagger_ui_oauth2_redirect() -> HTMLResponse:
        return _confined(get_swagger_ui_oauth2_redirect_html())

    async def redoc(request: Request) -> HTMLResponse:
        root = _root_path(request)
        page = get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{assets}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{assets}/favicon.png",
            with_google_fonts=False,
        )
        return _confined(page)

    for path, page in (
        (f"{prefix}/docs", swagger_ui),
        (oauth2_redirect_url, swagger_ui_oauth2_redirect),
        (f"{prefix}/redoc", redoc),
    ):
        app.add_api_route(path, page, methods=["GET"], include_in_schema=False)


def add_shared_errors(document: dict[str, Any]) -> None:
    """Give every error response the error body, and add the errors every operation shares."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(error_schema.pop("$defs", {}))
    components["ErrorOut"] = error_schema
    for path_item in document.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            for status, (applies, description) in _SHARED_ERRORS.items():
                if status not in responses and applies(operation):
                    responses[status] = {"description": description}
            for status, response in responses.items():
                if _is_error(status) and _has_no_body_of_its_own(response):
                    response["content"] = _ERROR_CONTENT
    # Every 422 now points at ErrorOut; FastAPI's own validation error schemas are unused.
    for name in ("HTTPValidationError", "ValidationError"):
        if not _refers_to(document, f"#/components/schemas/{name}"):
            components.pop(name, None)


def _is_error(status: str) -> bool:
    return status[:1] in {"4", "5"}


def _has_no_body_of_its_own(response: dict[str, Any]) -> bool:
    """True when the route declared no body, or only FastAPI's default 422 body (whose
    `detail` list misses our `code` and the string `detail` of domain 422s)."""
    content = response.get("content")
    if not content:
        return True
    schema = content.get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref") == "#/components/schemas/HTTPValidationError")


def _refers_to(node: Any, ref: str) -> bool:
    if isinstance(node, dict):
        return node.get("$ref") == ref or any(_refers_to(value, ref) for value in node.values())
    if isinstance(node, list):
        return any(_refers_to(item, ref) for item in node)
    return False


def _root_path(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _confined(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
    return page
