"""Listing bodies: a listing as one user sees it (with their saved/hidden/viewed state)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from app.models import Marketplace
from app.schemas.common import (
    MAX_PAGE_SIZE,
    InputModel,
    NulFreeStr,
    OutputModel,
    Page,
    max_price_not_below_min,
    partial_update_schema,
)

MAX_PRICE = Decimal("9999999999.99")  # Numeric(12, 2)
MAX_RECENT_HOURS = 24 * 7


class ListingSort(StrEnum):
    NEWEST = "newest"  # most recently matched first; one check's matches newest posted first
    OLDEST = "oldest"
    PRICE_ASC = "price_asc"  # listings without a price come last either way
    PRICE_DESC = "price_desc"


class ListingFilterParams(BaseModel):
    """The filters and order a client can ask for."""

    search_id: uuid.UUID | None = Field(default=None, description="Only this search's matches")
    marketplace: Marketplace | None = None
    min_price: Decimal | None = Field(default=None, ge=0, le=MAX_PRICE, decimal_places=2)
    max_price: Decimal | None = Field(default=None, ge=0, le=MAX_PRICE, decimal_places=2)
    saved: bool | None = Field(default=None, description="Only saved (true) or unsaved (false)")
    include_hidden: bool = False
    q: Annotated[NulFreeStr, Field(max_length=200)] | None = Field(
        default=None, description="Case-insensitive text in the title"
    )
    sort: ListingSort = ListingSort.NEWEST

    @field_validator("q")
    @classmethod
    def _blank_q_is_none(cls, value: str | None) -> str | None:
        return (value.strip() or None) if value is not None else None

    # On the highest price rather than the whole filter, so a form shows it beside that input.
    _not_below_min_price = field_validator("max_price")(max_price_not_below_min)


class ListingFilters(ListingFilterParams):
    """Which of the user's matched listings to show, and in what order."""

    matched_since: datetime | None = Field(
        default=None, description="Only listings last matched at or after this time"
    )


class ListingQuery(ListingFilterParams):
    """Query parameters of GET /listings/."""

    limit: int = Field(default=20, ge=1, le=MAX_PAGE_SIZE)
    offset: int = Field(default=0, ge=0, le=1_000_000)

    def filters(self) -> ListingFilters:
        return ListingFilters.model_validate(self.model_dump(exclude={"limit", "offset"}))


class RecentListingQuery(BaseModel):
    """Query parameters of GET /listings/recent."""

    hours: int = Field(default=24, ge=1, le=MAX_RECENT_HOURS)
    limit: int = Field(default=20, ge=1, le=MAX_PAGE_SIZE)
    offset: int = Field(default=0, ge=0, le=1_000_000)


class ListingOut(OutputModel):
    id: uuid.UUID
    marketplace: str
    external_id: str
    title: str
    price: Decimal | None
    currency: str | None
    url: str
    image_url: str | None
    location: str | None
    condition: str | None
    seller: str | None
    posted_at: datetime | None
    first_seen_at: datetime
    # The user's own state, over all their searches that matched the listing.
    is_saved: bool
    is_hidden: bool
    viewed_at: datetime | None
    matched_at: datetime = Field(description="When one of your searches last matched it")
    search_ids: list[uuid.UUID] = Field(description="Your searches that matched it")

    @field_validator("search_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: Any) -> Any:
        # The query aggregates the ids into one comma-separated string.
        if isinstance(value, str):
            return sorted(uuid.UUID(part) for part in value.split(",") if part)
        return value


class PricePoint(OutputModel):
    price: Decimal
    currency: str
    observed_at: datetime


class ListingDetail(ListingOut):
    description: str | None
    last_seen_at: datetime
    price_history: list[PricePoint] = Field(description="Observed prices, oldest first")


class ListingStateUpdate(InputModel):
    """The user's own state of a listing; applies to all their matches of it."""

    model_config = ConfigDict(json_schema_extra=partial_update_schema(at_least_one=True))

    is_saved: bool | None = None
    is_hidden: bool | None = None
    is_viewed: bool | None = Field(
        default=None, description="true marks it viewed (keeping the first time), false unviewed"
    )

    @model_validator(mode="after")
    def _something_to_change(self) -> ListingStateUpdate:
        if not self.model_fields_set:
            raise ValueError("Send at least one of is_saved, is_hidden or is_viewed")
        for field in self.model_fields_set:
            if getattr(self, field) is None:
                raise ValueError(f"Set {field} to true or false, or leave it out")
        return self


ListingPage = Page[ListingOut]
