"""Routes of /api/v1/templates: ready-made searches to start from."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, status

from app.api.deps import CurrentUser, ServerSetupDep, SessionDep
from app.schemas.common import NulFreeStr, Page, PageParams
from app.schemas.searches import SearchOut
from app.schemas.templates import TemplateOut, TemplateUse
from app.services import templates

router = APIRouter(prefix="/templates", tags=["templates"])

_AUTH: dict[int | str, dict[str, Any]] = {401: {"description": "Missing or invalid token"}}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such template"}}


@router.get("/", response_model=Page[TemplateOut], responses={**_AUTH})
async def list_templates(
    session: SessionDep,
    _user: CurrentUser,
    page: Annotated[PageParams, Query()],
    category: Annotated[NulFreeStr | None, Query(max_length=50)] = None,
    featured: bool | None = None,
) -> Page[TemplateOut]:
    """Templates, featured first."""
    rows, total = await templates.list_templates(
        session, category=category, featured=featured, limit=page.limit, offset=page.offset
    )
    return Page[TemplateOut](
        items=[TemplateOut.model_validate(row) for row in rows],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@router.get("/{template_id}", response_model=TemplateOut, responses={**_AUTH, **_NOT_FOUND})
async def get_template(
    template_id: uuid.UUID, session: SessionDep, _user: CurrentUser
) -> TemplateOut:
    template = await templates.get(session, template_id)
    return TemplateOut.model_validate(template)


@router.post(
    "/{template_id}/use",
    response_model=SearchOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        **_AUTH,
        **_NOT_FOUND,
        403: {"description": "Over your plan's limits (searches, marketplaces, frequency)"},
        422: {"description": "Invalid overrides, or an alert channel you have not set up"},
    },
)
async def use_template(
    template_id: uuid.UUID,
    session: SessionDep,
    user: CurrentUser,
    setup: ServerSetupDep,
    body: Annotated[TemplateUse | None, Body()] = None,
) -> SearchOut:
    """Save a new search from the template; the body's fields override the template's.
    Without `marketplaces`, it starts on the template's marketplaces this server can check
    (the demo marketplace when it can check none of them)."""
    search = await templates.use(session, template_id, body, owner=user, setup=setup)
    return SearchOut.on_server(search, setup)
