"""The marketplaces known to the product, and what this server can do with each."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict

from app.errors import InvalidInput
from app.marketplaces import registry
from app.models import Marketplace
from app.monitoring.fetch import MonitoringRuntime
from app.schemas.marketplaces import CapabilitiesOut, MarketplaceOut
from app.services import availability


def describe_all(runtime: MonitoringRuntime) -> list[MarketplaceOut]:
    """Every marketplace of the `Marketplace` enum, in its order: whether this server has
    an adapter for it, whether that adapter has what it needs (credentials), what it
    can filter upstream, and the options of its own a search gives it."""
    described = []
    for marketplace in Marketplace:
        adapter = runtime.adapters.get(marketplace.value)
        options = registry.options_model(marketplace.value)
        described.append(
            MarketplaceOut(
                name=marketplace.value,
                available=adapter is not None,
                configured=adapter is not None and adapter.is_configured(),
                setup_settings=availability.marketplace_setup(marketplace.value, runtime.adapters),
                capabilities=None
                if adapter is None
                else CapabilitiesOut(**asdict(adapter.capabilities)),
                options_schema=options.model_json_schema() if options is not None else None,
                required_options=registry.required_options(options),
            )
        )
    return described


def check_can_search(marketplaces: Iterable[str], runtime: MonitoringRuntime) -> None:
    """Refuse a search on a marketplace that needs software this server lacks (facebook
    without Playwright or a browser): it could never be checked. A marketplace that only
    lacks credentials (eBay) is accepted; its searches show the error until the operator
    adds them."""
    for name in marketplaces:
        adapter = runtime.adapters.get(name)
        if (
            adapter is not None
            and getattr(adapter, "needs_local_software", False)
            and not adapter.is_configured()
        ):
            raise InvalidInput(
                f"{name} is not available on this server (it needs software the operator "
                "has not installed); choose another marketplace"
            )
