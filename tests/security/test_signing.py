"""Our Standard Webhooks signatures verify with the reference library, and only when intact."""

from __future__ import annotations

import base64
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook, WebhookVerificationError

from app.security import signing

# The published example (external-apis reference, Standard Webhooks section).
VECTOR_SECRET = "whsec_bWFya2V0cGxhY2UtbW9uaXRvci10ZXN0LWtleS0zMmI="
VECTOR_BODY = (
    b'{"type":"listing.matched","timestamp":"2023-11-14T22:13:20Z",'
    b'"data":{"listing_id":"v1|1234|0"}}'
)
VECTOR_SIGNATURE = "v1,bgi17f03uF+YpEhYoWf5BZSJgI9Q2MWrelu/FJtB2HA="

BODY = '{"type":"listing.new","data":{"title":"Objectif Canon 50mm, état neuf, £45"}}'.encode()


def now() -> int:
    return int(time.time())


def test_generated_secret_is_whsec_and_32_random_bytes() -> None:
    secret = signing.generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert signing.generate_secret() != secret


def test_signature_matches_the_published_example() -> None:
    assert signing.sign([VECTOR_SECRET], "msg_test_1", 1700000000, VECTOR_BODY) == VECTOR_SIGNATURE


def test_reference_library_verifies_our_headers() -> None:
    secret = signing.generate_secret()
    headers = signing.headers([secret], "msg_abc", now(), BODY)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-id"] == "msg_abc"
    assert Webhook(secret).verify(BODY, headers) == {
        "type": "listing.new",
        "data": {"title": "Objectif Canon 50mm, état neuf, £45"},
    }


def test_during_rotation_each_secret_alone_verifies() -> None:
    old, new = signing.generate_secret(), signing.generate_secret()
    headers = signing.headers([old, new], "msg_rotate", now(), BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(BODY, headers)
    Webhook(new).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.generate_secret()).verify(BODY, headers)


def test_a_single_secret_string_signs_once() -> None:
    secret = signing.generate_secret()
    assert signing.sign(secret, "msg_1", 1, b"{}") == signing.sign([secret], "msg_1", 1, b"{}")
    assert signing.sign([secret, secret], "msg_1", 1, b"{}").count("v1,") == 1


@given(position=st.integers(min_value=0, max_value=len(BODY) - 1), flip=st.integers(1, 255))
def test_any_tampered_byte_fails_verification(position: int, flip: int) -> None:
    secret = VECTOR_SECRET
    headers = signing.headers([secret], "msg_tamper", now(), BODY)
    tampered = bytearray(BODY)
    tampered[position] ^= flip
    with pytest.raises((WebhookVerificationError, UnicodeDecodeError)):
        Webhook(secret).verify(bytes(tampered), headers)


def test_changed_id_fails_verification() -> None:
    secret = signing.generate_secret()
    headers = signing.headers([secret], "msg_one", now(), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, {**headers, "webhook-id": "msg_two"})


@pytest.mark.parametrize("offset_s", [-301, 301])
def test_timestamp_beyond_five_minutes_fails(offset_s: int) -> None:
    secret = signing.generate_secret()
    headers = signing.headers([secret], "msg_late", now() + offset_s, BODY)
    with pytest.raises(WebhookVerificationError, match=r"too (old|new)"):
        Webhook(secret).verify(BODY, headers)


def test_unprefixed_and_unpadded_secrets_give_the_same_key() -> None:
    bare = VECTOR_SECRET.removeprefix("whsec_")
    assert signing.secret_key(bare) == signing.secret_key(VECTOR_SECRET)
    assert signing.secret_key(bare.rstrip("=")) == signing.secret_key(VECTOR_SECRET)


@pytest.mark.parametrize(
    ("secrets", "msg_id", "timestamp"),
    [
        pytest.param([], "msg_1", 1, id="no-secret"),
        pytest.param(["whsec_"], "msg_1", 1, id="empty-secret"),
        pytest.param(["whsec_not base64!"], "msg_1", 1, id="not-base64"),
        pytest.param([VECTOR_SECRET], "msg.1", 1, id="dot-in-id"),
        pytest.param([VECTOR_SECRET], "", 1, id="empty-id"),
        pytest.param([VECTOR_SECRET], "msg 1", 1, id="space-in-id"),
        pytest.param([VECTOR_SECRET], "msg_1", -1, id="negative-timestamp"),
    ],
)
def test_ambiguous_or_unusable_input_is_refused(
    secrets: list[str], msg_id: str, timestamp: int
) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - every case is a plain ValueError
        signing.sign(secrets, msg_id, timestamp, BODY)
