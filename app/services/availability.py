"""What this server can use: the marketplaces and alert channels it is set up for, and
for the others the settings an operator adds to enable them.

Forms, templates and API defaults offer only what works here; what does not is shown
disabled with its setting, and a search on a marketplace that cannot be checked waits
for the operator instead of failing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from app.marketplaces import registry
from app.marketplaces.base import MarketplaceAdapter
from app.models import User
from app.models.enums import AlertChannel, Marketplace

# What `.env` needs for a marketplace that asks for nothing but to be switched on.
_ENABLE_SETTING = "MARKETPLACES_ENABLED (add {name}, or leave it empty for all)"
_DEMO_SETTING = "DEMO_MARKETPLACE_ENABLED=true (and demo in MARKETPLACES_ENABLED, if it lists any)"


class _Configurable(Protocol):
    def is_configured(self) -> bool: ...


@dataclass(frozen=True)
class SetupNeeded:
    """A marketplace or channel of a search that this server cannot use yet."""

    kind: Literal["marketplace", "channel"]
    name: str
    # The settings that enable it, as an operator writes them in `.env`.
    settings: str

    @property
    def message(self) -> str:
        return f"{self.name} is not set up on this server: the operator sets {self.settings}"


def marketplace_setup(name: str, adapters: Mapping[str, MarketplaceAdapter]) -> str | None:
    """The settings that would let this server check `name`; None when it can already."""
    adapter = adapters.get(name)
    if adapter is not None and adapter.is_configured():
        return None
    hint = getattr(registry.ADAPTERS.get(name), "setup_hint", None)
    enable = _ENABLE_SETTING.format(name=name)
    if adapter is None:
        return _DEMO_SETTING if name == Marketplace.DEMO.value else enable
    return hint or enable


def usable_marketplaces(adapters: Mapping[str, MarketplaceAdapter]) -> list[str]:
    """The marketplaces this server can check, in the `Marketplace` enum's order."""
    return [m.value for m in Marketplace if marketplace_setup(m.value, adapters) is None]


def channel_setup(name: str, channels: Mapping[str, _Configurable]) -> str | None:
    """The settings that would let this server send alerts on `name`; None when it can."""
    channel = channels.get(name)
    if channel is not None and channel.is_configured():
        return None
    return str(getattr(channel, "setup_hint", "") or f"the {name} channel's settings")


def usable_channels(channels: Mapping[str, _Configurable]) -> list[str]:
    return [c.value for c in AlertChannel if channel_setup(c.value, channels) is None]


def search_setup(
    marketplaces: Iterable[str],
    alert_channels: Iterable[str],
    adapters: Mapping[str, MarketplaceAdapter],
    channels: Mapping[str, _Configurable] | None,
) -> list[SetupNeeded]:
    """What a search needs the operator to set up: its marketplaces this server cannot
    check, then its channels it cannot send on (channels unknown: left out)."""
    needed = [
        SetupNeeded("marketplace", name, hint)
        for name in marketplaces
        if (hint := marketplace_setup(name, adapters)) is not None
    ]
    if channels is not None:
        needed += [
            SetupNeeded("channel", name, hint)
            for name in alert_channels
            if (hint := channel_setup(name, channels)) is not None
        ]
    return needed


def starting_marketplaces(
    wanted: Iterable[str], adapters: Mapping[str, MarketplaceAdapter], *, limit: int
) -> list[str]:
    """The marketplaces a new search from a template starts with here: the template's
    that this server can check (at most `limit`, the plan's), else the demo marketplace
    when it runs, else the template's own (the search then waits for setup)."""
    wanted = list(wanted)
    usable = [name for name in wanted if marketplace_setup(name, adapters) is None]
    if usable:
        return usable[:limit]
    if marketplace_setup(Marketplace.DEMO.value, adapters) is None:
        return [Marketplace.DEMO.value]
    return wanted[:limit]


def starting_channels(wanted: Iterable[str], channels: Mapping[str, _Configurable]) -> list[str]:
    """A new search's channels: those wanted that this server can send on, and always
    in-app, which needs nothing."""
    usable = [name for name in wanted if channel_setup(name, channels) is None]
    if AlertChannel.IN_APP.value not in usable:
        usable.insert(0, AlertChannel.IN_APP.value)
    return usable


@dataclass(frozen=True)
class ServerSetup:
    """What this server has: its marketplace adapters and its alert channels (None before
    the delivery runtime exists, e.g. in a process that only checks)."""

    adapters: Mapping[str, MarketplaceAdapter]
    channels: Mapping[str, _Configurable] | None = None

    def search_setup(
        self, marketplaces: Iterable[str], alert_channels: Iterable[str]
    ) -> list[SetupNeeded]:
        return search_setup(marketplaces, alert_channels, self.adapters, self.channels)


def user_channel_setup(user: User, channel: str) -> str | None:
    """What the user does in Settings before `channel` can reach them; None when nothing.
    Stricter than saving a search: an unverified number gets no SMS either."""
    if channel == AlertChannel.SMS.value:
        if not user.phone_number:
            return "add your phone number"
        if not user.phone_verified:
            return "verify your phone number"
    if channel == AlertChannel.WEBHOOK.value:
        if not user.webhook_url:
            return "add a webhook URL"
        if user.webhook_disabled_at is not None:
            return "turn the webhook back on"
    if channel == AlertChannel.APPRISE.value and not user.apprise_urls:
        return "add an Apprise URL"
    return None
