"""Shared schema pieces: strict input models, NUL-free text, pagination envelopes."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, model_validator

MAX_PAGE_SIZE = 100
ItemT = TypeVar("ItemT")


def _reject_nul(value: Any) -> Any:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(
                "Remove the NUL character (an invisible control character) from this text"
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            _reject_nul(key)
            _reject_nul(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _reject_nul(item)
    return value


NulFreeStr = Annotated[str, AfterValidator(_reject_nul)]


def max_price_not_below_min(value: Decimal | None, info: ValidationInfo) -> Decimal | None:
    """A `max_price` field validator: the range check sits on the highest price rather than
    on the whole model, so a form shows it beside that input. (A `min_price` that failed
    its own check is missing from `info.data`: it has a message already.)"""
    lowest = info.data.get("min_price")
    if value is not None and lowest is not None and lowest > value:
        raise ValueError("The highest price must be at least the lowest price")
    return value


class InputModel(BaseModel):
    """A request body: unknown fields are refused (never silently dropped), NUL bytes too,
    because PostgreSQL cannot store them in text."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @model_validator(mode="before")
    @classmethod
    def _no_nul_anywhere(cls, data: Any) -> Any:
        return _reject_nul(data)


def partial_update_schema(
    *, nullable: frozenset[str] = frozenset(), at_least_one: bool = False
) -> Callable[[dict[str, Any]], None]:
    """`json_schema_extra` of a partial-update body whose fields default to None only to
    tell "not sent" apart: the document then says what the validators enforce, that a field
    may be left out but not sent as null (except those in `nullable`), and with
    `at_least_one` that an empty body is refused."""

    def document(schema: dict[str, Any]) -> None:
        for name, field in schema.get("properties", {}).items():
            if name in nullable or {"type": "null"} not in field.get("anyOf", []):
                continue
            others = [branch for branch in field.pop("anyOf") if branch != {"type": "null"}]
            if len(others) == 1:
                field.update(others[0])
            else:
                field["anyOf"] = others
            if "default" in field and field["default"] is None:
                del field["default"]
        if at_least_one:
            schema["minProperties"] = 1

    return document


class OutputModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ValidationIssue(BaseModel):
    """One problem with a request, where it is (`["body", "criteria", "keywords"]`) and why."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorOut(BaseModel):
    """The body of every error response. `detail` is a message, or for a request that failed
    validation the list of its problems; `code` is stable for programs to branch on."""

    detail: str | list[ValidationIssue]
    code: str
    # The input the problem is about (e.g. `criteria.max_price`, `marketplaces`), when one is.
    field: str | None = None


class Page(BaseModel, Generic[ItemT]):
    items: list[ItemT]
    total: int
    limit: int
    offset: int


class PageParams(BaseModel):
    """Query parameters of every list endpoint."""

    limit: int = Field(default=20, ge=1, le=MAX_PAGE_SIZE)
    offset: int = Field(default=0, ge=0, le=1_000_000)
