"""The one registry of marketplaces: every entry honours the adapter contract."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from app.config import Settings
from app.marketplaces.base import Capabilities, MarketplaceOptions, Query
from app.marketplaces.registry import ADAPTERS, build_adapters, close_adapters, required_options
from app.models import Marketplace
from tests.security.test_ssrf import FakeResolver


def settings(**overrides: object) -> Settings:
    return Settings(_env_file=None, **overrides)  # type: ignore[call-arg]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


@pytest.mark.parametrize("name", sorted(ADAPTERS))
async def test_every_registered_adapter_honours_the_contract(
    name: str, http: httpx.AsyncClient
) -> None:
    assert name in {m.value for m in Marketplace}
    adapter_class = ADAPTERS[name]
    options = adapter_class.options_model
    assert options is None or issubclass(options, MarketplaceOptions)
    adapter = adapter_class.from_settings(http, settings(), FakeResolver())
    assert adapter is not None
    try:
        assert adapter.name == name
        assert isinstance(adapter.capabilities, Capabilities)
        assert adapter.capabilities.requests_per_minute > 0
        assert adapter.capabilities.page_size > 0
        assert isinstance(adapter.is_configured(), bool)
        currency = adapter.currency_for(Query(keywords=("x",)))
        assert len(currency) == 3
        assert currency.isupper()
    finally:
        await close_adapters([adapter])


def test_options_say_which_keys_are_required() -> None:
    assert required_options(ADAPTERS["craigslist"].options_model) == ["city"]
    assert required_options(ADAPTERS["vinted"].options_model) == []
    assert required_options(None) == []


async def test_marketplaces_enabled_limits_what_is_built(http: httpx.AsyncClient) -> None:
    built = build_adapters(http, settings(marketplaces_enabled="ebay, RSS"), FakeResolver())
    assert set(built) == {"ebay", "rss"}
    everything = build_adapters(http, settings(), FakeResolver())
    assert set(everything) == set(ADAPTERS)
    without_demo = build_adapters(http, settings(demo_marketplace_enabled=False))
    assert "demo" not in without_demo


async def test_adapters_with_their_own_proxy_client_close_it(http: httpx.AsyncClient) -> None:
    built = build_adapters(
        http, settings(http_proxy_url="http://127.0.0.1:9", marketplaces_enabled="gumtree,reddit")
    )
    clients = [adapter.fetcher.client for adapter in built.values()]  # type: ignore[attr-defined]
    assert all(client is not http for client in clients)
    await close_adapters(built.values())
    assert all(client.is_closed for client in clients)
    assert not http.is_closed
