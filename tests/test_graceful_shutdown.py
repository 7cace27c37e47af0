"""Stopping the API in embedded mode (Ctrl-C, SIGTERM): the scheduler stops within a tick
even while a marketplace or a webhook is slow, and hands back what it had claimed, so the
next process checks and delivers it at once instead of after the lease."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

from fastapi import FastAPI
from sqlalchemy import select

from app.db import utcnow
from app.main import create_app
from app.models import Alert, Search
from app.security.signing import generate_secret
from tests.conftest import empty_tables, make_settings
from tests.factories import make_search, make_user
from tests.fakes.ebay import EbayFake, item_summary
from tests.fakes.webhook_receiver import Reply, WebhookReceiver

TICK_S = 0.5
# Slower than any test waits: the work is always in flight when the app stops.
SLOW_S = 30.0
# Shutdown = one tick of grace, then cancelling and handing back: well under the slow call.
STOP_BOUND_S = TICK_S + 2.0


async def wait_for(condition: Callable[[], Awaitable[bool]], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


def embedded_app(database_url: str, **overrides: object) -> FastAPI:
    return create_app(
        make_settings(database_url, embedded_worker=True, embedded_tick_s=TICK_S, **overrides)
    )


async def test_runner_stops_within_a_tick_during_a_slow_check_and_releases_the_search(
    database_url: str,
) -> None:
    with EbayFake() as ebay:
        ebay.set_items([item_summary(1, "iPhone 13")])
        ebay.search_delay_s = SLOW_S
        app = embedded_app(
            database_url,
            ebay_api_base_url=ebay.base_url,
            ebay_oauth_base_url=ebay.base_url,
            ebay_app_id=ebay.app_id,
            ebay_cert_id=ebay.cert_id,
            ebay_timeout_s=SLOW_S * 2,
        )
        try:
            async with app.router.lifespan_context(app):
                async with app.state.session_factory() as session:
                    user = await make_user(session, email="slow-check@example.com")
                    search = await make_search(session, owner=user, marketplaces=["ebay"])

                async def upstream_called() -> bool:
                    return ebay.search_calls > 0

                await wait_for(upstream_called)
                async with app.state.session_factory() as session:
                    claimed = await session.get(Search, search.id)
                    assert claimed is not None
                    assert claimed.next_check_at is not None
                    assert claimed.next_check_at > utcnow() + timedelta(minutes=1)  # leased
                stopping = time.monotonic()
            stopped_in_s = time.monotonic() - stopping

            assert stopped_in_s < STOP_BOUND_S
            async with app.state.session_factory() as session:
                released = await session.get(Search, search.id)
                assert released is not None
                assert released.next_check_at is not None
                assert released.next_check_at <= utcnow()  # due again at once
                assert released.last_checked_at is None  # the check never happened
                assert released.last_error is None
            assert [t for t in asyncio.all_tasks() if t.get_name() == "embedded-scheduler"] == []
            await empty_tables(app)
        finally:
            await app.state.engine.dispose()


async def test_runner_hands_back_an_alert_it_was_sending_without_using_an_attempt(
    database_url: str,
) -> None:
    secret = generate_secret()
    with WebhookReceiver(secret) as receiver:
        receiver.answer_always(Reply(200, delay_s=SLOW_S))
        app = embedded_app(database_url, ssrf_allow_loopback=True, webhook_timeout_s=SLOW_S)
        try:
            async with app.router.lifespan_context(app):
                async with app.state.session_factory() as session:
                    user = await make_user(
                        session,
                        email="slow-hook@example.com",
                        webhook_url=receiver.url,
                        webhook_secret=secret,
                    )
                    alert = Alert(
                        id=uuid.uuid4(),
                        user_id=user.id,
                        channel="webhook",
                        kind="new_listing",
                        idempotency_key="shutdown:1",
                        payload={"title": "iPhone 13", "url": "https://example.com/1"},
                        status="pending",
                        attempts=0,
                        next_attempt_at=utcnow(),
                        created_at=utcnow(),
                    )
                    session.add(alert)
                    await session.commit()

                async def webhook_called() -> bool:
                    return bool(receiver.requests)

                await wait_for(webhook_called)
                stopping = time.monotonic()
            stopped_in_s = time.monotonic() - stopping

            assert stopped_in_s < STOP_BOUND_S
            async with app.state.session_factory() as session:
                row = (
                    await session.execute(select(Alert).where(Alert.id == alert.id))
                ).scalar_one()
                assert row.status == "pending"
                assert row.attempts == 0
                assert row.lease_until is None
                assert row.next_attempt_at <= utcnow()
            await empty_tables(app)
        finally:
            await app.state.engine.dispose()
