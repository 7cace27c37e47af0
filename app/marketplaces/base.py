"""What every marketplace adapter takes and returns: plain data, no database."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict


@dataclass(frozen=True)
class Capabilities:
    """What an adapter can filter upstream; everything is filtered locally again anyway."""

    price_filter: bool = False
    condition_filter: bool = False
    location_filter: bool = False
    # False: upstream returns its newest listings whatever the keywords (a subreddit, a
    # feed), so every search on the same source shares one fetch.
    keyword_filter: bool = True
    page_size: int = 50
    # Polite sustained rate towards the marketplace, shared by every worker.
    requests_per_minute: int = 60
    # ISO countries (or the marketplace's own sites) it covers; empty = wherever it is.
    regions: tuple[str, ...] = ()


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
    # This marketplace's own criteria (a city, a subreddit, a feed URL), sorted by name.
    options: tuple[tuple[str, str], ...] = ()

    def option(self, name: str) -> str | None:
        return dict(self.options).get(name)


class MarketplaceOptions(BaseModel):
    """A marketplace's own criteria of a search (`criteria.marketplace_options.<name>`):
    string values, unknown keys refused. Adapters subclass it and declare the fields."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    # Fields holding a user-supplied URL: checked by the SSRF gate when a search is saved.
    user_url_fields: ClassVar[tuple[str, ...]] = ()


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


@runtime_checkable
class ClosableAdapter(Protocol):
    """An adapter that owns resources of its own (a proxied HTTP client) to release."""

    async def aclose(self) -> None: ...


class MarketplaceError(Exception):
    """An upstream failure; the search records it and the other marketplaces carry on."""


class RateLimited(MarketplaceError):
    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Blocked(MarketplaceError):
    """The marketplace refused to serve us: a 403, a CAPTCHA or challenge page, a login
    wall. Shown on the search as "blocked (...)", never mistaken for "no results"."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"blocked ({reason})")
        self.reason = reason


class PageLayoutChanged(MarketplaceError):
    """A page or document we could not read: the source changed its layout or format."""
