"""A fake SendGrid on 127.0.0.1: `POST /v3/mail/send`.

Speaks the wire format of `external-apis.md` section 3 and checks requests the way
SendGrid does: a Bearer `SG.` key (the configured one), a JSON body with
`personalizations[].to[].email`, `from.email`, a subject, and content (text/plain before
text/html) or a template_id; base64 attachments. A good request gets 202 with an empty
body and `X-Message-Id`; failures can be scripted (400 with `errors[].field`, 401, 413,
429 with Retry-After and rate headers, 500).

A threaded HTTP server, independent of any event loop:

    with SendGridFake() as fake:
        channel = EmailChannel(client, sendgrid_api_key=fake.api_key,
                               sendgrid_base_url=fake.base_url, from_address=...)
        fake.fail(429, retry_after="30")
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tests.fakes.server import FakeHTTPServer, Reply, json_reply

SEND_PATH = "/v3/mail/send"
MAX_PERSONALIZATIONS = 1000
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$|^[^@\s]+@localhost$")

UNAUTHORIZED = "The provided authorization grant is invalid, expired, or revoked"


@dataclass(frozen=True)
class SentMail:
    """One request SendGrid received; header names are lower case."""

    headers: dict[str, str]
    body: dict[str, Any] | None
    status: int

    @property
    def to(self) -> list[str]:
        assert self.body is not None
        return [to["email"] for p in self.body["personalizations"] for to in p.get("to", [])]

    def content(self, content_type: str) -> str:
        assert self.body is not None
        value: str = next(c["value"] for c in self.body["content"] if c["type"] == content_type)
        return value


class SendGridFake(FakeHTTPServer):
    """The fake server. Script failures from the test; read what it received."""

    def __init__(self, *, api_key: str | None = None) -> None:
        super().__init__()
        self.api_key = api_key or f"SG.{secrets.token_urlsafe(16)}.{secrets.token_urlsafe(32)}"
        # Seconds each request waits before answering (to provoke client timeouts).
        self.delay_s = 0.0
        self._script: deque[Reply] = deque()
        self._next_id = 0
        self.requests: list[SentMail] = []

    # --- configuring ------------------------------------------------------------------

    def fail(
        self,
        status: int,
        *,
        field: str | None = None,
        message: str | None = None,
        retry_after: str | None = None,
        times: int = 1,
    ) -> None:
        """The next `times` requests get SendGrid's error reply for `status` (after the
        request is counted, whatever it carried)."""
        headers: dict[str, str] = {}
        if status == 429:
            headers.update(
                {
                    "X-RateLimit-Limit": "600",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(int(time.time()) + 60),
                }
            )
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        text = message or _DEFAULT_MESSAGES.get(status, "internal error")
        reply = _error(status, text, field, headers)
        with self._lock:
            self._script.extend([reply] * times)

    # --- what was received ------------------------------------------------------------

    @property
    def calls(self) -> int:
        with self._lock:
            return len(self.requests)

    @property
    def accepted(self) -> list[SentMail]:
        with self._lock:
            return [r for r in self.requests if r.status == 202]

    # --- serving ----------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Reply:
        if urlsplit(target).path != SEND_PATH:
            return _error(404, "Not found", None)
        if method != "POST":
            return _error(405, "Method not allowed", None)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self._lock:
            scripted = self._script.popleft() if self._script else None
        self.pause(self.delay_s)
        reply = scripted or self._check(headers, body)
        with self._lock:
            self.requests.append(SentMail(headers, body, reply.status))
        return reply

    def crash_reply(self, exc: Exception) -> Reply:
        return _error(599, f"fake crashed: {exc!r}", None)

    def _check(self, headers: dict[str, str], body: Any) -> Reply:
        authorization = headers.get("authorization", "")
        token = authorization.removeprefix("Bearer ")
        if not authorization.startswith("Bearer SG.") or token != self.api_key:
            return _error(401, UNAUTHORIZED, None)
        if headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return _error(400, "Content-Type should be application/json.", None)
        if not isinstance(body, dict):
            return _error(400, "Bad Request", None)
        problem = _body_problem(body)
        if problem is not None:
            field_name, message = problem
            return _error(400, message, field_name)
        with self._lock:
            self._next_id += 1
            message_id = f"fake{self._next_id:06d}{secrets.token_hex(6)}"
        return Reply(202, b"", {"X-Message-Id": message_id})


_DEFAULT_MESSAGES = {
    400: "Bad Request",
    401: UNAUTHORIZED,
    403: "The from address does not match a verified Sender Identity.",
    413: "The JSON payload you have included in your request is too large.",
    429: "too many requests",
    500: "internal error",
}


def _body_problem(body: dict[str, Any]) -> tuple[str | None, str] | None:
    """(field, message) of the first thing SendGrid would refuse, or None."""
    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        return "personalizations", "The personalizations field is required."
    if len(personalizations) > MAX_PERSONALIZATIONS:
        return "personalizations", "The personalizations field is limited to 1000 objects."
    for i, personalization in enumerate(personalizations):
        to = personalization.get("to") if isinstance(personalization, dict) else None
        if not isinstance(to, list) or not to:
            return f"personalizations.{i}.to", "The to array is required."
        for j, address in enumerate(to):
            email = address.get("email") if isinstance(address, dict) else None
            if not isinstance(email, str) or not _EMAIL.match(email):
                return (
                    f"personalizations.{i}.to.{j}.email",
                    "Does not contain a valid address.",
                )
        custom_args = personalization.get("custom_args", {})
        if not all(isinstance(v, str) for v in custom_args.values()):
            return f"personalizations.{i}.custom_args", "Custom args values must be strings."
    sender = body.get("from")
    if not isinstance(sender, dict) or not isinstance(sender.get("email"), str):
        return "from.email", "The from object must be provided for every email send."
    if not _EMAIL.match(sender["email"]):
        return "from.email", "The from email does not contain a valid address."
    if not body.get("subject") and not all(p.get("subject") for p in personalizations):
        return "subject", "The subject is required."
    if not all(isinstance(v, str) for v in body.get("custom_args", {}).values()):
        return "custom_args", "Custom args values must be strings."
    if not all(isinstance(v, str) for v in body.get("headers", {}).values()):
        return "headers", "Header values must be strings."
    content = body.get("content")
    if content is None and not body.get("template_id"):
        return "content", "Unless a valid template_id is provided, the content is required."
    if content is not None:
        problem = _content_problem(content)
        if problem is not None:
            return problem
    for k, attachment in enumerate(body.get("attachments", [])):
        if not attachment.get("filename"):
            return f"attachments.{k}.filename", "The attachment filename is required."
        try:
            base64.b64decode(attachment.get("content", ""), validate=True)
        except (binascii.Error, ValueError):
            return f"attachments.{k}.content", "The attachment content must be base64 encoded."
    return None


def _content_problem(content: Any) -> tuple[str, str] | None:
    if not isinstance(content, list) or not content:
        return "content", "The content value must be an array of at least one object."
    types = []
    for i, part in enumerate(content):
        if not isinstance(part, dict) or not part.get("type") or not part.get("value"):
            return (
                f"content.{i}.value",
                "The content value must be a string at least one character.",
            )
        types.append(part["type"])
    if (
        "text/plain" in types
        and "text/html" in types
        and types.index("text/plain") > types.index("text/html")
    ):
        return "content", "If present, text/plain and text/html may only be provided in order."
    return None


def _error(
    status: int, message: str, field_name: str | None, headers: Mapping[str, str] | None = None
) -> Reply:
    body = {"errors": [{"message": message, "field": field_name, "help": None}]}
    return json_reply(status, body, headers)
