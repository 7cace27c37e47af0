"""Routes of /api/v1/users: the signed-in user's own account."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, BackgroundTasks, Response, status

from app.api.deps import (
    AccountMailerDep,
    ClientIP,
    CurrentUser,
    DeliveryDep,
    LoggedInUser,
    SessionDep,
    ThrottleDep,
    TokenPolicyDep,
    URLPolicyDep,
)
from app.models import AlertStatus
from app.schemas.alerts import AlertOut, TestAlertIn, TestAlertResult
from app.schemas.auth import PasswordChangeIn, TokenPair
from app.schemas.users import (
    EmailVerificationSent,
    UserLimits,
    UserOut,
    UserStats,
    UserUpdate,
    UserUpdated,
    WebhookSecretRotated,
)
from app.services import accounts, alerts, email_links, users

router = APIRouter(prefix="/users", tags=["users"])

_AUTH: dict[int | str, dict[str, Any]] = {401: {"description": "Missing or invalid token"}}
_UPDATE_ERRORS: dict[int | str, dict[str, Any]] = {
    **_AUTH,
    422: {
        "description": "Invalid or unknown field, a webhook URL that is not public, "
        "a disallowed Apprise URL, or half-set quiet hours"
    },
}


@router.get("/me", response_model=UserOut, responses=_AUTH)
async def read_me(user: CurrentUser) -> UserOut:
    return UserOut.model_validate(user)


@router.put("/me", response_model=UserUpdated, responses=_UPDATE_ERRORS)
async def replace_me(
    body: UserUpdate, session: SessionDep, user: CurrentUser, url_policy: URLPolicyDep
) -> UserUpdated:
    """Update the fields sent (same as PATCH). A new webhook URL returns its signing secret,
    once."""
    secret = await users.update_profile(session, user, body, url_policy=url_policy)
    return UserUpdated.of(user, secret)


@router.patch("/me", response_model=UserUpdated, responses=_UPDATE_ERRORS)
async def update_me(
    body: UserUpdate, session: SessionDep, user: CurrentUser, url_policy: URLPolicyDep
) -> UserUpdated:
    """Update the fields sent. A new webhook URL returns its signing secret, once."""
    secret = await users.update_profile(session, user, body, url_policy=url_policy)
    return UserUpdated.of(user, secret)


@router.delete("/me", status_code=status.HTTP_204_NO_CONTENT, responses=_AUTH)
async def delete_me(session: SessionDep, user: LoggedInUser) -> Response:
    """Delete the account and everything of it (searches, matches, alerts); not undoable."""
    await users.delete_account(session, user)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/me/password",
    response_model=TokenPair,
    responses={
        **_AUTH,
        422: {"description": "Wrong current password, or a new one that is too short"},
        429: {"description": "Too many wrong passwords; see Retry-After"},
    },
)
async def change_my_password(
    body: PasswordChangeIn,
    session: SessionDep,
    user: LoggedInUser,
    policy: TokenPolicyDep,
    throttle: ThrottleDep,
    ip: ClientIP,
) -> TokenPair:
    """Change the password (the current one is required). Every session and token of the
    account ends, this one included; the answer is a fresh pair for this client."""
    await accounts.change_password(
        session,
        throttle,
        user,
        current_password=body.current_password,
        new_password=body.new_password,
        ip=ip,
    )
    return await accounts.issue_tokens(session, user, policy)


@router.post(
    "/me/email-verification",
    response_model=EmailVerificationSent,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        **_AUTH,
        409: {"description": "The address is already verified"},
        429: {"description": "A link was sent moments ago; see Retry-After"},
        503: {"description": "This server cannot send email"},
    },
)
async def send_email_verification(
    session: SessionDep,
    user: CurrentUser,
    mailer: AccountMailerDep,
    background: BackgroundTasks,
) -> EmailVerificationSent:
    """Mail a new verification link (valid 48 hours, usable once) to your address."""
    mail = await email_links.verification_mail(session, mailer, user)
    background.add_task(email_links.send_pending, mailer, mail)
    return EmailVerificationSent(sent_to=user.email)


@router.get("/me/stats", response_model=UserStats, responses=_AUTH)
async def read_my_stats(session: SessionDep, user: CurrentUser) -> UserStats:
    return await users.stats(session, owner_id=user.id)


@router.get("/me/limits", response_model=UserLimits, responses=_AUTH)
async def read_my_limits(session: SessionDep, user: CurrentUser) -> UserLimits:
    """Your plan's limits, your current usage and what is left."""
    return await users.limits(session, user)


@router.post(
    "/me/test-alert",
    response_model=TestAlertResult,
    responses={
        **_AUTH,
        422: {"description": "Unknown channel"},
        429: {"description": "Daily test alerts used up; see Retry-After"},
    },
)
async def send_test_alert(
    body: TestAlertIn, session: SessionDep, user: CurrentUser, delivery: DeliveryDep
) -> TestAlertResult:
    """Send a test message on one channel now and report how its delivery went."""
    alert = await alerts.send_test_alert(session, delivery, owner=user, channel=body.channel.value)
    out = AlertOut.model_validate(alert)
    return TestAlertResult(delivered=out.status == AlertStatus.SENT.value, alert=out)


@router.post(
    "/me/webhook-secret",
    response_model=WebhookSecretRotated,
    responses={**_AUTH, 422: {"description": "No webhook URL set"}},
)
async def rotate_webhook_secret(session: SessionDep, user: CurrentUser) -> WebhookSecretRotated:
    """Rotate the webhook signing secret; both secrets sign every message for 24 hours."""
    secret, old_until = await users.rotate_webhook_secret(session, user)
    return WebhookSecretRotated(webhook_secret=secret, previous_secret_valid_until=old_until)
