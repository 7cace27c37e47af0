"""API tokens in the dashboard: create one (its secret shown on the resulting page, once),
see each with its last use, and revoke it."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData

from app.api.deps import SessionDep
from app.db import utcnow
from app.errors import Conflict, InvalidInput
from app.models import User
from app.schemas.api_tokens import MAX_EXPIRY_DAYS, ApiTokenCreate
from app.services import api_tokens
from app.web import forms
from app.web.render import page_url, redirect, render
from app.web.session import CheckedForm, WebUser

router = APIRouter()

# The checkbox that turns a read-only token into one that may change things.
MAY_WRITE = "may_write"


@router.get("/settings/tokens", name="api_tokens")
async def api_tokens_page(request: Request, session: SessionDep, user: WebUser) -> Response:
    return await _page(request, session, user)


@router.post("/settings/tokens", name="create_api_token")
async def create_api_token(
    request: Request, form: CheckedForm, session: SessionDep, user: WebUser
) -> Response:
    values = {
        "name": forms.text(form, "name"),
        "expires_in_days": forms.text(form, "expires_in_days"),
        MAY_WRITE: MAY_WRITE in form,
    }
    try:
        body = ApiTokenCreate.model_validate(_body(form))
        _, secret = await api_tokens.create(
            session, user, name=body.name, scopes=body.scopes, expires_at=body.expires_at(utcnow())
        )
    except ValidationError as exc:
        errors = forms.field_errors(exc)
        return await _page(request, session, user, values=values, errors=errors, status_code=422)
    except InvalidInput as exc:
        errors = {exc.field or forms.FORM_ERROR: exc.detail}
        return await _page(request, session, user, values=values, errors=errors, status_code=422)
    except Conflict as exc:
        errors = {forms.FORM_ERROR: exc.detail}
        return await _page(request, session, user, values=values, errors=errors, status_code=409)
    # The only time the secret is shown: on this page, never in a redirect or cookie.
    return await _page(request, session, user, new_token=secret, new_token_name=body.name)


@router.post("/settings/tokens/{token_id}/revoke", name="revoke_api_token")
async def revoke_api_token(
    request: Request, token_id: uuid.UUID, _form: CheckedForm, session: SessionDep, user: WebUser
) -> Response:
    await api_tokens.revoke(session, token_id, owner_id=user.id)
    return redirect(
        request,
        page_url(request, "api_tokens"),
        notice="Token revoked: it no longer works.",
    )


def _body(form: FormData) -> dict[str, Any]:
    """The ApiTokenCreate body the form describes: a blank expiry means none."""
    return {
        "name": forms.text(form, "name"),
        "scopes": ["read", "write"] if MAY_WRITE in form else ["read"],
        "expires_in_days": forms.text(form, "expires_in_days") or None,
    }


async def _page(
    request: Request,
    session: AsyncSession,
    user: User,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
    new_token: str | None = None,
    new_token_name: str | None = None,
) -> Response:
    rows = await api_tokens.list_for_owner(session, owner_id=user.id)
    return render(
        request,
        "api_tokens.html",
        status_code=status_code,
        rows=rows,
        values=values or {"name": "", "expires_in_days": "", MAY_WRITE: False},
        errors=errors or {},
        new_token=new_token,
        new_token_name=new_token_name,
        max_tokens=api_tokens.MAX_TOKENS_PER_USER,
        max_expiry_days=MAX_EXPIRY_DAYS,
        now=utcnow(),
    )
