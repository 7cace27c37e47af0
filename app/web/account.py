"""Sign up, log in and log out. The login shares the API's throttle: the same per-address
budget and the same per-account failure count."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import Response
from pydantic import ValidationError

from app.api.deps import (
    AccountMailerDep,
    ClientIP,
    SessionDep,
    SettingsDep,
    ThrottleDep,
    TokenPolicyDep,
)
from app.errors import AuthenticationFailed, Conflict, TooManyRequests
from app.models import User
from app.schemas.auth import LoginIn, RegisterIn
from app.services import accounts, email_links, plans
from app.web import forms
from app.web.render import page_url, redirect, render, safe_next
from app.web.session import SESSION_COOKIE, CheckedForm, Visitor, WebUser, delete_cookie, set_cookie

router = APIRouter()


@router.get("/", name="home")
async def home(request: Request, user: Visitor) -> Response:
    return redirect(request, page_url(request, "searches" if user else "login"))


@router.get("/signup", name="signup")
async def signup_page(request: Request, user: Visitor) -> Response:
    if user is not None:
        return redirect(request, page_url(request, "searches"))
    return render(request, "signup.html", values={}, errors={})


@router.post("/signup")
async def signup(
    request: Request,
    form: CheckedForm,
    session: SessionDep,
    policy: TokenPolicyDep,
    throttle: ThrottleDep,
    settings: SettingsDep,
    ip: ClientIP,
    mailer: AccountMailerDep,
    background: BackgroundTasks,
) -> Response:
    values = {"email": forms.text(form, "email"), "full_name": forms.text(form, "full_name")}
    try:
        await throttle.hit_ip(ip, "register")
        body = RegisterIn.model_validate(
            {
                **values,
                "password": forms.text(form, "password", strip=False),
                "full_name": values["full_name"] or None,
            }
        )
        user = await accounts.register(
            session,
            email=body.email,
            password=body.password,
            full_name=body.full_name,
            plan=plans.signup_plan(settings),
        )
    except ValidationError as exc:
        return render(
            request, "signup.html", status_code=422, values=values, errors=forms.field_errors(exc)
        )
    except (Conflict, TooManyRequests) as exc:
        status = 409 if isinstance(exc, Conflict) else 429
        errors = {forms.FORM_ERROR: exc.detail}
        return render(request, "signup.html", status_code=status, values=values, errors=errors)
    mail = await email_links.first_verification_mail(session, mailer, user)
    if mail is not None:
        background.add_task(email_links.send_pending, mailer, mail)
    response = redirect(
        request,
        page_url(request, "new_search"),
        notice="Welcome! Start with a template, or describe what you are looking for.",
    )
    await start_session(request, response, session, policy, settings, user)
    return response


@router.get("/login", name="login")
async def login_page(request: Request, user: Visitor, next: str = "") -> Response:
    if user is not None:
        return redirect(request, safe_next(request, next, page_url(request, "searches")))
    return render(request, "login.html", values={"email": "", "next": next}, errors={})


@router.post("/login")
async def login(
    request: Request,
    form: CheckedForm,
    session: SessionDep,
    policy: TokenPolicyDep,
    throttle: ThrottleDep,
    settings: SettingsDep,
    ip: ClientIP,
) -> Response:
    values = {"email": forms.text(form, "email"), "next": forms.text(form, "next")}
    try:
        await throttle.hit_ip(ip, "login")
        body = LoginIn.model_validate(
            {"email": values["email"], "password": forms.text(form, "password", strip=False)}
        )
        user = await accounts.sign_in(
            session, throttle, email=body.email, password=body.password, ip=ip
        )
    except ValidationError:
        # Like the API: a malformed login is just another failed login.
        return _login_failed(request, values, 401, accounts.INVALID_CREDENTIALS)
    except TooManyRequests as exc:
        response = _login_failed(request, values, 429, exc.detail)
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    except AuthenticationFailed as exc:
        return _login_failed(request, values, 401, exc.detail)
    response = redirect(request, safe_next(request, values["next"], page_url(request, "searches")))
    await start_session(request, response, session, policy, settings, user)
    return response


@router.post("/logout-all", name="logout_everywhere")
async def logout_everywhere(
    request: Request, _form: CheckedForm, session: SessionDep, settings: SettingsDep, user: WebUser
) -> Response:
    await accounts.end_every_session(session, user)
    response = redirect(
        request, page_url(request, "login"), notice="You are logged out on every device."
    )
    delete_cookie(request, response, settings, SESSION_COOKIE)
    return response


@router.post("/logout", name="logout")
async def logout(
    request: Request, _form: CheckedForm, session: SessionDep, settings: SettingsDep, _user: WebUser
) -> Response:
    await accounts.close_session(session, request.state.session_id)
    response = redirect(request, page_url(request, "login"), notice="You are logged out.")
    delete_cookie(request, response, settings, SESSION_COOKIE)
    return response


async def start_session(
    request: Request,
    response: Response,
    session: SessionDep,
    policy: TokenPolicyDep,
    settings: SettingsDep,
    user: User,
) -> None:
    """Open a new session (closing the one this browser had: a login never reuses a
    session id) and hand its cookie to the browser."""
    if request.state.session_id is not None:
        await accounts.close_session(session, request.state.session_id)
    token, _ = await accounts.open_session(session, user, policy)
    lifetime_s = int(policy.refresh_lifetime.total_seconds())
    set_cookie(request, response, settings, SESSION_COOKIE, token, max_age_s=lifetime_s)


def _login_failed(
    request: Request, values: dict[str, str], status_code: int, message: str
) -> Response:
    errors = {forms.FORM_ERROR: message}
    return render(request, "login.html", status_code=status_code, values=values, errors=errors)
