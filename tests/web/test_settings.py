"""Settings: profile and channels through the API's schema, the webhook secret shown once
and rotated, and a test alert."""

from __future__ import annotations

import html
import re
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.models import Alert, User
from app.services import alerts
from tests.web.conftest import error_of, notice_of, post_form

SETTINGS = "/app/settings"
WEBHOOK = "https://hooks.example.com/marketmon"


def settings_form(**overrides: Any) -> dict[str, Any]:
    values = {
        "full_name": "",
        "timezone": "UTC",
        "phone_number": "",
        "webhook_url": "",
        "apprise_urls": "",
        "quiet_hours_start": "",
        "quiet_hours_end": "",
    }
    values.update(overrides)
    return values


async def current(session: AsyncSession, user: User) -> User:
    await session.refresh(user)
    return user


async def test_saving_settings_changes_only_what_changed(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    response = await post_form(
        signed_in,
        SETTINGS,
        SETTINGS,
        settings_form(
            full_name="Sam",
            timezone="Europe/London",
            phone_number="+44 7911 123456",
            apprise_urls="ntfy://deals\ntgram://123456:ABC/987",
            quiet_hours_start="22:30",
            quiet_hours_end="07:00",
        ),
    )

    assert response.status_code == 303
    saved = await current(session, user)
    assert saved.full_name == "Sam"
    assert saved.timezone == "Europe/London"
    assert saved.phone_number == "+447911123456"
    assert saved.apprise_urls == ["ntfy://deals", "tgram://123456:ABC/987"]
    assert saved.quiet_hours_start is not None
    assert saved.quiet_hours_start.strftime("%H:%M") == "22:30"
    page = await signed_in.get(SETTINGS)
    assert notice_of(page) == "Settings saved."
    assert 'value="Europe/London"' in page.text
    assert 'value="+447911123456"' in page.text


async def test_invalid_settings_show_the_schema_messages_and_change_nothing(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    invalid = await post_form(
        signed_in,
        SETTINGS,
        SETTINGS,
        settings_form(
            timezone="Mars/Olympus", phone_number="12345", apprise_urls="json://10.0.0.1/x"
        ),
    )
    half_quiet = await post_form(
        signed_in, SETTINGS, SETTINGS, settings_form(quiet_hours_start="22:00")
    )
    private_webhook = await post_form(
        signed_in, SETTINGS, SETTINGS, settings_form(webhook_url="https://nowhere.invalid/x")
    )

    assert invalid.status_code == 422
    assert error_of(invalid.text, "timezone") == (
        "Use a time zone name such as Europe/London or UTC"
    )
    assert "international form" in error_of(invalid.text, "phone_number")
    assert error_of(invalid.text, "apprise_urls").startswith("“json://10.0.0.1/x”: ")
    assert 'value="Mars/Olympus"' in invalid.text
    assert half_quiet.status_code == 422
    assert error_of(half_quiet.text, "quiet_hours") == "Set both times, or clear both"
    assert private_webhook.status_code == 422
    assert error_of(private_webhook.text, "webhook_url")
    saved = await current(session, user)
    assert saved.timezone == "UTC"
    assert saved.phone_number is None
    assert saved.webhook_url is None


async def test_the_webhook_secret_is_shown_once_and_can_be_rotated(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    response = await post_form(signed_in, SETTINGS, SETTINGS, settings_form(webhook_url=WEBHOOK))

    assert response.status_code == 200
    saved = await current(session, user)
    assert saved.webhook_url == WEBHOOK
    assert saved.webhook_secret is not None
    assert saved.webhook_secret in response.text
    assert response.headers["cache-control"] == "no-store"
    assert saved.webhook_secret not in (await signed_in.get(SETTINGS)).text

    # Saving the form again with the same URL keeps the secret (and shows none).
    again = await post_form(signed_in, SETTINGS, SETTINGS, settings_form(webhook_url=WEBHOOK))
    assert again.status_code == 303
    assert (await current(session, user)).webhook_secret == saved.webhook_secret

    old_secret = saved.webhook_secret
    rotated = await post_form(signed_in, SETTINGS, "/app/settings/webhook-secret")
    assert rotated.status_code == 200
    saved = await current(session, user)
    assert saved.webhook_secret != old_secret
    assert saved.webhook_previous_secret == old_secret
    assert saved.webhook_secret in rotated.text
    assert "The previous secret keeps signing too until" in rotated.text


async def test_rotating_without_a_webhook_says_so(signed_in: httpx.AsyncClient) -> None:
    response = await post_form(signed_in, SETTINGS, "/app/settings/webhook-secret")

    assert response.status_code == 303
    assert "Set a webhook URL first" in notice_of(await signed_in.get(SETTINGS))


async def test_a_test_alert_reports_how_delivery_went(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    response = await post_form(
        signed_in, SETTINGS, "/app/settings/test-alert", {"channel": "in_app"}
    )
    unknown = await post_form(
        signed_in, SETTINGS, "/app/settings/test-alert", {"channel": "pigeon"}
    )

    assert response.status_code == 303
    assert unknown.status_code == 303
    alert = await session.scalar(select(Alert).where(Alert.user_id == user.id))
    assert alert is not None
    assert alert.kind == "test"
    assert alert.status == "sent"
    page = await signed_in.get(SETTINGS)
    assert notice_of(page) == "Choose one of the alert channels"
    log = await signed_in.get("/app/alerts")
    assert "Test alert from Marketplace Monitor" in log.text
    assert "in_app" in log.text


def alert_options(page: httpx.Response) -> dict[str, str]:
    """The test alert's channel options: value -> its label, "(disabled)" added when it is."""
    start = page.text.index('<select id="f-channel" name="channel"')
    select = page.text[start : page.text.index("</select>", start)]
    return {
        value: html.unescape(label) + (" (disabled)" if disabled else "")
        for value, disabled, label in re.findall(
            r'<option value="(\w+)"((?: disabled)?)(?: selected)?>([^<]*)</option>', select
        )
    }


async def test_the_test_alert_defaults_to_in_app_and_explains_the_other_channels(
    signed_in: httpx.AsyncClient,
) -> None:
    page = await signed_in.get(SETTINGS)

    assert '<option value="in_app" selected>in-app</option>' in page.text
    assert alert_options(page) == {
        "in_app": "in-app",
        "email": "email — not set up on this server (SENDGRID_API_KEY or SMTP_URL) (disabled)",
        "sms": "sms — not set up on this server (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and "
        "TWILIO_FROM_NUMBER) (disabled)",
        "webhook": "webhook — add a webhook URL first (disabled)",
        "apprise": "apprise — add an Apprise URL first (disabled)",
    }


async def test_channels_the_user_has_set_up_can_be_tested(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    user.webhook_url, user.webhook_secret = WEBHOOK, "whsec_AAAA"
    user.apprise_urls = ["ntfy://deals"]
    await session.commit()

    options = alert_options(await signed_in.get(SETTINGS))

    assert (options["webhook"], options["apprise"]) == ("webhook", "apprise")


class _Ready:
    def is_configured(self) -> bool:
        return True


def test_channel_choices_say_what_the_user_has_still_to_do() -> None:
    channels: dict[str, Any] = {name: _Ready() for name in ("in_app", "email", "sms")}
    channels |= {"webhook": _Ready(), "apprise": _Ready()}
    user = User(
        email="a@example.com",
        email_verified=False,
        plan="pro",
        phone_number="+447911123456",
        phone_verified=False,
        webhook_url=WEBHOOK,
        webhook_disabled_at=utcnow(),
        apprise_urls=[],
    )

    choices = {c.name: c.unavailable for c in alerts.channel_choices(user, channels)}

    assert choices == {
        "in_app": None,
        "email": "confirm your email address first",
        "sms": "verify your phone number first",
        "webhook": "turn the webhook back on first",
        "apprise": "add an Apprise URL first",
    }
    user.plan = "free"
    free = {c.name: c.unavailable for c in alerts.channel_choices(user, channels)}
    assert free["sms"] == "the FREE plan includes no SMS"


async def test_a_failing_webhook_says_since_when_and_what_happens_next(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    user.webhook_url, user.webhook_secret = WEBHOOK, "whsec_AAAA"
    user.webhook_failing_since = utcnow()
    await session.commit()

    page = (await signed_in.get(SETTINGS)).text

    status = page[page.index('id="webhook-status"') :][:600]
    assert "Deliveries to this webhook have failed since" in status
    assert "After 5 days of failures it is turned off" in status


async def test_the_button_next_to_a_disabled_webhook_turns_it_back_on(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    user.webhook_url, user.webhook_secret = WEBHOOK, "whsec_AAAA"
    user.webhook_disabled_at = utcnow()
    user.webhook_disabled_reason = "Your endpoint answered 410 Gone on 7 Dec 2026 at 20:15 UTC"
    await session.commit()
    page = await signed_in.get(SETTINGS)
    assert "Your endpoint answered 410 Gone on 7 Dec 2026 at 20:15 UTC." in page.text

    response = await post_form(signed_in, SETTINGS, "/app/settings/webhook-enable")

    assert response.status_code == 303
    saved = await current(session, user)
    assert (saved.webhook_disabled_at, saved.webhook_disabled_reason) == (None, None)
    after = await signed_in.get(SETTINGS)
    assert notice_of(after) == "Webhook turned back on."
    assert 'id="webhook-status"' not in after.text
