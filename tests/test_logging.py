"""Logs: JSON lines in production, readable in development, with the request, user, search
and task they belong to, and nothing secret on them."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

import httpx
import pytest
from celery.signals import task_postrun, task_prerun
from hypothesis import given, settings
from hypothesis import strategies as st

from app import logs
from app.config import Settings
from app.main import create_app
from app.workers.alert_tasks import deliver_due
from tests.conftest import empty_tables, make_settings
from tests.factories import make_search, make_user, token_headers
from tests.fakes.ebay import EbayFake

logger = logging.getLogger("app.tests")


@pytest.fixture
def json_logs() -> Iterator[None]:
    logs.configure(json=True)
    yield
    logs.configure(json=False)


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.parametrize(
    ("text", "secrets"),
    [
        ("POST https://hooks.slack.com/services/T00/B00/XXXXSECRET failed", ["T00", "XXXXSECRET"]),
        ("to http://user:pw@127.0.0.1:8080/hook?sig=1", ["user:", "pw@", "hook", "sig=1"]),
        ("apprise tgram://123456:ABCDEF/987 and discord://id/tok", ["123456", "ABCDEF", "/tok"]),
        ("Authorization: Bearer eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl", ["eyJ", "c2lnbmF0dXJl"]),
        ("db postgresql+asyncpg://monitor:db-pass@db:5432/marketmon", ["db-pass", "monitor:"]),
        ("secret_key=hunter2 password: 'p@ss word' api_key=abc", ["hunter2", "p@ss", "=abc"]),
        ('{"access_token": "abc.def.ghi", "refresh_token":"zzz"}', ["abc.def", "zzz"]),
        ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlX3g is a JWT", ["eyJ"]),
        ("key sk_live_51HxYzAbCdEfGh and whsec_c2VjcmV0c2VjcmV0", ["sk_live_51", "whsec_c2V"]),
        ("sendgrid SG.abcdefghijk.lmnopqrstuv refused", ["SG.abc", "lmnop"]),
    ],
)
def test_redaction_keeps_secrets_and_url_paths_out(text: str, secrets: list[str]) -> None:
    redacted = logs.redact_text(text)
    for secret in secrets:
        assert secret not in redacted, (secret, redacted)


def test_urls_keep_their_scheme_and_host() -> None:
    assert logs.redact_text("POST https://hooks.slack.com/services/T00/B00/X failed") == (
        "POST https://hooks.slack.com failed"
    )
    assert logs.redact_text("to http://user:pw@127.0.0.1:8080/hook?sig=1") == (
        "to http://127.0.0.1:8080"
    )
    assert logs.redact_text("push via tgram://123:ABC/9") == f"push via tgram://{logs.MASK}"


def test_redaction_leaves_ordinary_messages_alone() -> None:
    text = "checked 12 searches in 3 groups: 3 upstream calls, 4 new matches (user_id=42)"
    assert logs.redact_text(text) == text


def test_json_lines_carry_level_logger_time_and_masked_fields(
    json_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logger.warning(
        "delivery to %s failed",
        "https://example.com/hooks/abc?token=1",
        extra={"webhook_url": "https://example.com/private/path", "api_token": "t0ps3cret"},
    )
    (line,) = json_lines(capsys.readouterr().err)
    assert line["message"] == "delivery to https://example.com failed"
    assert line["level"] == "warning"
    assert line["logger"] == "app.tests"
    assert str(line["timestamp"]).endswith("Z")
    assert line["webhook_url"] == "https://example.com"
    assert line["api_token"] == logs.MASK


def test_tracebacks_are_logged_as_text_and_redacted(
    json_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        raise RuntimeError("could not reach https://hooks.example.com/T0/secret-path")
    except RuntimeError:
        logger.exception("send failed")
    (line,) = json_lines(capsys.readouterr().err)
    assert "RuntimeError" in str(line["exception"])
    assert "secret-path" not in str(line["exception"])


def test_development_logs_are_readable_lines(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure(json=False)
    logger.info("listing stored")
    err = capsys.readouterr().err
    assert "listing stored" in err
    assert not err.lstrip().startswith("{")


def test_production_settings_pick_json_and_log_format_overrides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    strong = "a-random-secret-key-that-is-longer-than-thirty-two-bytes"
    production = {"debug": False, "secret_key": strong, "allow_sqlite_in_production": True}
    assert Settings(_env_file=None, **production).logs_as_json is True
    assert Settings(_env_file=None, **production, log_format="console").logs_as_json is False
    assert Settings(_env_file=None).logs_as_json is False
    assert Settings(_env_file=None, log_format="json").logs_as_json is True
    assert Settings(_env_file=None, log_level="warning").log_level == "WARNING"
    with pytest.raises(ValueError, match="must be one of DEBUG, INFO"):
        Settings(_env_file=None, log_level="loud")


def test_celery_tasks_put_their_id_and_name_on_every_line(
    json_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    task = deliver_due
    task_prerun.send(sender=task, task_id="task-123", task=task, args=(), kwargs={})
    logger.info("inside the task")
    task_postrun.send(sender=task, task_id="task-123", task=task, args=(), kwargs={})
    logger.info("after the task")
    inside, after = json_lines(capsys.readouterr().err)
    assert (inside["task_id"], inside["task_name"]) == ("task-123", "alerts.deliver_due")
    assert "task_id" not in after


async def test_request_lines_carry_request_user_and_search_ids(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with EbayFake() as ebay:
        ebay.fail_search(12001)  # the check logs a warning while serving the request
        app = create_app(
            make_settings(
                database_url,
                log_format="json",
                ebay_api_base_url=ebay.base_url,
                ebay_oauth_base_url=ebay.base_url,
                ebay_app_id=ebay.app_id,
                ebay_cert_id=ebay.cert_id,
            )
        )
        try:
            async with app.router.lifespan_context(app):
                async with app.state.session_factory() as session:
                    user = await make_user(session, email="logs@example.com")
                    search = await make_search(session, owner=user, marketplaces=["ebay"])
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                    capsys.readouterr()
                    checked = await http.post(
                        f"/api/v1/searches/{search.id}/check",
                        headers={**token_headers(app, user), "X-Request-ID": "req-logs-1"},
                    )
                    assert checked.status_code == 200, checked.text
                    logger.info("after the request")
                await empty_tables(app)
        finally:
            await app.state.engine.dispose()
            logs.configure(json=False)
    lines = json_lines(capsys.readouterr().err)
    failed = next(line for line in lines if "check of ebay failed" in str(line["message"]))
    assert failed["request_id"] == "req-logs-1"
    assert failed["user_id"] == str(user.id)
    assert failed["search_id"] == str(search.id)
    after = next(line for line in lines if line["message"] == "after the request")
    assert not {"request_id", "user_id", "search_id"} & set(after)


# Pieces that made the old patterns backtrack, or that start many candidate matches.
_RISKY_PIECES = [
    "a",
    "-",
    ".",
    "+",
    "=",
    " ",
    '"',
    "'",
    "eyJ",
    "eyJ-",
    "SG.",
    "sk_live_",
    "whsec_",
    "password",
    "token=",
    'secret="',
    "Bearer ",
    "https://",
    "a://",
    "x@",
    "/",
    "?",
]


def _seconds_to_redact(text: str) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        logs.redact_text(text)
        best = min(best, time.perf_counter() - started)
    return best


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(_RISKY_PIECES), min_size=1, max_size=6))
def test_redaction_time_grows_linearly_with_the_length_of_any_text(pieces: list[str]) -> None:
    unit = "".join(pieces)
    short = unit * (5_000 // len(unit) + 1)
    long = short * 8
    # Linear: 8x the text costs about 8x the time; a backtracking pattern costs 64x.
    # The allowance covers timer noise on the short text without admitting quadratic growth.
    assert _seconds_to_redact(long) < 24 * _seconds_to_redact(short) + 0.005


def test_a_long_value_is_cut_before_redaction_and_never_leaves_half_a_secret() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlX3g"
    text = ("word " * (logs.MAX_VALUE_CHARS // 5 - 2)) + jwt + " tail"
    redacted = logs.redact_event(None, "info", {"event": text})["event"]
    assert "eyJ" not in redacted
    assert "characters cut" in redacted
    assert len(redacted) <= logs.MAX_VALUE_CHARS + 40


def test_a_traceback_keeps_its_end_where_the_error_is() -> None:
    traceback_text = "frame line\n" * 5_000 + "ValueError: the actual error"
    kept = logs.redact_event(None, "error", {"exception": traceback_text})["exception"]
    assert kept.endswith("ValueError: the actual error")
    assert len(kept) <= logs.MAX_TRACEBACK_CHARS + 40
