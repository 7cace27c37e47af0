"""Settings: where alerts go (email, phone, webhook with its signing secret, Apprise URLs),
quiet hours and time zone, and a test alert on any channel."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from app.alerts import delivery
from app.api.deps import (
    ClientIP,
    DeliveryDep,
    SessionDep,
    SettingsDep,
    ThrottleDep,
    TokenPolicyDep,
    URLPolicyDep,
)
from app.errors import Conflict, InvalidInput, ServiceUnavailable, TooManyRequests
from app.models import AlertStatus, User
from app.schemas.alerts import TestAlertIn
from app.schemas.auth import PasswordChangeIn
from app.schemas.phone_verification import PhoneCodeIn
from app.schemas.users import UserUpdate
from app.services import accounts, alerts, phone_verification, users
from app.web import forms
from app.web.account import start_session
from app.web.render import page_url, redirect, render
from app.web.session import CheckedForm, WebUser

router = APIRouter()

# Zones offered as suggestions; any IANA name is accepted.
COMMON_TIMEZONES = (
    "UTC",
    "Europe/London",
    "Europe/Dublin",
    "Europe/Paris",
    "Europe/Berlin",
    "Europe/Madrid",
    "Europe/Amsterdam",
    "Europe/Stockholm",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Toronto",
    "Australia/Sydney",
    "Asia/Tokyo",
)


@router.get("/settings", name="settings")
async def settings_page(request: Request, user: WebUser) -> Response:
    return _page(request, user, values=forms.settings_values(user))


@router.post("/settings")
async def save_settings(
    request: Request,
    form: CheckedForm,
    session: SessionDep,
    user: WebUser,
    url_policy: URLPolicyDep,
) -> Response:
    changes = forms.settings_changes(form, user)
    values = {**forms.settings_values(user), **{k: forms.text(form, k) for k in changes}}
    try:
        update = UserUpdate.model_validate(changes)
        secret = await users.update_profile(session, user, update, url_policy=url_policy)
    except ValidationError as exc:
        return _page(request, user, values=values, errors=forms.field_errors(exc), status_code=422)
    except InvalidInput as exc:
        field = exc.field or "quiet_hours"
        detail = exc.detail
        if field == "quiet_hours" and not (
            values["quiet_hours_start"] and values["quiet_hours_end"]
        ):
            # The service names the API's fields; here they are the two times of the form.
            detail = "Set both times, or clear both"
        return _page(request, user, values=values, errors={field: detail}, status_code=422)
    if secret is not None:
        # The only time the secret is shown: on this page, never in a redirect or cookie.
        return _page(request, user, values=forms.settings_values(user), new_secret=secret)
    return redirect(request, page_url(request, "settings"), notice="Settings saved.")


@router.post("/settings/webhook-secret", name="rotate_webhook_secret")
async def rotate_webhook_secret(
    request: Request, _form: CheckedForm, session: SessionDep, user: WebUser
) -> Response:
    secret, old_until = await users.rotate_webhook_secret(session, user)
    return _page(
        request,
        user,
        values=forms.settings_values(user),
        new_secret=secret,
        previous_secret_until=old_until,
    )


@router.post("/settings/webhook-enable", name="enable_webhook")
async def enable_webhook(
    request: Request,
    _form: CheckedForm,
    session: SessionDep,
    user: WebUser,
    url_policy: URLPolicyDep,
) -> Response:
    """Turn a webhook disabled after failures back on (by saving its URL again)."""
    if not user.webhook_url:
        raise InvalidInput("There is no webhook URL to turn back on")
    update = UserUpdate.model_validate({"webhook_url": user.webhook_url})
    await users.update_profile(session, user, update, url_policy=url_policy)
    return redirect(request, page_url(request, "settings"), notice="Webhook turned back on.")


@router.post("/settings/password", name="change_password")
async def change_password(
    request: Request,
    form: CheckedForm,
    session: SessionDep,
    user: WebUser,
    policy: TokenPolicyDep,
    throttle: ThrottleDep,
    settings: SettingsDep,
    ip: ClientIP,
) -> Response:
    values = forms.settings_values(user)
    try:
        body = PasswordChangeIn.model_validate(
            {
                "current_password": forms.text(form, "current_password", strip=False),
                "new_password": forms.text(form, "new_password", strip=False),
            }
        )
        await accounts.change_password(
            session,
            throttle,
            user,
            current_password=body.current_password,
            new_password=body.new_password,
            ip=ip,
        )
    except ValidationError as exc:
        return _page(request, user, values=values, errors=forms.field_errors(exc), status_code=422)
    except InvalidInput as exc:
        errors = {exc.field or forms.FORM_ERROR: exc.detail}
        return _page(request, user, values=values, errors=errors, status_code=422)
    response = redirect(
        request,
        page_url(request, "settings"),
        notice=(
            "Password changed. Every other device is signed out and your API tokens are revoked."
        ),
    )
    # Every session ended, this browser's too: it gets a new one.
    await start_session(request, response, session, policy, settings, user)
    return response


@router.post("/settings/phone/send-code", name="send_phone_code")
async def send_phone_code(
    request: Request,
    _form: CheckedForm,
    session: SessionDep,
    user: WebUser,
    delivery: DeliveryDep,
) -> Response:
    back = page_url(request, "settings")
    try:
        sent = await phone_verification.send_code(session, delivery, user)
    except InvalidInput as exc:
        errors = {exc.field or forms.FORM_ERROR: exc.detail}
        return _page(
            request, user, values=forms.settings_values(user), errors=errors, status_code=422
        )
    except (Conflict, TooManyRequests, ServiceUnavailable) as exc:
        return redirect(request, back, notice=exc.detail, level="error")
    minutes = sent.expires_in_s // 60
    return redirect(
        request,
        back,
        notice=f"A code is on its way to {sent.sent_to}. Enter it below within {minutes} minutes.",
    )


@router.post("/settings/phone/verify", name="verify_phone")
async def verify_phone(
    request: Request, form: CheckedForm, session: SessionDep, user: WebUser
) -> Response:
    values = forms.settings_values(user)
    try:
        body = PhoneCodeIn.model_validate({"code": forms.text(form, "code")})
        await phone_verification.confirm_code(session, user, body.code)
    except ValidationError as exc:
        return _page(request, user, values=values, errors=forms.field_errors(exc), status_code=422)
    except InvalidInput as exc:
        errors = {exc.field or forms.FORM_ERROR: exc.detail}
        return _page(request, user, values=values, errors=errors, status_code=422)
    except Conflict as exc:
        return redirect(request, page_url(request, "settings"), notice=exc.detail)
    return redirect(
        request,
        page_url(request, "settings"),
        notice="Your phone number is verified: SMS alerts can go to it.",
    )


@router.post("/settings/test-alert", name="test_alert")
async def send_test_alert(
    request: Request,
    form: CheckedForm,
    session: SessionDep,
    user: WebUser,
    delivery: DeliveryDep,
) -> Response:
    try:
        channel = TestAlertIn.model_validate({"channel": forms.text(form, "channel")}).channel
    except ValidationError as exc:
        raise InvalidInput("Choose one of the alert channels") from exc
    alert = await alerts.send_test_alert(session, delivery, owner=user, channel=channel.value)
    if alert.status == AlertStatus.SENT.value:
        return redirect(
            request, page_url(request, "settings"), notice=f"Test alert sent by {channel.value}."
        )
    reason = alert.last_error or f"it is {alert.status}"
    return redirect(
        request,
        page_url(request, "settings"),
        notice=f"Test alert by {channel.value} not delivered: {reason}",
        level="error",
    )


def _page(
    request: Request,
    user: User,
    *,
    values: dict[str, Any],
    errors: dict[str, str] | None = None,
    status_code: int = 200,
    new_secret: str | None = None,
    previous_secret_until: datetime | None = None,
) -> Response:
    return render(
        request,
        "settings.html",
        status_code=status_code,
        values=values,
        errors=errors or {},
        new_secret=new_secret,
        previous_secret_until=previous_secret_until,
        channel_choices=alerts.channel_choices(user, request.app.state.delivery_runtime.channels),
        webhook_disable_days=delivery.WEBHOOK_DISABLE_AFTER.days,
        can_send_phone_codes=phone_verification.can_send_codes(request.app.state.delivery_runtime),
        timezones=COMMON_TIMEZONES,
    )
