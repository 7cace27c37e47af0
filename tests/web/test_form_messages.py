"""Messages are written for people: on the field they concern, never in the validator's own
words, in the dashboard's forms, its live validation and the API's 422 answers; and the
search form offers only the channels and options that apply."""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails, PydanticKnownError
from pydantic_core.core_schema import ErrorType
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.schemas.auth import RegisterIn
from app.schemas.messages import human_message
from app.schemas.searches import SearchCreate, SearchCriteria
from app.schemas.users import UserUpdate
from tests.api.test_phone_verification import sms_settings
from tests.factories import make_search, make_user
from tests.fakes.twilio import TwilioFake
from tests.web.conftest import csrf_of, error_of, log_in, post_form

NEW = "/app/searches/new"
VALIDATE = "/app/searches/validate"
SETTINGS = "/app/settings"
# What pydantic says when its messages reach people unchanged.
VALIDATOR_WORDING = (
    "should have",
    "Input should",
    "String should",
    "value_error",
    "Value error",
    "Field required",
)
MIN_ABOVE_MAX = "The highest price must be at least the lowest price"
TWO_MARKETPLACES = "Your plan allows 1 marketplace per search: untick one, or upgrade in Plan"
TOO_OFTEN = "Your plan checks at most every 30 minutes: choose 30 or more"

# A context with every key some error type's message needs, for building pydantic's own
# wording of each type.
_CONTEXT: dict[str, Any] = {
    "min_length": 8,
    "max_length": 200,
    "gt": 0,
    "ge": 1,
    "lt": 10,
    "le": 500,
    "multiple_of": 5,
    "expected": "'new', 'used' or 'any'",
    "pattern": "^[A-Za-z]{3}$",
    "decimal_places": 2,
    "max_digits": 12,
    "whole_digits": 10,
    "error": "Expecting value",
    "field_type": "List",
    "actual_length": 0,
    "class_name": "Search",
    "attribute": "name",
    "tag": "t",
    "discriminator": "'kind'",
    "expected_tags": "'a', 'b'",
    "reason": "An email address must have an @-sign.",
    "expected_version": 4,
    "input_type": "str",
    "class": "Search",
    "expected_schemes": "'http', 'https'",
    "method_name": "validate",
    "encoding": "utf-8",
    "encoding_error": "invalid start byte",
    "tz_actual": 3600,
    "tz_expected": 0,
}
FIELDS = ("", "name", "keywords", "max_price", "currency", "marketplaces", "city", "timezone")


def _pydantic_message(kind: str) -> tuple[str, dict[str, Any]]:
    """pydantic's own message for an error type, and the context it was built with."""
    try:
        return PydanticKnownError(kind).message(), {}  # type: ignore[arg-type]
    except TypeError:
        return PydanticKnownError(kind, _CONTEXT).message(), _CONTEXT  # type: ignore[arg-type]


def _error(kind: str, field: str) -> ErrorDetails:
    message, context = _pydantic_message(kind)
    loc: tuple[str | int, ...] = ("body", field) if field else ()
    return ErrorDetails(type=kind, loc=loc, msg=message, input="x", ctx=context)


def assert_for_people(text: str) -> None:
    for wording in VALIDATOR_WORDING:
        assert wording not in text, (wording, text)


ERROR_TYPES = [kind for kind in typing.get_args(ErrorType)]


@pytest.mark.parametrize("kind", ERROR_TYPES)
def test_every_error_type_reads_as_a_person_wrote_it(kind: str) -> None:
    for field in FIELDS:
        for label in (None, "Highest price"):
            message = human_message(_error(kind, field), label)
            assert message
            assert message[0].isupper() or message[0] == "“", message
            assert_for_people(message)


@given(
    kind=st.sampled_from(ERROR_TYPES),
    field=st.sampled_from(FIELDS) | st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
    label=st.none() | st.sampled_from(["Name", "Lowest price", "craigslist: City"]),
    position=st.none() | st.integers(min_value=0, max_value=50),
)
def test_no_error_anywhere_keeps_the_validators_words(
    kind: str, field: str, label: str | None, position: int | None
) -> None:
    error = _error(kind, field)
    if position is not None:
        error["loc"] = (*error["loc"], position)
    assert_for_people(human_message(error, label))


def _messages(model: type[BaseModel], data: dict[str, Any]) -> dict[tuple[str | int, ...], str]:
    with pytest.raises(ValidationError) as refused:
        model.model_validate(data)
    return {error["loc"]: human_message(error) for error in refused.value.errors()}


@pytest.mark.parametrize(
    ("model", "data", "loc", "expected"),
    [
        (RegisterIn, {"email": "nobody", "password": "a-long-password"}, ("email",),
         "Enter an email address like name@example.com"),
        (RegisterIn, {"email": "a@example.com", "password": "short"}, ("password",),
         "Use at least 8 characters"),
        (RegisterIn, {"password": "a-long-password"}, ("email",), "Enter your email address"),
        (SearchCriteria, {"keywords": ["a"], "min_price": 9, "max_price": 1}, ("max_price",),
         MIN_ABOVE_MAX),
        (SearchCriteria, {"keywords": ["a"], "min_price": "1.234"}, ("min_price",),
         "Use at most 2 decimal places"),
        (SearchCriteria, {"keywords": ["a"], "max_price": "cheap"}, ("max_price",),
         "Enter a number, like 250 or 249.99"),
        (SearchCriteria, {"keywords": ["a"], "max_price": -1}, ("max_price",), "Enter 0 or more"),
        (SearchCriteria, {"keywords": ["a"], "currency": "pounds"}, ("currency",),
         "Use a three-letter currency code such as GBP, EUR or USD"),
        (SearchCriteria, {"keywords": ["a"], "condition": "broken"}, ("condition",),
         "Choose one of: new, used or any"),
        (SearchCriteria, {"keywords": ["a"], "location": "Leeds", "radius_km": "ten"},
         ("radius_km",), "Enter a whole number"),
        (SearchCriteria, {"keywords": ["a"], "location": "Leeds", "radius_km": 2.5},
         ("radius_km",), "Enter a whole number, without decimals"),
        (SearchCriteria, {"keywords": ["a"], "radius_km": 5}, ("radius_km",),
         "Enter a location to search around, or leave the distance empty"),
        (SearchCriteria, {"keywords": []}, ("keywords",), "Enter at least one keyword"),
        (SearchCriteria, {"keywords": ["a"], "colour": "red"}, ("colour",),
         "Remove “colour”: it is not one of the fields accepted here"),
        (SearchCreate, {"criteria": {"keywords": ["a"]}, "marketplaces": ["demo"]}, ("name",),
         "This field is required"),
        (SearchCreate, {"name": "n" * 201, "criteria": {"keywords": ["a"]},
         "marketplaces": ["demo"]}, ("name",), "Enter at most 200 characters"),
        (SearchCreate, {"name": "n", "criteria": {"keywords": ["a"]}, "marketplaces": ["demo"],
         "alert_on_price_drop": "maybe"}, ("alert_on_price_drop",), "Use true or false"),
        (UserUpdate, {"quiet_hours_start": "25:00"}, ("quiet_hours_start",),
         "Enter a time on the 24-hour clock, like 22:30"),
        (UserUpdate, {"timezone": "Mars/Olympus"}, ("timezone",),
         "Use a time zone name such as Europe/London or UTC"),
    ],
)  # fmt: skip
def test_the_schemas_errors_in_words_for_people(
    model: type[BaseModel], data: dict[str, Any], loc: tuple[str, ...], expected: str
) -> None:
    assert _messages(model, data)[loc] == expected


async def test_signup_shows_each_problem_on_its_field(browser: httpx.AsyncClient) -> None:
    token = await csrf_of(browser, "/app/signup")
    page = await browser.post(
        "/app/signup",
        data={"email": "not-an-email", "password": "short", "full_name": "n" * 201,
              "csrf_token": token},
    )  # fmt: skip

    assert page.status_code == 422
    assert error_of(page.text, "email") == "Enter an email address like name@example.com"
    assert error_of(page.text, "password") == "Use at least 8 characters"
    assert error_of(page.text, "full_name") == "Enter at most 200 characters"
    assert_for_people(page.text)


async def test_a_short_new_password_is_explained_on_the_reset_form(
    browser: httpx.AsyncClient,
) -> None:
    page = await post_form(
        browser,
        "/app/login",
        "/app/reset-password",
        {"token": "from-the-mail", "new_password": "short"},
    )

    assert page.status_code == 422
    assert error_of(page.text, "new_password") == "Use at least 8 characters"
    assert_for_people(page.text)


def search_form(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": "Lamps",
        "keywords": "lamp",
        "marketplaces": ["demo"],
        "alert_channels": ["in_app"],
        "check_frequency_minutes": "30",
    }
    values.update(overrides)
    return values


async def test_a_refused_search_shows_every_problem_on_its_field_and_above_the_button(
    signed_in: httpx.AsyncClient,
) -> None:
    page = await post_form(
        signed_in,
        NEW,
        NEW,
        search_form(
            name="",
            min_price="500",
            max_price="100",
            currency="pounds",
            radius_km="2.5",
            location="Leeds",
            marketplaces=["demo", "gumtree"],
            check_frequency_minutes="5",
        ),
    )

    assert page.status_code == 422
    expected = {
        "name": "Give it a name",
        "max_price": MIN_ABOVE_MAX,
        "currency": "Use a three-letter currency code such as GBP, EUR or USD",
        "radius_km": "Enter a whole number",
        # The plan's limits show in the same round trip, though the schema refused first.
        "marketplaces": TWO_MARKETPLACES,
        "check_frequency_minutes": TOO_OFTEN,
    }
    for field, message in expected.items():
        assert error_of(page.text, field) == message, field
    summary = _summary(page.text)
    assert summary.startswith(f"{len(expected)} things to fix before saving:")
    assert '<a href="#f-max_price">Highest price</a>: ' + MIN_ABOVE_MAX in summary
    assert '<a href="#f-marketplaces">Marketplaces</a>' in summary
    assert 'id="f-marketplaces"' in page.text
    assert_for_people(page.text)


async def test_a_plan_limit_alone_is_shown_on_its_field(signed_in: httpx.AsyncClient) -> None:
    page = await post_form(signed_in, NEW, NEW, search_form(check_frequency_minutes="10"))

    assert page.status_code == 403
    assert error_of(page.text, "check_frequency_minutes") == TOO_OFTEN
    assert error_of(page.text, "form") == ""
    assert "1 thing to fix before saving:" in _summary(page.text)


async def test_live_validation_finds_the_schemas_and_the_plans_problems_together(
    signed_in: httpx.AsyncClient,
) -> None:
    token = await csrf_of(signed_in, NEW)
    answer = await signed_in.post(
        VALIDATE,
        data={
            **search_form(
                name="",
                min_price="500",
                max_price="100",
                marketplaces=["demo", "gumtree"],
                check_frequency_minutes="5",
            ),
            "csrf_token": token,
        },
    )
    plan_only = await signed_in.post(
        VALIDATE,
        data={**search_form(marketplaces=["demo", "vinted"]), "csrf_token": token},
    )

    assert answer.status_code == 200
    assert answer.json() == {
        "errors": {
            "name": "Give it a name",
            "max_price": MIN_ABOVE_MAX,
            "marketplaces": TWO_MARKETPLACES,
            "check_frequency_minutes": TOO_OFTEN,
        }
    }
    assert plan_only.json() == {"errors": {"marketplaces": TWO_MARKETPLACES}}


async def test_live_validation_names_a_ticked_marketplaces_missing_option(
    signed_in: httpx.AsyncClient,
) -> None:
    token = await csrf_of(signed_in, NEW)
    answer = await signed_in.post(
        VALIDATE, data={**search_form(marketplaces=["rss"]), "csrf_token": token}
    )
    bad_url = await signed_in.post(
        VALIDATE,
        data={
            **search_form(marketplaces=["rss"], **{"option:rss:url": "ftp://example.com/feed"}),
            "csrf_token": token,
        },
    )

    assert answer.json() == {"errors": {"option:rss:url": "This field is required"}}
    assert bad_url.json() == {
        "errors": {"option:rss:url": "Enter an address starting with http:// or https://"}
    }


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("timezone", "Mars/Olympus", "Use a time zone name such as Europe/London or UTC"),
        ("phone_number", "12345", "Enter the number in international form"),
        ("quiet_hours_start", "25:00", "Enter a time on the 24-hour clock, like 22:30"),
        ("full_name", "n" * 201, "Enter at most 200 characters"),
    ],
)
async def test_the_settings_form_explains_each_problem_for_people(
    signed_in: httpx.AsyncClient, field: str, value: str, expected: str
) -> None:
    form: dict[str, object] = {"timezone": "UTC", field: value}
    if field == "quiet_hours_start":
        form["quiet_hours_end"] = "07:00"
    page = await post_form(signed_in, SETTINGS, SETTINGS, form)

    assert page.status_code == 422
    assert error_of(page.text, field).startswith(expected)
    assert_for_people(page.text)


async def test_the_api_answers_422_in_the_same_words_at_the_same_places(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    body = {
        "name": "",
        "criteria": {"keywords": ["lamp"], "min_price": 500, "max_price": 100},
        "marketplaces": ["demo"],
        "check_frequency_minutes": "often",
    }
    response = await client.post("/api/v1/searches/", json=body, headers=headers)
    broken = await client.post(
        "/api/v1/searches/",
        content=b"{not json",
        headers={**headers, "Content-Type": "application/json"},
    )

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    issues = {tuple(issue["loc"]): issue for issue in response.json()["detail"]}
    assert issues[("body", "criteria", "max_price")]["msg"] == MIN_ABOVE_MAX
    assert issues[("body", "name")]["msg"] == "Give it a name"
    assert issues[("body", "check_frequency_minutes")] == {
        "loc": ["body", "check_frequency_minutes"],
        "msg": "Enter a whole number",
        "type": "int_parsing",
    }
    assert broken.status_code == 422
    assert broken.json()["detail"][0]["msg"].startswith("This is not valid JSON")
    for issue in response.json()["detail"] + broken.json()["detail"]:
        assert_for_people(issue["msg"])


async def test_the_api_explains_a_plan_limit_in_plain_words(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    body = {"name": "Lamps", "criteria": {"keywords": ["lamp"]}, "marketplaces": ["demo"]}
    response = await client.post(
        "/api/v1/searches/", json={**body, "check_frequency_minutes": 5}, headers=headers
    )

    assert response.status_code == 403
    assert response.json()["code"] == "plan_limit_exceeded"
    assert response.json()["detail"] == TOO_OFTEN


class TestChannelsOnTheSearchForm:
    """On a server that can send every kind of alert, what the user still has to set up."""

    @pytest.fixture
    def twilio(self) -> Iterator[TwilioFake]:
        with TwilioFake() as fake:
            yield fake

    @pytest.fixture
    def settings(self, database_url: str, twilio: TwilioFake) -> Settings:
        return sms_settings(database_url, twilio)

    async def test_those_the_user_has_not_set_up_are_offered_disabled_with_the_way_to_settings(
        self, signed_in: httpx.AsyncClient
    ) -> None:
        page = (await signed_in.get(NEW)).text

        for channel, reason in (
            ("sms", "add your phone number"),
            ("webhook", "add a webhook URL"),
            ("apprise", "add an Apprise URL"),
        ):
            box = _checkbox(page, "alert_channels", channel)
            assert " disabled" in box, channel
            assert f'({reason} in <a href="/app/settings">Settings</a> first)' in page
        assert " disabled" not in _checkbox(page, "alert_channels", "in_app")

    async def test_those_the_user_has_set_up_or_already_uses_stay_enabled(
        self, browser: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        owner = await make_user(
            session,
            email="ready@example.com",
            phone_number="+447700900123",
            phone_verified=False,
            webhook_url="https://hooks.example.com/in",
        )
        search = await make_search(
            session, owner=owner, marketplaces=["demo"], alert_channels=["sms"]
        )
        await log_in(browser, owner.email)

        new = (await browser.get(NEW)).text
        edit = (await browser.get(f"/app/searches/{search.id}/edit")).text

        assert " disabled" in _checkbox(new, "alert_channels", "sms")
        assert "(verify your phone number in" in new
        assert " disabled" not in _checkbox(new, "alert_channels", "webhook")
        # Already ticked on the search being edited: it can be kept, or unticked.
        assert " disabled" not in _checkbox(edit, "alert_channels", "sms")


async def test_a_marketplaces_options_fold_away_unless_it_is_ticked_or_at_fault(
    signed_in: httpx.AsyncClient,
) -> None:
    blank = (await signed_in.get(NEW)).text
    refused = await post_form(signed_in, NEW, NEW, search_form(marketplaces=["rss"]))

    assert '<details class="options" data-options-for="rss">' in blank
    assert re.search(r'<details class="options" data-options-for="[a-z]+" open>', blank) is None
    assert '<details class="options" data-options-for="rss" open>' in refused.text
    assert '<details class="options" data-options-for="reddit">' in refused.text
    assert error_of(refused.text, "option:rss:url") == "This field is required"


async def test_search_messages_never_use_the_validators_words_across_many_inputs(
    signed_in: httpx.AsyncClient, client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    token = await csrf_of(signed_in, NEW)
    bad_inputs: list[dict[str, Any]] = [
        {"keywords": "", "name": "x" * 300},
        {"keywords": '""\n!!!', "exclude_keywords": "?"},
        {"min_price": "1e999", "max_price": "12.345"},
        {"currency": "12", "radius_km": "0", "location": ""},
        {"condition": "mint", "category": "c" * 101, "description": "d" * 2001},
        {"marketplaces": ["nowhere", "demo"], "alert_channels": ["pigeon"]},
        {"check_frequency_minutes": "2000", "alert_mode": "weekly"},
        {"check_frequency_minutes": "", "marketplaces": []},
        {"name": "nul\x00", "marketplaces": ["reddit"], "option:reddit:subreddit": "no spaces"},
        {"marketplaces": ["craigslist"], "option:craigslist:city": "San Francisco"},
    ]
    for overrides in bad_inputs:
        data = {**search_form(**overrides), "csrf_token": token}
        live = await signed_in.post(VALIDATE, data=data)
        saved = await signed_in.post(NEW, data=data)
        assert live.json()["errors"], overrides
        assert saved.status_code in (403, 422), overrides
        assert_for_people(live.text)
        assert_for_people(saved.text)
    api = await client.post(
        "/api/v1/searches/",
        json={"name": 5, "criteria": {"keywords": "lamp"}, "marketplaces": "demo", "x": 1},
        headers=headers,
    )
    assert api.status_code == 422
    for issue in api.json()["detail"]:
        assert_for_people(issue["msg"])


def _summary(page: str) -> str:
    """The summary of problems above the button: its title, then its list (as HTML)."""
    found = re.search(r'<div class="error-summary"[^>]*>(.*?)</div>', page, re.S)
    assert found, "the page has no summary of problems"
    return re.sub(r"^<p[^>]*>", "", " ".join(found.group(1).split()))


def _checkbox(page: str, name: str, value: str) -> str:
    found = re.search(rf'<input type="checkbox" name="{name}" value="{value}"[^>]*>', page)
    assert found, (name, value)
    return found.group(0)
