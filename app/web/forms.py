"""HTML forms to and from the API's schemas: a posted form becomes the same body the API
takes (validated by the same models), and validation errors become messages per field."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import FormData

from app.errors import DomainError
from app.marketplaces import registry as marketplace_registry
from app.models import Search, SearchTemplate, User
from app.schemas import messages
from app.schemas.searches import SearchCreate

# The criteria the search form edits; any other criterion (a marketplace's own options)
# is kept as it was.
CRITERIA_FIELDS = (
    "keywords",
    "exclude_keywords",
    "min_price",
    "max_price",
    "currency",
    "location",
    "radius_km",
    "condition",
    "category",
)
SEARCH_FIELDS = (
    "name",
    "description",
    "criteria",
    "marketplaces",
    "alert_channels",
    "check_frequency_minutes",
    "alert_on_first_check",
    "alert_on_price_drop",
    "alert_mode",
)
FORM_ERROR = "form"
# What the search form calls each input, for the summary of problems above its button.
SEARCH_LABELS = {
    "name": "Name",
    "keywords": "Keywords",
    "exclude_keywords": "Leave out listings mentioning",
    "criteria": "What to look for",
    "min_price": "Lowest price",
    "max_price": "Highest price",
    "currency": "Currency",
    "location": "Location",
    "radius_km": "Within (km)",
    "condition": "Condition",
    "category": "Category",
    "description": "Notes",
    "marketplaces": "Marketplaces",
    "alert_channels": "Alerts",
    "check_frequency_minutes": "Check every (minutes)",
    "alert_mode": "When to send",
}
# A marketplace's own option is posted as `option:<marketplace>:<key>`.
OPTION_PREFIX = "option:"
_LIST_SEPARATORS = re.compile(r"[\r\n,]+")


def search_body(form: FormData, *, kept: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The SearchCreate body a search form describes. `kept` holds what the search (or the
    template it starts from) has beyond what the form edits; those values stay as they are."""
    kept = kept or {}
    criteria: dict[str, Any] = {
        key: value
        for key, value in (kept.get("criteria") or {}).items()
        if key not in CRITERIA_FIELDS
    }
    criteria["keywords"] = split_list(text(form, "keywords"))
    criteria["exclude_keywords"] = split_list(text(form, "exclude_keywords"))
    for key in CRITERIA_FIELDS[2:]:
        value = text(form, key)
        if value:
            criteria[key] = value
    criteria.pop("require_price", None)
    if "require_price" in form:
        criteria["require_price"] = True
    marketplaces = form.getlist("marketplaces")
    options = _posted_options(form)
    if options is not None:  # the form offered options: what it sends replaces the old ones
        criteria.pop("marketplace_options", None)
        chosen = {name: values for name, values in options.items() if name in marketplaces}
        if chosen:
            criteria["marketplace_options"] = chosen
    body = {key: value for key, value in kept.items() if key not in SEARCH_FIELDS}
    body.update(
        name=text(form, "name"),
        description=text(form, "description") or None,
        criteria=criteria,
        marketplaces=marketplaces,
        alert_channels=form.getlist("alert_channels"),
        check_frequency_minutes=text(form, "check_frequency_minutes"),
        alert_on_first_check="alert_on_first_check" in form,
        alert_on_price_drop="alert_on_price_drop" in form,
        alert_mode=text(form, "alert_mode") or "instant",
    )
    return body


def search_values(source: Search | SearchTemplate | Mapping[str, Any] | None) -> dict[str, Any]:
    """What the search form shows: a saved search, a template, a body that failed
    validation, or (None) a new search's defaults."""
    if source is None:
        return search_values({"criteria": {}, "alert_channels": ["in_app"]})
    if isinstance(source, Mapping):
        data = dict(source)
    else:
        data = {field: getattr(source, field, None) for field in SEARCH_FIELDS}
        data["alert_channels"] = data["alert_channels"] or ["in_app"]
    criteria = data.get("criteria") or {}
    values: dict[str, Any] = {
        key: "" if criteria.get(key) is None else str(criteria[key]) for key in CRITERIA_FIELDS[2:]
    }
    values.update(
        options={
            f"{OPTION_PREFIX}{marketplace}:{key}": str(value)
            for marketplace, given in (criteria.get("marketplace_options") or {}).items()
            for key, value in given.items()
        },
        name=data.get("name") or "",
        description=data.get("description") or "",
        keywords="\n".join(criteria.get("keywords") or []),
        exclude_keywords="\n".join(criteria.get("exclude_keywords") or []),
        require_price=bool(criteria.get("require_price")),
        marketplaces=list(data.get("marketplaces") or []),
        alert_channels=list(data.get("alert_channels") or []),
        check_frequency_minutes=str(data.get("check_frequency_minutes") or 30),
        alert_on_first_check=bool(data.get("alert_on_first_check")),
        alert_on_price_drop=bool(data.get("alert_on_price_drop")),
        alert_mode=str(data.get("alert_mode") or "instant"),
    )
    return values


def option_fields(schema: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The inputs for a marketplace's own options, from their JSON Schema: each with its
    key, label, hint and whether it is required."""
    if not schema:
        return []
    required = set(schema.get("required", []))
    return [
        {
            "key": key,
            "label": spec.get("title") or key,
            "hint": spec.get("description") or "",
            "required": key in required,
        }
        for key, spec in schema.get("properties", {}).items()
    ]


def kept_values(search: Search) -> dict[str, Any]:
    """Everything a saved search has that a full replacement (PUT) would otherwise reset."""
    return {field: getattr(search, field) for field in SearchCreate.model_fields}


def settings_changes(form: FormData, user: User) -> dict[str, Any]:
    """The UserUpdate body of the settings form: only the fields whose value changed, so
    saving an unchanged webhook URL does not count as setting it again."""
    wanted: dict[str, Any] = {
        "full_name": text(form, "full_name") or None,
        "timezone": text(form, "timezone"),
        "phone_number": text(form, "phone_number") or None,
        "webhook_url": text(form, "webhook_url") or None,
        "apprise_urls": split_list(text(form, "apprise_urls"), commas=False),
        "quiet_hours_start": text(form, "quiet_hours_start") or None,
        "quiet_hours_end": text(form, "quiet_hours_end") or None,
    }
    current = settings_values(user)
    return {key: value for key, value in wanted.items() if _shown(value) != current[key]}


def settings_values(user: User) -> dict[str, Any]:
    """What the settings form shows for the user, each value as the form holds it."""
    return {
        "full_name": user.full_name or "",
        "timezone": user.timezone,
        "phone_number": user.phone_number or "",
        "webhook_url": user.webhook_url or "",
        "apprise_urls": "\n".join(user.apprise_urls or []),
        "quiet_hours_start": _hh_mm(user.quiet_hours_start),
        "quiet_hours_end": _hh_mm(user.quiet_hours_end),
    }


def field_errors(error: ValidationError, *, prefix_lists: bool = True) -> dict[str, str]:
    """One message per form field from a schema's validation error, in words for people
    (app/schemas/messages.py). A nested field is named by its last name (criteria.keywords
    -> keywords); an error about a whole object goes to that object's name (criteria), or
    to "form" at the top. With `prefix_lists`, a message about one entry of a list says
    which entry."""
    found: dict[str, list[str]] = {}
    for item in error.errors():
        field = messages.field_name(item["loc"]) or FORM_ERROR
        message = messages.human_message(item)
        positions = [part for part in item["loc"] if isinstance(part, int)]
        if positions and prefix_lists:
            message = f"{_entry(item['input'], positions[-1])}: {message}"
        found.setdefault(field, []).append(message)
    return {field: "; ".join(dict.fromkeys(texts)) for field, texts in found.items()}


def domain_errors(error: DomainError) -> dict[str, str]:
    """A service's refusal as form messages: on the input it names, if it names one."""
    if error.field is not None:
        return input_error(error.field, error.detail)
    options_path = f"{marketplace_registry.OPTIONS_PATH}."
    if not error.detail.startswith(options_path):
        return {FORM_ERROR: error.detail}
    # Several marketplace options at fault: "<path>: <message>; <path>: <message>".
    errors: dict[str, str] = {}
    for problem in error.detail.split("; "):
        path, _, message = problem.partition(": ")
        for name, text in input_error(path, message).items():
            errors[name] = f"{errors[name]}; {text}" if name in errors else text
    return errors


def input_error(field: str, detail: str) -> dict[str, str]:
    """A service's error about one field of the body, keyed by the input that edits it:
    criteria.marketplace_options.rss.url is the input `option:rss:url`; an option of no
    single input (a marketplace's options as a whole) goes to the marketplaces."""
    options_path = f"{marketplace_registry.OPTIONS_PATH}."
    if field.startswith(options_path):
        marketplace, _, key = field.removeprefix(options_path).partition(".")
        detail = detail.removeprefix(f"{field}: ")
        if not key:
            return {"marketplaces": detail}
        return {f"{OPTION_PREFIX}{marketplace}:{key.split('.')[0]}": detail}
    return {field.rsplit(".", 1)[-1]: detail}


def _entry(value: Any, position: int) -> str:
    """How a message names one entry of a list: by what was typed, when it was text."""
    if isinstance(value, str) and value.strip():
        shown = value.strip()
        return f"“{shown[:37]}…”" if len(shown) > 40 else f"“{shown}”"
    return f"Entry {position + 1}"


def _posted_options(form: FormData) -> dict[str, dict[str, str]] | None:
    """The marketplace options the form sent (blank ones left out), or None when it
    offered none."""
    names = [name for name in form if name.startswith(OPTION_PREFIX)]
    if not names:
        return None
    options: dict[str, dict[str, str]] = {}
    for name in names:
        marketplace, _, key = name.removeprefix(OPTION_PREFIX).partition(":")
        value = text(form, name)
        if value:
            options.setdefault(marketplace, {})[key] = value
    return options


def split_list(text: str, *, commas: bool = True) -> list[str]:
    """Lines (and, unless told otherwise, comma-separated parts) of a text box, stripped,
    without blanks."""
    parts = _LIST_SEPARATORS.split(text) if commas else text.splitlines()
    return [part.strip() for part in parts if part.strip()]


def text(form: FormData, name: str, *, strip: bool = True) -> str:
    """A text field's value ("" when missing, or a file where text was expected)."""
    value = form.get(name)
    if not isinstance(value, str):
        return ""
    return value.strip() if strip else value


def _shown(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list):
        return "\n".join(value)
    return value


def _hh_mm(value: Any) -> str:
    return value.strftime("%H:%M") if value is not None else ""
