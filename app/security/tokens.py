"""JWT access, refresh and dashboard session tokens (PyJWT, HS256); a `type` claim keeps
them apart, so no kind of token is accepted where another is expected."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import jwt

ALGORITHM = "HS256"
LEEWAY_S = 30
TokenType = Literal["access", "refresh", "session"]


class InvalidToken(Exception):
    """The token is malformed, expired, of the wrong type or badly signed."""


@dataclass(frozen=True)
class TokenSigner:
    secret_key: str
    audience: str
    issuer: str

    def issue(
        self,
        *,
        subject: uuid.UUID,
        token_type: TokenType,
        now: datetime,
        lifetime: timedelta,
        family_id: uuid.UUID | None = None,
        credentials_version: int = 0,
    ) -> tuple[str, str]:
        """Return (encoded token, jti). `credentials_version` is the user's at issue time:
        the token is refused once the user's has moved on."""
        jti = secrets.token_urlsafe(24)
        claims: dict[str, object] = {
            "sub": str(subject),
            "type": token_type,
            "cv": credentials_version,
            "jti": jti,
            "iat": int(now.timestamp()),
            "exp": int((now + lifetime).timestamp()),
            "aud": self.audience,
            "iss": self.issuer,
        }
        if family_id is not None:
            claims["fam"] = str(family_id)
        return jwt.encode(claims, self.secret_key, algorithm=ALGORITHM), jti

    def decode(self, token: str, *, expected_type: TokenType) -> dict[str, object]:
        """Return the verified claims; raise InvalidToken for anything less than a perfect token."""
        try:
            claims: dict[str, object] = jwt.decode(
                token,
                self.secret_key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iat", "jti", "sub", "type", "aud", "iss"]},
            )
        except (jwt.PyJWTError, UnicodeEncodeError) as exc:  # PyJWT encodes str as UTF-8 first
            raise InvalidToken(str(exc)) from exc
        if claims.get("type") != expected_type:
            raise InvalidToken(f"expected a {expected_type} token")
        try:
            uuid.UUID(str(claims["sub"]))
        except ValueError as exc:
            raise InvalidToken("malformed subject") from exc
        # Tokens issued before versions existed carry none: version 0, every user's first.
        claims.setdefault("cv", 0)
        if type(claims["cv"]) is not int:
            raise InvalidToken("malformed credentials version")
        return claims


def credentials_version(claims: dict[str, object]) -> int:
    """The `cv` of claims from `TokenSigner.decode` (always there, always an int)."""
    version = claims["cv"]
    assert isinstance(version, int)
    return version


@dataclass(frozen=True)
class TokenPolicy:
    """How tokens are signed and how long each kind lives."""

    signer: TokenSigner
    access_lifetime: timedelta
    refresh_lifetime: timedelta
