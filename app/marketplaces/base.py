"""What every marketplace adapter takes and returns: plain data, no database."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol


@dataclass(frozen=True)
class Capabilities:
    """What an adapter can filter upstream; everything is filtered locally again anyway."""

    price_filter: bool = False
    condition_filter: bool = False
    location_filter: bool = False
    page_size: int = 50
    # Polite sustained rate towards the marketplace, shared by every worker.
    requests_per_minute: int = 60


@dataclass(frozen=True)
class Query:
    """A normalised upstream query. Searches with equal queries share one fetch."""

    keywords: tuple[str, ...]
    exclude_keywords: tuple[str, ...] = ()
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    currency: str | None = None
    location: str | None = None
    radius_km: int | None = None
    condition: str | None = None
    category: str | None = None


@dataclass(frozen=True)
class Listing:
    """A listing as every adapter reports it."""

    marketplace: str
    external_id: str
    title: str
    url: str
    price: Decimal | None = None
    currency: str | None = None
    image_url: str | None = None
    location: str | None = None
    condition: str | None = None
    seller: str | None = None
    description: str | None = None
    posted_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict)


class MarketplaceAdapter(Protocol):
    name: str
    capabilities: Capabilities

    def is_configured(self) -> bool:
        """Whether credentials (or whatever it needs) are present to query upstream."""
        ...

    def currency_for(self, query: Query) -> str:
        """The currency prices are compared in when the search names none (by region)."""
        ...

    async def search(self, query: Query) -> list[Listing]:
        """Newest listings first; raises MarketplaceError subclasses on failure."""
        ...


class MarketplaceError(Exception):
    """An upstream failure; the search records it and the other marketplaces carry on."""


class RateLimited(MarketplaceError):
    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
