"""The OpenAPI document says what the API does: every status an operation can answer, the
error body, and which fields may be null (tests/fuzz holds the API to it)."""

from __future__ import annotations

from typing import Any

import pytest

from app.main import create_app
from app.schemas.common import ErrorOut
from tests.conftest import make_settings

DOCUMENT: dict[str, Any] = create_app(make_settings("sqlite+aiosqlite://")).openapi()
SCHEMAS = DOCUMENT["components"]["schemas"]
OPERATIONS = [
    (f"{method.upper()} {path}", operation)
    for path, item in DOCUMENT["paths"].items()
    for method, operation in item.items()
]


def test_every_error_response_documents_the_error_body() -> None:
    for name, operation in OPERATIONS:
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")) and name != "GET /health/ready":
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (name, status)
    assert "HTTPValidationError" not in SCHEMAS


def test_operations_document_the_errors_they_share() -> None:
    for name, operation in OPERATIONS:
        responses = operation["responses"]
        if "security" in operation:
            assert "401" in responses, name
        if "requestBody" in operation:
            # An unreadable body (not UTF-8, a bad Content-Length) and one over the cap.
            assert {"400", "413"} <= responses.keys(), name


def test_readiness_documents_its_own_body_when_unavailable() -> None:
    responses = DOCUMENT["paths"]["/health/ready"]["get"]["responses"]
    assert responses["503"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Readiness"
    }


@pytest.mark.parametrize(
    ("schema", "nullable"),
    [("SearchUpdate", {"description"}), ("ListingStateUpdate", set())],
)
def test_partial_updates_document_which_fields_may_be_null(schema: str, nullable: set[str]) -> None:
    # They said every field could be null, and the API refused null for all but these.
    properties = SCHEMAS[schema]["properties"]
    may_be_null = {
        name
        for name, field in properties.items()
        if {"type": "null"} in field.get("anyOf", []) or field.get("type") == "null"
    }
    assert may_be_null == nullable


def test_a_listing_state_update_documents_that_it_needs_a_field() -> None:
    assert SCHEMAS["ListingStateUpdate"]["minProperties"] == 1


@pytest.mark.parametrize("field", ["marketplaces", "alert_channels"])
def test_lists_the_api_refuses_with_repeats_are_documented_unique(field: str) -> None:
    for schema in ("SearchCreate", "SearchUpdate"):
        assert SCHEMAS[schema]["properties"][field]["uniqueItems"] is True


@pytest.mark.parametrize(
    "body",
    [
        {"detail": "Not Found", "code": "not_found"},
        {"detail": "Use a public address", "code": "invalid_input", "field": "webhook_url"},
        {
            "detail": [
                {"loc": ["body", "email"], "msg": "This field is required", "type": "missing"}
            ],
            "code": "validation_error",
        },
    ],
)
def test_the_error_body_model_takes_both_kinds_of_error(body: dict[str, Any]) -> None:
    assert ErrorOut.model_validate(body).model_dump(exclude_none=True) == body
