"""Routes of /api/v1/users/me/phone: proving the phone number is yours, so SMS alerts can
go to it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from app.api.deps import CurrentUser, DeliveryDep, SessionDep
from app.schemas.phone_verification import PhoneCodeIn, PhoneCodeSent
from app.schemas.users import UserOut
from app.services import phone_verification

router = APIRouter(prefix="/users/me/phone", tags=["users"])

_AUTH: dict[int | str, dict[str, Any]] = {401: {"description": "Missing or invalid token"}}


@router.post(
    "/verification",
    response_model=PhoneCodeSent,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        **_AUTH,
        409: {"description": "The number is already verified; nothing was sent"},
        422: {"description": "No phone number set, or Twilio refused the number"},
        429: {"description": "A code was sent moments ago, or 5 this hour; see Retry-After"},
        503: {"description": "This server cannot send SMS, or the text could not be sent"},
    },
)
async def send_phone_code(
    session: SessionDep, user: CurrentUser, delivery: DeliveryDep
) -> PhoneCodeSent:
    """Text a 6-digit code to your phone number, valid for 10 minutes and 5 tries. A new
    code replaces the previous one."""
    sent = await phone_verification.send_code(session, delivery, user)
    return PhoneCodeSent(sent_to=sent.sent_to, expires_in=sent.expires_in_s)


@router.post(
    "/verify",
    response_model=UserOut,
    responses={
        **_AUTH,
        409: {"description": "The number is already verified"},
        422: {
            "description": "No phone number set, or a code that is wrong, used, expired, "
            "out of tries or sent to another number"
        },
    },
)
async def verify_phone(body: PhoneCodeIn, session: SessionDep, user: CurrentUser) -> UserOut:
    """Confirm your phone number with the code texted to it: SMS alerts can then go to it."""
    verified = await phone_verification.confirm_code(session, user, body.code)
    return UserOut.model_validate(verified)
