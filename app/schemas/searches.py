"""Saved-search bodies: the criteria, create/replace/patch inputs and the search as shown."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    computed_field,
    field_validator,
    model_validator,
)

from app.models.enums import AlertChannel, AlertMode, Marketplace
from app.schemas.common import (
    InputModel,
    OutputModel,
    max_price_not_below_min,
    partial_update_schema,
)

if TYPE_CHECKING:
    from app.monitoring.cycle import CycleReport
    from app.services.availability import ServerSetup

MAX_PRICE = Decimal(1_000_000_000)
_CENT = Decimal("0.01")


def _clean_keyword(value: str) -> str:
    """Collapse inner whitespace; a keyword in double quotes stays quoted (an exact phrase)."""
    value = " ".join(value.split())
    if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
        inner = value[1:-1].strip()
        if not inner:
            raise ValueError("Put some words between the quotes, or remove them")
        value = f'"{inner}"'
    # A keyword without a letter or digit normalises to nothing and would match every title.
    if not any(char.isalnum() for char in value):
        raise ValueError("Each keyword needs at least one letter or digit")
    return value


def _canonical_price(value: Decimal) -> Decimal:
    # "1e3", "400" and "-0" all become plain two-place amounts, like the listings' prices.
    return (value + 0).quantize(_CENT)


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _unique(values: list[Any]) -> list[Any]:
    if len(set(values)) != len(values):
        raise ValueError("Choose each one only once")
    return values


Keyword = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_clean_keyword),
]
Price = Annotated[
    Decimal,
    Field(ge=0, le=MAX_PRICE, decimal_places=2),
    AfterValidator(_canonical_price),
]
Currency = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z]{3}$", to_upper=True),
]
Condition = Annotated[Literal["new", "used", "any"], BeforeValidator(_lower)]

SearchName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]
Marketplaces = Annotated[
    list[Marketplace],
    Field(min_length=1, max_length=4, json_schema_extra={"uniqueItems": True}),
    AfterValidator(_unique),
]
AlertChannels = Annotated[
    list[AlertChannel],
    Field(min_length=0, max_length=5, json_schema_extra={"uniqueItems": True}),
    AfterValidator(_unique),
]
CheckFrequency = Annotated[int, Field(ge=1, le=24 * 60)]
Location = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
OptionName = Annotated[str, StringConstraints(min_length=1, max_length=32)]
OptionValue = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2048)]
OptionsByMarketplace = Annotated[
    dict[OptionName, dict[OptionName, OptionValue]], Field(max_length=4)
]


class SearchCriteria(InputModel):
    """What a listing must look like. Stored as `model_dump(mode="json", exclude_none=True)`;
    stored criteria validate back into this model unchanged.

    A keyword matches when all its words occur in the title; a keyword in double quotes
    must occur as that exact phrase. Any exclude keyword rejects a listing.
    """

    keywords: list[Keyword] = Field(min_length=1, max_length=20)
    exclude_keywords: list[Keyword] = Field(default_factory=list, max_length=50)
    min_price: Price | None = None
    max_price: Price | None = None
    currency: Currency | None = None
    location: Location | None = None
    radius_km: int | None = Field(default=None, ge=1, le=500)
    condition: Condition | None = None
    category: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    # True: a listing whose price is unknown ("POA", no price on the card) is left out.
    # Otherwise it passes the price range and is shown as "price unknown".
    require_price: bool | None = None
    # Criteria of one marketplace only, keyed by its name: {"craigslist": {"city": "sfbay"}}.
    # Which keys each marketplace takes is checked against its adapter when the search is
    # saved (GET /marketplaces/ lists them).
    marketplace_options: OptionsByMarketplace | None = None

    @field_validator("require_price")
    @classmethod
    def _false_is_the_default(cls, value: bool | None) -> bool | None:
        # Stored only when asked for, so criteria saved before it existed compare equal.
        return True if value else None

    @field_validator("keywords", "exclude_keywords")
    @classmethod
    def _drop_duplicates(cls, keywords: list[str]) -> list[str]:
        seen: set[str] = set()
        unique: list[str] = []
        for keyword in keywords:
            if keyword.casefold() not in seen:
                seen.add(keyword.casefold())
                unique.append(keyword)
        return unique

    # The range checks sit on the later field of each pair rather than on the whole criteria,
    # so a form shows them beside the input to change. A field that failed its own check is
    # missing from `info.data`: it has a message already.
    _not_below_min_price = field_validator("max_price")(max_price_not_below_min)

    @field_validator("radius_km")
    @classmethod
    def _needs_location(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and "location" in info.data and info.data["location"] is None:
            raise ValueError("Enter a location to search around, or leave the distance empty")
        return value

    def stored(self) -> dict[str, Any]:
        """The JSON form kept in `searches.criteria` (prices as two-place strings)."""
        return self.model_dump(mode="json", exclude_none=True)


class SearchCreate(InputModel):
    """POST /searches/ and PUT /searches/{id}: the full set of a search's settings."""

    name: SearchName
    description: Description | None = None
    criteria: SearchCriteria
    marketplaces: Marketplaces
    # In-app needs nothing from the server or the user; other channels are chosen.
    alert_channels: AlertChannels = Field(default_factory=lambda: [AlertChannel.IN_APP])
    check_frequency_minutes: CheckFrequency = 30
    alert_on_first_check: bool = False
    alert_on_price_drop: bool = False
    # instant: every check's new matches at once; hourly/daily: one digest per period
    # (daily at DIGEST_DAILY_HOUR in the owner's time zone). The in-app feed is always instant.
    alert_mode: AlertMode = AlertMode.INSTANT


# Fields PATCH may set to null; every other field, when given, needs a value.
_NULLABLE_ON_PATCH = frozenset({"description"})


class SearchUpdate(InputModel):
    """PATCH /searches/{id}: any subset of SearchCreate; `criteria` replaces the old one whole."""

    model_config = ConfigDict(json_schema_extra=partial_update_schema(nullable=_NULLABLE_ON_PATCH))

    name: SearchName | None = None
    description: Description | None = None
    criteria: SearchCriteria | None = None
    marketplaces: Marketplaces | None = None
    alert_channels: AlertChannels | None = None
    check_frequency_minutes: CheckFrequency | None = None
    alert_on_first_check: bool | None = None
    alert_on_price_drop: bool | None = None
    alert_mode: AlertMode | None = None

    @model_validator(mode="after")
    def _no_null_for_required(self) -> Self:
        for field in sorted(self.model_fields_set - _NULLABLE_ON_PATCH):
            if getattr(self, field) is None:
                raise ValueError(f"{field} needs a value: leave it out to keep the current one")
        return self


class SearchCriteriaOut(OutputModel):
    keywords: list[str]
    exclude_keywords: list[str] = Field(default_factory=list)
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    currency: str | None = None
    location: str | None = None
    radius_km: int | None = None
    condition: str | None = None
    category: str | None = None
    require_price: bool = False
    marketplace_options: dict[str, dict[str, str]] = Field(default_factory=dict)


class SetupNeededOut(OutputModel):
    kind: Literal["marketplace", "channel"]
    name: str
    settings: str
    message: str


class SearchOut(OutputModel):
    id: uuid.UUID
    name: str
    description: str | None
    criteria: SearchCriteriaOut
    marketplaces: list[str]
    alert_channels: list[str]
    check_frequency_minutes: int
    alert_on_first_check: bool
    alert_on_price_drop: bool
    alert_mode: str
    is_active: bool
    paused_at: datetime | None
    paused_reason: str | None
    next_check_at: datetime | None
    last_checked_at: datetime | None
    last_error: str | None
    consecutive_failures: int
    created_at: datetime
    updated_at: datetime
    # Its marketplaces and channels this server cannot use yet, each with the settings
    # the operator adds to enable it.
    setup_needed: list[SetupNeededOut] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def status(self) -> Literal["active", "paused", "needs_setup"]:
        """needs_setup: none of its marketplaces can be checked on this server yet; it is
        not checked (and sends no failure notices) until the operator sets one up."""
        if not self.is_active:
            return "paused"
        missing = {item.name for item in self.setup_needed if item.kind == "marketplace"}
        if self.marketplaces and set(self.marketplaces) <= missing:
            return "needs_setup"
        return "active"

    @classmethod
    def on_server(cls, search: object, setup: ServerSetup) -> Self:
        """The search as shown, with what this server lacks for it."""
        shown = cls.model_validate(search)
        shown.setup_needed = [
            SetupNeededOut(
                kind=item.kind, name=item.name, settings=item.settings, message=item.message
            )
            for item in setup.search_setup(shown.marketplaces, shown.alert_channels)
        ]
        return shown


class CheckResult(OutputModel):
    """What a "check now" found."""

    search: SearchOut
    # False when another worker was checking this search at that moment.
    checked: bool
    upstream_calls: int
    listings_fetched: int
    matches_new: int
    alerts_created: int
    errors: list[str]

    @classmethod
    def from_report(cls, search: SearchOut, report: CycleReport) -> CheckResult:
        return cls(
            search=search,
            checked=report.searches > 0,
            upstream_calls=report.upstream_calls,
            listings_fetched=report.listings_fetched,
            matches_new=report.matches_new,
            alerts_created=report.alerts_created,
            errors=report.errors,
        )
