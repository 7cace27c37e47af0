"""The `email` channel: SendGrid's v3 mail send when an API key is set, SMTP otherwise.

Both carry the same HTML and plain-text bodies (`render.render_email`) and the same
`Message-ID: <alert id@sender domain>`, so a retried alert is recognisably the same mail.
"""

from __future__ import annotations

import email.errors
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import aiosmtplib
import httpx

from app.alerts import render
from app.alerts.channels.base import (
    AlertMessage,
    DeliveryResult,
    Recipient,
    parse_retry_after,
)

if TYPE_CHECKING:
    from app.config import Settings

DEFAULT_TIMEOUT_S = 15.0
SENDGRID_SEND_PATH = "/v3/mail/send"
SMTP_DEFAULT_PORTS = {"smtp": 587, "smtps": 465}
RETRY_AFTER_CAP_S = 24 * 3600.0
# SendGrid error bodies are small; anything larger is not worth parsing for a field name.
MAX_ERROR_BODY_BYTES = 64 * 1024

_SAFE_FIELD = re.compile(r"^[A-Za-z0-9_.\[\]-]{1,64}$")
_SAFE_DOMAIN = re.compile(r"^[A-Za-z0-9.-]{1,253}$")
# SendGrid refuses display names containing these.
_NAME_BREAKERS = re.compile(r"[;,\"\r\n]+")


@dataclass(frozen=True)
class OutgoingMail:
    """One mail as both senders (SendGrid and SMTP) send it."""

    to_email: str
    to_name: str | None
    subject: str
    text: str
    html: str | None
    message_id: str
    headers: dict[str, str]
    custom_args: dict[str, str]
    category: str


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    username: str | None
    password: str | None
    implicit_tls: bool


class EmailChannel:
    """Sends one alert as one email. Never raises for provider or network failures."""

    name = "email"
    # The settings an operator sets before this channel can send.
    setup_hint = "SENDGRID_API_KEY or SMTP_URL"

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        sendgrid_api_key: str = "",
        sendgrid_base_url: str = "https://api.sendgrid.com",
        smtp_url: str = "",
        from_address: str,
        from_name: str = "",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        ehlo_hostname: str | None = None,
    ) -> None:
        """`smtp_url` is `smtp://user:pass@host:587` (STARTTLS when the server offers it) or
        `smtps://user:pass@host:465` (TLS from the start); ports default to 587 and 465.
        `ehlo_hostname` None lets the SMTP client use the machine's FQDN.

        Raises ValueError for an SMTP URL that is neither.
        """
        self._client = client
        self._sendgrid_api_key = sendgrid_api_key.strip()
        self._sendgrid_url = sendgrid_base_url.rstrip("/") + SENDGRID_SEND_PATH
        self._smtp = parse_smtp_url(smtp_url) if smtp_url.strip() else None
        self._from_address = from_address.strip()
        self._from_name = from_name.strip()
        self._timeout_s = timeout_s
        self._ehlo_hostname = ehlo_hostname

    @classmethod
    def from_settings(cls, client: httpx.AsyncClient, settings: Settings) -> EmailChannel:
        return cls(
            client,
            sendgrid_api_key=settings.sendgrid_api_key.get_secret_value(),
            sendgrid_base_url=settings.sendgrid_base_url,
            smtp_url=settings.smtp_url.get_secret_value(),
            from_address=settings.email_from_address,
            from_name=settings.email_from_name,
        )

    @property
    def uses_sendgrid(self) -> bool:
        return bool(self._sendgrid_api_key)

    def is_configured(self) -> bool:
        return self.uses_sendgrid or self._smtp is not None

    def can_reach(self, recipient: Recipient) -> bool:
        return bool(recipient.email.strip())

    def message_id(self, message: AlertMessage) -> str:
        """`<alert id@sender domain>`: the same on every attempt of one alert."""
        domain = self._from_address.rpartition("@")[2]
        if not _SAFE_DOMAIN.match(domain):
            domain = "localhost"
        return f"<{message.alert_id}@{domain}>"

    async def send(self, recipient: Recipient, message: AlertMessage) -> DeliveryResult:
        if not self.can_reach(recipient):
            return DeliveryResult.permanent("no email address")
        rendered = render.render_email(message)
        mail = OutgoingMail(
            to_email=recipient.email.strip(),
            to_name=recipient.full_name,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            message_id=self.message_id(message),
            headers={"X-Alert-Id": str(message.alert_id), **unsubscribe_headers(message)},
            # Echoed in SendGrid's event webhook, which ties a bounce back to its alert.
            custom_args={
                "alert_id": str(message.alert_id),
                "idempotency_key": message.idempotency_key,
            },
            category=f"alert-{message.kind}",
        )
        return await self._deliver(mail)

    async def send_account_mail(
        self, *, to_email: str, to_name: str | None, subject: str, text: str, kind: str
    ) -> DeliveryResult:
        """A plain-text mail about the account itself (a verification or reset link, a
        security notice): never an alert, never in the alert log, since it may carry a
        secret link. Never raises for provider or network failures."""
        if not to_email.strip():
            return DeliveryResult.permanent("no email address")
        domain = self._from_address.rpartition("@")[2]
        mail = OutgoingMail(
            to_email=to_email.strip(),
            to_name=to_name,
            subject=subject,
            text=text,
            html=None,
            message_id=f"<{uuid.uuid4()}@{domain if _SAFE_DOMAIN.match(domain) else 'localhost'}>",
            headers={},
            custom_args={},
            category=f"account-{kind}",
        )
        return await self._deliver(mail)

    async def _deliver(self, mail: OutgoingMail) -> DeliveryResult:
        if self.uses_sendgrid:
            return await self._send_with_sendgrid(mail)
        if self._smtp is not None:
            return await self._send_with_smtp(self._smtp, mail)
        return DeliveryResult.permanent("email is not configured on this server")

    # --- SendGrid ---------------------------------------------------------------------

    async def _send_with_sendgrid(self, mail: OutgoingMail) -> DeliveryResult:
        try:
            response = await self._client.post(
                self._sendgrid_url,
                json=self._sendgrid_payload(mail),
                headers={"Authorization": f"Bearer {self._sendgrid_api_key}"},
                timeout=self._timeout_s,
                follow_redirects=False,
            )
        except httpx.TimeoutException:
            return DeliveryResult.retry("SendGrid timed out")
        except httpx.HTTPError:
            return DeliveryResult.retry("could not reach SendGrid")
        return _sendgrid_result(response)

    def _sendgrid_payload(self, mail: OutgoingMail) -> dict[str, Any]:
        to: dict[str, str] = {"email": mail.to_email}
        if name := _display_name(mail.to_name):
            to["name"] = name
        sender: dict[str, str] = {"email": self._from_address}
        if name := _display_name(self._from_name):
            sender["name"] = name
        content = [{"type": "text/plain", "value": mail.text}]
        if mail.html is not None:
            content.append({"type": "text/html", "value": mail.html})
        payload: dict[str, Any] = {
            "personalizations": [{"to": [to]}],
            "from": sender,
            "subject": mail.subject,
            "content": content,
            "headers": {
                "Message-ID": mail.message_id,
                "Auto-Submitted": "auto-generated",
                **mail.headers,
            },
            "categories": [mail.category],
        }
        if mail.custom_args:
            payload["custom_args"] = mail.custom_args
        return payload

    # --- SMTP -------------------------------------------------------------------------

    async def _send_with_smtp(self, server: SmtpServer, mail: OutgoingMail) -> DeliveryResult:
        try:
            message = self._mime_message(mail)
        # The stdlib address parser raises IndexError for a trailing "@".
        except (ValueError, IndexError, email.errors.HeaderParseError):
            return DeliveryResult.permanent("invalid email address")
        try:
            await aiosmtplib.send(
                message,
                hostname=server.host,
                port=server.port,
                username=server.username,
                password=server.password,
                use_tls=server.implicit_tls,
                # None: upgrade with STARTTLS when the server offers it.
                start_tls=False if server.implicit_tls else None,
                timeout=self._timeout_s,
                local_hostname=self._ehlo_hostname,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refusal.code for refusal in exc.recipients] or [550]
            return _smtp_result(min(codes), "mail server refused the recipient")
        except aiosmtplib.SMTPSenderRefused as exc:
            return _smtp_result(exc.code, "mail server refused the sender address")
        except aiosmtplib.SMTPAuthenticationError as exc:
            if 500 <= exc.code < 600:
                return DeliveryResult.misconfigured(f"mail server refused the login ({exc.code})")
            return _smtp_result(exc.code, "mail server refused the login")
        except aiosmtplib.SMTPResponseException as exc:
            return _smtp_result(exc.code, "mail server refused the message")
        except aiosmtplib.SMTPNotSupported:
            return DeliveryResult.permanent("mail server does not take non-ASCII addresses")
        except (aiosmtplib.SMTPTimeoutError, TimeoutError):
            return DeliveryResult.retry("mail server timed out")
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPConnectError, OSError):
            return DeliveryResult.retry("could not reach the mail server")
        except aiosmtplib.SMTPException:
            # What remains is the server lacking what SMTP_URL asks for: AUTH (perhaps
            # offered only over TLS) or STARTTLS. Retrying changes nothing.
            return DeliveryResult.misconfigured("mail server offers no login or TLS for SMTP_URL")
        return DeliveryResult.delivered(mail.message_id)

    def _mime_message(self, mail: OutgoingMail) -> EmailMessage:
        """Plain text, or multipart/alternative with the HTML last (the part clients
        prefer)."""
        message = EmailMessage()
        message["Subject"] = mail.subject
        message["From"] = Address(
            display_name=_display_name(self._from_name) or "", addr_spec=self._from_address
        )
        message["To"] = Address(
            display_name=_display_name(mail.to_name) or "", addr_spec=mail.to_email
        )
        message["Date"] = format_datetime(datetime.now(UTC))
        message["Message-ID"] = mail.message_id
        message["Auto-Submitted"] = "auto-generated"
        for name, value in mail.headers.items():
            message[name] = value
        message.set_content(mail.text)
        if mail.html is not None:
            message.add_alternative(mail.html, subtype="html")
        return message


def unsubscribe_headers(message: AlertMessage) -> dict[str, str]:
    """List-Unsubscribe with one-click POST (RFC 8058), which mail providers show as an
    "Unsubscribe" button and require of bulk senders."""
    if not message.unsubscribe_url:
        return {}
    return {
        "List-Unsubscribe": f"<{message.unsubscribe_url}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def parse_smtp_url(url: str) -> SmtpServer:
    """`smtp://user:pass@host:587` or `smtps://user:pass@host:465` -> SmtpServer.

    Raises ValueError for any other scheme or a URL without a host.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in SMTP_DEFAULT_PORTS:
        raise ValueError("SMTP_URL must start with smtp:// or smtps://")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError("SMTP_URL has an invalid port") from exc
    if not parts.hostname:
        raise ValueError("SMTP_URL has no host")
    return SmtpServer(
        host=parts.hostname,
        port=port or SMTP_DEFAULT_PORTS[scheme],
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        implicit_tls=scheme == "smtps",
    )


def _sendgrid_result(response: httpx.Response) -> DeliveryResult:
    status = response.status_code
    if 200 <= status < 300:
        return DeliveryResult.delivered(response.headers.get("X-Message-Id"))
    if status in (408, 429) or status >= 500:
        return DeliveryResult.retry(
            f"SendGrid answered {status}", retry_after_s=_sendgrid_retry_after(response)
        )
    if status < 400:
        return DeliveryResult.retry(f"SendGrid answered {status}")
    if status == 400:
        field = _sendgrid_error_field(response)
        detail = f": {field}" if field else ""
        return DeliveryResult.permanent(f"SendGrid rejected the message (400{detail})")
    if status == 401:
        return DeliveryResult.misconfigured("SendGrid rejected the API key (401)")
    if status == 403:
        return DeliveryResult.misconfigured("SendGrid refused the sender or the key's access (403)")
    if status == 413:
        return DeliveryResult.permanent("message too large for SendGrid (413)")
    return DeliveryResult.permanent(f"SendGrid rejected the message ({status})")


def _sendgrid_retry_after(response: httpx.Response) -> float | None:
    """Retry-After when given; else SendGrid's X-RateLimit-Reset (epoch seconds)."""
    retry_after = parse_retry_after(response.headers.get("Retry-After"), cap_s=RETRY_AFTER_CAP_S)
    if retry_after is not None:
        return retry_after
    reset = response.headers.get("X-RateLimit-Reset", "").strip()
    if not reset.isdigit():
        return None
    return min(max(0.0, int(reset) - time.time()), RETRY_AFTER_CAP_S)


def _sendgrid_error_field(response: httpx.Response) -> str | None:
    """The `field` of SendGrid's first error (e.g. `personalizations.0.to.0.email`): a
    name, safe to show, unlike the message text."""
    if len(response.content) > MAX_ERROR_BODY_BYTES:
        return None
    try:
        errors = response.json().get("errors")
        field = errors[0].get("field")
    except (ValueError, AttributeError, LookupError, TypeError):
        return None
    return field if isinstance(field, str) and _SAFE_FIELD.match(field) else None


def _smtp_result(code: int, reason: str) -> DeliveryResult:
    # 4xx is the server's "try again later"; 5xx is final (unknown user, policy refusal).
    if 500 <= code < 600:
        return DeliveryResult.permanent(f"{reason} ({code})")
    if 400 <= code < 500:
        return DeliveryResult.retry(f"mail server deferred the message ({code})")
    return DeliveryResult.retry(f"{reason} ({code})")


def _display_name(name: str | None) -> str | None:
    cleaned = _NAME_BREAKERS.sub(" ", name or "").strip()
    return " ".join(cleaned.split()) or None
