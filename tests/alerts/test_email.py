"""The email channel against real local peers: a fake SendGrid and an aiosmtpd server."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from app.alerts.channels.base import (
    AlertMessage,
    DeliveryStatus,
    ListingInfo,
    Recipient,
)
from app.alerts.channels.email import EmailChannel, parse_smtp_url
from app.config import Settings
from tests.fakes.sendgrid import SendGridFake

FROM = "alerts@mm.example"
ALERT_ID = uuid.UUID("5a2f7c1e-8d4b-4c3a-9f10-1234567890ab")
EVIL_TITLE = "<script>alert('pwned')</script> iPhone 14"
RECIPIENT = Recipient(user_id=uuid.uuid4(), email="ann@example.com", full_name="Ann Example")
MESSAGE = AlertMessage(
    alert_id=ALERT_ID,
    idempotency_key="new_listing:s1:l1:email",
    kind="new_listing",
    subject="New match: iPhone 14",
    listings=(
        ListingInfo(
            title=EVIL_TITLE,
            url="https://www.ebay.co.uk/itm/1",
            marketplace="ebay",
            price="349.99",
            currency="GBP",
            image_url="https://i.ebayimg.com/1.jpg",
            location="London",
        ),
    ),
    search_name="iPhones",
    manage_url="https://mm.example/searches/1",
    unsubscribe_url="https://mm.example/api/v1/unsubscribe/abc.def",
)
ESCAPED_TITLE = "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt; iPhone 14"
EHLO_NAME = "client.mm-test.localhost"


# --- peers --------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def only_loopback_lookups(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every name lookup in these tests is of 127.0.0.1; anything else is refused and
    fails the test."""
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
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as http:
        yield http


def sendgrid_channel(
    client: httpx.AsyncClient, fake: SendGridFake, **overrides: Any
) -> EmailChannel:
    values: dict[str, Any] = {
        "sendgrid_api_key": fake.api_key,
        "sendgrid_base_url": fake.base_url,
        "from_address": FROM,
        "from_name": "Marketplace Monitor",
    }
    values.update(overrides)
    return EmailChannel(client, **values)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Mailbox:
    """An aiosmtpd handler that keeps what it accepts and can answer with a scripted code."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.rcpt_reply: str | None = None
        self.data_reply: str | None = None
        self.logins: list[tuple[str, str]] = []
        self.tls_sessions = 0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply:
            return self.data_reply
        if server.transport.get_extra_info("ssl_object") is not None:
            self.tls_sessions += 1
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        mail = message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(mail, EmailMessage)
        self.messages.append(mail)
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login = (auth_data.login.decode(), auth_data.password.decode())
        self.logins.append(login)
        # handled=False: aiosmtpd answers 535 itself on a failure.
        return AuthResult(success=login == ("mailer", "p@ss word/1"), handled=False)


def start_smtp(mailbox: Mailbox, **smtp_kwargs: Any) -> Controller:
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=free_port(),
        server_hostname="smtp.mm-test.localhost",
        **smtp_kwargs,
    )
    controller.start()
    return controller


@pytest.fixture
def mailbox() -> Mailbox:
    return Mailbox()


@pytest.fixture
def smtp_server(mailbox: Mailbox) -> Iterator[Controller]:
    controller = start_smtp(mailbox)
    yield controller
    controller.stop()


def smtp_channel(client: httpx.AsyncClient, url: str, **overrides: Any) -> EmailChannel:
    values: dict[str, Any] = {
        "smtp_url": url,
        "from_address": FROM,
        "from_name": "Marketplace Monitor",
        "timeout_s": 5.0,
        "ehlo_hostname": EHLO_NAME,
    }
    values.update(overrides)
    return EmailChannel(client, **values)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made with the openssl CLI."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    command = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1"
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        [*command.split(), "-addext", "subjectAltName=IP:127.0.0.1", *files],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def trusted_tls(tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """The server's TLS context; the client trusts its certificate through SSL_CERT_FILE,
    as an operator with a private CA would."""
    cert, key = tls_files
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


# --- configuration ------------------------------------------------------------------------


def test_channel_is_configured_by_a_sendgrid_key_or_an_smtp_url(
    client: httpx.AsyncClient,
) -> None:
    assert EmailChannel(client, sendgrid_api_key="SG.x.y", from_address=FROM).is_configured()
    assert EmailChannel(client, smtp_url="smtp://127.0.0.1", from_address=FROM).is_configured()
    assert not EmailChannel(client, from_address=FROM).is_configured()


def test_recipient_without_an_email_cannot_be_reached(client: httpx.AsyncClient) -> None:
    channel = EmailChannel(client, sendgrid_api_key="SG.x.y", from_address=FROM)

    assert channel.can_reach(RECIPIENT)
    assert not channel.can_reach(Recipient(user_id=uuid.uuid4(), email=" "))


def test_smtp_urls_give_host_port_credentials_and_tls_mode() -> None:
    plain = parse_smtp_url("smtp://mailer:p%40ss%20word%2F1@mail.example:2525")
    assert (plain.host, plain.port, plain.username, plain.password) == (
        "mail.example",
        2525,
        "mailer",
        "p@ss word/1",
    )
    assert not plain.implicit_tls
    assert parse_smtp_url("smtp://mail.example").port == 587
    secure = parse_smtp_url("smtps://mail.example")
    assert (secure.port, secure.implicit_tls, secure.username) == (465, True, None)


@pytest.mark.parametrize("url", ["http://mail.example", "mail.example:25", "smtp://", "smtp://h:x"])
def test_unusable_smtp_url_is_refused_when_the_channel_is_built(
    client: httpx.AsyncClient, url: str
) -> None:
    with pytest.raises(ValueError, match="SMTP_URL"):
        EmailChannel(client, smtp_url=url, from_address=FROM)


# --- SendGrid -----------------------------------------------------------------------------


async def test_sendgrid_accepts_the_mail_and_its_message_id_is_kept(
    client: httpx.AsyncClient, sendgrid: SendGridFake
) -> None:
    result = await sendgrid_channel(client, sendgrid).send(RECIPIENT, MESSAGE)

    assert result.status is DeliveryStatus.DELIVERED
    [sent] = sendgrid.accepted
    assert result.provider_message_id is not None
    assert result.provider_message_id.startswith("fake")
    body = sent.body
    assert body is not None
    assert sent.headers["authorization"] == f"Bearer {sendgrid.api_key}"
    assert body["personalizations"] == [
        {"to": [{"email": "ann@example.com", "name": "Ann Example"}]}
    ]
    assert body["from"] == {"email": FROM, "name": "Marketplace Monitor"}
    assert body["subject"] == "New match: iPhone 14"
    assert [part["type"] for part in body["content"]] == ["text/plain", "text/html"]
    assert EVIL_TITLE in sent.content("text/plain")
    assert ESCAPED_TITLE in sent.content("text/html")
    assert "<script>" not in sent.content("text/html")
    assert "https://mm.example/searches/1" in sent.content("text/html")
    assert body["headers"]["Message-ID"] == f"<{ALERT_ID}@mm.example>"
    assert body["headers"]["List-Unsubscribe"] == "<https://mm.example/api/v1/unsubscribe/abc.def>"
    assert body["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "https://mm.example/api/v1/unsubscribe/abc.def" in sent.content("text/plain")
    assert body["custom_args"] == {
        "alert_id": str(ALERT_ID),
        "idempotency_key": "new_listing:s1:l1:email",
    }


async def test_sendgrid_channel_comes_from_settings(
    client: httpx.AsyncClient, sendgrid: SendGridFake
) -> None:
    settings = Settings(
        _env_file=None,
        sendgrid_api_key=sendgrid.api_key,
        sendgrid_base_url=sendgrid.base_url + "/",
        smtp_url="smtp://127.0.0.1:1",
        email_from_address="alerts@from-settings.example",
        email_from_name="MM Alerts",
    )
    channel = EmailChannel.from_settings(client, settings)

    result = await channel.send(RECIPIENT, MESSAGE)

    assert result.status is DeliveryStatus.DELIVERED
    [sent] = sendgrid.accepted
    assert sent.body is not None
    assert sent.body["from"] == {"email": "alerts@from-settings.example", "name": "MM Alerts"}


async def test_sendgrid_400_is_permanent_and_names_the_field_not_the_message(
    client: httpx.AsyncClient, sendgrid: SendGridFake
) -> None:
    sendgrid.fail(400, field="from.email", message="raw provider text with secrets")

    result = await sendgrid_channel(client, sendgrid).send(RECIPIENT, MESSAGE)

    assert result.status is DeliveryStatus.PERMANENT
    assert result.error == "SendGrid rejected the message (400: from.email)"


async def test_sendgrid_refusing_the_recipient_address_is_permanent(
    client: httpx.AsyncClient, sendgrid: SendGridFake
) -> None:
    nobody = Recipient(user_id=uuid.uuid4(), email="no-at-sign.example.com")

    result = await sendgrid_channel(client, sendgrid).send(nobody, MESSAGE)

    assert result.status is DeliveryStatus.PERMANENT
    assert result.error is not None
    assert "personalizations.0.to.0.email" in result.error
    assert sendgrid.calls == 1


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        # The server's key or sender is refused: the operator must act, the mail waits.
        (401, DeliveryStatus.MISCONFIGURED),
        (403, DeliveryStatus.MISCONFIGURED),
        (413, DeliveryStatus.PERMANENT),
    ],
)
async def test_sendgrid_auth_sender_and_size_refusals_are_not_retried_as_usual(
    client: httpx.AsyncClient, sendgrid: SendGridFake, status: int, outcome: DeliveryStatus
) -> None:
    sendgrid.fail(status)

    result = await sendgrid_channel(client, sendgrid).send(RECIPIENT, MESSAGE)

    assert result.status is outcome
    assert result.error is not None
    assert f"({status})" in result.error
    assert "verified" not in result.error  # SendGrid's own wording stays out


async def test_a_wrong_sendgrid_key_is_reported_as_a_server_misconfiguration(
    client: httpx.AsyncClient, sendgrid: SendGridFake
) -> None:
    channel = sendgrid_channel(client, sendgrid, sendgrid_api_key="SG.wrong.key")

    result = await channel.send(RECIPIENT, MESSAGE)

    assert result.status is DeliveryStatus.MISCONFIGURED
    assert result.error == "SendGrid rejected the API key (401)"


async def test_sendgrid_429_is_retried_after_retry_after(
    client: httpx.AsyncClient, sendgrid: SendGridFake
) -> None:
    sendgrid.fail(429, retry_after="30")

    result = await sendgrid_channel(client, sendgrid).send(RECIPIENT, MESSAGE)

    assert result.status is DeliveryStatus.RETRY
    assert result.retry_after_s == 30


async def test_sendgrid_429_without_retry_after_waits_for_the_rate_limit_reset(
    client: httpx.AsyncClient, sendgrid: SendGridFake
) -> None:
    sendgrid.fail(429)

    result = await sendgrid_channel(client, sendgrid).send(RECIPIENT, MESSAGE)

    assert result.status is DeliveryStatus.RETRY
    assert result.retry_after_s is not None
    assert 0 < result.retry_after_s <= 61


async def test_sendgrid_500_is_retried_and_the_next_attempt_is_delivered(
    client: httpx.AsyncClient, sendgrid: SendGridFake
) -> None:
    sendgrid.fail(500)
    channel = sendgrid_channel(client, sendgrid)

    first = await channel.send(RECIPIENT, MESSAGE)
    second = await channel.send(RECIPIENT, MESSAGE)

    assert first.status is DeliveryStatus.RETRY
    assert first.error == "SendGrid answered 500"
    assert second.status is DeliveryStatus.DELIVERED
    assert sendgrid.calls == 2


async def test_sendgrid_timeout_is_retried(
    client: httpx.AsyncClient, sendgrid: SendGridFake
) -> None:
    sendgrid.delay_s = 1.0

    result = await sendgrid_channel(client, sendgrid, timeout_s=0.1).send(RECIPIENT, MESSAGE)

    assert result.status is DeliveryStatus.RETRY
    assert result.error == "SendGrid timed out"


async def test_unreachable_sendgrid_is_retried(client: httpx.AsyncClient) -> None:
    channel = EmailChannel(
        client,
        sendgrid_api_key="SG.x.y",
        sendgrid_base_url=f"http://127.0.0.1:{free_port()}",
        from_address=FROM,
    )

    result = await channel.send(RECIPIENT, MESSAGE)

    assert result.status is DeliveryStatus.RETRY
    assert result.error == "could not reach SendGrid"


# --- SMTP ---------------------------------------------------------------------------------


async def test_smtp_delivers_a_multipart_mail_with_escaped_html_and_our_message_id(
    client: httpx.AsyncClient, mailbox: Mailbox, smtp_server: Controller
) -> None:
    channel = smtp_channel(client, f"smtp://127.0.0.1:{smtp_server.port}")

    result = await channel.send(RECIPIENT, MESSAGE)

    assert result.status is DeliveryStatus.DELIVERED
    assert result.provider_message_id == f"<{ALERT_ID}@mm.example>"
    assert mailbox.envelopes == [(FROM, ["ann@example.com"])]
    [mail] = mailbox.messages
    assert mail["Message-ID"] == f"<{ALERT_ID}@mm.example>"
    assert mail["From"] == f"Marketplace Monitor <{FROM}>"
    assert mail["To"] == "Ann Example <ann@example.com>"
    assert mail["Subject"] == "New match: iPhone 14"
    assert mail.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in mail.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    text = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert text is not None
    assert html is not None
    assert EVIL_TITLE in text.get_content()
    assert ESCAPED_TITLE in html.get_content()
    assert "<script>" not in html.get_content()
    assert "£349.99" in html.get_content()
    assert mail["List-Unsubscribe"] == "<https://mm.example/api/v1/unsubscribe/abc.def>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert 'href="https://mm.example/api/v1/unsubscribe/abc.def"' in html.get_content()


async def test_the_same_alert_sent_twice_carries_the_same_message_id(
    client: httpx.AsyncClient, mailbox: Mailbox, smtp_server: Controller
) -> None:
    channel = smtp_channel(client, f"smtp://127.0.0.1:{smtp_server.port}")

    await channel.send(RECIPIENT, MESSAGE)
    await channel.send(RECIPIENT, MESSAGE)

    assert [m["Message-ID"] for m in mailbox.messages] == [f"<{ALERT_ID}@mm.example>"] * 2


async def test_smtp_550_unknown_user_is_permanent(
    client: httpx.AsyncClient, mailbox: Mailbox, smtp_server: Controller
) -> None:
    mailbox.rcpt_reply = "550 5.1.1 <ann@example.com>: user unknown in relay 10.0.0.7"

    result = await smtp_channel(client, f"smtp://127.0.0.1:{smtp_server.port}").send(
        RECIPIENT, MESSAGE
    )

    assert result.status is DeliveryStatus.PERMANENT
    assert result.error == "mail server refused the recipient (550)"


async def test_smtp_451_is_retried(
    client: httpx.AsyncClient, mailbox: Mailbox, smtp_server: Controller
) -> None:
    mailbox.data_reply = "451 4.3.0 Try again later"

    result = await smtp_channel(client, f"smtp://127.0.0.1:{smtp_server.port}").send(
        RECIPIENT, MESSAGE
    )

    assert result.status is DeliveryStatus.RETRY
    assert result.error == "mail server deferred the message (451)"


async def test_unreachable_smtp_server_is_retried(client: httpx.AsyncClient) -> None:
    result = await smtp_channel(client, f"smtp://127.0.0.1:{free_port()}").send(RECIPIENT, MESSAGE)

    assert result.status is DeliveryStatus.RETRY
    assert result.error == "could not reach the mail server"


async def test_an_address_the_mail_parser_refuses_is_permanent(
    client: httpx.AsyncClient, mailbox: Mailbox, smtp_server: Controller
) -> None:
    broken = Recipient(user_id=uuid.uuid4(), email="ann@")

    result = await smtp_channel(client, f"smtp://127.0.0.1:{smtp_server.port}").send(
        broken, MESSAGE
    )

    assert result.status is DeliveryStatus.PERMANENT
    assert mailbox.messages == []


async def test_smtp_upgrades_with_starttls_when_offered_and_logs_in_from_the_url(
    client: httpx.AsyncClient, mailbox: Mailbox, trusted_tls: ssl.SSLContext
) -> None:
    controller = start_smtp(
        mailbox,
        tls_context=trusted_tls,
        authenticator=mailbox.authenticate,
        auth_require_tls=True,
        auth_required=True,
    )
    try:
        url = f"smtp://mailer:p%40ss%20word%2F1@127.0.0.1:{controller.port}"
        result = await smtp_channel(client, url).send(RECIPIENT, MESSAGE)
    finally:
        controller.stop()

    assert result.status is DeliveryStatus.DELIVERED
    assert mailbox.logins == [("mailer", "p@ss word/1")]
    assert mailbox.tls_sessions == 1
    assert len(mailbox.messages) == 1


async def test_smtp_wrong_password_is_a_server_misconfiguration(
    client: httpx.AsyncClient, mailbox: Mailbox, trusted_tls: ssl.SSLContext
) -> None:
    controller = start_smtp(
        mailbox, tls_context=trusted_tls, authenticator=mailbox.authenticate, auth_required=True
    )
    try:
        url = f"smtp://mailer:wrong@127.0.0.1:{controller.port}"
        result = await smtp_channel(client, url).send(RECIPIENT, MESSAGE)
    finally:
        controller.stop()

    assert result.status is DeliveryStatus.MISCONFIGURED
    assert result.error == "mail server refused the login (535)"
    assert mailbox.messages == []


async def test_smtps_speaks_tls_from_the_first_byte(
    client: httpx.AsyncClient, mailbox: Mailbox, trusted_tls: ssl.SSLContext
) -> None:
    controller = start_smtp(mailbox, ssl_context=trusted_tls)
    try:
        result = await smtp_channel(client, f"smtps://127.0.0.1:{controller.port}").send(
            RECIPIENT, MESSAGE
        )
    finally:
        controller.stop()

    assert result.status is DeliveryStatus.DELIVERED
    assert mailbox.tls_sessions == 1


async def test_smtps_with_an_untrusted_certificate_is_retried(
    client: httpx.AsyncClient, mailbox: Mailbox, tls_files: tuple[Path, Path]
) -> None:
    cert, key = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    controller = start_smtp(mailbox, ssl_context=context)
    try:
        result = await smtp_channel(client, f"smtps://127.0.0.1:{controller.port}").send(
            RECIPIENT, MESSAGE
        )
    finally:
        controller.stop()

    assert result.status is DeliveryStatus.RETRY
    assert mailbox.messages == []


async def test_credentials_for_a_server_that_offers_no_login_are_a_misconfiguration(
    client: httpx.AsyncClient, mailbox: Mailbox, smtp_server: Controller
) -> None:
    # aiosmtpd offers AUTH only over TLS, and this server has no TLS.
    url = f"smtp://mailer:secret@127.0.0.1:{smtp_server.port}"

    result = await smtp_channel(client, url).send(RECIPIENT, MESSAGE)

    assert result.status is DeliveryStatus.MISCONFIGURED
    assert result.error == "mail server offers no login or TLS for SMTP_URL"
    assert mailbox.messages == []
