"""The one place marketplaces are registered: name -> its adapter class.

Adding a marketplace = one adapter module + one line in ADAPTERS. An adapter class says
how it is built from the settings (`from_settings`, None when switched off) and which
criteria of its own a search may or must give (`options_model`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

import httpx
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from app.config import Settings
from app.errors import InvalidInput
from app.marketplaces.base import ClosableAdapter, MarketplaceAdapter, MarketplaceOptions
from app.marketplaces.craigslist import CraigslistAdapter
from app.marketplaces.demo import DemoAdapter
from app.marketplaces.ebay import EbayAdapter
from app.marketplaces.facebook import FacebookAdapter
from app.marketplaces.gumtree import GumtreeAdapter
from app.marketplaces.reddit import RedditAdapter
from app.marketplaces.rss import RssAdapter
from app.marketplaces.vinted import VintedAdapter
from app.schemas import messages
from app.security.ssrf import Resolver

OPTIONS_PATH = "criteria.marketplace_options"


class AdapterClass(Protocol):
    """What the registry needs of an adapter class (the class object itself)."""

    @property
    def options_model(self) -> type[MarketplaceOptions] | None: ...

    def from_settings(
        self, client: httpx.AsyncClient, settings: Settings, resolve: Resolver | None = None
    ) -> MarketplaceAdapter | None: ...


ADAPTERS: dict[str, AdapterClass] = {
    "demo": DemoAdapter,
    "ebay": EbayAdapter,
    "gumtree": GumtreeAdapter,
    "craigslist": CraigslistAdapter,
    "vinted": VintedAdapter,
    "reddit": RedditAdapter,
    "rss": RssAdapter,
    "facebook": FacebookAdapter,
}


def build_adapters(
    client: httpx.AsyncClient, settings: Settings, resolve: Resolver | None = None
) -> dict[str, MarketplaceAdapter]:
    """Every enabled adapter (MARKETPLACES_ENABLED, empty = all), sharing one HTTP client;
    `resolve` is how user-supplied URLs (feeds) are resolved for the SSRF check."""
    enabled = set(settings.marketplaces_enabled) or set(ADAPTERS)
    built = {
        name: adapter_class.from_settings(client, settings, resolve)
        for name, adapter_class in ADAPTERS.items()
        if name in enabled
    }
    return {name: adapter for name, adapter in built.items() if adapter is not None}


async def close_adapters(adapters: Iterable[MarketplaceAdapter]) -> None:
    """Release what adapters own themselves (a proxied HTTP client); the shared client is
    closed by whoever built it."""
    for adapter in adapters:
        if isinstance(adapter, ClosableAdapter):
            await adapter.aclose()


def options_model(marketplace: str) -> type[MarketplaceOptions] | None:
    adapter_class = ADAPTERS.get(marketplace)
    return adapter_class.options_model if adapter_class is not None else None


def check_options(
    marketplaces: Iterable[str], given: Mapping[str, Mapping[str, object]]
) -> dict[str, dict[str, str]]:
    """The marketplace options of a search, validated and normalised, keyed by marketplace.

    Every chosen marketplace that needs options must have valid ones; options for a
    marketplace that is not chosen, or that takes none, and unknown keys are refused.
    Raises InvalidInput naming each offending field (`criteria.marketplace_options.<name>.<key>`).
    """
    chosen = list(marketplaces)
    problems: list[str] = []
    for name in given:
        if name not in chosen:
            problems.append(
                f"{OPTIONS_PATH}.{name}: {name} is not one of this search's marketplaces"
            )
        elif options_model(name) is None:
            problems.append(f"{OPTIONS_PATH}.{name}: {name} takes no options")
    checked: dict[str, dict[str, str]] = {}
    for name in chosen:
        model = options_model(name)
        if model is None or (name not in given and not _needs_options(model)):
            continue
        try:
            options = model.model_validate(given.get(name, {}))
        except ValidationError as exc:
            problems += [_problem(name, error) for error in exc.errors()]
            continue
        checked[name] = options.model_dump(exclude_none=True)
    if problems:
        # One problem names its field, so a form can show it beside that input.
        only = problems[0].partition(": ")[0] if len(problems) == 1 else None
        raise InvalidInput("; ".join(problems), field=only)
    return checked


def user_urls(options: Mapping[str, Mapping[str, str]]) -> list[tuple[str, str]]:
    """(field path, URL) of every user-supplied URL among validated options, for the SSRF
    check when a search is saved."""
    urls: list[tuple[str, str]] = []
    for name, values in options.items():
        model = options_model(name)
        for field in model.user_url_fields if model is not None else ():
            if values.get(field):
                urls.append((f"{OPTIONS_PATH}.{name}.{field}", values[field]))
    return urls


def required_options(model: type[MarketplaceOptions] | None) -> list[str]:
    if model is None:
        return []
    return [name for name, field in model.model_fields.items() if field.is_required()]


def _needs_options(model: type[MarketplaceOptions]) -> bool:
    return bool(required_options(model))


def _problem(marketplace: str, error: ErrorDetails) -> str:
    path = ".".join([OPTIONS_PATH, marketplace, *(str(part) for part in error["loc"])])
    return f"{path}: {messages.human_message(error)}"
