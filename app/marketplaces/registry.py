"""The one place marketplaces are registered: name -> how to build its adapter from settings.

Adding a marketplace = one adapter module + one line in ADAPTERS.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from app.config import Settings
from app.marketplaces.base import MarketplaceAdapter
from app.marketplaces.demo import DemoAdapter
from app.marketplaces.ebay import EbayAdapter

# A factory returns None when the marketplace is switched off in the settings.
AdapterFactory = Callable[[httpx.AsyncClient, Settings], MarketplaceAdapter | None]


def _demo(_client: httpx.AsyncClient, settings: Settings) -> MarketplaceAdapter | None:
    if not settings.demo_marketplace_enabled:
        return None
    return DemoAdapter(interval_s=settings.demo_listing_interval_s)


ADAPTERS: dict[str, AdapterFactory] = {
    "demo": _demo,
    "ebay": EbayAdapter.from_settings,
}


def build_adapters(client: httpx.AsyncClient, settings: Settings) -> dict[str, MarketplaceAdapter]:
    """Every enabled adapter, all sharing one HTTP client."""
    built = {name: factory(client, settings) for name, factory in ADAPTERS.items()}
    return {name: adapter for name, adapter in built.items() if adapter is not None}
