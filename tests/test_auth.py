"""/api/v1/auth: sign-up, login, rotation with re-use detection, JWT attacks, throttling."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.deps import CurrentUser
from app.db import utcnow
from app.main import create_app
from app.models import RefreshToken, User
from tests.conftest import make_settings
from tests.factories import DEFAULT_PASSWORD, make_user, token_headers

AUTH = "/api/v1/auth"
USERS_ME = "/api/v1/users/me"
PROBE_ME = "/api/v1/_probe/me"
OWNER = "owner@example.com"


# --- helpers -------------------------------------------------------------------------------


@pytest.fixture
def me_path(app: FastAPI) -> str:
    """An authed route answering with the caller's email: users/me, or a probe route when
    that does not exist (yet)."""
    for route in app.routes:
        if (
            isinstance(route, APIRoute)
            and route.path == USERS_ME
            and "GET" in (route.methods or ())
        ):
            return USERS_ME

    async def whoami(user: CurrentUser) -> dict[str, str]:
        return {"email": user.email}

    app.add_api_route(PROBE_ME, whoami, methods=["GET"])
    return PROBE_ME


@asynccontextmanager
async def client_from(app: FastAPI, ip: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose requests carry this client address in the ASGI scope (a label only)."""
    transport = httpx.ASGITransport(app=app, client=(ip, 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@asynccontextmanager
async def app_with(database_url: str, **overrides: object) -> AsyncIterator[FastAPI]:
    """A second app on the test database with other settings, its lifespan run (its tables
    are emptied by the `app` fixture the test also requests)."""
    settings = make_settings(database_url, load_templates_on_startup=False, **overrides)
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


async def login(
    client: httpx.AsyncClient, email: str = OWNER, password: str = DEFAULT_PASSWORD
) -> httpx.Response:
    return await client.post(f"{AUTH}/login", json={"email": email, "password": password})


async def form_login(
    client: httpx.AsyncClient, email: str = OWNER, password: str = DEFAULT_PASSWORD
) -> httpx.Response:
    return await client.post(f"{AUTH}/token", data={"username": email, "password": password})


async def tokens(client: httpx.AsyncClient, email: str = OWNER) -> dict[str, Any]:
    response = await login(client, email)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def refresh(client: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await client.post(f"{AUTH}/refresh", json={"refresh_token": refresh_token})


async def logout(client: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await client.post(f"{AUTH}/logout", json={"refresh_token": refresh_token})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _segment(data: dict[str, Any]) -> str:
    return _b64(json.dumps(data).encode())


# --- sign-up -------------------------------------------------------------------------------


async def test_register_creates_a_free_account_under_the_normalised_email(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    response = await client.post(
        f"{AUTH}/register",
        json={"email": "  Alice@Example.COM ", "password": "long-enough", "full_name": "Alice"},
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["email"] == "alice@example.com"
    assert body["full_name"] == "Alice"
    assert body["plan"] == "free"
    uuid.UUID(body["id"])
    stored = await session.scalar(select(User).where(User.id == uuid.UUID(body["id"])))
    assert stored is not None
    assert stored.email == "alice@example.com"


async def test_register_without_a_full_name_is_allowed(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{AUTH}/register", json={"email": "bob@example.com", "password": "long-enough"}
    )

    assert response.status_code == 201, response.text
    assert response.json()["full_name"] is None


async def test_an_address_logs_in_however_it_was_spelled_at_sign_up(
    client: httpx.AsyncClient,
) -> None:
    # Decomposed accent and a full-width domain letter: sign-up stores the normal form.
    typed = "Ja\u0301ne@\uff45xample.com"
    registered = await client.post(
        f"{AUTH}/register", json={"email": typed, "password": "long-enough"}
    )
    assert registered.status_code == 201, registered.text
    assert registered.json()["email"] == "j\u00e1ne@example.com"

    for spelling in (typed, "J\u00c1NE@EXAMPLE.COM", " j\u00e1ne@example.com "):
        response = await login(client, spelling, "long-enough")
        assert response.status_code == 200, (spelling, response.text)


@pytest.mark.parametrize(("length", "status"), [(7, 422), (8, 201), (128, 201), (129, 422)])
async def test_password_length_must_be_between_8_and_128(
    client: httpx.AsyncClient, length: int, status: int
) -> None:
    response = await client.post(
        f"{AUTH}/register", json={"email": "len@example.com", "password": "p" * length}
    )

    assert response.status_code == status, response.text


@pytest.mark.parametrize(
    "email", ["not-an-email", "a@", "@example.com", "a b@example.com", "", "a@b@example.com"]
)
async def test_register_refuses_an_invalid_email(client: httpx.AsyncClient, email: str) -> None:
    response = await client.post(
        f"{AUTH}/register", json={"email": email, "password": "long-enough"}
    )

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"


@pytest.mark.parametrize("again", ["dup@example.com", "DUP@Example.com", " Dup@EXAMPLE.com"])
async def test_an_email_taken_in_any_case_is_a_conflict(
    client: httpx.AsyncClient, session: AsyncSession, again: str
) -> None:
    first = await client.post(
        f"{AUTH}/register", json={"email": "dup@example.com", "password": "long-enough"}
    )
    assert first.status_code == 201, first.text

    second = await client.post(f"{AUTH}/register", json={"email": again, "password": "other-pw-1"})

    assert second.status_code == 409, second.text
    assert second.json()["code"] == "conflict"
    assert await session.scalar(select(func.count()).select_from(User)) == 1


async def test_concurrent_sign_ups_with_one_email_create_one_account(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    spellings = ["race@example.com", "RACE@example.com", "Race@Example.com", " race@example.com"]

    responses = await asyncio.gather(
        *(
            client.post(f"{AUTH}/register", json={"email": email, "password": "long-enough"})
            for email in spellings
        )
    )

    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409]
    assert await session.scalar(select(func.count()).select_from(User)) == 1


async def test_register_never_returns_the_password_or_its_hash(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{AUTH}/register", json={"email": "hash@example.com", "password": "secret-pass-99"}
    )

    assert response.status_code == 201
    assert "password" not in response.text
    assert "secret-pass-99" not in response.text
    assert "$argon2" not in response.text
    assert "webhook_secret" not in response.json()


@pytest.mark.parametrize(
    "extra", [{"is_admin": True}, {"plan": "pro"}, {"password_hash": "x"}, {"nickname": "x"}]
)
async def test_register_refuses_unknown_fields(
    client: httpx.AsyncClient, session: AsyncSession, extra: dict[str, Any]
) -> None:
    response = await client.post(
        f"{AUTH}/register",
        json={"email": "extra@example.com", "password": "long-enough", **extra},
    )

    assert response.status_code == 422, response.text
    assert await session.scalar(select(func.count()).select_from(User)) == 0


# --- login ---------------------------------------------------------------------------------


async def test_login_returns_a_bearer_pair_whose_access_token_opens_authed_routes(
    client: httpx.AsyncClient, user: User, me_path: str
) -> None:
    response = await login(client)

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    me = await client.get(me_path, headers=bearer(body["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["email"] == OWNER


async def test_login_matches_the_email_in_any_case(client: httpx.AsyncClient, user: User) -> None:
    response = await login(client, "  OWNER@Example.com ")

    assert response.status_code == 200, response.text


async def test_unknown_email_wrong_password_and_inactive_user_fail_identically(
    client: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    await make_user(session, email="asleep@example.com", is_active=False)

    failures = [
        await login(client, "nobody@example.com"),
        await login(client, OWNER, "wrong-password"),
        await login(client, "asleep@example.com"),  # the right password
        await form_login(client, "nobody@example.com"),
        await form_login(client, OWNER, "wrong-password"),
        await form_login(client, "asleep@example.com"),
    ]

    assert {r.status_code for r in failures} == {401}
    assert len({r.content for r in failures}) == 1
    assert {r.headers.get("www-authenticate") for r in failures} == {"Bearer"}
    assert failures[0].json() == {
        "detail": "Incorrect email or password",
        "code": "not_authenticated",
    }


async def test_oauth2_form_login_takes_the_email_as_username(
    client: httpx.AsyncClient, user: User, me_path: str
) -> None:
    response = await form_login(client, "Owner@Example.com")

    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "bearer"
    me = await client.get(me_path, headers=bearer(response.json()["access_token"]))
    assert me.status_code == 200


async def test_a_malformed_email_at_login_is_just_a_failed_login(
    client: httpx.AsyncClient, user: User
) -> None:
    response = await login(client, "not an address")

    assert response.status_code == 401
    assert response.json()["detail"] == "Incorrect email or password"


# --- refresh rotation and logout -----------------------------------------------------------


async def test_refresh_rotates_to_a_new_pair_in_the_same_family(
    client: httpx.AsyncClient, session: AsyncSession, user: User, me_path: str
) -> None:
    first = await tokens(client)

    response = await refresh(client, first["refresh_token"])

    assert response.status_code == 200, response.text
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["expires_in"] == 900
    me = await client.get(me_path, headers=bearer(second["access_token"]))
    assert me.status_code == 200
    rows = (await session.scalars(select(RefreshToken))).all()
    assert len(rows) == 2
    assert len({row.family_id for row in rows}) == 1
    assert sum(row.used_at is not None for row in rows) == 1


async def test_reusing_a_spent_refresh_token_revokes_the_whole_family(
    client: httpx.AsyncClient, user: User
) -> None:
    first = await tokens(client)
    second = (await refresh(client, first["refresh_token"])).json()

    reuse = await refresh(client, first["refresh_token"])
    newest = await refresh(client, second["refresh_token"])

    assert reuse.status_code == 401
    assert reuse.json()["code"] == "not_authenticated"
    assert newest.status_code == 401


async def test_a_reuse_in_one_family_leaves_other_sessions_alone(
    client: httpx.AsyncClient, user: User
) -> None:
    phone = await tokens(client)
    laptop = await tokens(client)
    await refresh(client, phone["refresh_token"])

    assert (await refresh(client, phone["refresh_token"])).status_code == 401
    assert (await refresh(client, laptop["refresh_token"])).status_code == 200


async def test_concurrent_refreshes_of_one_token_let_exactly_one_through(
    client: httpx.AsyncClient, user: User
) -> None:
    refresh_token = (await tokens(client))["refresh_token"]

    responses = await asyncio.gather(*(refresh(client, refresh_token) for _ in range(10)))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [401] * 9, [r.text for r in responses]


async def test_logout_revokes_the_family_and_is_harmless_twice(
    client: httpx.AsyncClient, user: User
) -> None:
    first = await tokens(client)
    second = (await refresh(client, first["refresh_token"])).json()

    assert (await logout(client, second["refresh_token"])).status_code == 204
    assert (await logout(client, second["refresh_token"])).status_code == 204
    assert (await logout(client, first["refresh_token"])).status_code == 204

    assert (await refresh(client, second["refresh_token"])).status_code == 401


async def test_logout_leaves_other_sessions_signed_in(
    client: httpx.AsyncClient, user: User
) -> None:
    phone = await tokens(client)
    laptop = await tokens(client)

    await logout(client, phone["refresh_token"])

    assert (await refresh(client, laptop["refresh_token"])).status_code == 200


async def test_logout_with_a_token_that_is_not_a_refresh_token_is_refused(
    client: httpx.AsyncClient, user: User
) -> None:
    pair = await tokens(client)

    for token in (pair["access_token"], "garbage"):
        response = await logout(client, token)
        assert response.status_code == 401, response.text


async def test_an_access_token_is_refused_at_refresh(client: httpx.AsyncClient, user: User) -> None:
    pair = await tokens(client)

    response = await refresh(client, pair["access_token"])

    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid or expired refresh token"


async def test_a_refresh_token_is_refused_as_a_bearer_token(
    client: httpx.AsyncClient, user: User, me_path: str
) -> None:
    pair = await tokens(client)

    response = await client.get(me_path, headers=bearer(pair["refresh_token"]))

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_a_deactivated_user_can_no_longer_refresh(
    client: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    pair = await tokens(client)
    user.is_active = False
    await session.commit()

    assert (await refresh(client, pair["refresh_token"])).status_code == 401


async def test_a_forged_refresh_token_with_an_unknown_id_is_refused(
    app: FastAPI, client: httpx.AsyncClient, user: User
) -> None:
    """Correctly signed but never issued (no row): rotation only trusts the database."""
    policy = app.state.token_policy
    forged, _ = policy.signer.issue(
        subject=user.id,
        token_type="refresh",
        now=utcnow(),
        lifetime=policy.refresh_lifetime,
        family_id=uuid.uuid4(),
    )

    assert (await refresh(client, forged)).status_code == 401


# --- JWT attacks on a Bearer route ---------------------------------------------------------


def _claims(app: FastAPI, user: User, **overrides: Any) -> dict[str, Any]:
    now = utcnow()
    claims: dict[str, Any] = {
        "sub": str(user.id),
        "type": "access",
        "jti": uuid.uuid4().hex,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=15)).timestamp()),
        "aud": app.state.settings.jwt_audience,
        "iss": app.state.settings.jwt_issuer,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _key(app: FastAPI) -> str:
    key: str = app.state.token_policy.signer.secret_key
    return key


def _hs256(claims: dict[str, Any], key: bytes, alg: str = "HS256") -> str:
    signing_input = f"{_segment({'alg': alg, 'typ': 'JWT'})}.{_segment(claims)}"
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


_PUBLIC_KEY_PEM = (
    b"-----BEGIN PUBLIC KEY-----\n"
    b"MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo\n"
    b"-----END PUBLIC KEY-----\n"
)

FORGERIES: dict[str, Callable[[FastAPI, User], str]] = {
    "alg none": lambda app, user: (
        f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{_segment(_claims(app, user))}."
    ),
    "signed with another key": lambda app, user: jwt.encode(
        _claims(app, user), "a-different-key-that-is-also-32-bytes-long", algorithm="HS256"
    ),
    "rs256 header over our own hmac": lambda app, user: _hs256(
        _claims(app, user), _key(app).encode(), alg="RS256"
    ),
    "hs256 keyed with a public key": lambda app, user: _hs256(_claims(app, user), _PUBLIC_KEY_PEM),
    "expired beyond the leeway": lambda app, user: jwt.encode(
        _claims(
            app,
            user,
            iat=int((utcnow() - timedelta(minutes=20)).timestamp()),
            exp=int((utcnow() - timedelta(seconds=90)).timestamp()),
        ),
        _key(app),
        algorithm="HS256",
    ),
    "no exp": lambda app, user: jwt.encode(_claims(app, user, exp=None), _key(app), "HS256"),
    "no jti": lambda app, user: jwt.encode(_claims(app, user, jti=None), _key(app), "HS256"),
    "no sub": lambda app, user: jwt.encode(_claims(app, user, sub=None), _key(app), "HS256"),
    "no type": lambda app, user: jwt.encode(_claims(app, user, type=None), _key(app), "HS256"),
    "wrong aud": lambda app, user: jwt.encode(_claims(app, user, aud="other"), _key(app), "HS256"),
    "wrong iss": lambda app, user: jwt.encode(_claims(app, user, iss="other"), _key(app), "HS256"),
    "refresh type": lambda app, user: jwt.encode(
        _claims(app, user, type="refresh"), _key(app), "HS256"
    ),
    "non-uuid sub": lambda app, user: jwt.encode(_claims(app, user, sub="1"), _key(app), "HS256"),
    "unknown user": lambda app, user: jwt.encode(
        _claims(app, user, sub=str(uuid.uuid4())), _key(app), "HS256"
    ),
    "garbage": lambda app, user: "definitely.not.ajwt",
    "empty": lambda app, user: "",
}


@pytest.mark.parametrize("attack", FORGERIES)
async def test_a_forged_or_flawed_bearer_token_is_refused(
    app: FastAPI, client: httpx.AsyncClient, user: User, me_path: str, attack: str
) -> None:
    token = FORGERIES[attack](app, user)

    response = await client.get(me_path, headers=bearer(token))

    assert response.status_code == 401, response.text
    assert response.json()["code"] == "not_authenticated"


async def test_the_honest_version_of_the_forged_tokens_is_accepted(
    app: FastAPI, client: httpx.AsyncClient, user: User, me_path: str
) -> None:
    """Guards the attack table: the same claims, properly signed, do get in."""
    token = jwt.encode(_claims(app, user), _key(app), algorithm="HS256")

    assert (await client.get(me_path, headers=bearer(token))).status_code == 200


@pytest.mark.parametrize(
    "authorization", [None, "Basic b3duZXI6cGFzcw==", "Bearer", "bearer ", "Token abc"]
)
async def test_a_missing_or_non_bearer_authorization_is_refused(
    client: httpx.AsyncClient, user: User, me_path: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    response = await client.get(me_path, headers=headers)

    assert response.status_code == 401


async def test_the_token_of_a_deleted_user_is_refused(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession, me_path: str
) -> None:
    doomed = await make_user(session, email="doomed@example.com")
    headers = token_headers(app, doomed)
    assert (await client.get(me_path, headers=headers)).status_code == 200

    await session.delete(doomed)
    await session.commit()

    assert (await client.get(me_path, headers=headers)).status_code == 401


# --- throttling ----------------------------------------------------------------------------


def _assert_rate_limited(response: httpx.Response, window_s: int) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["code"] == "rate_limited"
    assert 1 <= int(response.headers["retry-after"]) <= window_s


async def test_login_is_limited_per_address(app: FastAPI, database_url: str, user: User) -> None:
    async with (
        app_with(database_url, login_ip_rate_limit="3/minute") as limited,
        client_from(limited, "203.0.113.7") as http,
    ):
        for _ in range(3):
            assert (await login(http, password="wrong-password")).status_code == 401

        _assert_rate_limited(await login(http), window_s=60)

        async with client_from(limited, "198.51.100.9") as elsewhere:
            assert (await login(elsewhere)).status_code == 200


async def test_form_login_shares_the_login_budget(
    app: FastAPI, database_url: str, user: User
) -> None:
    async with (
        app_with(database_url, login_ip_rate_limit="3/minute") as limited,
        client_from(limited, "203.0.113.7") as http,
    ):
        assert (await login(http)).status_code == 200
        assert (await form_login(http)).status_code == 200
        assert (await login(http)).status_code == 200

        _assert_rate_limited(await form_login(http), window_s=60)


async def test_register_and_refresh_are_limited_per_address(
    app: FastAPI, database_url: str, user: User
) -> None:
    async with (
        app_with(database_url, login_ip_rate_limit="3/minute") as limited,
        client_from(limited, "203.0.113.7") as http,
    ):
        for n in range(3):
            body = {"email": f"new{n}@example.com", "password": "long-enough"}
            assert (await http.post(f"{AUTH}/register", json=body)).status_code == 201
        body = {"email": "new3@example.com", "password": "long-enough"}
        _assert_rate_limited(await http.post(f"{AUTH}/register", json=body), window_s=60)

        pair = await tokens(http)
        for _ in range(3):
            assert (await refresh(http, "not-a-token")).status_code == 401
        _assert_rate_limited(await refresh(http, pair["refresh_token"]), window_s=60)


async def test_five_failures_hold_back_that_address_but_never_the_owner(
    app: FastAPI, user: User
) -> None:
    async with client_from(app, "203.0.113.7") as attacker:
        for spelling in (OWNER, "OWNER@example.com", " owner@Example.com", OWNER, OWNER):
            assert (await login(attacker, spelling, "guess")).status_code == 401
        # Even the right password: this address has spent its tries on this account.
        _assert_rate_limited(await login(attacker), window_s=15 * 60)
        _assert_rate_limited(await form_login(attacker), window_s=15 * 60)

    async with client_from(app, "198.51.100.9") as owner:
        assert (await login(owner)).status_code == 200
        assert (await form_login(owner)).status_code == 200


async def test_parallel_guesses_from_one_address_get_only_five_tries(
    app: FastAPI, user: User
) -> None:
    async with client_from(app, "203.0.113.7") as attacker:
        responses = await asyncio.gather(
            *(login(attacker, password=f"guess-{n}") for n in range(20))
        )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [401] * 5 + [429] * 15


async def test_over_the_account_ceiling_only_addresses_that_have_not_failed_may_try(
    app: FastAPI, database_url: str, user: User, caplog: pytest.LogCaptureFixture
) -> None:
    async with app_with(database_url, login_account_failure_limit="10/day") as limited:

        async def guess(n: int) -> httpx.Response:
            async with client_from(limited, f"203.0.113.{n}") as attacker:
                return await login(attacker, password=f"guess-{n}")

        with caplog.at_level(logging.WARNING, logger="app.services.accounts"):
            first = await asyncio.gather(*(guess(n) for n in range(20)))
            second = await asyncio.gather(*(guess(n) for n in range(20)))
        async with client_from(limited, "198.51.100.9") as owner:
            owner_login = await login(owner)

    # A fresh address always gets its one try; one that failed gets no second try.
    assert [r.status_code for r in first] == [401] * 20
    assert [r.status_code for r in second] == [429] * 20
    assert owner_login.status_code == 200
    warnings = [r for r in caplog.records if "ceiling" in r.getMessage()]
    assert len(warnings) == 1
    assert getattr(warnings[0], "user_id", None) == str(user.id)


async def test_an_address_failing_on_many_accounts_is_held_back_on_all(
    app: FastAPI, database_url: str, user: User, other_user: User
) -> None:
    async with (
        app_with(database_url, login_address_failure_limit="6/hour") as limited,
        client_from(limited, "203.0.113.7") as sprayer,
    ):
        for n in range(6):
            assert (await login(sprayer, f"nobody{n}@example.com", "guess")).status_code == 401
        _assert_rate_limited(await login(sprayer, "other@example.com"), window_s=3600)


async def test_the_throttle_is_shared_by_every_process_through_redis(
    app: FastAPI, database_url: str, session: AsyncSession
) -> None:
    # A fresh address: the Redis window outlives this test.
    email = f"shared-{uuid.uuid4().hex[:12]}@example.com"
    await make_user(session, email=email)
    redis = {"rate_limit_storage_url": "redis://127.0.0.1:6379/15"}

    async with (
        app_with(database_url, **redis) as first,
        app_with(database_url, **redis) as second,
        client_from(first, "203.0.113.7") as attacker_on_first,
        client_from(second, "203.0.113.7") as attacker_on_second,
        client_from(second, "198.51.100.9") as owner,
    ):
        for _ in range(5):
            assert (await login(attacker_on_first, email, "guess")).status_code == 401

        _assert_rate_limited(await login(attacker_on_second, email), window_s=15 * 60)
        assert (await login(owner, email)).status_code == 200


async def test_form_login_failures_count_against_the_address_too(app: FastAPI, user: User) -> None:
    async with client_from(app, "203.0.113.7") as attacker:
        for _ in range(5):
            assert (await form_login(attacker, password="guess")).status_code == 401
        _assert_rate_limited(await login(attacker), window_s=15 * 60)


async def test_a_locked_account_does_not_lock_its_neighbours(
    app: FastAPI, client: httpx.AsyncClient, user: User, other_user: User
) -> None:
    for _ in range(5):
        await login(client, password="guess")

    assert (await login(client, "other@example.com")).status_code == 200


async def test_a_successful_login_clears_the_failure_count(
    client: httpx.AsyncClient, user: User
) -> None:
    for _ in range(4):
        assert (await login(client, password="guess")).status_code == 401
    assert (await login(client)).status_code == 200

    # Without the reset these four would make eight failures and the next login a 429.
    for _ in range(4):
        assert (await login(client, password="guess")).status_code == 401
    assert (await login(client)).status_code == 200
