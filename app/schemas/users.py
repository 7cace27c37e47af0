"""User bodies. The notification settings live here too (the alerts issue uses them)."""

from __future__ import annotations

import uuid
import zoneinfo
from datetime import datetime, time
from functools import lru_cache
from typing import Annotated, Any, Literal

import phonenumbers
from pydantic import AfterValidator, Field, field_serializer, field_validator, model_validator

from app.schemas.common import InputModel, OutputModel
from app.security import ssrf

MAX_APPRISE_URLS = 10
QUIET_TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"

WebhookStatus = Literal["not_set", "active", "failing", "disabled"]


class EmailVerificationSent(OutputModel):
    sent_to: str


class UserOut(OutputModel):
    id: uuid.UUID
    email: str
    full_name: str | None
    plan: str
    is_active: bool
    email_verified: bool
    timezone: str
    phone_number: str | None
    # SMS alerts go only to a number that answered a code (POST /users/me/phone/verify).
    phone_verified: bool
    webhook_url: str | None
    # The secret itself is shown once, when it is made (UserUpdated.webhook_secret).
    has_webhook_secret: bool = False
    webhook_status: WebhookStatus = Field(
        default="not_set",
        description="not_set: no URL; active: the last delivery worked (or none yet); "
        "failing: deliveries fail since webhook_failing_since; disabled: no more deliveries "
        "(see webhook_disabled_reason) until the URL is saved again",
    )
    webhook_failing_since: datetime | None = None
    webhook_disabled_at: datetime | None = None
    webhook_disabled_reason: str | None = None
    apprise_urls: list[str]
    quiet_hours_start: time | None
    quiet_hours_end: time | None
    created_at: datetime

    @model_validator(mode="before")
    @classmethod
    def _from_user(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return data
        # Never copy the secret itself: an update response adds it explicitly, once.
        values = {
            name: getattr(data, name)
            for name in cls.model_fields
            if name != "webhook_secret" and hasattr(data, name)
        }
        values["has_webhook_secret"] = getattr(data, "webhook_secret", None) is not None
        values["webhook_status"] = _webhook_status(data)
        return values

    @field_serializer("quiet_hours_start", "quiet_hours_end")
    def _hh_mm(self, value: time | None) -> str | None:
        return None if value is None else value.strftime("%H:%M")


def _webhook_status(user: Any) -> WebhookStatus:
    if not getattr(user, "webhook_url", None):
        return "not_set"
    if getattr(user, "webhook_disabled_at", None) is not None:
        return "disabled"
    if getattr(user, "webhook_failing_since", None) is not None:
        return "failing"
    return "active"


class UserUpdated(UserOut):
    """The profile after an update; `webhook_secret` is set only when this update made a new
    signing secret (the webhook URL was set or changed), and is never shown again."""

    webhook_secret: str | None = None

    @classmethod
    def of(cls, user: Any, webhook_secret: str | None) -> UserUpdated:
        return cls.model_validate(user).model_copy(update={"webhook_secret": webhook_secret})


def _timezone_name(value: str) -> str:
    if value not in _iana_zone_names():
        raise ValueError("Use a time zone name such as Europe/London or UTC")
    return value


@lru_cache(maxsize=1)
def _iana_zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _e164(value: str) -> str:
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(
            "Enter the number in international form, starting with + and the country code, "
            "such as +447700900123"
        ) from exc
    if not phonenumbers.is_valid_number(number):
        raise ValueError("This is not a valid phone number: check the digits and the country code")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _apprise_url(value: str) -> str:
    try:
        return ssrf.check_apprise_url(value)
    except ssrf.UnsafeURL as exc:
        raise ValueError(exc.detail) from exc


AppriseURL = Annotated[str, Field(min_length=1, max_length=2048), AfterValidator(_apprise_url)]
QuietTime = Annotated[str, Field(pattern=QUIET_TIME_PATTERN, examples=["22:30"])]


class UserUpdate(InputModel):
    """A partial update of the profile and notification settings: only the fields sent change.

    `null` clears full_name, phone_number, webhook_url and the quiet hours. Plan, admin,
    billing and verification fields are not accepted here.
    """

    full_name: str | None = Field(default=None, max_length=200)
    timezone: Annotated[str, Field(max_length=64), AfterValidator(_timezone_name)] = "UTC"
    phone_number: Annotated[str, Field(max_length=32), AfterValidator(_e164)] | None = None
    webhook_url: str | None = Field(default=None, min_length=1, max_length=ssrf.MAX_URL_LENGTH)
    apprise_urls: list[AppriseURL] = Field(default_factory=list, max_length=MAX_APPRISE_URLS)
    quiet_hours_start: QuietTime | None = None
    quiet_hours_end: QuietTime | None = None

    @field_validator("full_name")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("apprise_urls")
    @classmethod
    def _unique(cls, urls: list[str]) -> list[str]:
        return list(dict.fromkeys(urls))

    def changes(self) -> dict[str, Any]:
        """The fields the client sent, quiet hours as `time` values."""
        values = self.model_dump(exclude_unset=True)
        for key in ("quiet_hours_start", "quiet_hours_end"):
            if values.get(key) is not None:
                values[key] = time.fromisoformat(values[key])
        return values


class UserStats(OutputModel):
    searches_total: int
    searches_active: int
    matches_last_24h: int
    matches_last_7d: int
    alerts_sent: int
    last_check_at: datetime | None


class PlanLimitsOut(OutputModel):
    max_active_searches: int | None = Field(description="null means unlimited")
    max_marketplaces_per_search: int
    min_check_frequency_minutes: int
    manual_checks_per_day: int
    test_alerts_per_day: int
    sms_per_day: int


class UsageOut(OutputModel):
    active_searches: int
    searches_total: int
    manual_checks_today: int = Field(description="Manual checks used this UTC day")


class RemainingOut(OutputModel):
    active_searches: int | None = Field(description="null means unlimited")
    manual_checks_today: int


class UserLimits(OutputModel):
    plan: str
    limits: PlanLimitsOut
    usage: UsageOut
    remaining: RemainingOut


class WebhookSecretRotated(OutputModel):
    """The new signing secret (shown this once) and when the previous one stops signing."""

    webhook_secret: str
    previous_secret_valid_until: datetime
