"""The `apprise` channel: chat and push (Telegram, Discord, Slack, ntfy, ...) via Apprise URLs.

Named apprise_push so that it never stands in for the `apprise` package it uses.

Apprise reports only success or failure per URL, never a status code, so a failed URL is
retried; a URL Apprise cannot parse will never work and is permanent. Apprise's plugins
use blocking `requests`, so each URL is notified in a worker thread, all URLs at once.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

import apprise
from apprise.manager_plugins import NotificationManager

from app.alerts import render
from app.alerts.channels.base import (
    AlertMessage,
    DeliveryResult,
    DeliveryStatus,
    Recipient,
)

if TYPE_CHECKING:
    from app.config import Settings

# Apprise's plugins time out each request themselves (4 s connect, 4 s read by default);
# this bounds a plugin that retries or hangs anyway.
DEFAULT_TIMEOUT_S = 30.0
# Alerts whose URLs are partly delivered, remembered so that a retry skips those URLs.
MAX_REMEMBERED_ALERTS = 10_000


class AppriseChannel:
    """Sends one alert to each of the recipient's Apprise URLs."""

    name = "apprise"

    def __init__(
        self,
        *,
        app_name: str = "Marketplace Monitor",
        app_url: str = "",
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        """`app_name` is the User-Agent and sender name Apprise's plugins show."""
        _load_plugins()
        self._app_name = app_name
        self._app_url = app_url
        self._timeout_s = timeout_s
        # alert id -> URLs that already got it. Only this process knows: a retry handled
        # by another worker can repeat a message on the URLs that succeeded the first time.
        self._delivered: OrderedDict[uuid.UUID, set[str]] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Settings) -> AppriseChannel:
        return cls(app_name=settings.app_name, app_url=settings.public_base_url)

    def is_configured(self) -> bool:
        return True

    def can_reach(self, recipient: Recipient) -> bool:
        return any(url.strip() for url in recipient.apprise_urls)

    async def send(self, recipient: Recipient, message: AlertMessage) -> DeliveryResult:
        urls = list(dict.fromkeys(url.strip() for url in recipient.apprise_urls if url.strip()))
        if not urls:
            return DeliveryResult.permanent("no push URLs")
        targets: dict[str, apprise.Apprise] = {}
        for url in urls:
            notifier = apprise.Apprise(asset=self._asset())
            if notifier.add(url):
                targets[url] = notifier
        unrecognised = len(urls) - len(targets)
        if not targets:
            return DeliveryResult.permanent(_count(unrecognised, "push URL") + " not recognised")

        already = self._delivered.get(message.alert_id, set())
        failed = await self._notify_all(
            {url: n for url, n in targets.items() if url not in already}, message
        )
        if failed:
            return DeliveryResult.retry(
                f"{len(failed)} of {_count(len(targets), 'push URL')} failed"
            )
        self._delivered.pop(message.alert_id, None)
        if unrecognised:
            note = _count(unrecognised, "push URL") + " not recognised"
            return DeliveryResult(DeliveryStatus.DELIVERED, error=note)
        return DeliveryResult.delivered()

    async def _notify_all(
        self, targets: dict[str, apprise.Apprise], message: AlertMessage
    ) -> list[str]:
        """Notify every target concurrently; return the URLs that failed or timed out.

        A success is remembered even when it arrives after the timeout, so the retry of
        this alert does not send it to that URL again.
        """
        if not targets:
            return []
        title = render.subject_line(message)
        body = render.plain_text(message, include_title=False)
        notify_type = (
            apprise.NotifyType.WARNING if message.kind == "system" else apprise.NotifyType.INFO
        )
        tasks: dict[asyncio.Task[bool | None], str] = {}
        for url, notifier in targets.items():
            task = asyncio.create_task(
                asyncio.to_thread(
                    notifier.notify,
                    body=body,
                    title=title,
                    notify_type=notify_type,
                    body_format=apprise.NotifyFormat.TEXT,
                )
            )
            task.add_done_callback(self._remember_success(message.alert_id, url))
            tasks[task] = url
        done, _ = await asyncio.wait(tasks, timeout=self._timeout_s)
        return [url for task, url in tasks.items() if task not in done or not _succeeded(task)]

    def _remember_success(
        self, alert_id: uuid.UUID, url: str
    ) -> Callable[[asyncio.Task[bool | None]], None]:
        def remember(task: asyncio.Task[bool | None]) -> None:
            if not _succeeded(task):
                return
            self._delivered.setdefault(alert_id, set()).add(url)
            self._delivered.move_to_end(alert_id)
            while len(self._delivered) > MAX_REMEMBERED_ALERTS:
                self._delivered.popitem(last=False)

        return remember

    def _asset(self) -> apprise.AppriseAsset:
        # memory: Apprise's persistent store would otherwise write files under the cache dir.
        asset = apprise.AppriseAsset(storage_mode="memory", async_mode=False)
        asset.app_id = self._app_name
        asset.app_desc = self._app_name
        if self._app_url:
            asset.app_url = self._app_url
        return asset


@functools.cache
def _load_plugins() -> None:
    """Import Apprise's plugins once, up front, rather than in whichever worker thread
    parses the first URL. Its email plugin imports the standard `imghdr` module, deprecated
    since Python 3.11: that one DeprecationWarning says nothing about our code."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="'imghdr' is deprecated", category=DeprecationWarning
        )
        NotificationManager().load_modules()  # type: ignore[no-untyped-call]


def _succeeded(task: asyncio.Task[bool | None]) -> bool:
    """True only for Apprise's True: False is a failure, None "nothing was notified"."""
    return not task.cancelled() and task.exception() is None and task.result() is True


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
