"""A webhook endpoint on 127.0.0.1 that checks every request the way a careful receiver does.

Each request is verified with the Standard Webhooks reference library
(`standardwebhooks.Webhook(secret).verify`, ±5 minutes, any of the configured secrets);
one that fails is answered 401 and kept apart in `rejected`. Accepted requests are
recorded with their `webhook-id`, so tests can count distinct ids and repeats. Answers
can be scripted (500, 410, 429 + Retry-After, 302, slow, ...). It counts TCP connections
as they are accepted, so "nothing connected" can be asserted, and it can speak TLS with a
given certificate, recording the server name (SNI) each client asked for.

A threaded server, independent of any event loop: it serves async tests and other
processes (Celery workers started by a test) alike.

`guarded_client(canary_port)` is the other half of a safe SSRF test: an httpx client whose
connections to loopback addresses go where they were meant to, while any other connection
(a private, metadata or public address, or a name) is recorded and sent to a local canary
listener instead, so a sender that slips shows up as a counted connection and nothing
ever leaves 127.0.0.1.

    with WebhookReceiver(secret) as receiver:
        receiver.script(Reply(500), Reply(200))
        ... send to receiver.url ...
        assert receiver.webhook_ids == ["msg_...", "msg_..."]
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import sys
import threading
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

import httpcore
import httpx
from standardwebhooks import Webhook, WebhookVerificationError

DEFAULT_PATH = "/hook"


@dataclass(frozen=True)
class Reply:
    """One scripted answer; `delay_s` waits before answering (a slow endpoint)."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay_s: float = 0.0


@dataclass(frozen=True)
class Request:
    """One request as received; header names are lower case."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered
    payload: Any = None  # the parsed JSON, when the signature verified
    error: str | None = None  # why it did not verify

    @property
    def webhook_id(self) -> str | None:
        return self.headers.get("webhook-id")


class WebhookReceiver:
    def __init__(
        self,
        secrets: str | Sequence[str] = (),
        *,
        path: str = DEFAULT_PATH,
        certfile: str | None = None,
        keyfile: str | None = None,
    ) -> None:
        self.secrets = [secrets] if isinstance(secrets, str) else list(secrets)
        self.path = path
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._script: deque[Reply] = deque()
        self._default = Reply(200)
        self.connections = 0
        self.requests: list[Request] = []
        self.server_names: list[str | None] = []
        self._tls: ssl.SSLContext | None = None
        if certfile is not None:
            self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls.load_cert_chain(certfile, keyfile)
            self._tls.sni_callback = self._record_server_name
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.receiver = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="webhook-receiver",
            daemon=True,
        )

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> Self:
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

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
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}{self.path}"

    # --- scripting -------------------------------------------------------------------

    def script(self, *replies: Reply) -> None:
        """Answer the next verified requests with these, in order, then with the default."""
        with self._lock:
            self._script.extend(replies)

    def answer_always(self, reply: Reply) -> None:
        with self._lock:
            self._default = reply

    # --- what arrived ----------------------------------------------------------------

    @property
    def accepted(self) -> list[Request]:
        """Requests whose signature verified (whatever they were answered)."""
        with self._lock:
            return [request for request in self.requests if request.error is None]

    @property
    def rejected(self) -> list[Request]:
        """Requests that failed verification: always a sender bug in these tests."""
        with self._lock:
            return [request for request in self.requests if request.error is not None]

    @property
    def webhook_ids(self) -> list[str]:
        """`webhook-id`s of verified requests, in arrival order, repeats included."""
        return [request.webhook_id or "" for request in self.accepted]

    @property
    def delivered_ids(self) -> set[str]:
        """Distinct `webhook-id`s that were answered 2xx."""
        return {
            request.webhook_id or "" for request in self.accepted if 200 <= request.status < 300
        }

    @property
    def repeats(self) -> int:
        """How many 2xx-answered requests carried an id already answered 2xx."""
        counts = Counter(
            request.webhook_id for request in self.accepted if 200 <= request.status < 300
        )
        return sum(count - 1 for count in counts.values())

    # --- serving (called from the server's threads) -----------------------------------

    def _record_server_name(
        self, connection: ssl.SSLObject | ssl.SSLSocket, name: str | None, context: Any
    ) -> None:
        with self._lock:
            self.server_names.append(name)

    def _count_connection(self) -> None:
        with self._lock:
            self.connections += 1

    def _wrap(self, sock: socket.socket) -> socket.socket:
        if self._tls is None:
            return sock
        return self._tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)

    def _handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        payload, error = self._verify(headers, body)
        if error is not None:
            reply = Reply(401, {"Content-Type": "text/plain"}, error.encode())
        elif path.split("?", 1)[0] != self.path:
            reply = Reply(404)
        else:
            with self._lock:
                reply = self._script.popleft() if self._script else self._default
        with self._lock:
            self.requests.append(Request(method, path, headers, body, reply.status, payload, error))
        if reply.delay_s:
            self._closing.wait(reply.delay_s)
        return reply

    def _verify(self, headers: dict[str, str], body: bytes) -> tuple[Any, str | None]:
        if not self.secrets:
            return None, "the receiver has no secret to verify with"
        errors = []
        for secret in self.secrets:
            try:
                return Webhook(secret).verify(body, headers), None
            except (WebhookVerificationError, ValueError) as exc:
                errors.append(str(exc))
        return None, "; ".join(dict.fromkeys(errors))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 refuses connections under a burst of concurrent senders.
    request_queue_size = 128
    receiver: WebhookReceiver

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        self.receiver._count_connection()
        return self.receiver._wrap(sock), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or refuse the certificate hang up mid-exchange: expected.
        if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 10

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(self.timeout)
            self.request.do_handshake()
        super().setup()

    def do_POST(self) -> None:
        self._serve("POST")

    def do_GET(self) -> None:
        self._serve("GET")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = self.server.receiver._handle(method, self.path, headers, body)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Records every connection attempt; dials loopback literals, diverts the rest."""

    def __init__(self, canary_port: int) -> None:
        self.canary_port = canary_port
        self.attempts: list[tuple[str, int]] = []
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        self.attempts.append((host, port))
        if not _is_loopback_literal(host):
            host, port = "127.0.0.1", self.canary_port
        return await self._backend.connect_tcp(host, port, timeout=timeout)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not used here")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def guarded_client(
    canary_port: int, *, verify: ssl.SSLContext | None = None
) -> tuple[httpx.AsyncClient, GuardedBackend]:
    """An httpx client (trust_env=False) over a `GuardedBackend`, and that backend."""
    backend = GuardedBackend(canary_port)
    transport = _GuardedTransport(backend, verify or ssl.create_default_context())
    return httpx.AsyncClient(transport=transport, trust_env=False), backend


class _GuardedTransport(httpx.AsyncBaseTransport):
    def __init__(self, backend: GuardedBackend, ssl_context: ssl.SSLContext) -> None:
        self._pool = httpcore.AsyncConnectionPool(ssl_context=ssl_context, network_backend=backend)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors(request):
            response = await self._pool.handle_async_request(core_request)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Stream(response, request),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


class _Stream(httpx.AsyncByteStream):
    def __init__(self, response: httpcore.Response, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors(self._request):
            async for part in self._response.aiter_stream():
                yield part

    async def aclose(self) -> None:
        await self._response.aclose()


@contextmanager
def _httpx_errors(request: httpx.Request) -> Iterator[None]:
    # httpcore and httpx name their exceptions alike; callers only ever see httpx's.
    try:
        yield
    except httpcore.TimeoutException as exc:
        error = getattr(httpx, type(exc).__name__, httpx.TimeoutException)
        raise error(str(exc), request=request) from exc
    except httpcore.NetworkError as exc:
        error = getattr(httpx, type(exc).__name__, httpx.NetworkError)
        raise error(str(exc), request=request) from exc
    except httpcore.ProtocolError as exc:
        error = getattr(httpx, type(exc).__name__, httpx.ProtocolError)
        raise error(str(exc), request=request) from exc


def _is_loopback_literal(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
