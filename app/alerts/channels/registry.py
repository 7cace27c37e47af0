"""The one place alert channels are registered: name -> how to build it from settings.

Adding a channel = one module in this package + one line in CHANNELS.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from app.alerts.channels.base import AlertChannelSender
from app.alerts.channels.in_app import InAppChannel
from app.config import Settings
from app.security.ssrf import Resolver

ChannelFactory = Callable[[httpx.AsyncClient, Settings, Resolver], AlertChannelSender]


def _in_app(
    _client: httpx.AsyncClient, _settings: Settings, _resolve: Resolver
) -> AlertChannelSender:
    return InAppChannel()


CHANNELS: dict[str, ChannelFactory] = {
    "in_app": _in_app,
}


def build_channels(
    client: httpx.AsyncClient, settings: Settings, resolve: Resolver
) -> dict[str, AlertChannelSender]:
    """Every channel, all sharing one HTTP client."""
    return {name: factory(client, settings, resolve) for name, factory in CHANNELS.items()}
