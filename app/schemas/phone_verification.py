"""Bodies of /api/v1/users/me/phone: a code sent, and a code typed back."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from app.schemas.common import InputModel, OutputModel

# Six digits, as read off the phone: "123456", "123 456" or "123-456".
CODE_PATTERN = r"^[0-9]{3}[ -]?[0-9]{3}$"


class PhoneCodeSent(OutputModel):
    sent_to: str = Field(
        description="The number the code went to, its middle hidden", examples=["+44••••••0123"]
    )
    expires_in: int = Field(description="Seconds the code stays valid", examples=[600])


class PhoneCodeIn(InputModel):
    # The pattern is checked below rather than by `pattern=`, for a message a person can
    # act on; the document still states it.
    code: str = Field(
        max_length=16,
        description="The 6 digits of the text",
        examples=["123456"],
        json_schema_extra={"pattern": CODE_PATTERN},
    )

    @field_validator("code")
    @classmethod
    def _six_digits(cls, value: str) -> str:
        if not re.fullmatch(CODE_PATTERN, value):
            raise ValueError("Enter the 6 digits of the text we sent, such as 123456")
        return value.replace(" ", "").replace("-", "")
