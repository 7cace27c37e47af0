"""Routes of /api/v1/auth: sign-up, login (JSON and OAuth2 form), refresh, logout."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from app.api.deps import ClientIP, CurrentUser, SessionDep, ThrottleDep, TokenPolicyDep
from app.schemas.auth import LoginIn, RefreshIn, RegisterIn, TokenPair
from app.schemas.users import UserOut
from app.services import accounts

router = APIRouter(prefix="/auth", tags=["auth"])

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
    body: RegisterIn, session: SessionDep, throttle: ThrottleDep, ip: ClientIP
) -> UserOut:
    await throttle.hit_ip(ip, "register")
    user = await accounts.register(
        session, email=body.email, password=body.password, full_name=body.full_name
    )
    return UserOut.model_validate(user)


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
async def logout_everywhere(session: SessionDep, user: CurrentUser) -> Response:
    """Log out on every device: every refresh token and dashboard session is revoked, and
    every access token issued before this request stops working at once."""
    await accounts.end_every_session(session, user)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=AUTH_ERRORS)
async def logout(body: RefreshIn, session: SessionDep, policy: TokenPolicyDep) -> Response:
    await accounts.logout(session, body.refresh_token, policy)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
