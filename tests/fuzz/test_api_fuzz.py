"""Schemathesis against the app's own OpenAPI document, in-process, with every check on.

`test_every_operation_answers_as_documented` sends each operation the schema's examples,
Schemathesis' coverage cases (boundaries, missing and wrong-typed fields, unexpected
methods) and generated valid and invalid requests. `test_call_sequences_keep_to_the_contract`
chains calls along the links Schemathesis infers from the document (create a search, then
read, change, pause, check or delete it; read a listing, then save or hide it) and has a
second user repeat every read of the owner's objects, which must answer 404.

Every request is made as the owner, on the fuzz suite's own SQLite database, with billing
pointed at the fake Stripe and no way out of 127.0.0.1 (see conftest.py). The seed is
fixed: a run that passes here passes on CI. Over the whole run the checks demand no 5xx,
only documented status codes, bodies and content types as documented, invalid input
refused with a 4xx, valid input accepted (see RULES_THE_SCHEMA_CANNOT_STATE), auth
enforced, 405 with a true Allow header for undeclared methods, and deleted objects gone.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import seed, settings
from hypothesis.errors import Flaky
from schemathesis.python.asgi import ASGIClient

from app.main import API_PREFIX, create_app
from tests.conftest import make_settings
from tests.fuzz.conftest import OWNER_ID, Accounts, CurrentApp, bearer_headers

FUZZ_SEED = 20_240_607
# Generated cases per operation (on top of the examples and coverage cases) and stateful
# scenarios: the module takes about two minutes on two busy cores.
MAX_EXAMPLES = 25
STATEFUL_SCENARIOS = 60
STATEFUL_MAX_STEPS = 8

# What a valid request may be answered with (Schemathesis' default for the check).
ACCEPTED_STATUSES = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]

# Schema-valid requests these operations refuse by rules JSON Schema cannot state: the
# status they answer instead, and the rule. Every other check still runs on them, and
# every other operation must accept every schema-valid request.
_PRICE_RULES = "prices are decimals with two places at most, min_price <= max_price"
_SEARCH_RULES = (
    "keywords need a letter or digit, marketplaces must be installed here and take their "
    "own options, alert channels must be set up, " + _PRICE_RULES
)
RULES_THE_SCHEMA_CANNOT_STATE = {
    "POST /api/v1/auth/register": ("422", "email domains must look deliverable"),
    "PUT /api/v1/users/me": ("422", "real phone numbers, IANA time zones, public URLs"),
    "PATCH /api/v1/users/me": ("422", "real phone numbers, IANA time zones, public URLs"),
    "POST /api/v1/users/me/test-alert": ("422", "the channel must be set up first"),
    "POST /api/v1/users/me/password": ("422", "the current password must be the right one"),
    "POST /api/v1/auth/verify-email": ("422", "the token must be one that was mailed"),
    "POST /api/v1/auth/password-reset": ("422", "text holds no NUL characters"),
    "POST /api/v1/users/me/tokens": ("422", "text holds no NUL characters"),
    "POST /api/v1/auth/password-reset/confirm": ("422", "the token must be one that was mailed"),
    "POST /api/v1/users/me/webhook-secret": ("422", "a webhook URL must be set first"),
    "POST /api/v1/users/me/phone/verification": ("422", "a phone number must be set first"),
    "POST /api/v1/users/me/phone/verify": ("422", "the code must be the one texted"),
    "POST /api/v1/searches/": ("422", _SEARCH_RULES),
    "PUT /api/v1/searches/{search_id}": ("422", _SEARCH_RULES),
    "PATCH /api/v1/searches/{search_id}": ("422", _SEARCH_RULES),
    "POST /api/v1/templates/{template_id}/use": ("422", "alert channels must be set up first"),
    "GET /api/v1/listings/": ("422", _PRICE_RULES),
    "GET /api/v1/searches/{search_id}/listings": ("422", _PRICE_RULES),
    "POST /api/v1/billing/checkout": ("422", "the free plan is not bought"),
    "POST /api/v1/webhooks/stripe": ("400", "events must be signed with the webhook secret"),
}

# Each sign-up or login with a well-formed body costs an Argon2 hash (50-500 ms): fewer
# generated cases there, and none in the stateful phase, where a new account or token
# leads nowhere the owner's calls go.
PASSWORD_HASHING = (
    "POST /api/v1/auth/register",
    "POST /api/v1/auth/login",
    "POST /api/v1/auth/token",
    "POST /api/v1/users/me/password",
)

CURRENT_APP = CurrentApp()
# The document and the owner's token need no database: this app is never started.
_DOCUMENT_APP = create_app(make_settings("sqlite+aiosqlite://"))
OWNER_HEADERS = bearer_headers(_DOCUMENT_APP, OWNER_ID)
schema = (
    schemathesis.openapi.from_dict(
        _DOCUMENT_APP.openapi(),
        config=schemathesis.Config.from_dict(
            {
                "seed": FUZZ_SEED,
                # No state carried between runs: the same seed gives the same run everywhere.
                "cache": {"enabled": False},
                "generation": {"max-examples": MAX_EXAMPLES},
                # Generation time depends on how busy the machine is, not on the API.
                "suppress-health-check": ["too_slow"],
                "operations": [
                    {
                        "include-name": name,
                        "checks": {
                            "positive_data_acceptance": {
                                "expected-statuses": [*ACCEPTED_STATUSES, status]
                            }
                        },
                    }
                    for name, (status, _rule) in RULES_THE_SCHEMA_CANNOT_STATE.items()
                ]
                + [
                    {
                        "include-name": name,
                        "generation": {"max-examples": 5},
                        "phases": {"stateful": {"enabled": False}},
                    }
                    for name in PASSWORD_HASHING
                ],
            }
        ),
        # Deleting the account or logging out everywhere would sign the fuzzer out for the rest
        # of the run; both are tested in tests/api/.
    )
    .exclude(method="DELETE", path=f"{API_PREFIX}/users/me")
    .exclude(method="POST", path=f"{API_PREFIX}/auth/logout-all")
)
schema.app = CURRENT_APP


@schema.auth(refresh_interval=None)
class AsOwner:
    """Every generated request carries the owner's token (the checks take it off or spoil
    it themselves to test that auth is enforced). Read at every case, not cached: the
    stateful test changes owner between scenarios."""

    headers: dict[str, str] = OWNER_HEADERS

    def get(self, case: schemathesis.Case, context: schemathesis.AuthContext) -> dict[str, str]:
        return AsOwner.headers

    def set(
        self, case: schemathesis.Case, data: dict[str, str], context: schemathesis.AuthContext
    ) -> None:
        case.headers.update(data)


@pytest.fixture
def fuzz_target(fuzz_app: FastAPI, fuzz_accounts: Accounts) -> Iterator[None]:
    CURRENT_APP.app = fuzz_app
    with ASGIClient(CURRENT_APP) as client:
        # Every case carries this token: were it refused, the run would test 401s only.
        assert client.get(f"{API_PREFIX}/users/me", headers=OWNER_HEADERS).status_code == 200
    yield
    AsOwner.headers = OWNER_HEADERS


@pytest.mark.usefixtures("fuzz_target")
@schema.parametrize()
@settings(database=None)
def test_every_operation_answers_as_documented(case: schemathesis.Case) -> None:
    case.call_and_validate()


@pytest.mark.usefixtures("fuzz_target")
def test_call_sequences_keep_to_the_contract(fuzz_accounts: Accounts) -> None:
    other_headers = fuzz_accounts.new_user()
    failures: list[BaseException] = []
    scenarios_started = 0
    successes = 0

    class Sequences(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            nonlocal scenarios_started
            scenarios_started += 1
            # A new owner per scenario, so that what one scenario used up (daily
            # allowances, deleted searches) does not change what the next can do.
            AsOwner.headers = fuzz_accounts.new_user()

        def before_call(self, case: schemathesis.Case) -> None:
            super().before_call(case)
            for name, value in (case.path_parameters or {}).items():
                # A link can follow a null id (a test alert has no search); Schemathesis
                # would send the text "None". Ask for an object that does not exist instead.
                if value is None or value == "None":
                    case.path_parameters[name] = str(uuid.uuid4())

        def after_call(self, response: Any, case: schemathesis.Case) -> None:
            nonlocal successes
            super().after_call(response, case)
            successes += 200 <= response.status_code < 300
            if _reads_an_object_of_the_owner(case) and response.status_code == 200:
                other = case.call(headers=other_headers)
                if other.status_code != 404:
                    failures.append(
                        AssertionError(
                            f"{case.method} {case.formatted_path} as another user answered "
                            f"{other.status_code}, not 404: {other.text[:300]}"
                        )
                    )
                    raise failures[-1]

        def validate_response(
            self, response: Any, case: schemathesis.Case, *args: Any, **kwargs: Any
        ) -> None:
            try:
                super().validate_response(response, case, *args, **kwargs)
            except (AssertionError, BaseExceptionGroup) as exc:  # a failed check or several
                failures.append(exc)
                raise

    attempt = 0
    while scenarios_started < STATEFUL_SCENARIOS:
        seed(FUZZ_SEED + attempt)(Sequences)
        attempt += 1
        try:
            Sequences.run(
                settings=settings(
                    Sequences.TestCase.settings,
                    max_examples=STATEFUL_SCENARIOS - scenarios_started,
                    stateful_step_count=STATEFUL_MAX_STEPS,
                    database=None,
                )
            )
        except Exception as exc:
            if failures:
                # Replaying a failure can go another way (the state it met is gone);
                # report it as it was first seen.
                raise failures[0] from exc
            if not _is_replay_drift(exc):
                raise
            # Hypothesis stops when the same choices lead to other calls, as they do on an
            # API with state (a search deleted in one run is gone in the replay), with no
            # failure found: go on from the next seed, as Schemathesis' own runner does.
            continue
        break

    # Were the owner's token refused or lost, every call would end in a 401 and pass.
    assert successes >= STATEFUL_SCENARIOS, f"only {successes} calls succeeded"


def _reads_an_object_of_the_owner(case: schemathesis.Case) -> bool:
    # Templates are one catalogue shared by everyone.
    return (
        case.method == "GET"
        and bool(case.path_parameters)
        and not case.path.startswith(f"{API_PREFIX}/templates/")
        and "security" in case.operation.definition.raw
    )


def _is_replay_drift(exc: BaseException) -> bool:
    """Hypothesis raises Flaky, or fails an assertion of its own, when a replay draws
    differently from the first run."""
    if isinstance(exc, Flaky):
        return True
    traceback = exc.__traceback__
    while traceback is not None and traceback.tb_next is not None:
        traceback = traceback.tb_next
    return (
        isinstance(exc, AssertionError)
        and traceback is not None
        and traceback.tb_frame.f_globals.get("__name__", "").startswith("hypothesis.")
    )
