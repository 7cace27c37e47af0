"""The Apprise channel against a local receiver: Apprise's json:// and ntfy:// plugins post to
a threaded HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

import pytest

from app.alerts import render
from app.alerts.channels.apprise_push import AppriseChannel
from app.alerts.channels.base import (
    AlertMessage,
    DeliveryStatus,
    ListingInfo,
    Recipient,
)
from app.config import Settings

MESSAGE = AlertMessage(
    alert_id=uuid.UUID("7f1d2c3b-4a59-4e6f-8a7b-0c1d2e3f4a5b"),
    idempotency_key="new_listing:s1:l1:apprise",
    kind="new_listing",
    subject="New match: iPhone 14 128GB",
    listings=(
        ListingInfo(
            title="iPhone 14 128GB",
            url="https://www.ebay.co.uk/itm/1",
            marketplace="ebay",
            price="349.99",
            currency="GBP",
            location="London",
        ),
    ),
    search_name="iPhones",
    manage_url="https://mm.example/searches/1",
)


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class Receiver:
    """Answers 200 to every POST unless a path is told to answer something else."""

    def __init__(self) -> None:
        self.statuses: dict[str, int] = {}
        self.delay_s = 0.0
        self._lock = threading.Lock()
        self._requests: list[Received] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.receiver = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        assert self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def address(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def requests(self) -> list[Received]:
        with self._lock:
            return list(self._requests)

    def to(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    def record(self, request: Received) -> int:
        with self._lock:
            self._requests.append(request)
            return self.statuses.get(request.path, 200)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: Receiver


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        request = Received(
            "POST",
            self.path,
            {name.lower(): value for name, value in self.headers.items()},
            json.loads(raw) if raw else {},
        )
        status = self.server.receiver.record(request)
        if self.server.receiver.delay_s:
            time.sleep(self.server.receiver.delay_s)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(autouse=True)
def only_loopback_lookups(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Apprise may look up nothing but 127.0.0.1: no DNS for any other name."""
    looked_up: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(str(host))
        if host not in ("127.0.0.1", b"127.0.0.1"):
            raise socket.gaierror(socket.EAI_NONAME, f"test refused to resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    def guarded(lookup: Any) -> Any:
        # http.server asks getfqdn("127.0.0.1") when it binds; nothing else may be asked.
        def only_loopback(name: Any = "", *args: Any) -> Any:
            looked_up.append(str(name))
            if name != "127.0.0.1":
                raise OSError(f"test refused to look up {name!r}")
            return lookup(name, *args)

        return only_loopback

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    for name in ("gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getfqdn"):
        monkeypatch.setattr(socket, name, guarded(getattr(socket, name)))
    yield looked_up
    assert set(looked_up) <= {"127.0.0.1"}, looked_up


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


def recipient(*urls: str) -> Recipient:
    return Recipient(user_id=uuid.uuid4(), email="ann@example.com", apprise_urls=urls)


async def test_json_url_receives_title_message_and_type(receiver: Receiver) -> None:
    url = f"json://{receiver.address}/hooks/mm"

    result = await AppriseChannel().send(recipient(url), MESSAGE)

    assert result.status is DeliveryStatus.DELIVERED
    [request] = receiver.requests
    assert request.path == "/hooks/mm"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "Marketplace Monitor"
    assert request.body == {
        "version": "1.0",
        "title": "New match: iPhone 14 128GB",
        "message": render.plain_text(MESSAGE, include_title=False).strip(),
        "attachments": [],
        "type": "info",
    }
    assert "£349.99 · London · eBay" in request.body["message"]
    assert "https://www.ebay.co.uk/itm/1" in request.body["message"]


async def test_every_url_of_the_recipient_gets_the_message(receiver: Receiver) -> None:
    urls = [f"json://{receiver.address}/a", f"json://{receiver.address}/b"]

    result = await AppriseChannel().send(recipient(*urls), MESSAGE)

    assert result.status is DeliveryStatus.DELIVERED
    assert sorted(r.path for r in receiver.requests) == ["/a", "/b"]


async def test_system_message_is_sent_as_a_warning(receiver: Receiver) -> None:
    notice = AlertMessage(
        alert_id=uuid.uuid4(),
        idempotency_key="system:1",
        kind="system",
        subject="Your search 'iPhones' is failing",
        text="The last 5 checks were blocked.",
    )

    result = await AppriseChannel().send(recipient(f"json://{receiver.address}/s"), notice)

    assert result.status is DeliveryStatus.DELIVERED
    [request] = receiver.requests
    assert request.body["type"] == "warning"
    assert request.body["title"] == "Your search 'iPhones' is failing"
    assert request.body["message"] == "The last 5 checks were blocked."


async def test_receiver_answering_500_is_retried(receiver: Receiver) -> None:
    receiver.statuses["/hook"] = 500

    result = await AppriseChannel().send(recipient(f"json://{receiver.address}/hook"), MESSAGE)

    assert result.status is DeliveryStatus.RETRY
    assert result.error == "1 of 1 push URL failed"


async def test_a_retry_skips_the_urls_that_already_got_the_alert(receiver: Receiver) -> None:
    channel = AppriseChannel()
    urls = recipient(f"json://{receiver.address}/ok", f"json://{receiver.address}/flaky")
    receiver.statuses["/flaky"] = 503

    first = await channel.send(urls, MESSAGE)
    receiver.statuses["/flaky"] = 200
    second = await channel.send(urls, MESSAGE)

    assert first.status is DeliveryStatus.RETRY
    assert first.error == "1 of 2 push URLs failed"
    assert second.status is DeliveryStatus.DELIVERED
    assert len(receiver.to("/ok")) == 1
    assert len(receiver.to("/flaky")) == 2


async def test_unreachable_url_is_retried() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]

    result = await AppriseChannel().send(recipient(f"json://127.0.0.1:{closed_port}/hook"), MESSAGE)

    assert result.status is DeliveryStatus.RETRY


async def test_slow_url_times_out_and_its_late_success_is_not_sent_again(
    receiver: Receiver,
) -> None:
    channel = AppriseChannel(timeout_s=0.2)
    slow = recipient(f"json://{receiver.address}/slow")
    receiver.delay_s = 1.0

    first = await channel.send(slow, MESSAGE)
    await _notifications_finished()
    second = await channel.send(slow, MESSAGE)

    assert first.status is DeliveryStatus.RETRY
    assert second.status is DeliveryStatus.DELIVERED
    assert len(receiver.to("/slow")) == 1


@pytest.mark.parametrize("url", ["notaservice://token", "json//missing-colon", "::::"])
async def test_url_apprise_cannot_parse_is_permanent(receiver: Receiver, url: str) -> None:
    result = await AppriseChannel().send(recipient(url), MESSAGE)

    assert result.status is DeliveryStatus.PERMANENT
    assert result.error == "1 push URL not recognised"
    assert receiver.requests == []


async def test_unparsable_url_beside_a_working_one_is_noted_on_a_delivered_result(
    receiver: Receiver,
) -> None:
    urls = recipient("notaservice://token", f"json://{receiver.address}/hook")

    result = await AppriseChannel().send(urls, MESSAGE)

    assert result.status is DeliveryStatus.DELIVERED
    assert result.error == "1 push URL not recognised"
    assert len(receiver.to("/hook")) == 1


async def test_ntfy_url_posts_topic_title_and_message_to_the_server_root(
    receiver: Receiver,
) -> None:
    # A host and a topic make Apprise's ntfy plugin talk to that server (http; ntfys = https).
    result = await AppriseChannel().send(recipient(f"ntfy://{receiver.address}/mm-alerts"), MESSAGE)

    assert result.status is DeliveryStatus.DELIVERED
    [request] = receiver.requests
    assert request.path == "/"
    assert request.body["topic"] == "mm-alerts"
    assert request.body["title"] == "New match: iPhone 14 128GB"
    assert "https://www.ebay.co.uk/itm/1" in request.body["message"]


def test_channel_is_always_configured_and_reaches_users_with_urls() -> None:
    channel = AppriseChannel()

    assert channel.is_configured()
    assert channel.can_reach(recipient("json://127.0.0.1/x"))
    assert not channel.can_reach(recipient())
    assert not channel.can_reach(recipient(" "))


async def test_recipient_without_urls_is_permanent() -> None:
    result = await AppriseChannel().send(recipient(), MESSAGE)

    assert result.status is DeliveryStatus.PERMANENT


async def test_channel_from_settings_names_the_app(receiver: Receiver) -> None:
    channel = AppriseChannel.from_settings(Settings(_env_file=None, app_name="Deal Watch"))

    await channel.send(recipient(f"json://{receiver.address}/hook"), MESSAGE)

    [request] = receiver.requests
    assert request.headers["user-agent"] == "Deal Watch"


async def _notifications_finished() -> None:
    """Wait for notifications still running in worker threads after a timeout."""
    current = asyncio.current_task()
    running = [
        task
        for task in asyncio.all_tasks()
        if task is not current and task.get_coro().__qualname__ == "to_thread"  # type: ignore[union-attr]
    ]
    if running:
        await asyncio.wait(running, timeout=10)
