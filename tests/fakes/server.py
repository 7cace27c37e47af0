"""The threaded HTTP server the fake services in this package are built on.

A fake subclasses `FakeHTTPServer` and implements `handle(method, target, headers, body)`
returning a `Reply`; it may override `crash_reply(exc)` to render its own bugs in the
service's error shape. The server listens on 127.0.0.1 on a free port, serves each request
on its own daemon thread and does not depend on any event loop, so it serves async tests
and other processes (a Celery worker started by a test) alike:

    class PingFake(FakeHTTPServer):
        def handle(self, method, target, headers, body):
            return json_reply(200, {"pong": True})

    with PingFake() as fake:
        ... send to fake.base_url ...
"""

from __future__ import annotations

import base64
import json
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


@dataclass(frozen=True)
class Reply:
    """One answer. `delay_s` means whatever the fake that scripts it says it means."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


def json_reply(
    status: int,
    body: bytes | str | Mapping[str, Any] | list[Any],
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """A reply with a JSON content type; bytes and str bodies are sent as they are (tests
    use them for malformed documents), anything else is encoded as UTF-8 JSON."""
    if isinstance(body, bytes):
        raw = body
    elif isinstance(body, str):
        raw = body.encode()
    else:
        raw = json.dumps(body, ensure_ascii=False).encode()
    return Reply(status, raw, {"Content-Type": "application/json", **(headers or {})})


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(user, password) of an HTTP Basic `Authorization` header, or None if it is not one."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return user, password


class FakeHTTPServer:
    """Lifecycle and request plumbing of a fake service; subclasses say what it answers.

    `handle` runs on the server's threads while the test reconfigures the fake: guard
    shared state with `self._lock`. A request header's name arrives in lower case.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- to implement -----------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        """The answer to one request; `target` is the path with its query string."""
        raise NotImplementedError

    def crash_reply(self, exc: Exception) -> Reply:
        """What a client sees when `handle` raised: a 599 nobody could mistake for the
        service's own answer, so a bug in the fake or in a test's data shows up loudly."""
        return json_reply(599, {"message": f"fake crashed: {exc!r}"})

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> Self:
        self._closing.clear()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; requests waiting in `pause` are released at once."""
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the fake first"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:<port>, without a trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    # --- for subclasses ---------------------------------------------------------------

    def pause(self, seconds: float) -> None:
        """Hold the current request for `seconds` (a slow service), or until `close`."""
        if seconds > 0:
            self._closing.wait(seconds)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeHTTPServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (a timeout test) closes the socket mid-reply; that is fine.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        fake = self.server.fake
        try:
            reply = fake.handle(method, self.path, headers, body)
        except Exception as exc:
            reply = fake.crash_reply(exc)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass
