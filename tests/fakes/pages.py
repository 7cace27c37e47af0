"""What every fake of a scraped marketplace shares: HTML replies (gzip when asked), the
block pages real sites serve instead of results, and a record of the requests received.

The block pages are shaped like the ones such sites send: a bare 403 "Access denied", a
CAPTCHA interstitial, a bot-challenge page (served with 403 or 503) and a login wall.
"""

from __future__ import annotations

import gzip
from collections import deque
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from tests.fakes.server import FakeHTTPServer, Reply

ACCESS_DENIED_PAGE = """<!DOCTYPE html>
<html><head><title>Access Denied</title></head>
<body><h1>Access Denied</h1>
<p>You don't have permission to access "/search" on this server.</p>
<p>Reference #18.4f2a3b17.1716301234.1a2b3c4d</p></body></html>"""

CAPTCHA_PAGE = """<!DOCTYPE html>
<html lang="en"><head><title>Pardon the interruption</title>
<script src="https://captcha.example.invalid/px-captcha.js" async></script></head>
<body><div id="px-captcha"></div>
<h1>Please verify you are human</h1>
<p>We've noticed unusual traffic from your network. Press and hold the button to continue.</p>
</body></html>"""

CHALLENGE_PAGE = """<!DOCTYPE html>
<html lang="en-US"><head><title>Just a moment...</title>
<meta http-equiv="refresh" content="390"></head>
<body class="no-js"><div class="main-wrapper" role="main">
<h1>Checking your browser before accessing the site.</h1>
<form id="challenge-form" action="/search?__cf_chl_f_tk=abc" method="POST"></form>
<script src="/cdn-cgi/challenge-platform/h/b/orchestrate/chl_page/v1"></script>
</div></body></html>"""

LOGIN_WALL_PAGE = """<!DOCTYPE html>
<html><head><title>Log in</title></head>
<body><main><h1>Log in to continue</h1>
<form action="/login" method="post"><input name="email"><input name="password" type="password">
<button>Log in</button></form></main></body></html>"""


@dataclass(frozen=True)
class Received:
    """One request a fake received."""

    method: str
    path: str
    params: dict[str, list[str]]
    headers: dict[str, str]

    def param(self, name: str) -> str | None:
        values = self.params.get(name)
        return values[0] if values else None


def html_reply(
    status: int, page: str, *, headers: dict[str, str] | None = None, gzipped: bool = False
) -> Reply:
    body = page.encode()
    extra = dict(headers or {})
    if gzipped:
        body = gzip.compress(body)
        extra["Content-Encoding"] = "gzip"
    return Reply(status, body, {"Content-Type": "text/html; charset=utf-8", **extra})


def too_many_requests(retry_after: str | None = "1") -> Reply:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return html_reply(
        429, "<html><body><h1>429 Too Many Requests</h1></body></html>", headers=headers
    )


class ScriptedFake(FakeHTTPServer):
    """A fake that records every request and can be told to answer the next ones with
    scripted replies (a block page, a 429) before its normal behaviour."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[Received] = []
        self._scripted: deque[Reply] = deque()

    def answer_next(self, *replies: Reply) -> None:
        with self._lock:
            self._scripted.extend(replies)

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        parts = urlsplit(target)
        request = Received(method, parts.path, parse_qs(parts.query), headers)
        with self._lock:
            self.received.append(request)
            scripted = self._scripted.popleft() if self._scripted else None
        if scripted is not None:
            return scripted
        return self.serve(request)

    def serve(self, request: Received) -> Reply:
        raise NotImplementedError

    def wants_gzip(self, request: Received) -> bool:
        return "gzip" in request.headers.get("accept-encoding", "")

    def requests_to(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]
