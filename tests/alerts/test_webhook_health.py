"""A webhook turned off after a 410 or days of failures: why is recorded, shown by
GET /users/me, the alert log and Settings, and saving the URL again turns it back on.
Deliveries go to a real receiver on 127.0.0.1."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts import delivery
from app.alerts.channels.webhook import WebhookChannel
from app.db import utcnow
from app.models import Alert, User
from app.security import signing, ssrf
from tests.fakes.webhook_receiver import Reply, WebhookReceiver
from tests.security.test_ssrf import FakeResolver
from tests.web.conftest import log_in

SECRET = signing.generate_secret()
ME = "/api/v1/users/me"
PUBLIC_HOOK = "https://hooks.example.com/in"
DAY = r"\d{1,2} [A-Z][a-z]{2} \d{4}"
MOMENT = DAY + r" at \d\d:\d\d UTC"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as endpoint:
        yield endpoint


@pytest.fixture
async def runtime(app: FastAPI) -> AsyncIterator[delivery.DeliveryRuntime]:
    """The app's delivery runtime, its webhook channel allowed to call 127.0.0.1."""
    async with httpx.AsyncClient(trust_env=False) as client:
        policy = ssrf.URLPolicy(resolve=FakeResolver(), allow_http=True, allow_loopback=True)
        channels = {
            **app.state.delivery_runtime.channels,
            "webhook": WebhookChannel(client, policy),
        }
        yield replace(app.state.delivery_runtime, channels=channels)


@pytest.fixture
async def hooked(session: AsyncSession, user: User, receiver: WebhookReceiver) -> User:
    user.webhook_url, user.webhook_secret = receiver.url, SECRET
    await session.commit()
    return user


async def webhook_alert(session: AsyncSession, user: User) -> Alert:
    alert = Alert(
        user_id=user.id,
        channel="webhook",
        kind="new_listing",
        idempotency_key=f"k:{uuid.uuid4()}",
        payload={"title": "Canon EF 50mm", "url": "https://www.ebay.co.uk/itm/1"},
        status="pending",
        attempts=0,
        next_attempt_at=utcnow(),
    )
    session.add(alert)
    await session.commit()
    return alert


async def me(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, object]:
    response = await client.get(ME, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def test_a_410_disables_the_webhook_at_once_and_says_why_everywhere(
    app: FastAPI,
    client: httpx.AsyncClient,
    session: AsyncSession,
    hooked: User,
    headers: dict[str, str],
    receiver: WebhookReceiver,
    runtime: delivery.DeliveryRuntime,
) -> None:
    assert (await me(client, headers))["webhook_status"] == "active"
    receiver.script(Reply(410))
    await webhook_alert(session, hooked)

    await delivery.deliver_due(runtime)

    assert len(receiver.requests) == 1
    await session.refresh(hooked)
    reason = hooked.webhook_disabled_reason or ""
    assert re.fullmatch(
        f"Your endpoint answered 410 Gone on {MOMENT}, which means it no longer wants deliveries",
        reason,
    ), reason
    assert hooked.webhook_disabled_at is not None
    profile = await me(client, headers)
    assert profile["webhook_status"] == "disabled"
    assert profile["webhook_disabled_reason"] == reason
    assert profile["webhook_disabled_at"] is not None
    notice = await session.scalar(
        select(Alert).where(Alert.kind == "system", Alert.channel == "in_app")
    )
    assert notice is not None
    assert reason in notice.payload["text"]

    # The next alert for the webhook is not sent, and its log line says why and what to do.
    later = await webhook_alert(session, hooked)
    await delivery.deliver_due(runtime)
    await session.refresh(later)
    assert len(receiver.requests) == 1
    assert later.status == "failed"
    day = f"{hooked.webhook_disabled_at.astimezone(UTC).day} "
    assert later.last_error == (
        f"webhook disabled on {day}{hooked.webhook_disabled_at.astimezone(UTC):%b %Y}: "
        f"{reason}; save the URL again in Settings to turn it back on"
    )

    # The dashboard shows the same, next to the webhook field and in the log.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as browser:
        await log_in(browser, hooked.email)
        settings = (await browser.get("/app/settings")).text
        log = (await browser.get("/app/alerts?channel=webhook")).text
    status = settings[settings.index('id="webhook-status"') :]
    assert "disabled" in status[:200]
    assert reason in status[:800]
    assert 'form="enable-webhook"' in status[:1200]
    assert "save the URL again in Settings to turn it back on" in log

    # Saving the URL again turns it back on and forgets why it was off.
    async def public(host: str) -> list[str]:
        return ["93.184.216.34"]

    app.state.resolve_host = public
    saved = await client.patch(ME, json={"webhook_url": PUBLIC_HOOK}, headers=headers)
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert (body["webhook_status"], body["webhook_disabled_at"]) == ("active", None)
    assert (body["webhook_disabled_reason"], body["webhook_failing_since"]) == (None, None)


async def test_failing_for_days_disables_the_webhook_with_the_days_counted(
    client: httpx.AsyncClient,
    session: AsyncSession,
    hooked: User,
    headers: dict[str, str],
    receiver: WebhookReceiver,
    runtime: delivery.DeliveryRuntime,
) -> None:
    receiver.script(Reply(500), Reply(500))
    await webhook_alert(session, hooked)
    await delivery.deliver_due(runtime)

    profile = await me(client, headers)
    assert profile["webhook_status"] == "failing"
    assert profile["webhook_failing_since"] is not None
    assert profile["webhook_disabled_reason"] is None

    await session.refresh(hooked)
    hooked.webhook_failing_since = utcnow() - timedelta(days=6, hours=1)
    await session.commit()
    await webhook_alert(session, hooked)
    await delivery.deliver_due(runtime)

    profile = await me(client, headers)
    assert profile["webhook_status"] == "disabled"
    reason = str(profile["webhook_disabled_reason"])
    assert re.fullmatch(f"Deliveries have failed since {MOMENT} \\(6 days\\)", reason), reason


async def test_without_a_url_the_webhook_is_not_set(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    profile = await me(client, headers)

    assert profile["webhook_status"] == "not_set"
    assert profile["webhook_disabled_at"] is None
    assert profile["webhook_failing_since"] is None
