"""Shared schema pieces: strict input models, NUL-free text, pagination envelopes."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

MAX_PAGE_SIZE = 100
ItemT = TypeVar("ItemT")


def _reject_nul(value: Any) -> Any:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text must not contain NUL characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            _reject_nul(key)
            _reject_nul(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _reject_nul(item)
    return value


NulFreeStr = Annotated[str, AfterValidator(_reject_nul)]


class InputModel(BaseModel):
    """A request body: unknown fields are refused (never silently dropped), NUL bytes too,
    because PostgreSQL cannot store them in text."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @model_validator(mode="before")
    @classmethod
    def _no_nul_anywhere(cls, data: Any) -> Any:
        return _reject_nul(data)


class OutputModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[ItemT]):
    items: list[ItemT]
    total: int
    limit: int
    offset: int


class PageParams(BaseModel):
    """Query parameters of every list endpoint."""

    limit: int = Field(default=20, ge=1, le=MAX_PAGE_SIZE)
    offset: int = Field(default=0, ge=0, le=1_000_000)
