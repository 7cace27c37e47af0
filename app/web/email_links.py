"""The pages behind the links mailed to a user (confirm the address, reset the password),
"forgot your password", and asking for a new confirmation link."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import Response
from pydantic import ValidationError

from app.api.deps import AccountMailerDep, ClientIP, SessionDep, ThrottleDep
from app.errors import InvalidInput, TooManyRequests
from app.schemas.auth import PasswordResetConfirmIn
from app.services import email_links
from app.web import forms
from app.web.render import page_url, redirect, render
from app.web.session import CheckedForm, Visitor, WebUser

router = APIRouter()

RESET_SENT = (
    "If an account has this address, a link to reset its password is on its way. "
    "It works for one hour."
)


@router.get("/verify-email", name="verify_email")
async def verify_email(
    request: Request, session: SessionDep, visitor: Visitor, token: str = ""
) -> Response:
    """The link from the confirmation mail: works whether or not the browser is signed in."""
    target = page_url(request, "searches" if visitor else "login")
    try:
        await email_links.verify_email(session, token)
    except InvalidInput as exc:
        return redirect(request, target, notice=exc.detail, level="error")
    return redirect(
        request, target, notice="Your email address is confirmed: alerts by email are on."
    )


@router.post("/verify-email/resend", name="resend_verification")
async def resend_verification(
    request: Request,
    _form: CheckedForm,
    session: SessionDep,
    user: WebUser,
    mailer: AccountMailerDep,
    background: BackgroundTasks,
) -> Response:
    back = page_url(request, "settings")
    try:
        mail = await email_links.verification_mail(session, mailer, user)
    except TooManyRequests as exc:
        return redirect(request, back, notice=exc.detail, level="error")
    background.add_task(email_links.send_pending, mailer, mail)
    return redirect(
        request,
        back,
        notice=f"A new link is on its way to {user.email}. It works for 48 hours.",
    )


@router.get("/forgot-password", name="forgot_password")
async def forgot_password_page(
    request: Request, _visitor: Visitor, mailer: AccountMailerDep
) -> Response:
    return render(request, "forgot_password.html", values={}, errors={}, can_send=mailer.can_send())


@router.post("/forgot-password")
async def forgot_password(
    request: Request,
    form: CheckedForm,
    session: SessionDep,
    throttle: ThrottleDep,
    ip: ClientIP,
    mailer: AccountMailerDep,
    background: BackgroundTasks,
) -> Response:
    await throttle.hit_ip(ip, "password-reset")
    mail = await email_links.reset_mail(session, mailer, forms.text(form, "email"))
    if mail is not None:
        background.add_task(email_links.send_pending, mailer, mail)
    return redirect(request, page_url(request, "login"), notice=RESET_SENT)


@router.get("/reset-password", name="reset_password")
async def reset_password_page(
    request: Request, session: SessionDep, _visitor: Visitor, token: str = ""
) -> Response:
    try:
        await email_links.check_reset_link(session, token)
    except InvalidInput as exc:
        return redirect(
            request, page_url(request, "forgot_password"), notice=exc.detail, level="error"
        )
    return render(request, "reset_password.html", values={"token": token}, errors={})


@router.post("/reset-password")
async def reset_password(request: Request, form: CheckedForm, session: SessionDep) -> Response:
    token = forms.text(form, "token")
    try:
        body = PasswordResetConfirmIn.model_validate(
            {"token": token, "new_password": forms.text(form, "new_password", strip=False)}
        )
        await email_links.reset_password(session, body.token, body.new_password)
    except ValidationError as exc:
        errors = forms.field_errors(exc)
        return render(
            request, "reset_password.html", status_code=422, values={"token": token}, errors=errors
        )
    except InvalidInput as exc:
        return redirect(
            request, page_url(request, "forgot_password"), notice=exc.detail, level="error"
        )
    return redirect(
        request,
        page_url(request, "login"),
        notice="Your password is changed and every session has ended. Log in with the new one.",
    )
