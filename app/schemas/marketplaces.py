"""Marketplace descriptions for GET /marketplaces/."""

from __future__ import annotations

from pydantic import BaseModel


class CapabilitiesOut(BaseModel):
    price_filter: bool
    condition_filter: bool
    location_filter: bool
    page_size: int
    requests_per_minute: int


class MarketplaceOut(BaseModel):
    name: str
    # Available: this server can check it. Configured: it has what it needs (credentials).
    available: bool
    configured: bool
    capabilities: CapabilitiesOut | None
