"""A fake Twilio on 127.0.0.1: `POST /2010-04-01/Accounts/{sid}/Messages.json`.

Speaks the wire format of `external-apis.md` section 4 and checks requests the way Twilio
does: the path's account, HTTP Basic `AccountSid:AuthToken`, a form-encoded body, an E.164
`To`, a `From` (this account's number) or `MessagingServiceSid`, and a `Body` or
`MediaUrl`. Refusals carry Twilio's JSON error shape `{"code","message","more_info",
"status"}`. Numbers can be marked unsubscribed (21610) or landlines (21614), and the next
answers can be scripted (429/20429 with Retry-After, 500, 401/20003, slow, ...).

A threaded server, independent of any event loop:

    with TwilioFake() as twilio:
        channel = SmsChannel(client, twilio.account_sid, twilio.auth_token,
                             twilio.from_number, base_url=twilio.base_url)
        ...
        assert twilio.messages[0].body.startswith("New:")
"""

from __future__ import annotations

import re
import secrets
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import parse_qsl

from tests.fakes.server import FakeHTTPServer, Reply, basic_credentials, json_reply

MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)/Messages\.json$")
E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
MAX_BODY_CHARS = 1600

# Twilio error code -> (HTTP status, message); the messages are Twilio's own.
ERRORS: dict[int, tuple[int, str]] = {
    20003: (401, "Authenticate"),
    20404: (404, "The requested resource was not found"),
    20429: (429, "Too Many Requests"),
    21211: (400, "The 'To' number {to} is not a valid phone number."),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' phone number is required."),
    21604: (400, "A 'To' phone number is required."),
    21606: (
        400,
        "The 'From' phone number provided ({from_}) is not a valid message-capable Twilio "
        "phone number for this destination/account.",
    ),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21614: (400, "'To' number is not a valid mobile number"),
    21617: (400, "The concatenated message body exceeds the 1600 character limit."),
    20001: (500, "Internal server error"),
}


@dataclass(frozen=True)
class SentMessage:
    sid: str
    to: str
    from_: str
    body: str
    form: dict[str, str]


class TwilioFake(FakeHTTPServer):
    def __init__(
        self,
        *,
        account_sid: str | None = None,
        auth_token: str | None = None,
        from_number: str = "+447700900123",
    ) -> None:
        super().__init__()
        self.account_sid = account_sid or "AC" + secrets.token_hex(16)
        self.auth_token = auth_token or secrets.token_hex(16)
        self.from_number = from_number
        self.unsubscribed: set[str] = set()
        self.landlines: set[str] = set()
        self.messages: list[SentMessage] = []
        self.requests = 0
        self._script: deque[Reply] = deque()

    def fail_next(
        self,
        code: int,
        *,
        status: int | None = None,
        retry_after: str | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` authenticated requests with Twilio error `code`."""
        reply = error_reply(code, status=status)
        if retry_after is not None:
            reply = Reply(reply.status, reply.body, {**reply.headers, "Retry-After": retry_after})
        with self._lock:
            self._script.extend([reply] * times)

    def delay_next(self, seconds: float) -> None:
        """Answer the next authenticated request normally, but only after `seconds`."""
        with self._lock:
            self._script.append(Reply(0, delay_s=seconds))

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        with self._lock:
            self.requests += 1
        match = MESSAGES_PATH.match(path.split("?", 1)[0])
        if match is None:
            return error_reply(20404)
        if method != "POST":
            return error_reply(20404, status=405)
        if basic_credentials(headers.get("authorization", "")) != (
            self.account_sid,
            self.auth_token,
        ):
            return error_reply(20003)
        if match["sid"] != self.account_sid:
            return error_reply(20404)
        with self._lock:
            scripted = self._script.popleft() if self._script else None
        if scripted is not None and scripted.delay_s:
            self.pause(scripted.delay_s)
        elif scripted is not None:
            return scripted
        return self._create_message(headers, body)

    def crash_reply(self, exc: Exception) -> Reply:
        return json_reply(599, {"code": 0, "message": f"fake crashed: {exc!r}", "status": 599})

    def _create_message(self, headers: dict[str, str], body: bytes) -> Reply:
        content_type = headers.get("content-type", "").split(";")[0].strip()
        if content_type != "application/x-www-form-urlencoded":
            problem = f"fake Twilio: a form body was expected, not {content_type!r}"
            return json_reply(400, {"code": 0, "message": problem, "more_info": "", "status": 400})
        form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        to, from_ = form.get("To", ""), form.get("From", "")
        if not to:
            return error_reply(21604)
        if not E164.match(to):
            return error_reply(21211, to=to)
        if not from_ and not form.get("MessagingServiceSid"):
            return error_reply(21603)
        if from_ and from_ != self.from_number:
            return error_reply(21606, from_=from_)
        text = form.get("Body", "")
        if not text and not form.get("MediaUrl"):
            return error_reply(21602)
        if len(text) > MAX_BODY_CHARS:
            return error_reply(21617)
        if to in self.unsubscribed:
            return error_reply(21610)
        if to in self.landlines:
            return error_reply(21614)
        sid = "SM" + secrets.token_hex(16)
        with self._lock:
            self.messages.append(SentMessage(sid, to, from_, text, form))
        now = format_datetime(datetime.now(UTC))
        return json_reply(
            201,
            {
                "sid": sid,
                "account_sid": self.account_sid,
                "from": from_ or None,
                "to": to,
                "body": text,
                "status": "queued" if from_ else "accepted",
                "direction": "outbound-api",
                # GSM-7 text: one segment of 160, or parts of 153 once concatenated.
                "num_segments": str(1 if len(text) <= 160 else -(-len(text) // 153)),
                "num_media": "0",
                "price": None,
                "error_code": None,
                "date_created": now,
                "date_sent": None,
            },
        )


def error_reply(code: int, *, status: int | None = None, **values: str) -> Reply:
    """Twilio's error document for `code`."""
    default_status, message = ERRORS[code]
    status = status or default_status
    return json_reply(
        status,
        {
            "code": code,
            "message": message.format(**values) if values else message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
    )
