"""API token bodies: what creating one takes, and what lists show (never the secret)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from app.schemas.common import InputModel, OutputModel

MAX_EXPIRY_DAYS = 3650

Scope = Literal["read", "write"]


def _unique(values: list[Any]) -> list[Any]:
    if len(set(values)) != len(values):
        raise ValueError("Choose each scope only once")
    return values


def _read_only() -> list[Scope]:
    return ["read"]


Scopes = Annotated[
    list[Scope],
    Field(min_length=1, max_length=2, json_schema_extra={"uniqueItems": True}),
    AfterValidator(_unique),
]


class ApiTokenCreate(InputModel):
    """A new token: a name to tell it apart, what it may do ("write" implies reading), and
    for how many days it works (none: until revoked)."""

    name: str = Field(min_length=1, max_length=100, examples=["Home Assistant"])
    scopes: Scopes = Field(default_factory=_read_only, json_schema_extra={"default": ["read"]})
    expires_in_days: int | None = Field(default=None, ge=1, le=MAX_EXPIRY_DAYS)

    def expires_at(self, now: datetime) -> datetime | None:
        if self.expires_in_days is None:
            return None
        return now + timedelta(days=self.expires_in_days)


class ApiTokenOut(OutputModel):
    id: uuid.UUID
    name: str
    # The token's first characters, to tell tokens apart; the secret is never shown again.
    prefix: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


class ApiTokenCreated(ApiTokenOut):
    """A new token, with its secret: shown this once, stored only as a digest."""

    token: str

    @classmethod
    def of(cls, row: Any, secret: str) -> ApiTokenCreated:
        return cls(**ApiTokenOut.model_validate(row).model_dump(), token=secret)
