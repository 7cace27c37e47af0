"""Auth request and response bodies."""

from __future__ import annotations

from typing import Literal

from pydantic import EmailStr, Field, field_validator

from app.schemas.common import InputModel, OutputModel

PASSWORD_MIN = 8
PASSWORD_MAX = 128


class RegisterIn(InputModel):
    email: EmailStr
    password: str = Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)
    full_name: str | None = Field(default=None, max_length=200)

    @field_validator("email")
    @classmethod
    def _lower(cls, email: str) -> str:
        return email.lower()


class LoginIn(InputModel):
    # Not EmailStr: a malformed address is just another failed login, answered the same way.
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class PasswordChangeIn(InputModel):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)


class TokenIn(InputModel):
    token: str = Field(min_length=1, max_length=200)


class PasswordResetIn(InputModel):
    # Not EmailStr: any text gets the same answer, so nobody learns which addresses exist.
    email: str = Field(min_length=1, max_length=320)


class PasswordResetConfirmIn(InputModel):
    token: str = Field(min_length=1, max_length=200)
    new_password: str = Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)


class Accepted(OutputModel):
    detail: str


class RefreshIn(InputModel):
    refresh_token: str = Field(min_length=1, max_length=4096)


class TokenPair(OutputModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
