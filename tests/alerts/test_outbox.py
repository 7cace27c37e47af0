"""The outbox: claims with leases, fencing, the retry schedule, quiet hours, webhook health."""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from datetime import UTC, datetime, time, timedelta

import pytest
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts import delivery, outbox
from app.alerts.channels.base import AlertMessage, DeliveryResult, Recipient
from app.alerts.quiet_hours import quiet_until
from app.db import utcnow
from app.models import Alert, ApiUsage, Plan, User
from app.services import plans
from tests.factories import make_search

SCHEDULE = (0.0, 5.0, 300.0)


class ScriptedChannel:
    """A channel double that answers from a script and records what it was asked to send."""

    name = "email"

    def __init__(self, *results: DeliveryResult) -> None:
        self.script = deque(results)
        self.sent: list[AlertMessage] = []

    def is_configured(self) -> bool:
        return True

    def can_reach(self, recipient: Recipient) -> bool:
        return True

    async def send(self, recipient: Recipient, message: AlertMessage) -> DeliveryResult:
        self.sent.append(message)
        return self.script.popleft() if self.script else DeliveryResult.delivered("msg-1")


def runtime(
    app: FastAPI, channel: object, *, worker: str = "w1", name: str = "email"
) -> delivery.DeliveryRuntime:
    return delivery.DeliveryRuntime(
        session_factory=app.state.session_factory,
        channels={name: channel},  # type: ignore[dict-item]
        http_client=app.state.delivery_runtime.http_client,
        policy=outbox.RetryPolicy(SCHEDULE),
        lease=timedelta(seconds=120),
        worker_id=worker,
        public_base_url="https://mm.example.com",
    )


async def make_alert(
    session: AsyncSession, user: User, *, channel: str = "email", **fields: object
) -> Alert:
    values: dict[str, object] = {
        "kind": "new_listing",
        "payload": {"title": "iPhone 13", "price": "300.00", "currency": "GBP", "url": "https://x"},
        **fields,
    }
    alert = Alert(
        user_id=user.id,
        channel=channel,
        idempotency_key=f"k:{uuid.uuid4()}",
        status="pending",
        attempts=0,
        next_attempt_at=utcnow(),
        **values,
    )
    session.add(alert)
    await session.commit()
    return alert


async def reload(session: AsyncSession, alert: Alert) -> Alert:
    await session.refresh(alert)
    return alert


async def test_a_delivered_alert_is_sent_once(
    app: FastAPI, session: AsyncSession, user: User
) -> None:
    channel = ScriptedChannel()
    alert = await make_alert(session, user)
    first = await delivery.deliver_due(runtime(app, channel))
    second = await delivery.deliver_due(runtime(app, channel))
    assert (first.claimed, second.claimed) == (1, 0)
    alert = await reload(session, alert)
    assert (alert.status, alert.attempts, alert.provider_message_id) == ("sent", 1, "msg-1")
    assert alert.sent_at is not None
    assert [m.alert_id for m in channel.sent] == [alert.id]
    assert channel.sent[0].subject == "New match: iPhone 13"


async def test_retries_follow_the_schedule_then_the_alert_is_dead(
    app: FastAPI, session: AsyncSession, user: User
) -> None:
    channel = ScriptedChannel(*(DeliveryResult.retry("HTTP 503") for _ in SCHEDULE))
    alert = await make_alert(session, user)
    start = utcnow()
    await delivery.deliver_due(runtime(app, channel))
    alert = await reload(session, alert)
    assert (alert.status, alert.attempts, alert.last_error) == ("pending", 1, "HTTP 503")
    wait = (alert.next_attempt_at - start).total_seconds()
    assert 4.4 <= wait <= 5.6  # 5 s +- 10 % jitter
    # Not due yet: nothing is claimed.
    assert (await delivery.deliver_due(runtime(app, channel))).claimed == 0
    for attempt in (2, 3):
        await delivery.deliver_due(runtime(app, channel), now=alert.next_attempt_at)
        alert = await reload(session, alert)
        assert alert.attempts == attempt
    assert alert.status == "dead"
    assert len(channel.sent) == len(SCHEDULE)


async def test_retry_after_wins_when_longer_than_the_schedule(
    app: FastAPI, session: AsyncSession, user: User
) -> None:
    channel = ScriptedChannel(DeliveryResult.retry("HTTP 429", retry_after_s=120))
    alert = await make_alert(session, user)
    start = utcnow()
    await delivery.deliver_due(runtime(app, channel))
    alert = await reload(session, alert)
    assert (alert.next_attempt_at - start).total_seconds() >= 120


async def test_a_permanent_error_stops_at_once(
    app: FastAPI, session: AsyncSession, user: User
) -> None:
    channel = ScriptedChannel(DeliveryResult.permanent("invalid recipient"))
    alert = await make_alert(session, user)
    await delivery.deliver_due(runtime(app, channel))
    alert = await reload(session, alert)
    assert (alert.status, alert.attempts, alert.last_error) == ("failed", 1, "invalid recipient")


async def test_an_expired_lease_is_claimed_again_and_the_old_worker_is_fenced_off(
    app: FastAPI, session: AsyncSession, user: User
) -> None:
    alert = await make_alert(session, user)
    now = utcnow()
    claimed = await outbox.claim_due(
        session, worker_id="dead", now=now, lease=timedelta(seconds=120)
    )
    assert claimed == [alert.id]
    # Within the lease nobody else gets it.
    assert (
        await outbox.claim_due(session, worker_id="w2", now=now, lease=timedelta(seconds=120)) == []
    )
    later = now + timedelta(seconds=121)
    assert await outbox.claim_due(
        session, worker_id="w2", now=later, lease=timedelta(seconds=120)
    ) == [alert.id]
    # The first worker wakes up and tries to finish: it no longer holds the row.
    status = await outbox.finish(
        session,
        alert.id,
        worker_id="dead",
        result=DeliveryResult.delivered(),
        policy=outbox.RetryPolicy(SCHEDULE),
        now=later,
    )
    assert status is None
    await session.commit()
    alert = await reload(session, alert)
    assert (alert.status, alert.claimed_by, alert.attempts) == ("sending", "w2", 2)


async def test_a_row_whose_lease_ran_out_in_the_batch_is_not_sent_by_its_old_holder(
    app: FastAPI, session: AsyncSession, user: User
) -> None:
    """A slow batch: worker A claimed a row, the row waited past its lease, worker B took
    it. A must not send it as well; only B's send happens, so the receiver sees one."""
    alert = await make_alert(session, user)
    expired = timedelta(seconds=-1)  # as if the batch had taken longer than the lease
    assert await outbox.claim_due(session, worker_id="a", now=utcnow(), lease=expired) == [alert.id]
    slow = ScriptedChannel()
    assert await delivery._deliver_one(runtime(app, slow, worker="a"), alert.id) == "lost_lease"
    assert slow.sent == []

    taker = ScriptedChannel()
    report = await delivery.deliver_due(runtime(app, taker, worker="b"))
    assert report.outcomes["sent"] == 1
    assert [m.alert_id for m in taker.sent] == [alert.id]
    alert = await reload(session, alert)
    assert (alert.status, alert.claimed_by) == ("sent", "b")


async def test_many_concurrent_deliverers_send_each_alert_once(
    app: FastAPI, session: AsyncSession, user: User
) -> None:
    channel = ScriptedChannel()
    alerts = [await make_alert(session, user) for _ in range(30)]
    workers = [runtime(app, channel, worker=f"w{n}") for n in range(8)]
    for _ in range(10):  # rounds of racing claimers until the outbox is drained
        reports = await asyncio.gather(*(delivery.deliver_due(w, limit=10) for w in workers))
        if not any(r.claimed for r in reports):
            break
    sent = [m.alert_id for m in channel.sent]
    assert len(sent) == len(set(sent))  # never twice
    assert sorted(sent) == sorted(a.id for a in alerts)  # never lost


async def test_quiet_hours_defer_without_using_an_attempt(
    app: FastAPI, session: AsyncSession, user: User
) -> None:
    user.quiet_hours_start, user.quiet_hours_end = time(0, 0), time(23, 59)
    user.timezone = "UTC"
    await session.commit()
    channel = ScriptedChannel()
    email = await make_alert(session, user)
    feed = await make_alert(session, user, channel="in_app")
    report = await delivery.deliver_due(runtime(app, channel))
    assert report.outcomes["deferred"] == 1
    email = await reload(session, email)
    assert (email.status, email.attempts) == ("pending", 0)
    assert email.next_attempt_at.time().replace(second=0, microsecond=0) == time(23, 59)
    assert channel.sent == []
    # The in-app feed is not something that wakes anyone: it is never deferred.
    feed = await reload(session, feed)
    assert feed.status == "failed"  # no in_app channel in this runtime: permanent, not deferred


@given(
    start=st.times(),
    end=st.times(),
    moment=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)),
)
def test_quiet_until_is_in_the_future_and_only_inside_the_window(
    start: time, end: time, moment: datetime
) -> None:
    now = moment.replace(tzinfo=UTC)
    until = quiet_until(now, start=start, end=end, timezone="Europe/London")
    if until is not None:
        assert now < until <= now + timedelta(days=1, hours=2)


async def test_a_webhook_answering_410_is_disabled_and_its_owner_told(
    app: FastAPI, session: AsyncSession, user: User
) -> None:
    channel = ScriptedChannel(DeliveryResult.gone("HTTP 410"))
    channel.name = "webhook"
    user.webhook_url, user.webhook_secret = "https://hooks.example.com/x", "whsec_AAAA"
    await session.commit()
    await make_alert(session, user, channel="webhook")
    await delivery.deliver_due(runtime(app, channel, name="webhook"))
    await session.refresh(user)
    assert user.webhook_disabled_at is not None
    notices = (await session.scalars(select(Alert).where(Alert.kind == "system"))).all()
    assert sorted(n.channel for n in notices) == ["email", "in_app"]
    assert "410" in notices[0].payload["text"]


async def test_a_webhook_failing_for_days_is_disabled(
    app: FastAPI, session: AsyncSession, user: User
) -> None:
    channel = ScriptedChannel(DeliveryResult.retry("HTTP 500"))
    channel.name = "webhook"
    user.webhook_url, user.webhook_secret = "https://hooks.example.com/x", "whsec_AAAA"
    user.webhook_failing_since = utcnow() - timedelta(days=6)
    await session.commit()
    await make_alert(session, user, channel="webhook")
    await delivery.deliver_due(runtime(app, channel, name="webhook"))
    await session.refresh(user)
    assert user.webhook_disabled_at is not None


async def test_digest_message_lists_at_most_the_maximum_and_counts_the_rest(
    app: FastAPI, session: AsyncSession, user: User
) -> None:
    search = await make_search(session, owner=user, name="Lego")
    listings = [
        {"title": f"Lego set {n}", "url": f"https://x/{n}", "price": "10.00"} for n in range(13)
    ]
    await make_alert(
        session, user, kind="digest", search_id=search.id, payload={"listings": listings}
    )
    channel = ScriptedChannel()
    await delivery.deliver_due(runtime(app, channel))
    message = channel.sent[0]
    assert message.subject == "13 new matches for 'Lego'"
    assert (len(message.listings), message.more_count) == (10, 3)
    assert message.manage_url == f"https://mm.example.com/app/searches/{search.id}/edit"


@pytest.mark.parametrize("attempts", [0, 1, 5, 7, 50])
def test_retry_delay_stays_within_ten_percent_of_the_schedule(attempts: int) -> None:
    policy = outbox.RetryPolicy((0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0))
    base = policy.schedule_s[min(attempts, policy.max_attempts - 1)]
    for _ in range(50):
        delay = policy.delay_after(attempts).total_seconds()
        assert base * 0.9 <= delay <= base * 1.1


async def test_sms_over_the_daily_cap_waits_for_the_next_day(
    app: FastAPI, session: AsyncSession, user: User
) -> None:
    user.plan = Plan.STARTER.value
    await session.commit()
    cap = plans.limits_for(Plan.STARTER).sms_per_day
    session.add(ApiUsage(user_id=user.id, day=utcnow().date(), kind="sms", count=cap))
    await session.commit()
    channel = ScriptedChannel()
    channel.name = "sms"
    alert = await make_alert(session, user, channel="sms")
    report = await delivery.deliver_due(runtime(app, channel, name="sms"))
    assert report.outcomes["deferred"] == 1
    alert = await reload(session, alert)
    assert (alert.status, alert.attempts) == ("pending", 0)
    assert alert.next_attempt_at.date() > utcnow().date()
    assert alert.next_attempt_at.time() < time(0, 0, 2)  # just after UTC midnight
    assert channel.sent == []
    usage_row = await session.scalar(select(ApiUsage).where(ApiUsage.kind == "sms"))
    assert usage_row is not None
    await session.refresh(usage_row)
    assert usage_row.count == cap  # the refused attempt is not counted


async def test_sms_within_the_cap_is_sent_and_counted(
    app: FastAPI, session: AsyncSession, user: User
) -> None:
    user.plan = Plan.STARTER.value
    # SMS goes only to a verified number.
    user.phone_number = "+447911123456"
    user.phone_verified = True
    await session.commit()
    channel = ScriptedChannel()
    channel.name = "sms"
    await make_alert(session, user, channel="sms")
    await delivery.deliver_due(runtime(app, channel, name="sms"))
    assert len(channel.sent) == 1
    usage_row = await session.scalar(select(ApiUsage).where(ApiUsage.kind == "sms"))
    assert usage_row is not None
    assert usage_row.count == 1


async def test_refused_server_credentials_pause_the_channel_and_tell_the_admins(
    app: FastAPI, session: AsyncSession, user: User, caplog: pytest.LogCaptureFixture
) -> None:
    admin = User(
        email="admin@example.com", password_hash="x", plan="free", is_admin=True, apprise_urls=[]
    )
    session.add(admin)
    await session.commit()
    channel = ScriptedChannel(DeliveryResult.misconfigured("SendGrid rejected the API key (401)"))
    first = await make_alert(session, user)
    paused = runtime(app, channel)

    with caplog.at_level("CRITICAL", logger="app.alerts.delivery"):
        await delivery.deliver_due(paused)
    first = await reload(session, first)
    # Back to pending, no attempt used up, due again when the pause ends.
    assert (first.status, first.attempts) == ("pending", 0)
    assert first.last_error == "SendGrid rejected the API key (401)"
    wait = (first.next_attempt_at - utcnow()).total_seconds()
    assert 590 <= wait <= 600
    assert "alert channel email paused" in caplog.text

    # While paused, other email alerts wait without a provider call.
    second = await make_alert(session, user)
    await delivery.deliver_due(paused)
    second = await reload(session, second)
    assert len(channel.sent) == 1
    assert (second.status, second.attempts) == ("pending", 0)
    assert second.next_attempt_at >= first.next_attempt_at - timedelta(seconds=1)

    # Admins hear about it once, in-app only (email is the channel that is down).
    to_admin = select(Alert).where(Alert.user_id == admin.id, Alert.kind == "system")
    notices = (await session.scalars(to_admin)).all()
    assert [n.channel for n in notices] == ["in_app"]
    assert "refused this server's credentials" in notices[0].payload["text"]

    # After the pause (the operator fixed the key) both go out.
    paused.paused_channels["email"] = utcnow() - timedelta(seconds=1)
    later = utcnow() + timedelta(minutes=11)
    report = await delivery.deliver_due(paused, now=later)
    assert report.outcomes["sent"] == 2
