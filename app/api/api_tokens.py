"""Routes of /api/v1/users/me/tokens: personal API tokens for scripts and integrations.
Managing them needs a login (LoggedInUser): an API token cannot mint or revoke tokens."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Response, status

from app.api.deps import LoggedInUser, SessionDep
from app.db import utcnow
from app.schemas.api_tokens import ApiTokenCreate, ApiTokenCreated, ApiTokenOut
from app.services import api_tokens

router = APIRouter(prefix="/users/me/tokens", tags=["users"])

_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid token"},
    403: {"description": "Sent with an API token: managing API tokens needs a login"},
}


@router.post(
    "",
    response_model=ApiTokenCreated,
    status_code=status.HTTP_201_CREATED,
    responses={
        **_AUTH,
        409: {"description": f"Already {api_tokens.MAX_TOKENS_PER_USER} tokens; revoke one"},
        422: {"description": "Invalid name, scopes or expiry, or an unknown field"},
    },
)
async def create_api_token(
    body: ApiTokenCreate, session: SessionDep, user: LoggedInUser
) -> ApiTokenCreated:
    """Create a token for scripts and integrations (`Authorization: Bearer mmt_...`). The
    token is in this answer only: it is stored as a digest and cannot be shown again."""
    token, secret = await api_tokens.create(
        session, user, name=body.name, scopes=body.scopes, expires_at=body.expires_at(utcnow())
    )
    return ApiTokenCreated.of(token, secret)


@router.get("", response_model=list[ApiTokenOut], responses=_AUTH)
async def list_api_tokens(session: SessionDep, user: LoggedInUser) -> list[ApiTokenOut]:
    """Your tokens, newest first, with when each was last used (to the minute)."""
    rows = await api_tokens.list_for_owner(session, owner_id=user.id)
    return [ApiTokenOut.model_validate(row) for row in rows]


@router.delete(
    "/{token_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_AUTH, 404: {"description": "You have no token with this id"}},
)
async def revoke_api_token(
    token_id: uuid.UUID, session: SessionDep, user: LoggedInUser
) -> Response:
    """Revoke a token: it stops working with the next request."""
    await api_tokens.revoke(session, token_id, owner_id=user.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
