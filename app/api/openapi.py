"""The OpenAPI document: FastAPI's, plus the error responses every operation shares.

Routes declare the errors of their own rules (404, 409, 403, ...). What any operation can
answer is added here, once: the error body `{"detail", "code"}` on every error response,
401 where a token is needed, and 400/413 where a body is read. Clients generated from the
document then know every status and shape they can get.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

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
