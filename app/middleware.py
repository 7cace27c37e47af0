"""Pure ASGI middleware: a request id on every response (and on every log line of the
request), and a cap on request body size."""

from __future__ import annotations

import re
import uuid

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import logs

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIdMiddleware:
    """Echo a well-formed X-Request-ID, or mint one; handlers read it from scope state."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        with logs.request_context(request_id):
            await self.app(scope, receive, send_with_id)


class _BodyTooLarge(HTTPException):
    """Raised from `receive` mid-stream. An HTTPException because FastAPI turns any other
    error while reading the body into a 400, but re-raises these to the 413 handler."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, _too_large_detail(max_bytes))


class BodySizeLimitMiddleware:
    """Refuse bodies over max_bytes with 413, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            # int() would also take "-1", " 12" or "1_0"; RFC 9110 allows digits only.
            if not declared.isdigit():
                await _send_error(send, 400, "Invalid Content-Length header", "bad_request")
                return
            if int(declared) > self.max_bytes:
                await _send_too_large(send, self.max_bytes)
                return

        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if response_started:
                raise
            await _send_too_large(send, self.max_bytes)


def _too_large_detail(max_bytes: int) -> str:
    return f"Request body larger than {max_bytes} bytes"


async def _send_too_large(send: Send, max_bytes: int) -> None:
    await _send_error(send, 413, _too_large_detail(max_bytes), "body_too_large")


async def _send_error(send: Send, status: int, detail: str, code: str) -> None:
    body = orjson.dumps({"detail": detail, "code": code})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
