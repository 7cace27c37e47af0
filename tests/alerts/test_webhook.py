"""The webhook channel against a local receiver that verifies with the reference library."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime

import httpx
import pytest

from app.alerts.channels.base import (
    AlertMessage,
    DeliveryResult,
    DeliveryStatus,
    ListingInfo,
    Recipient,
)
from app.alerts.channels.webhook import WebhookChannel
from app.security import signing, ssrf
from tests.conftest import make_settings
from tests.fakes.webhook_receiver import GuardedBackend, Reply, WebhookReceiver, guarded_client
from tests.security.test_ssrf import PUBLIC_V4, FakeResolver, RebindingResolver

SECRET = signing.generate_secret()
SEARCH_ID = uuid.uuid4()
CANON = ListingInfo(
    title="Canon EF 50mm f/1.8 STM",
    url="https://www.ebay.co.uk/itm/1234",
    marketplace="ebay",
    price="45.00",
    currency="GBP",
    image_url="https://i.ebayimg.com/1234.jpg",
    location="Leeds",
)


def new_listing_message(**changes: object) -> AlertMessage:
    values: dict[str, object] = {
        "alert_id": uuid.uuid4(),
        "idempotency_key": "key",
        "kind": "new_listing",
        "subject": "New match: Canon EF 50mm f/1.8 STM",
        "listings": (CANON,),
        "search_id": SEARCH_ID,
        "search_name": "canon 50mm",
        "manage_url": f"http://localhost:8000/app/searches/{SEARCH_ID}/edit",
    }
    values.update(changes)
    return AlertMessage(**values)  # type: ignore[arg-type]


def recipient_for(url: str | None, *secrets: str) -> Recipient:
    return Recipient(
        user_id=uuid.uuid4(),
        email="owner@example.com",
        webhook_url=url,
        webhook_secrets=secrets or (SECRET,),
    )


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as endpoint:
        yield endpoint


@pytest.fixture
def canary() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as listener:
        yield listener


@pytest.fixture
async def guarded(
    canary: WebhookReceiver,
) -> AsyncIterator[tuple[httpx.AsyncClient, GuardedBackend]]:
    client, backend = guarded_client(canary.port)
    async with client:
        yield client, backend


@pytest.fixture
def channel(guarded: tuple[httpx.AsyncClient, GuardedBackend]) -> WebhookChannel:
    policy = ssrf.URLPolicy(resolve=FakeResolver(), allow_http=True, allow_loopback=True)
    return WebhookChannel(guarded[0], policy, timeout_s=5)


async def test_new_listing_arrives_signed_with_the_documented_payload(
    channel: WebhookChannel, receiver: WebhookReceiver
) -> None:
    message = new_listing_message()

    result = await channel.send(recipient_for(receiver.url), message)

    assert result == DeliveryResult.delivered()
    assert receiver.rejected == []
    [request] = receiver.accepted
    assert request.webhook_id == f"msg_{message.alert_id}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("MarketplaceMonitor-Webhooks/")
    document = request.payload
    assert document["type"] == "listing.new"
    assert datetime.fromisoformat(document["timestamp"]).utcoffset() is not None
    assert document["data"] == {
        "search": {
            "id": str(SEARCH_ID),
            "name": "canon 50mm",
            "url": f"http://localhost:8000/app/searches/{SEARCH_ID}/edit",
        },
        "listings": [
            {
                "title": "Canon EF 50mm f/1.8 STM",
                "price": "45.00",
                "currency": "GBP",
                "previous_price": None,
                "url": "https://www.ebay.co.uk/itm/1234",
                "image_url": "https://i.ebayimg.com/1234.jpg",
                "location": "Leeds",
                "marketplace": "ebay",
            }
        ],
        "more_count": 0,
        "text": None,
    }


@pytest.mark.parametrize(
    ("changes", "event_type"),
    [
        pytest.param(
            {
                "kind": "price_drop",
                "listings": (
                    ListingInfo("Lens", "https://x.test/1", "ebay", "40.00", "GBP", "55.00"),
                ),
            },
            "listing.price_drop",
            id="price-drop",
        ),
        pytest.param(
            {"kind": "digest", "listings": (CANON, CANON), "more_count": 7},
            "listings.digest",
            id="digest",
        ),
        pytest.param(
            {"kind": "test", "listings": (), "search_id": None, "text": "It works."},
            "test",
            id="test",
        ),
        pytest.param(
            {"kind": "system", "listings": (), "search_id": None, "text": "Search paused."},
            "system",
            id="system",
        ),
    ],
)
async def test_every_kind_has_its_event_type(
    channel: WebhookChannel,
    receiver: WebhookReceiver,
    changes: dict[str, object],
    event_type: str,
) -> None:
    message = new_listing_message(**changes)
    assert (await channel.send(recipient_for(receiver.url), message)).status == "delivered"
    [request] = receiver.accepted
    assert request.payload["type"] == event_type
    data = request.payload["data"]
    assert data["more_count"] == message.more_count
    assert data["text"] == message.text
    assert len(data["listings"]) == len(message.listings)
    if message.search_id is None:
        assert data["search"] is None
    if message.kind == "price_drop":
        assert data["listings"][0]["previous_price"] == "55.00"


async def test_retries_carry_the_same_webhook_id(
    channel: WebhookChannel, receiver: WebhookReceiver
) -> None:
    receiver.script(Reply(500, body=b"Traceback: secret internals"), Reply(503), Reply(200))
    message = new_listing_message()
    recipient = recipient_for(receiver.url)

    results = [await channel.send(recipient, message) for _ in range(3)]

    assert [result.status for result in results] == ["retry", "retry", "delivered"]
    assert [result.error for result in results] == ["HTTP 500", "HTTP 503", None]
    assert receiver.webhook_ids == [f"msg_{message.alert_id}"] * 3
    assert receiver.delivered_ids == {f"msg_{message.alert_id}"}
    assert receiver.rejected == []


async def test_during_rotation_a_receiver_with_either_secret_verifies(
    channel: WebhookChannel,
) -> None:
    old, new = signing.generate_secret(), signing.generate_secret()
    for receiver_secret in (old, new):
        with WebhookReceiver(receiver_secret) as receiver:
            result = await channel.send(
                recipient_for(receiver.url, old, new), new_listing_message()
            )
            assert result.status == "delivered"
            assert len(receiver.accepted) == 1
            assert receiver.rejected == []


async def test_a_receiver_with_another_secret_rejects_the_message(
    channel: WebhookChannel, receiver: WebhookReceiver
) -> None:
    result = await channel.send(
        recipient_for(receiver.url, signing.generate_secret()), new_listing_message()
    )
    assert result == DeliveryResult.retry("HTTP 401")
    assert len(receiver.rejected) == 1


async def test_410_means_gone(channel: WebhookChannel, receiver: WebhookReceiver) -> None:
    receiver.script(Reply(410))
    result = await channel.send(recipient_for(receiver.url), new_listing_message())
    assert result.status == DeliveryStatus.GONE
    assert result.error is not None
    assert "410" in result.error


@pytest.mark.parametrize(
    ("reply", "error", "retry_after_s"),
    [
        pytest.param(Reply(429, {"Retry-After": "120"}), "HTTP 429", 120.0, id="429-retry-after"),
        pytest.param(Reply(503, {"Retry-After": "30"}), "HTTP 503", 30.0, id="503-retry-after"),
        pytest.param(Reply(408), "HTTP 408", None, id="408"),
        pytest.param(Reply(400), "HTTP 400", None, id="other-4xx"),
        pytest.param(Reply(404), "HTTP 404", None, id="404"),
        pytest.param(
            Reply(302, {"Location": "http://169.254.169.254/latest/meta-data/"}),
            "HTTP 302 (redirects are not followed)",
            None,
            id="redirect-to-metadata",
        ),
    ],
)
async def test_non_2xx_answers_are_retried_with_a_short_reason(
    channel: WebhookChannel,
    receiver: WebhookReceiver,
    guarded: tuple[httpx.AsyncClient, GuardedBackend],
    reply: Reply,
    error: str,
    retry_after_s: float | None,
) -> None:
    receiver.script(reply)
    result = await channel.send(recipient_for(receiver.url), new_listing_message())
    assert result == DeliveryResult.retry(error, retry_after_s=retry_after_s)
    # Redirects are never followed: one request, to the receiver only.
    assert guarded[1].attempts == [("127.0.0.1", receiver.port)]
    assert len(receiver.requests) == 1


async def test_slow_endpoint_is_retried_after_the_timeout(
    guarded: tuple[httpx.AsyncClient, GuardedBackend], receiver: WebhookReceiver
) -> None:
    policy = ssrf.URLPolicy(resolve=FakeResolver(), allow_http=True, allow_loopback=True)
    channel = WebhookChannel(guarded[0], policy, timeout_s=0.3)
    receiver.script(Reply(200, delay_s=5))
    result = await channel.send(recipient_for(receiver.url), new_listing_message())
    assert result == DeliveryResult.retry("timed out after 0.3 s")


async def test_unreachable_endpoint_is_retried(channel: WebhookChannel) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = await channel.send(
        recipient_for(f"http://127.0.0.1:{port}/hook"), new_listing_message()
    )
    assert result == DeliveryResult.retry("could not connect")


async def test_local_url_without_the_loopback_allowance_is_refused_without_connecting(
    guarded: tuple[httpx.AsyncClient, GuardedBackend],
    receiver: WebhookReceiver,
    canary: WebhookReceiver,
) -> None:
    policy = ssrf.URLPolicy(resolve=FakeResolver(), allow_http=True)
    channel = WebhookChannel(guarded[0], policy, timeout_s=5)
    result = await channel.send(recipient_for(receiver.url), new_listing_message())
    assert result.status == DeliveryStatus.PERMANENT
    assert result.error is not None
    assert result.error.startswith("refused: ")
    assert guarded[1].attempts == []
    assert receiver.connections == 0
    assert canary.connections == 0


async def test_name_that_rebinds_to_a_private_address_is_refused_at_send(
    guarded: tuple[httpx.AsyncClient, GuardedBackend], canary: WebhookReceiver
) -> None:
    resolver = RebindingResolver([PUBLIC_V4], ["10.0.0.8"])
    policy = ssrf.URLPolicy(resolve=resolver, allow_http=False)
    url = "https://hooks.example.com/hook"
    await policy.check(url)  # the check when the URL was saved passes
    channel = WebhookChannel(guarded[0], policy, timeout_s=5)

    result = await channel.send(recipient_for(url), new_listing_message())

    assert result == DeliveryResult.permanent(
        "refused: hooks.example.com resolves to a private or special-purpose address"
    )
    assert guarded[1].attempts == []
    assert canary.connections == 0


def test_can_reach_needs_a_url_and_a_secret(channel: WebhookChannel) -> None:
    url = "https://hooks.example.com/hook"
    assert channel.can_reach(recipient_for(url))
    assert not channel.can_reach(recipient_for(None))
    assert not channel.can_reach(
        Recipient(user_id=uuid.uuid4(), email="a@example.com", webhook_url=url)
    )
    assert channel.is_configured()


async def test_recipient_without_a_url_or_secret_is_a_permanent_failure(
    channel: WebhookChannel,
) -> None:
    no_url = await channel.send(recipient_for(None), new_listing_message())
    no_secret = await channel.send(
        Recipient(uuid.uuid4(), "a@example.com", webhook_url="http://127.0.0.1:9/"),
        new_listing_message(),
    )
    assert no_url.status == no_secret.status == DeliveryStatus.PERMANENT


async def test_malformed_secret_is_a_permanent_failure(
    channel: WebhookChannel, receiver: WebhookReceiver
) -> None:
    result = await channel.send(
        recipient_for(receiver.url, "whsec_not base64!"), new_listing_message()
    )
    assert result == DeliveryResult.permanent("the webhook signing secret is invalid")
    assert receiver.connections == 0


async def test_from_settings_applies_the_url_policy_of_the_settings() -> None:
    async with httpx.AsyncClient(trust_env=False) as client:
        strict = WebhookChannel.from_settings(
            client,
            make_settings(
                "sqlite+aiosqlite://",
                debug=False,
                secret_key="k" * 40,
                allow_sqlite_in_production=True,
            ),
            FakeResolver(),
        )
        local = WebhookChannel.from_settings(
            client,
            make_settings("sqlite+aiosqlite://", ssrf_allow_loopback=True, webhook_timeout_s=12),
            FakeResolver(),
        )
    assert (strict.policy.allow_http, strict.policy.allow_loopback) == (False, False)
    assert (local.policy.allow_http, local.policy.allow_loopback) == (True, True)
    assert local.timeout_s == 12


def test_a_client_that_reads_proxy_settings_from_the_environment_is_refused() -> None:
    policy = ssrf.URLPolicy(resolve=FakeResolver())
    with pytest.raises(ValueError, match="trust_env"):
        WebhookChannel(httpx.AsyncClient(trust_env=True), policy)
