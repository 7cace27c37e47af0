"""TokenSigner: what it issues decodes; anything less than a perfect token is InvalidToken."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import jwt
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from app.db import utcnow
from app.security.tokens import ALGORITHM, LEEWAY_S, InvalidToken, TokenSigner

KEY = "unit-test-signing-key-of-more-than-32-bytes"
SIGNER = TokenSigner(secret_key=KEY, audience="marketmon", issuer="marketmon")
LIFETIME = timedelta(minutes=15)
BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _claims(now: datetime | None = None, **overrides: Any) -> dict[str, Any]:
    now = now or utcnow()
    claims: dict[str, Any] = {
        "sub": str(uuid.uuid4()),
        "type": "access",
        "jti": "a-token-id",
        "iat": int(now.timestamp()),
        "exp": int((now + LIFETIME).timestamp()),
        "aud": "marketmon",
        "iss": "marketmon",
    }
    claims.update(overrides)
    return claims


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_an_issued_token_decodes_to_its_claims() -> None:
    subject = uuid.uuid4()
    token, jti = SIGNER.issue(subject=subject, token_type="access", now=utcnow(), lifetime=LIFETIME)

    claims = SIGNER.decode(token, expected_type="access")

    assert claims["sub"] == str(subject)
    assert claims["jti"] == jti
    assert claims["type"] == "access"
    assert claims["aud"] == "marketmon"
    assert claims["iss"] == "marketmon"
    assert claims["exp"] == claims["iat"] + int(LIFETIME.total_seconds())  # type: ignore[operator]


def test_a_refresh_token_names_its_family_and_each_token_has_its_own_id() -> None:
    family = uuid.uuid4()
    issued = [
        SIGNER.issue(
            subject=uuid.uuid4(),
            token_type="refresh",
            now=utcnow(),
            lifetime=LIFETIME,
            family_id=family,
        )
        for _ in range(2)
    ]

    for token, jti in issued:
        claims = SIGNER.decode(token, expected_type="refresh")
        assert claims["fam"] == str(family)
        assert claims["jti"] == jti
    assert issued[0][1] != issued[1][1]


@pytest.mark.parametrize(("issued_as", "expected"), [("access", "refresh"), ("refresh", "access")])
def test_a_token_of_the_other_type_is_rejected(issued_as: Any, expected: Any) -> None:
    token, _ = SIGNER.issue(
        subject=uuid.uuid4(), token_type=issued_as, now=utcnow(), lifetime=LIFETIME
    )

    with pytest.raises(InvalidToken):
        SIGNER.decode(token, expected_type=expected)


def test_a_token_expired_within_the_leeway_is_still_accepted() -> None:
    issued_at = utcnow() - LIFETIME - timedelta(seconds=LEEWAY_S // 3)
    token, _ = SIGNER.issue(
        subject=uuid.uuid4(), token_type="access", now=issued_at, lifetime=LIFETIME
    )

    assert SIGNER.decode(token, expected_type="access")["type"] == "access"


def test_a_token_expired_beyond_the_leeway_is_rejected() -> None:
    issued_at = utcnow() - LIFETIME - timedelta(seconds=LEEWAY_S * 2)
    token, _ = SIGNER.issue(
        subject=uuid.uuid4(), token_type="access", now=issued_at, lifetime=LIFETIME
    )

    with pytest.raises(InvalidToken):
        SIGNER.decode(token, expected_type="access")


def test_a_token_issued_in_the_future_is_rejected() -> None:
    token = jwt.encode(_claims(now=utcnow() + timedelta(minutes=10)), KEY, algorithm=ALGORITHM)

    with pytest.raises(InvalidToken):
        SIGNER.decode(token, expected_type="access")


def test_a_token_signed_with_another_key_is_rejected() -> None:
    token = jwt.encode(_claims(), "another-key-also-longer-than-32-bytes!!", algorithm=ALGORITHM)

    with pytest.raises(InvalidToken):
        SIGNER.decode(token, expected_type="access")


@pytest.mark.parametrize("claim", ["aud", "iss"])
def test_a_token_for_another_audience_or_issuer_is_rejected(claim: str) -> None:
    claims = _claims()
    claims[claim] = "someone-else"
    token = jwt.encode(claims, KEY, algorithm=ALGORITHM)

    with pytest.raises(InvalidToken):
        SIGNER.decode(token, expected_type="access")


@pytest.mark.parametrize("claim", ["exp", "iat", "jti", "sub", "type", "aud", "iss"])
def test_a_token_missing_a_required_claim_is_rejected(claim: str) -> None:
    claims = _claims()
    del claims[claim]
    token = jwt.encode(claims, KEY, algorithm=ALGORITHM)

    with pytest.raises(InvalidToken):
        SIGNER.decode(token, expected_type="access")


@pytest.mark.parametrize("sub", ["42", "admin", "", "00000000-0000-0000-0000"])
def test_a_subject_that_is_not_a_uuid_is_rejected(sub: str) -> None:
    token = jwt.encode(_claims(sub=sub), KEY, algorithm=ALGORITHM)

    with pytest.raises(InvalidToken):
        SIGNER.decode(token, expected_type="access")


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_an_unsigned_token_is_rejected(alg: str) -> None:
    token = f"{_b64({'alg': alg, 'typ': 'JWT'})}.{_b64(_claims())}."

    with pytest.raises(InvalidToken):
        SIGNER.decode(token, expected_type="access")


def test_a_correct_hmac_under_another_algorithm_name_is_rejected() -> None:
    """The allow-list is HS256 alone: a token claiming RS256 (the HS/RS confusion's other
    half) or HS512 is refused even when its MAC is computed with our key."""
    for alg in ("RS256", "HS512"):
        header = _b64({"alg": alg, "typ": "JWT"})
        payload = _b64(_claims())
        mac = jwt.get_algorithm_by_name("HS256").sign(f"{header}.{payload}".encode(), KEY.encode())
        signature = base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

        with pytest.raises(InvalidToken):
            SIGNER.decode(f"{header}.{payload}.{signature}", expected_type="access")


@pytest.mark.parametrize(
    "garbage",
    ["", "not-a-token", "a.b.c", "....", "Bearer x.y.z", "\ud800", "é.é.é", "eyJ" * 2000],
)
def test_garbage_is_rejected_as_an_invalid_token(garbage: str) -> None:
    with pytest.raises(InvalidToken):
        SIGNER.decode(garbage, expected_type="access")


@given(data=st.data())
def test_any_single_character_change_to_the_signature_is_rejected(data: st.DataObject) -> None:
    token, _ = SIGNER.issue(
        subject=uuid.uuid4(), token_type="access", now=utcnow(), lifetime=LIFETIME
    )
    header_and_payload, signature = token.rsplit(".", 1)
    position = data.draw(st.integers(min_value=0, max_value=len(signature) - 1), label="position")
    replacement = data.draw(
        st.sampled_from(BASE64URL) | st.characters(exclude_categories=()), label="replacement"
    )
    assume(replacement != signature[position])
    tampered = signature[:position] + replacement + signature[position + 1 :]

    with pytest.raises(InvalidToken):
        SIGNER.decode(f"{header_and_payload}.{tampered}", expected_type="access")


@given(text=st.text(alphabet=st.characters(exclude_categories=()), max_size=300))
def test_arbitrary_text_is_never_anything_but_an_invalid_token(text: str) -> None:
    with pytest.raises(InvalidToken):
        SIGNER.decode(text, expected_type="access")
