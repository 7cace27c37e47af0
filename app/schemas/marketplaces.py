"""Marketplace descriptions for GET /marketplaces/."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class CapabilitiesOut(BaseModel):
    price_filter: bool
    condition_filter: bool
    location_filter: bool
    # False: the source is read whole (a subreddit, a feed) and keywords match locally.
    keyword_filter: bool
    page_size: int
    requests_per_minute: int
    # ISO countries or the marketplace's own sites it covers; empty = wherever it is.
    regions: list[str]


class MarketplaceOut(BaseModel):
    name: str
    # Available: this server can check it. Configured: it has what it needs (credentials).
    available: bool
    configured: bool
    # What the operator sets to let this server check it; None when it can already.
    setup_settings: str | None = None
    capabilities: CapabilitiesOut | None
    # Its own criteria, under `criteria.marketplace_options.<name>` (JSON Schema); None
    # when it takes none.
    options_schema: dict[str, Any] | None = None
    required_options: list[str] = Field(default_factory=list)
