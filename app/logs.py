"""Logging: one format for every logger (ours, uvicorn's, Celery's, the libraries'), the
context of the work on each line, and no secrets.

JSON lines in production (`LOG_FORMAT=json`, or `auto` with `DEBUG=False`), readable lines
in development. Each line carries what is bound at the time: `request_id` (set by the
request-id middleware), `user_id` and `search_id` (set once the caller is authenticated),
`task_id` and `task_name` (set around every Celery task). Before a line is written, values
that look like secrets are masked and URLs are cut down to their scheme and host: a webhook
or Apprise URL is a credential in itself.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

MASK = "[redacted]"
REQUEST_KEYS = ("user_id", "search_id")
TASK_KEYS = ("task_id", "task_name")
# Loggers that bring their own handlers; their lines go through ours instead.
_FOREIGN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "alembic")
# httpx logs every request's full URL at INFO: webhook URLs, query strings. Warnings only.
_QUIET_LOGGERS = ("httpx", "httpcore")
# Schemes whose host names nothing secret; any other scheme's "host" may be a token
# (tgram://<bot token>/..., discord://<webhook id>/<token>).
_PLAIN_SCHEMES = frozenset(
    {"http", "https", "ws", "wss", "redis", "rediss", "amqp", "amqps", "smtp", "smtps"}
)
_SECRET_KEY_NAME = re.compile(
    r"pass(word|wd)?|secret|token|api[_-]?key|authorization|cookie|signature|credential",
    re.IGNORECASE,
)
# Every pattern below runs in time linear in the text, whatever the text: a pattern may
# only start at the beginning of a run of the characters it repeats (a lookbehind, not
# \b, which also holds inside runs of "-", "." or "+"), repeats possessively where giving
# characters back cannot help, and a key's repeated part follows a literal, bounded.
# Log lines carry request paths and queries of any length and are written on the event
# loop, so one backtracking pattern lets a single long URL stall the whole process.
_URL = re.compile(
    r"(?<![A-Za-z0-9+.-])([A-Za-z][A-Za-z0-9+.-]*+)://([^\s/?#'\"<>]*+)([^\s'\"<>]*+)"
)
_AUTH_SCHEME_VALUE = re.compile(r"\b(Bearer|Basic)\s++[^\s'\",;]++", re.IGNORECASE)
# The key starts at its secret word: "db_password" keeps "db_" and masks what follows.
_SECRET_ASSIGNMENT = re.compile(
    r"""(?P<key>(?:pass(?:word|wd)?|secret|token|api[_-]?key|authorization|cookie)"""
    r"""[\w.-]{0,64}+["']?)(?P<sep>\s*+[=:]\s*+)"""
    r"""(?P<value>"[^"]*+"|'[^']*+'|[^\s,;&]++)""",
    re.IGNORECASE,
)
_SECRET_SHAPES = re.compile(
    r"(?<![\w-])eyJ[\w-]{5,}+\.[\w-]{5,}+\.[\w-]{5,}+"  # a JWT
    r"|\b(?:sk|rk|pk)_(?:live|test)_\w{8,}+"  # Stripe keys
    r"|\bwhsec_[\w+/=]{8,}+"  # webhook signing secrets
    r"|\bSG\.[\w-]{10,}+\.[\w-]{10,}+"  # SendGrid keys
)
# What one value of a log line may carry. A request path or query is cut well before it
# could bury the line; tracebacks get more room and keep their end, where the error is.
MAX_VALUE_CHARS = 2_000
MAX_TRACEBACK_CHARS = 20_000
_TRACEBACK_KEYS = frozenset({"exception", "stack"})
# uvicorn's access line: (client, method, path with query, HTTP version, status).
MAX_ACCESS_PATH_CHARS = 300
_ACCESS_PATH_ARG = 2


def configure(*, json: bool, level: str | int = "INFO") -> None:
    """Send every logger's lines through one handler on stderr, as JSON or readable text.
    Safe to call again (the API, the CLI and each Celery process call it once)."""
    handler = _CurrentStderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_shared_processors(),
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                # Tracebacks become text first, so they are redacted like the rest.
                structlog.processors.format_exc_info,
                redact_event,
                *_renderers(json),
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _CurrentStderrHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name in _FOREIGN_LOGGERS:
        foreign = logging.getLogger(name)
        foreign.handlers.clear()
        foreign.propagate = True
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _CapAccessPath) for f in access.filters):
        access.addFilter(_CapAccessPath())
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


@contextmanager
def request_context(request_id: str) -> Iterator[None]:
    """Bind the request id for the request's lines; forget the user and search bound on the
    way once the request is over."""
    with structlog.contextvars.bound_contextvars(request_id=request_id):
        try:
            yield
        finally:
            structlog.contextvars.unbind_contextvars(*REQUEST_KEYS)


def bind_caller(user_id: object, search_id: object | None = None) -> None:
    """The authenticated user (and the search the request is about) for the rest of it."""
    values = {"user_id": str(user_id)}
    if search_id is not None:
        values["search_id"] = str(search_id)
    structlog.contextvars.bind_contextvars(**values)


def bind_task(task_id: str | None, task_name: str | None) -> None:
    structlog.contextvars.bind_contextvars(task_id=task_id, task_name=task_name)


def unbind_task() -> None:
    structlog.contextvars.unbind_contextvars(*TASK_KEYS)


def redact_event(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """The structlog processor that keeps secrets out of every line."""
    return {key: _redact_value(key, value) for key, value in event_dict.items()}


def redact_text(text: str) -> str:
    """`text` with secrets masked and every URL cut down to its scheme and host."""
    text = _URL.sub(_shorten_url, text)
    text = _AUTH_SCHEME_VALUE.sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = _SECRET_ASSIGNMENT.sub(lambda m: f"{m.group('key')}{m.group('sep')}{MASK}", text)
    return _SECRET_SHAPES.sub(MASK, text)


def cap_text(text: str, limit: int = MAX_VALUE_CHARS, *, keep_end: bool = False) -> str:
    """`text` cut to at most `limit` characters of its start (or of its end), saying how
    much was cut. The cut drops the word it falls in: half a token could be half a secret."""
    if len(text) <= limit:
        return text
    if keep_end:
        tail = text[-limit:]
        tail = tail[_first_space(tail) + 1 :] if _first_space(tail) >= 0 else ""
        return f"[{len(text) - len(tail)} characters cut ...]{tail}"
    head = text[:limit]
    head = head[: max(_last_space(head), 0)]
    return f"{head}[... {len(text) - len(head)} characters cut]"


def _first_space(text: str) -> int:
    found = [i for i in (text.find(" "), text.find("\n")) if i >= 0]
    return min(found, default=-1)


def _last_space(text: str) -> int:
    return max(text.rfind(" "), text.rfind("\n"))


def _redact_value(key: str, value: Any) -> Any:
    if _SECRET_KEY_NAME.search(key) and value not in (None, ""):
        return MASK
    if isinstance(value, str):
        if key in _TRACEBACK_KEYS:
            return redact_text(cap_text(value, MAX_TRACEBACK_CHARS, keep_end=True))
        return redact_text(cap_text(value))
    if isinstance(value, Mapping):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(key, item) for item in value]
    return value


def _shorten_url(match: re.Match[str]) -> str:
    scheme, authority = match.group(1), match.group(2)
    host = authority.rsplit("@", 1)[-1]  # never the user:password@ part
    if scheme.lower() in _PLAIN_SCHEMES or scheme.lower().startswith(("postgres", "sqlite")):
        return f"{scheme}://{host}"
    return f"{scheme}://{MASK}"


def _drop_color_message(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    # uvicorn adds a copy of some messages with terminal colour codes.
    event_dict.pop("color_message", None)
    return event_dict


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _drop_color_message,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _renderers(json: bool) -> list[Processor]:
    if json:
        return [
            structlog.processors.EventRenamer("message"),
            structlog.processors.JSONRenderer(default=str),
        ]
    return [structlog.dev.ConsoleRenderer(colors=False)]


class _CapAccessPath(logging.Filter):
    """Cuts the path of uvicorn's access line, so that the line keeps its status code."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) > _ACCESS_PATH_ARG:
            path = args[_ACCESS_PATH_ARG]
            if isinstance(path, str) and len(path) > MAX_ACCESS_PATH_CHARS:
                left_out = len(path) - MAX_ACCESS_PATH_CHARS
                cut = f"{path[:MAX_ACCESS_PATH_CHARS]}[... {left_out} characters cut]"
                record.args = (*args[:_ACCESS_PATH_ARG], cut, *args[_ACCESS_PATH_ARG + 1 :])
        return True


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time (test runners and daemons swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)
