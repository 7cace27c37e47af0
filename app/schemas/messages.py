"""Validation errors worded for people: one wording for the dashboard's forms and the API's
422 answers, so neither ever shows the validator's own ("Input should be ...")."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from pydantic_core import ErrorDetails

Context = Mapping[str, Any]
_Writer = Callable[[Context, str | None], str]

NUMBER = "Enter a number, like 250 or 249.99"
WHOLE_NUMBER = "Enter a whole number"
REQUIRED = "This field is required"
NOT_ACCEPTED = "This value is not accepted here"

# Prefixes pydantic puts before the text of a validator's own ValueError / AssertionError.
_CUSTOM_PREFIXES = ("Value error, ", "Assertion failed, ")
_EMAIL_PREFIX = "value is not a valid email address"


def human_message(error: ErrorDetails, label: str | None = None) -> str:
    """What to tell a person about one validation error. `label` names the field as the
    person knows it ("Highest price"); messages shown beside their field need none."""
    kind = error["type"]
    ctx: Context = error.get("ctx") or {}
    name = field_name(error["loc"])
    specific = _FIELD_MESSAGES.get((name, kind))
    if specific is not None:
        return specific
    if kind in ("value_error", "assertion_error"):
        return _custom_text(str(error.get("msg", "")), label)
    if kind == "string_pattern_mismatch":
        return _PATTERN_MESSAGES.get(name, "Check the format of this value")
    if kind in ("too_short", "too_long"):
        return _length(kind, name, ctx)
    if kind == "extra_forbidden":
        return f"Remove “{name}”: it is not one of the fields accepted here"
    if kind == "missing" and name == "body":
        return "Send a JSON body with the fields this request takes"
    writer = _WRITERS.get(kind)
    if writer is not None:
        return writer(ctx, label)
    return f"{label}: {NOT_ACCEPTED.lower()}" if label else NOT_ACCEPTED


def field_name(loc: Sequence[str | int]) -> str:
    """The innermost named part of an error's location ("" for the whole input)."""
    names = [part for part in loc if isinstance(part, str)]
    return names[-1] if names else ""


def _custom_text(message: str, label: str | None) -> str:
    """A validator's own text, as it wrote it, without pydantic's prefix."""
    for prefix in _CUSTOM_PREFIXES:
        message = message.removeprefix(prefix)
    if message.startswith(_EMAIL_PREFIX):
        return "Enter an email address like name@example.com"
    if not message:
        return f"{label}: {NOT_ACCEPTED.lower()}" if label else NOT_ACCEPTED
    return message[0].upper() + message[1:]


def _required(_ctx: Context, label: str | None) -> str:
    return f"{label} is required" if label else REQUIRED


def _too_short_text(ctx: Context, label: str | None) -> str:
    least = int(ctx.get("min_length", 1))
    if least <= 1:
        return _required(ctx, label)
    return f"Use at least {least} characters"


def _length(kind: str, name: str, ctx: Context) -> str:
    """Too few or too many items in a list (or entries in a map)."""
    verb, noun = _ITEMS.get(name, ("Give", "item"))
    if kind == "too_short":
        least = int(ctx.get("min_length", 1))
        return f"{verb} at least {_count(least, noun)}"
    most = int(ctx.get("max_length", 0))
    return f"{verb} at most {_count(most, noun)}"


def _count(number: int, noun: str) -> str:
    if number == 1:
        return f"one {noun}"
    return f"{number} {noun}s"


def _number(value: Any) -> str:
    """A bound as a person writes it: 1,000,000,000 rather than 1E+9, but 1440 as is."""
    if isinstance(value, Decimal | float | int) and not isinstance(value, bool):
        try:
            whole = int(value)
        except (ValueError, OverflowError):  # NaN, infinity
            return str(value)
        if whole == value:
            return f"{whole:,}" if abs(whole) >= 10_000 else str(whole)
    return str(value)


def _choices(ctx: Context, _label: str | None) -> str:
    # pydantic lists them as "'new', 'used' or 'any'"; people do not need the quotes.
    expected = str(ctx.get("expected", "")).replace("'", "")
    return f"Choose one of: {expected}" if expected else "Choose one of the listed values"


def _decimal_places(ctx: Context, _label: str | None) -> str:
    places = int(ctx.get("decimal_places", 0))
    if places == 0:
        return WHOLE_NUMBER
    return f"Use at most {places} decimal place{'' if places == 1 else 's'}"


def _fixed(text: str) -> _Writer:
    return lambda _ctx, _label: text


_WRITERS: dict[str, _Writer] = {
    "missing": _required,
    "missing_argument": _required,
    "missing_keyword_only_argument": _required,
    "missing_positional_only_argument": _required,
    "string_too_short": _too_short_text,
    "string_too_long": lambda ctx, _: f"Enter at most {_number(ctx.get('max_length'))} characters",
    "string_type": _fixed("Enter this as text"),
    "string_unicode": _fixed("Enter text without unreadable characters"),
    "string_not_ascii": _fixed("Use only plain letters, digits and punctuation"),
    "json_invalid": lambda ctx, _: (
        f"This is not valid JSON ({ctx['error']})" if ctx.get("error") else "This is not valid JSON"
    ),
    "json_type": _fixed("Send this as JSON text"),
    "decimal_parsing": _fixed(NUMBER),
    "decimal_type": _fixed(NUMBER),
    "float_parsing": _fixed(NUMBER),
    "float_type": _fixed(NUMBER),
    "finite_number": _fixed(NUMBER),
    "decimal_max_places": _decimal_places,
    "decimal_max_digits": lambda ctx, _: f"Use at most {ctx.get('max_digits')} digits",
    "decimal_whole_digits": lambda ctx, _: (
        f"Use at most {ctx.get('whole_digits')} digits before the decimal point"
    ),
    "int_parsing": _fixed(WHOLE_NUMBER),
    "int_type": _fixed(WHOLE_NUMBER),
    "int_from_float": _fixed(f"{WHOLE_NUMBER}, without decimals"),
    "int_parsing_size": _fixed("Enter a smaller number"),
    "greater_than": lambda ctx, _: f"Enter a number above {_number(ctx.get('gt'))}",
    "greater_than_equal": lambda ctx, _: f"Enter {_number(ctx.get('ge'))} or more",
    "less_than": lambda ctx, _: f"Enter a number below {_number(ctx.get('lt'))}",
    "less_than_equal": lambda ctx, _: f"Enter {_number(ctx.get('le'))} or less",
    "multiple_of": lambda ctx, _: f"Enter a multiple of {_number(ctx.get('multiple_of'))}",
    "enum": _choices,
    "literal_error": _choices,
    "bool_parsing": _fixed("Use true or false"),
    "bool_type": _fixed("Use true or false"),
    "uuid_parsing": _fixed("Enter an id such as 3fa85f64-5717-4562-b3fc-2c963f66afa6"),
    "uuid_type": _fixed("Enter an id such as 3fa85f64-5717-4562-b3fc-2c963f66afa6"),
    "uuid_version": _fixed("Enter an id such as 3fa85f64-5717-4562-b3fc-2c963f66afa6"),
    "datetime_parsing": _fixed("Enter a date and time, like 2025-01-31T18:30:00Z"),
    "datetime_type": _fixed("Enter a date and time, like 2025-01-31T18:30:00Z"),
    "datetime_from_date_parsing": _fixed("Enter a date and time, like 2025-01-31T18:30:00Z"),
    "datetime_object_invalid": _fixed("Enter a date and time, like 2025-01-31T18:30:00Z"),
    "datetime_past": _fixed("Enter a date and time in the past"),
    "datetime_future": _fixed("Enter a date and time in the future"),
    "date_parsing": _fixed("Enter a date, like 2025-01-31"),
    "date_type": _fixed("Enter a date, like 2025-01-31"),
    "date_from_datetime_parsing": _fixed("Enter a date, like 2025-01-31"),
    "date_from_datetime_inexact": _fixed("Enter a date without a time of day, like 2025-01-31"),
    "date_past": _fixed("Enter a date in the past"),
    "date_future": _fixed("Enter a date in the future"),
    "time_parsing": _fixed("Enter a time on the 24-hour clock, like 22:30"),
    "time_type": _fixed("Enter a time on the 24-hour clock, like 22:30"),
    "time_delta_parsing": _fixed("Enter a duration in seconds, like 3600"),
    "time_delta_type": _fixed("Enter a duration in seconds, like 3600"),
    "timezone_naive": _fixed("Leave out the time zone"),
    "timezone_aware": _fixed("Add a time zone, like 2025-01-31T18:30:00Z"),
    "timezone_offset": _fixed("Use the time zone this field expects"),
    "url_parsing": _fixed("Enter a web address starting with https://"),
    "url_type": _fixed("Enter a web address starting with https://"),
    "url_syntax_violation": _fixed("Enter a web address starting with https://"),
    "url_scheme": _fixed("Enter a web address starting with https://"),
    "url_too_long": lambda ctx, _: (
        f"Use a web address of at most {_number(ctx.get('max_length'))} characters"
    ),
    "model_type": _fixed("Send an object (in curly braces) here"),
    "model_attributes_type": _fixed("Send an object (in curly braces) here"),
    "dict_type": _fixed("Send an object (in curly braces) here"),
    "mapping_type": _fixed("Send an object (in curly braces) here"),
    "dataclass_type": _fixed("Send an object (in curly braces) here"),
    "list_type": _fixed("Send a list (in square brackets) here"),
    "tuple_type": _fixed("Send a list (in square brackets) here"),
    "set_type": _fixed("Send a list (in square brackets) here"),
    "frozen_set_type": _fixed("Send a list (in square brackets) here"),
    "iterable_type": _fixed("Send a list (in square brackets) here"),
    "set_item_not_hashable": _fixed("Use only plain values in this list"),
    "none_required": _fixed("Leave this empty"),
    "frozen_field": _fixed("This field cannot be changed"),
    "frozen_instance": _fixed("This cannot be changed"),
    "union_tag_invalid": _fixed("Choose one of the accepted kinds"),
    "union_tag_not_found": _fixed("Say which kind this is"),
    "bytes_too_short": lambda ctx, _: f"Use at least {_number(ctx.get('min_length'))} bytes",
    "bytes_too_long": lambda ctx, _: f"Use at most {_number(ctx.get('max_length'))} bytes",
}

# Lists and maps: the verb and noun of "Choose at least one marketplace".
_ITEMS: dict[str, tuple[str, str]] = {
    "keywords": ("Enter", "keyword"),
    "exclude_keywords": ("Enter", "keyword"),
    "marketplaces": ("Choose", "marketplace"),
    "alert_channels": ("Choose", "alert channel"),
    "scopes": ("Choose", "scope"),
    "apprise_urls": ("Enter", "Apprise URL"),
    "marketplace_options": ("Give options for", "marketplace"),
}

# The formats a `pattern=` asks for, said by the field that asks.
_PATTERN_MESSAGES: dict[str, str] = {
    "currency": "Use a three-letter currency code such as GBP, EUR or USD",
    "quiet_hours_start": "Enter a time on the 24-hour clock, like 22:30",
    "quiet_hours_end": "Enter a time on the 24-hour clock, like 07:00",
    "city": "Use the city's short name from the site's address, such as sfbay or london",
    "area_id": "Enter the area's number: up to 6 digits",
    "latitude": "Enter a latitude such as 51.5074",
    "longitude": "Enter a longitude such as -0.1278",
    "subreddit": "Enter the subreddit's name without r/, such as hardwareswap",
    "url": "Enter an address starting with http:// or https://",
}

# Where one field's rule deserves its own words, whatever the generic ones say.
_FIELD_MESSAGES: dict[tuple[str, str], str] = {
    ("name", "string_too_short"): "Give it a name",
    ("keywords", "too_short"): "Enter at least one keyword",
    ("marketplaces", "too_short"): "Choose at least one marketplace",
    ("email", "missing"): "Enter your email address",
    ("check_frequency_minutes", "less_than_equal"): "Check at least once a day: enter 1440 or less",
}
