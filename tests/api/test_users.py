"""/api/v1/users/me: the profile and notification settings, deletion, stats and plan limits."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime, time, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.models import (
    Alert,
    AlertChannel,
    AlertKind,
    AlertStatus,
    ApiUsage,
    Listing,
    Plan,
    RefreshToken,
    Search,
    SearchMatch,
    User,
)
from app.services import plans
from tests.factories import make_listing, make_match, make_search, make_user, token_headers

ME = "/api/v1/users/me"
PUBLIC_ADDRESS = "93.184.216.34"
NAMES = {
    "hooks.example.com": [PUBLIC_ADDRESS],
    "other-hooks.example.com": [PUBLIC_ADDRESS],
    "intranet.example.com": ["10.1.2.3"],
}


class FakeResolver:
    """Answers from NAMES; an unknown name fails as a real one would (never any DNS)."""

    def __init__(self) -> None:
        self.lookups: list[str] = []

    async def __call__(self, host: str) -> list[str]:
        self.lookups.append(host)
        if host not in NAMES:
            raise OSError(f"{host}: Name or service not known")
        return NAMES[host]


@pytest.fixture
def resolver(app: FastAPI) -> FakeResolver:
    fake = FakeResolver()
    app.state.resolve_host = fake
    return fake


async def stored(session: AsyncSession, user_id: uuid.UUID) -> User:
    """The user as committed now (the test session may hold a stale copy)."""
    await session.rollback()
    session.expire_all()
    found = await session.scalar(select(User).where(User.id == user_id))
    assert found is not None
    return found


async def count(session: AsyncSession, model: Any, *conditions: Any) -> int:
    await session.rollback()
    total = await session.scalar(select(func.count()).select_from(model).where(*conditions))
    return total or 0


# --- GET /users/me ----------------------------------------------------------------------


async def test_me_shows_the_profile_and_never_the_secrets(
    client: httpx.AsyncClient, session: AsyncSession, user: User, headers: dict[str, str]
) -> None:
    user.webhook_url = "https://hooks.example.com/in"
    user.webhook_secret = "whsec_c2VjcmV0"
    user.stripe_customer_id = "cus_123"
    user.stripe_subscription_id = "sub_123"
    await session.commit()

    response = await client.get(ME, headers=headers)

    assert response.status_code == 200, response.text
    profile = response.json()
    assert profile["id"] == str(user.id)
    assert profile["email"] == "owner@example.com"
    assert profile["plan"] == "free"
    assert profile["webhook_url"] == "https://hooks.example.com/in"
    assert profile["has_webhook_secret"] is True
    assert profile["apprise_urls"] == []
    leaked = {"password_hash", "webhook_secret", "stripe_customer_id", "stripe_subscription_id"}
    assert leaked.isdisjoint(profile)
    assert "whsec_" not in response.text
    assert "$argon2" not in response.text


async def test_every_me_route_needs_a_valid_token(client: httpx.AsyncClient) -> None:
    for method, path in [
        ("GET", ME),
        ("PUT", ME),
        ("PATCH", ME),
        ("DELETE", ME),
        ("GET", f"{ME}/stats"),
        ("GET", f"{ME}/limits"),
    ]:
        response = await client.request(
            method, path, json={}, headers={"Authorization": "Bearer not-a-token"}
        )
        assert response.status_code == 401, (method, path)


async def test_each_user_sees_only_themselves(
    client: httpx.AsyncClient, headers: dict[str, str], other_headers: dict[str, str]
) -> None:
    await client.patch(ME, json={"full_name": "Owner"}, headers=headers)

    other = (await client.get(ME, headers=other_headers)).json()

    assert other["email"] == "other@example.com"
    assert other["full_name"] is None


# --- PUT / PATCH /users/me -------------------------------------------------------------


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_update_changes_only_the_fields_sent(
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    headers: dict[str, str],
    method: str,
) -> None:
    user_id = user.id
    user.phone_number = "+14155550123"
    await session.commit()

    response = await client.request(
        method,
        ME,
        json={
            "full_name": "  Ada Lovelace ",
            "timezone": "Europe/London",
            "quiet_hours_start": "22:30",
            "quiet_hours_end": "07:00",
        },
        headers=headers,
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["full_name"] == "Ada Lovelace"
    assert body["timezone"] == "Europe/London"
    assert body["quiet_hours_start"] == "22:30"
    assert body["quiet_hours_end"] == "07:00"
    assert body["phone_number"] == "+14155550123"
    assert body["webhook_secret"] is None
    saved = await stored(session, user_id)
    assert saved.full_name == "Ada Lovelace"
    assert saved.timezone == "Europe/London"
    assert (saved.quiet_hours_start, saved.quiet_hours_end) == (time(22, 30), time(7, 0))
    assert saved.phone_number == "+14155550123"


async def test_an_empty_update_changes_nothing(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    before = (await client.get(ME, headers=headers)).json()
    response = await client.patch(ME, json={}, headers=headers)
    assert response.status_code == 200
    assert {**response.json(), "webhook_secret": None} == {**before, "webhook_secret": None}


async def test_phone_numbers_are_stored_in_e164_and_null_clears_them(
    client: httpx.AsyncClient, session: AsyncSession, user: User, headers: dict[str, str]
) -> None:
    user_id = user.id
    response = await client.patch(ME, json={"phone_number": "+44 20 7946 0958"}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["phone_number"] == "+442079460958"
    assert (await stored(session, user_id)).phone_number == "+442079460958"

    cleared = await client.patch(ME, json={"phone_number": None}, headers=headers)
    assert cleared.json()["phone_number"] is None
    assert (await stored(session, user_id)).phone_number is None


@pytest.mark.parametrize(
    "phone",
    ["020 7946 0958", "+44 123", "+1 555 0100 0100 0100", "call me", "", "+", "+999 1234567"],
)
async def test_phone_numbers_that_are_not_valid_international_numbers_are_refused(
    client: httpx.AsyncClient, headers: dict[str, str], phone: str
) -> None:
    response = await client.patch(ME, json={"phone_number": phone}, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "phone_number"]


@pytest.mark.parametrize(
    "timezone", ["Mars/Olympus_Mons", "europe/london", "../../etc/passwd", "", "GMT+25", None, 5]
)
async def test_time_zones_must_be_iana_names(
    client: httpx.AsyncClient, headers: dict[str, str], timezone: Any
) -> None:
    response = await client.patch(ME, json={"timezone": timezone}, headers=headers)
    assert response.status_code == 422, response.text


async def test_full_name_is_at_most_200_characters_and_null_clears_it(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    too_long = await client.patch(ME, json={"full_name": "x" * 201}, headers=headers)
    assert too_long.status_code == 422
    longest = await client.patch(ME, json={"full_name": "x" * 200}, headers=headers)
    assert longest.status_code == 200
    cleared = await client.patch(ME, json={"full_name": None}, headers=headers)
    assert cleared.json()["full_name"] is None


async def test_text_with_nul_bytes_is_refused(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.patch(ME, json={"full_name": "Ada\x00"}, headers=headers)
    assert response.status_code == 422


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("plan", "business"),
        ("is_admin", True),
        ("is_active", False),
        ("email_verified", True),
        ("phone_verified", True),
        ("credentials_version", 7),
        ("stripe_customer_id", "cus_evil"),
        ("stripe_subscription_id", "sub_evil"),
        ("subscription_status", "active"),
        ("current_period_end", "2099-01-01T00:00:00Z"),
        ("password_hash", "$argon2id$v=19$m=1,t=1,p=1$x$y"),
        ("password", "new-password-123"),
        ("email", "attacker@example.com"),
        ("id", "00000000-0000-0000-0000-000000000001"),
        ("webhook_secret", "whsec_chosen"),
        ("has_webhook_secret", True),
        ("created_at", "2000-01-01T00:00:00Z"),
        ("nickname", "unknown fields too"),
    ],
)
async def test_privileged_and_unknown_fields_are_refused_and_nothing_changes(
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    headers: dict[str, str],
    field: str,
    value: Any,
) -> None:
    user.email_verified = False
    await session.commit()
    user_id = user.id
    for method in ("PUT", "PATCH"):
        response = await client.request(
            method, ME, json={"full_name": "Changed", field: value}, headers=headers
        )
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["body", field]
    saved = await stored(session, user_id)
    assert saved.full_name is None
    assert saved.plan == "free"
    assert not saved.is_admin
    assert saved.is_active
    assert not saved.email_verified
    assert not saved.phone_verified
    assert saved.credentials_version == 0
    assert saved.email == "owner@example.com"
    assert saved.stripe_customer_id is None
    assert saved.webhook_secret is None


# --- webhook URL -------------------------------------------------------------------------


def assert_signing_secret(secret: str) -> None:
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32


async def test_setting_a_webhook_url_returns_a_new_signing_secret_once(
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    headers: dict[str, str],
    resolver: FakeResolver,
) -> None:
    user_id = user.id
    response = await client.put(
        ME, json={"webhook_url": "https://Hooks.Example.com./in?src=mm"}, headers=headers
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["webhook_url"] == "https://hooks.example.com/in?src=mm"
    assert body["has_webhook_secret"] is True
    secret = body["webhook_secret"]
    assert_signing_secret(secret)
    assert resolver.lookups == ["hooks.example.com"]
    saved = await stored(session, user_id)
    assert saved.webhook_url == "https://hooks.example.com/in?src=mm"
    assert saved.webhook_secret == secret

    shown_again = await client.get(ME, headers=headers)
    assert secret not in shown_again.text
    assert shown_again.json()["has_webhook_secret"] is True


async def test_the_same_webhook_url_keeps_its_secret_and_a_new_one_gets_a_new_secret(
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    headers: dict[str, str],
    resolver: FakeResolver,
) -> None:
    user_id = user.id
    first = (
        await client.patch(ME, json={"webhook_url": "https://hooks.example.com/a"}, headers=headers)
    ).json()["webhook_secret"]

    same = await client.patch(
        ME, json={"webhook_url": "https://hooks.example.com/a"}, headers=headers
    )
    assert same.json()["webhook_secret"] is None
    assert (await stored(session, user_id)).webhook_secret == first

    changed = await client.patch(
        ME, json={"webhook_url": "https://other-hooks.example.com/a"}, headers=headers
    )
    second = changed.json()["webhook_secret"]
    assert_signing_secret(second)
    assert second != first
    assert (await stored(session, user_id)).webhook_secret == second


async def test_null_webhook_url_clears_the_url_and_its_secret(
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    headers: dict[str, str],
    resolver: FakeResolver,
) -> None:
    user_id = user.id
    await client.patch(ME, json={"webhook_url": "https://hooks.example.com/a"}, headers=headers)

    response = await client.patch(ME, json={"webhook_url": None}, headers=headers)

    assert response.status_code == 200
    assert response.json()["webhook_url"] is None
    assert response.json()["has_webhook_secret"] is False
    saved = await stored(session, user_id)
    assert (saved.webhook_url, saved.webhook_secret) == (None, None)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://[::1]/hook",
        "https://localhost/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://intranet.example.com/hook",
        "https://2130706433/",
        "https://hooks.example.com:6379/",
        "https://evil@hooks.example.com/",
        "https://redis/",
        "https://unknown.example.com/",
        "ftp://hooks.example.com/",
        "not a url",
    ],
)
async def test_webhook_urls_that_are_not_public_are_refused_and_nothing_changes(
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    headers: dict[str, str],
    resolver: FakeResolver,
    url: str,
) -> None:
    user_id = user.id
    response = await client.patch(
        ME, json={"full_name": "Changed", "webhook_url": url}, headers=headers
    )

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "unsafe_url"
    saved = await stored(session, user_id)
    assert (saved.full_name, saved.webhook_url, saved.webhook_secret) == (None, None, None)


async def test_plain_http_webhooks_are_allowed_only_in_debug_mode(
    app: FastAPI, client: httpx.AsyncClient, headers: dict[str, str], resolver: FakeResolver
) -> None:
    url = "http://hooks.example.com/in"
    allowed = await client.patch(ME, json={"webhook_url": url}, headers=headers)
    assert allowed.status_code == 200, allowed.text

    app.state.settings = app.state.settings.model_copy(update={"debug": False})
    refused = await client.patch(
        ME, json={"webhook_url": "http://other-hooks.example.com/"}, headers=headers
    )
    assert refused.status_code == 422
    assert refused.json()["code"] == "unsafe_url"


async def test_webhook_urls_longer_than_2048_characters_are_refused(
    client: httpx.AsyncClient, headers: dict[str, str], resolver: FakeResolver
) -> None:
    url = "https://hooks.example.com/" + "a" * 2048
    response = await client.patch(ME, json={"webhook_url": url}, headers=headers)
    assert response.status_code == 422
    assert resolver.lookups == []


# --- Apprise URLs ------------------------------------------------------------------------


async def test_fixed_host_apprise_urls_are_stored(
    client: httpx.AsyncClient, session: AsyncSession, user: User, headers: dict[str, str]
) -> None:
    user_id = user.id
    urls = [
        "tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/-100123456",
        "discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js",
        "ntfy://my-deals",
        "ntfy://my-deals",
    ]
    response = await client.patch(ME, json={"apprise_urls": urls}, headers=headers)

    assert response.status_code == 200, response.text
    assert response.json()["apprise_urls"] == urls[:3]
    assert (await stored(session, user_id)).apprise_urls == urls[:3]

    cleared = await client.patch(ME, json={"apprise_urls": []}, headers=headers)
    assert cleared.json()["apprise_urls"] == []


@pytest.mark.parametrize(
    "bad",
    [
        "json://127.0.0.1:8080/hook",
        "xml://10.0.0.1/hook",
        "form://169.254.169.254/",
        "https://hooks.slack.com/services/T/B/C",
        "ntfy://10.0.0.1:8080/topic",
        "ntfy://topic?mode=private",
        "gotify://gotify.internal/token",
    ],
)
async def test_apprise_urls_that_can_reach_any_host_are_refused_by_position(
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    headers: dict[str, str],
    bad: str,
) -> None:
    user_id = user.id
    response = await client.patch(
        ME, json={"apprise_urls": ["discord://1/token", bad]}, headers=headers
    )

    assert response.status_code == 422, response.text
    error = response.json()["detail"][0]
    assert error["loc"] == ["body", "apprise_urls", 1]
    assert "not allowed" in error["msg"]
    assert (await stored(session, user_id)).apprise_urls == []


async def test_at_most_ten_apprise_urls_are_accepted(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    urls = [f"ntfy://topic-{n}" for n in range(11)]
    assert (await client.patch(ME, json={"apprise_urls": urls}, headers=headers)).status_code == 422
    accepted = await client.patch(ME, json={"apprise_urls": urls[:10]}, headers=headers)
    assert accepted.status_code == 200
    assert (await client.patch(ME, json={"apprise_urls": None}, headers=headers)).status_code == 422


# --- quiet hours -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"quiet_hours_start": "22:00"},
        {"quiet_hours_end": "07:00"},
        {"quiet_hours_start": "22:00", "quiet_hours_end": None},
        {"quiet_hours_start": "22:00", "quiet_hours_end": "22:00"},
        {"quiet_hours_start": "24:00", "quiet_hours_end": "07:00"},
        {"quiet_hours_start": "7:00", "quiet_hours_end": "09:00"},
        {"quiet_hours_start": "22:00:00", "quiet_hours_end": "07:00"},
        {"quiet_hours_start": "22:60", "quiet_hours_end": "07:00"},
        {"quiet_hours_start": 79200, "quiet_hours_end": "07:00"},
    ],
)
async def test_quiet_hours_need_both_ends_as_hh_mm(
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    headers: dict[str, str],
    body: dict[str, Any],
) -> None:
    user_id = user.id
    response = await client.patch(ME, json=body, headers=headers)
    assert response.status_code == 422, response.text
    saved = await stored(session, user_id)
    assert (saved.quiet_hours_start, saved.quiet_hours_end) == (None, None)


async def test_quiet_hours_can_move_one_end_or_be_cleared_together(
    client: httpx.AsyncClient, session: AsyncSession, user: User, headers: dict[str, str]
) -> None:
    user_id = user.id
    both = {"quiet_hours_start": "22:00", "quiet_hours_end": "07:00"}
    assert (await client.patch(ME, json=both, headers=headers)).status_code == 200

    moved = await client.patch(ME, json={"quiet_hours_end": "06:15"}, headers=headers)
    assert moved.status_code == 200
    assert (moved.json()["quiet_hours_start"], moved.json()["quiet_hours_end"]) == (
        "22:00",
        "06:15",
    )

    half_cleared = await client.patch(ME, json={"quiet_hours_start": None}, headers=headers)
    assert half_cleared.status_code == 422
    assert half_cleared.json()["code"] == "invalid_input"

    none = {"quiet_hours_start": None, "quiet_hours_end": None}
    assert (await client.patch(ME, json=none, headers=headers)).status_code == 200
    saved = await stored(session, user_id)
    assert (saved.quiet_hours_start, saved.quiet_hours_end) == (None, None)


# --- DELETE /users/me --------------------------------------------------------------------


async def arrange_account(session: AsyncSession, owner: User, listing: Listing) -> None:
    """Searches, a match, an alert, a refresh token and a usage row of the owner's."""
    search = await make_search(session, owner=owner)
    await make_search(session, owner=owner, name="Paused", is_active=False)
    match = await make_match(session, search=search, listing=listing)
    session.add_all(
        [
            Alert(
                user_id=owner.id,
                search_id=search.id,
                match_id=match.id,
                listing_id=listing.id,
                channel=AlertChannel.EMAIL.value,
                kind=AlertKind.NEW_LISTING.value,
                idempotency_key=f"alert-{uuid.uuid4()}",
                payload={},
                status=AlertStatus.SENT.value,
            ),
            RefreshToken(
                jti=uuid.uuid4().hex,
                user_id=owner.id,
                family_id=uuid.uuid4(),
                expires_at=utcnow() + timedelta(days=1),
            ),
            ApiUsage(user_id=owner.id, day=utcnow().date(), kind="manual_check", count=2),
        ]
    )
    await session.commit()


async def test_deleting_the_account_removes_all_its_data_but_not_shared_listings(
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    other_user: User,
    headers: dict[str, str],
    other_headers: dict[str, str],
) -> None:
    owner_id, other_id = user.id, other_user.id
    shared = await make_listing(session, external_id="shared")
    await arrange_account(session, user, shared)
    await arrange_account(session, other_user, shared)

    response = await client.delete(ME, headers=headers)

    assert response.status_code == 204
    assert response.content == b""
    for model, owner_column in [
        (User, User.id),
        (Search, Search.owner_id),
        (SearchMatch, SearchMatch.user_id),
        (Alert, Alert.user_id),
        (RefreshToken, RefreshToken.user_id),
        (ApiUsage, ApiUsage.user_id),
    ]:
        assert await count(session, model, owner_column == owner_id) == 0, model
        assert await count(session, model, owner_column == other_id) > 0, model
    assert await count(session, Listing) == 1
    assert (await client.get(ME, headers=headers)).status_code == 401
    assert (await client.get(ME, headers=other_headers)).status_code == 200


# --- GET /users/me/stats -----------------------------------------------------------------


def alert(owner: User, status: AlertStatus) -> Alert:
    return Alert(
        user_id=owner.id,
        channel=AlertChannel.EMAIL.value,
        kind=AlertKind.NEW_LISTING.value,
        idempotency_key=f"alert-{uuid.uuid4()}",
        payload={},
        status=status.value,
    )


async def test_stats_count_the_users_own_searches_matches_and_sent_alerts(
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    other_user: User,
    headers: dict[str, str],
) -> None:
    now = utcnow()
    last_check = now - timedelta(minutes=5)
    first = await make_search(session, owner=user, last_checked_at=now - timedelta(hours=3))
    second = await make_search(session, owner=user, name="Second", last_checked_at=last_check)
    await make_search(session, owner=user, name="Paused", is_active=False)
    others = await make_search(session, owner=other_user, last_checked_at=now)
    for n, (search, age) in enumerate(
        [
            (first, timedelta(hours=1)),
            (second, timedelta(hours=2)),
            (first, timedelta(hours=30)),
            (second, timedelta(days=6)),
            (first, timedelta(days=10)),
            (others, timedelta(hours=1)),
        ]
    ):
        listing = await make_listing(session, external_id=f"stats-{n}")
        await make_match(session, search=search, listing=listing, matched_at=now - age)
    session.add_all(
        [
            alert(user, AlertStatus.SENT),
            alert(user, AlertStatus.SENT),
            alert(user, AlertStatus.FAILED),
            alert(user, AlertStatus.PENDING),
            alert(other_user, AlertStatus.SENT),
        ]
    )
    await session.commit()

    response = await client.get(f"{ME}/stats", headers=headers)

    assert response.status_code == 200, response.text
    stats = response.json()
    assert datetime.fromisoformat(stats.pop("last_check_at")) == last_check
    assert stats == {
        "searches_total": 3,
        "searches_active": 2,
        "matches_last_24h": 2,
        "matches_last_7d": 4,
        "alerts_sent": 2,
    }


async def test_stats_of_a_new_account_are_zero(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get(f"{ME}/stats", headers=headers)
    assert response.json() == {
        "searches_total": 0,
        "searches_active": 0,
        "matches_last_24h": 0,
        "matches_last_7d": 0,
        "alerts_sent": 0,
        "last_check_at": None,
    }


# --- GET /users/me/limits ----------------------------------------------------------------


async def test_limits_show_the_plan_usage_and_what_is_left(
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    other_user: User,
    headers: dict[str, str],
) -> None:
    today = utcnow().date()
    await make_search(session, owner=user)
    await make_search(session, owner=user, name="Paused", is_active=False)
    await make_search(session, owner=other_user)
    session.add_all(
        [
            ApiUsage(user_id=user.id, day=today, kind="manual_check", count=3),
            ApiUsage(user_id=user.id, day=today - timedelta(days=1), kind="manual_check", count=9),
            ApiUsage(user_id=user.id, day=today, kind="test_alert", count=4),
            ApiUsage(user_id=other_user.id, day=today, kind="manual_check", count=8),
        ]
    )
    await session.commit()

    response = await client.get(f"{ME}/limits", headers=headers)

    assert response.status_code == 200, response.text
    free = plans.limits_for("free")
    assert free.max_active_searches is not None
    assert response.json() == {
        "plan": "free",
        "limits": {
            "max_active_searches": free.max_active_searches,
            "max_marketplaces_per_search": free.max_marketplaces_per_search,
            "min_check_frequency_minutes": free.min_check_frequency_minutes,
            "manual_checks_per_day": free.manual_checks_per_day,
            "test_alerts_per_day": free.test_alerts_per_day,
            "sms_per_day": free.sms_per_day,
        },
        "usage": {"active_searches": 1, "searches_total": 2, "manual_checks_today": 3},
        "remaining": {
            "active_searches": free.max_active_searches - 1,
            "manual_checks_today": free.manual_checks_per_day - 3,
        },
    }


async def test_unlimited_searches_show_as_null(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    business = await make_user(session, email="big@example.com", plan=Plan.BUSINESS)
    await make_search(session, owner=business)

    response = await client.get(f"{ME}/limits", headers=token_headers(app, business))

    body = response.json()
    assert body["plan"] == "business"
    assert body["limits"]["max_active_searches"] is None
    assert body["usage"]["active_searches"] == 1
    assert body["remaining"]["active_searches"] is None


async def test_remaining_never_goes_below_zero(
    client: httpx.AsyncClient, session: AsyncSession, user: User, headers: dict[str, str]
) -> None:
    # As after a downgrade that has not paused the extra searches yet.
    for n in range(3):
        await make_search(session, owner=user, name=f"Search {n}")
    session.add(ApiUsage(user_id=user.id, day=utcnow().date(), kind="manual_check", count=99))
    await session.commit()

    remaining = (await client.get(f"{ME}/limits", headers=headers)).json()["remaining"]

    assert remaining == {"active_searches": 0, "manual_checks_today": 0}


async def test_rotating_the_webhook_secret_keeps_the_old_one_signing_for_a_day(
    client: httpx.AsyncClient,
    app: FastAPI,
    session: AsyncSession,
    user: User,
    headers: dict[str, str],
) -> None:
    from app.alerts.delivery import recipient_for
    from app.db import utcnow

    refused = await client.post("/api/v1/users/me/webhook-secret", headers=headers)
    assert refused.status_code == 422
    user.webhook_url, user.webhook_secret = "https://hooks.example.com/in", "whsec_b2xkb2xkb2xk"
    user.webhook_disabled_at = utcnow()
    await session.commit()

    response = await client.post("/api/v1/users/me/webhook-secret", headers=headers)
    assert response.status_code == 200, response.text
    new = response.json()["webhook_secret"]
    assert new.startswith("whsec_")
    assert new != "whsec_b2xkb2xkb2xk"
    await session.refresh(user)
    secrets = recipient_for(user, utcnow()).webhook_secrets
    assert secrets == (new, "whsec_b2xkb2xkb2xk")
    assert recipient_for(user, utcnow() + timedelta(hours=25)).webhook_secrets == (new,)
    assert "webhook_secret" not in (await client.get("/api/v1/users/me", headers=headers)).json()
