"""The one place alert channels are registered: name -> how to build it from settings.

Adding a channel = one module in this package + one line in CHANNELS.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from app.alerts.channels.apprise_push import AppriseChannel
from app.alerts.channels.base import AlertChannelSender
from app.alerts.channels.email import EmailChannel
from app.alerts.channels.in_app import InAppChannel
from app.alerts.channels.sms import SmsChannel
from app.alerts.channels.webhook import WebhookChannel
from app.config import Settings
from app.security.ssrf import Resolver

ChannelFactory = Callable[[httpx.AsyncClient, Settings, Resolver], AlertChannelSender]


def _in_app(
    _client: httpx.AsyncClient, _settings: Settings, _resolve: Resolver
) -> AlertChannelSender:
    return InAppChannel()


def _email(client: httpx.AsyncClient, settings: Settings, _resolve: Resolver) -> AlertChannelSender:
    return EmailChannel.from_settings(client, settings)


def _sms(client: httpx.AsyncClient, settings: Settings, _resolve: Resolver) -> AlertChannelSender:
    return SmsChannel.from_settings(client, settings)


def _apprise(
    _client: httpx.AsyncClient, settings: Settings, _resolve: Resolver
) -> AlertChannelSender:
    # Apprise brings its own HTTP stack; only fixed-host services are accepted at save time.
    return AppriseChannel.from_settings(settings)


CHANNELS: dict[str, ChannelFactory] = {
    "email": _email,
    "sms": _sms,
    "webhook": WebhookChannel.from_settings,
    "apprise": _apprise,
    "in_app": _in_app,
}


def build_channels(
    client: httpx.AsyncClient, settings: Settings, resolve: Resolver
) -> dict[str, AlertChannelSender]:
    """Every channel, all sharing one HTTP client."""
    return {name: factory(client, settings, resolve) for name, factory in CHANNELS.items()}
