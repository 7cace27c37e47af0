"""Routes of /api/v1/auth: sign-up, login (JSON and OAuth2 form), refresh, logout."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from app.api.deps import (
    AccountMailerDep,
    ClientIP,
    LoggedInUser,
    SessionDep,
    SettingsDep,
    ThrottleDep,
    TokenPolicyDep,
)
from app.schemas.auth import (
    Accepted,
    LoginIn,
    PasswordResetConfirmIn,
    PasswordResetIn,
    RefreshIn,
    RegisterIn,
    TokenIn,
    TokenPair,
)
from app.schemas.users import UserOut
from app.services import accounts, email_links, plans

router = APIRouter(prefix="/auth", tags=["auth"])

RESET_ACCEPTED = "If an account has this address, a link to reset its password is on its way."

AUTH_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "Bad credentials or token"},
    429: {"description": "Too many attempts; see Retry-After"},
}


@router.post(
    "/register",
    response_model=UserOut,
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "Email taken"}, 429: AUTH_ERRORS[429]},
)
async def register(
    body: RegisterIn,
    session: SessionDep,
    throttle: ThrottleDep,
    ip: ClientIP,
    mailer: AccountMailerDep,
    background: BackgroundTasks,
    settings: SettingsDep,
) -> UserOut:
    """Create an account. Its email address is unverified until the link mailed to it is
    followed; until then no alert is sent to it by email."""
    await throttle.hit_ip(ip, "register")
    user = await accounts.register(
        session,
        email=body.email,
        password=body.password,
        full_name=body.full_name,
        plan=plans.signup_plan(settings),
    )
    mail = await email_links.first_verification_mail(session, mailer, user)
    if mail is not None:
        # After the response, so the link is committed before it can arrive.
        background.add_task(email_links.send_pending, mailer, mail)
    return UserOut.model_validate(user)


@router.post(
    "/verify-email",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={422: {"description": "The link is not valid any more"}},
)
async def verify_email(body: TokenIn, session: SessionDep) -> Response:
    """Confirm an email address with the token from the link mailed to it."""
    await email_links.verify_email(session, body.token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/password-reset",
    response_model=Accepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses={429: AUTH_ERRORS[429]},
)
async def request_password_reset(
    body: PasswordResetIn,
    session: SessionDep,
    throttle: ThrottleDep,
    ip: ClientIP,
    mailer: AccountMailerDep,
    background: BackgroundTasks,
) -> Accepted:
    """Mail a link (valid one hour, usable once) to reset the password of the account
    with this address. The answer is the same whether or not such an account exists."""
    await throttle.hit_ip(ip, "password-reset")
    mail = await email_links.reset_mail(session, mailer, body.email)
    if mail is not None:
        background.add_task(email_links.send_pending, mailer, mail)
    return Accepted(detail=RESET_ACCEPTED)


@router.post(
    "/password-reset/confirm",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        422: {"description": "The link is not valid any more, or the password is too short"}
    },
)
async def confirm_password_reset(body: PasswordResetConfirmIn, session: SessionDep) -> Response:
    """Set a new password with the token from the reset link. Every session and token of
    the account ends; log in with the new password."""
    await email_links.reset_password(session, body.token, body.new_password)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/login", response_model=TokenPair, responses=AUTH_ERRORS)
async def login(
    body: LoginIn,
    session: SessionDep,
    policy: TokenPolicyDep,
    throttle: ThrottleDep,
    ip: ClientIP,
) -> TokenPair:
    await throttle.hit_ip(ip, "login")
    return await accounts.login(
        session, policy, throttle, email=body.email, password=body.password, ip=ip
    )


@router.post("/token", response_model=TokenPair, responses=AUTH_ERRORS)
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    policy: TokenPolicyDep,
    throttle: ThrottleDep,
    ip: ClientIP,
) -> TokenPair:
    """OAuth2 password flow (username = email), for the docs' Authorize button."""
    # Shares the JSON login's per-IP budget.
    await throttle.hit_ip(ip, "login")
    return await accounts.login(
        session, policy, throttle, email=form.username, password=form.password, ip=ip
    )


@router.post("/refresh", response_model=TokenPair, responses=AUTH_ERRORS)
async def refresh(
    body: RefreshIn,
    session: SessionDep,
    policy: TokenPolicyDep,
    throttle: ThrottleDep,
    ip: ClientIP,
) -> TokenPair:
    await throttle.hit_ip(ip, "refresh")
    return await accounts.refresh(session, body.refresh_token, policy)


@router.post("/logout-all", status_code=status.HTTP_204_NO_CONTENT, responses=AUTH_ERRORS)
async def logout_everywhere(session: SessionDep, user: LoggedInUser) -> Response:
    """Log out on every device: every refresh token, dashboard session and personal API
    token is revoked, and every access token issued before this request stops working at
    once."""
    await accounts.end_every_session(session, user)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=AUTH_ERRORS)
async def logout(body: RefreshIn, session: SessionDep, policy: TokenPolicyDep) -> Response:
    await accounts.logout(session, body.refresh_token, policy)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
