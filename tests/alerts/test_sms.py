"""The SMS channel against a fake Twilio that checks auth, path and form like Twilio does."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.alerts.channels.base import (
    AlertMessage,
    DeliveryResult,
    DeliveryStatus,
    ListingInfo,
    Recipient,
)
from app.alerts.channels.sms import SmsChannel, sms_text
from tests.conftest import make_settings
from tests.fakes.twilio import TwilioFake

PHONE = "+447700900456"
SEARCH_ID = uuid.uuid4()
CANON = ListingInfo(
    title="Canon EF 50mm f/1.8 STM",
    url="https://www.ebay.co.uk/itm/1234",
    marketplace="ebay",
    price="45.00",
    currency="GBP",
    location="Leeds",
)


def message(**changes: object) -> AlertMessage:
    values: dict[str, object] = {
        "alert_id": uuid.uuid4(),
        "idempotency_key": "key",
        "kind": "new_listing",
        "subject": "New match: Canon EF 50mm f/1.8 STM",
        "listings": (CANON,),
        "search_id": SEARCH_ID,
        "search_name": "canon 50mm",
        "manage_url": "https://mm.example.com/s/1",
    }
    values.update(changes)
    return AlertMessage(**values)  # type: ignore[arg-type]


def recipient(phone: str | None = PHONE) -> Recipient:
    return Recipient(user_id=uuid.uuid4(), email="owner@example.com", phone_number=phone)


def listing(title: str, price: str | None = "45.00", **changes: str | None) -> ListingInfo:
    values: dict[str, str | None] = {
        "title": title,
        "url": "https://www.ebay.co.uk/itm/1234",
        "marketplace": "ebay",
        "price": price,
        "currency": "GBP",
        "location": "Leeds",
    }
    values.update(changes)
    return ListingInfo(**values)  # type: ignore[arg-type]


@pytest.fixture
def twilio() -> Iterator[TwilioFake]:
    with TwilioFake() as fake:
        yield fake


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as http:
        yield http


@pytest.fixture
def channel(client: httpx.AsyncClient, twilio: TwilioFake) -> SmsChannel:
    return SmsChannel(
        client,
        twilio.account_sid,
        twilio.auth_token,
        twilio.from_number,
        base_url=twilio.base_url,
        timeout_s=5,
    )


async def test_accepted_message_is_delivered_with_twilios_sid(
    channel: SmsChannel, twilio: TwilioFake
) -> None:
    result = await channel.send(recipient(), message())

    [sent] = twilio.messages
    assert result == DeliveryResult.delivered(sent.sid)
    assert sent.sid.startswith("SM")
    assert (sent.to, sent.from_) == (PHONE, twilio.from_number)
    assert sent.body == "New: £45 Canon EF 50mm f/1.8 STM - Leeds https://www.ebay.co.uk/itm/1234"
    assert twilio.requests == 1


async def test_price_drop_shows_the_old_price(channel: SmsChannel, twilio: TwilioFake) -> None:
    drop = listing("Canon EF 50mm f/1.8 STM", "39.99", previous_price="45.00")
    await channel.send(recipient(), message(kind="price_drop", listings=(drop,)))
    assert twilio.messages[0].body == (
        "Price drop: £39.99 (was £45) Canon EF 50mm f/1.8 STM - Leeds "
        "https://www.ebay.co.uk/itm/1234"
    )


async def test_digest_counts_matches_and_says_how_many_more(
    channel: SmsChannel, twilio: TwilioFake
) -> None:
    listings = tuple(listing(f"Canon lens number {i}", str(40 + i)) for i in range(5))
    await channel.send(recipient(), message(kind="digest", listings=listings, more_count=7))
    body = twilio.messages[0].body
    assert body.startswith("12 new matches for 'canon 50mm': £40 Canon lens number 0; £41 ")
    assert body.endswith(" more https://mm.example.com/s/1")
    assert len(body) <= 160


async def test_test_message_sends_its_text(channel: SmsChannel, twilio: TwilioFake) -> None:
    await channel.send(
        recipient(), message(kind="test", listings=(), text="Test alert: SMS alerts work.")
    )
    assert twilio.messages[0].body == "Test alert: SMS alerts work."


@pytest.mark.parametrize(
    ("code", "status", "retry_after", "expected"),
    [
        pytest.param(
            20429,
            None,
            "30",
            DeliveryResult.retry("Twilio is rate limiting (HTTP 429)", retry_after_s=30.0),
            id="429-20429",
        ),
        pytest.param(
            20429,
            400,
            None,
            DeliveryResult.retry("Twilio is rate limiting (HTTP 400)"),
            id="20429-on-another-status",
        ),
        pytest.param(20001, None, None, DeliveryResult.retry("Twilio HTTP 500"), id="500"),
        pytest.param(
            20001, 503, "5", DeliveryResult.retry("Twilio HTTP 503", retry_after_s=5.0), id="503"
        ),
        pytest.param(
            21211,
            None,
            None,
            DeliveryResult.permanent("invalid phone number (Twilio 21211)"),
            id="21211",
        ),
        pytest.param(
            21610,
            None,
            None,
            DeliveryResult.permanent(
                "the number has opted out of SMS (replied STOP) (Twilio 21610)"
            ),
            id="21610",
        ),
        pytest.param(
            21614,
            None,
            None,
            DeliveryResult.permanent(
                "the number cannot receive SMS (not a mobile number) (Twilio 21614)"
            ),
            id="21614",
        ),
        pytest.param(
            20003,
            None,
            None,
            DeliveryResult.misconfigured("Twilio refused the account credentials (HTTP 401)"),
            id="401-20003",
        ),
        pytest.param(
            21617, None, None, DeliveryResult.permanent("Twilio HTTP 400, error 21617"), id="other"
        ),
    ],
)
async def test_twilio_errors_become_retries_permanent_failures_or_misconfiguration(
    channel: SmsChannel,
    twilio: TwilioFake,
    code: int,
    status: int | None,
    retry_after: str | None,
    expected: DeliveryResult,
) -> None:
    twilio.fail_next(code, status=status, retry_after=retry_after)
    assert await channel.send(recipient(), message()) == expected
    assert twilio.messages == []


async def test_unsubscribed_and_landline_numbers_fail_permanently(
    channel: SmsChannel, twilio: TwilioFake
) -> None:
    twilio.unsubscribed.add("+447700900001")
    twilio.landlines.add("+442071838750")
    stopped = await channel.send(recipient("+447700900001"), message())
    landline = await channel.send(recipient("+442071838750"), message())
    assert stopped.error == "the number has opted out of SMS (replied STOP) (Twilio 21610)"
    assert landline.status == DeliveryStatus.PERMANENT
    assert landline.error is not None
    assert "21614" in landline.error
    assert "not a valid mobile number" not in landline.error  # Twilio's own words stay out


async def test_wrong_auth_token_is_a_server_misconfiguration(
    client: httpx.AsyncClient, twilio: TwilioFake
) -> None:
    channel = SmsChannel(
        client, twilio.account_sid, "wrong-token", twilio.from_number, base_url=twilio.base_url
    )
    result = await channel.send(recipient(), message())
    assert result == DeliveryResult.misconfigured(
        "Twilio refused the account credentials (HTTP 401)"
    )
    assert twilio.messages == []


async def test_number_not_in_e164_is_refused_before_calling_twilio(
    channel: SmsChannel, twilio: TwilioFake
) -> None:
    result = await channel.send(recipient("07700 900456"), message())
    assert result.status == DeliveryStatus.PERMANENT
    assert twilio.requests == 0


async def test_slow_twilio_is_retried_after_the_timeout(
    client: httpx.AsyncClient, twilio: TwilioFake
) -> None:
    channel = SmsChannel(
        client,
        twilio.account_sid,
        twilio.auth_token,
        twilio.from_number,
        base_url=twilio.base_url,
        timeout_s=0.3,
    )
    twilio.delay_next(5)
    assert await channel.send(recipient(), message()) == DeliveryResult.retry(
        "timed out after 0.3 s"
    )


async def test_unreachable_twilio_is_retried(client: httpx.AsyncClient) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    channel = SmsChannel(
        client, "AC" + "0" * 32, "token", "+447700900123", base_url=f"http://127.0.0.1:{port}"
    )
    assert await channel.send(recipient(), message()) == DeliveryResult.retry(
        "could not reach Twilio"
    )


async def test_unconfigured_channel_sends_nothing(
    client: httpx.AsyncClient, twilio: TwilioFake
) -> None:
    channel = SmsChannel(client, twilio.account_sid, twilio.auth_token, "", twilio.base_url)
    assert not channel.is_configured()
    result = await channel.send(recipient(), message())
    assert result.status == DeliveryStatus.PERMANENT
    assert twilio.requests == 0


def test_can_reach_needs_a_phone_number(channel: SmsChannel) -> None:
    assert channel.is_configured()
    assert channel.can_reach(recipient())
    assert not channel.can_reach(recipient(None))


async def test_from_settings_reads_the_twilio_settings(
    client: httpx.AsyncClient, twilio: TwilioFake
) -> None:
    settings = make_settings(
        "sqlite+aiosqlite://",
        twilio_account_sid=twilio.account_sid,
        twilio_auth_token=twilio.auth_token,
        twilio_from_number=twilio.from_number,
        twilio_base_url=twilio.base_url + "/",
    )
    channel = SmsChannel.from_settings(client, settings)
    assert (await channel.send(recipient(), message())).status == DeliveryStatus.DELIVERED
    assert not SmsChannel.from_settings(
        client, make_settings("sqlite+aiosqlite://")
    ).is_configured()


# --- the text itself -------------------------------------------------------------------


def test_long_title_is_shortened_to_keep_one_segment() -> None:
    text = sms_text(message(listings=(listing("Canon EF 50mm f/1.8 STM lens " * 10),)))
    assert len(text) == 160
    assert text.startswith("New: £45 Canon EF 50mm")
    assert "... - Leeds https://www.ebay.co.uk/itm/1234" in text


def test_long_link_pushes_out_the_location_before_the_title() -> None:
    url = "https://www.ebay.co.uk/itm/" + "9" * 105
    text = sms_text(message(listings=(listing("Canon EF 50mm f/1.8 STM", url=url),)))
    assert "Leeds" not in text
    assert text.endswith(url)
    assert len(text) <= 160


def test_unknown_currency_is_written_after_the_amount() -> None:
    text = sms_text(message(listings=(listing("Lens", "1200", currency="SEK", location=None),)))
    assert text == "New: 1200 SEK Lens https://www.ebay.co.uk/itm/1234"


printable = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=300)


@given(
    title=printable,
    location=st.none() | printable,
    price=st.none() | st.decimals(0, 10**9, places=2).map(str),
    url_tail=st.text("abcdefghij0123456789/", max_size=40),
)
def test_single_listing_text_fits_one_segment_when_the_link_is_short(
    title: str, location: str | None, price: str | None, url_tail: str
) -> None:
    item = listing(title, price, location=location, url="https://ebay.com/i/" + url_tail)
    assert len(sms_text(message(listings=(item,)))) <= 160


@given(
    titles=st.lists(printable, min_size=2, max_size=30),
    more=st.integers(0, 10_000),
    name=printable,
)
def test_digest_text_fits_one_segment_when_the_link_is_short(
    titles: list[str], more: int, name: str
) -> None:
    listings = tuple(listing(title, "1234567.89") for title in titles)
    digest = message(kind="digest", listings=listings, more_count=more, search_name=name)
    text = sms_text(digest)
    assert len(text) <= 160
    assert text.startswith(f"{len(titles) + more} new matches for '")
