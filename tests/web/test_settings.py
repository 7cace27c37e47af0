"""Settings: profile and channels through the API's schema, the webhook secret shown once
and rotated, and a test alert."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Alert, User
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
        "not an IANA time zone name, such as Europe/London or UTC"
    )
    assert "international form" in error_of(invalid.text, "phone_number")
    assert error_of(invalid.text, "apprise_urls").startswith("item 1: ")
    assert 'value="Mars/Olympus"' in invalid.text
    assert half_quiet.status_code == 422
    assert error_of(half_quiet.text, "quiet_hours") == (
        "Set both quiet_hours_start and quiet_hours_end, or clear both"
    )
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
