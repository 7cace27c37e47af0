"""Searches: the list with each one's state, create (blank or from a template) and edit
with the API's validation messages, pause/resume, delete and "check now"."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from app.api.deps import MonitoringDep, SessionDep, URLPolicyDep
from app.db import utcnow
from app.errors import InvalidInput, NotFound, PlanLimitExceeded
from app.models import AlertChannel, Search, SearchTemplate, User
from app.monitoring.cycle import CycleReport
from app.schemas.searches import SearchCreate
from app.services import listings, marketplaces, plans, searches, templates
from app.web import forms
from app.web.render import page_url, pager, redirect, render
from app.web.session import CheckedForm, NoticeLevel, WebUser

router = APIRouter()

PAGE_SIZE = 20
MAX_TEMPLATES = 50
Offset = Annotated[int, Query(ge=0, le=1_000_000)]


@router.get("/searches", name="searches")
async def list_searches(
    request: Request, session: SessionDep, user: WebUser, offset: Offset = 0
) -> Response:
    rows, total = await searches.list_for_owner(
        session, owner_id=user.id, limit=PAGE_SIZE, offset=offset
    )
    counts = await listings.match_counts_since(
        session, owner_id=user.id, since=utcnow() - timedelta(hours=24)
    )
    return render(
        request,
        "searches.html",
        searches=rows,
        matches_24h=counts,
        page=pager(offset, PAGE_SIZE, total),
    )


@router.get("/searches/new", name="new_search")
async def new_search_page(
    request: Request,
    session: SessionDep,
    user: WebUser,
    runtime: MonitoringDep,
    template: uuid.UUID | None = None,
) -> Response:
    chosen = await templates.get(session, template) if template else None
    return await _form_page(
        request, session, user, runtime, values=forms.search_values(chosen), template=chosen
    )


@router.post("/searches/new")
async def create_search(
    request: Request,
    form: CheckedForm,
    session: SessionDep,
    user: WebUser,
    runtime: MonitoringDep,
    url_policy: URLPolicyDep,
) -> Response:
    template = await _posted_template(session, form)
    body = forms.search_body(form, kept={"criteria": template.criteria} if template else None)
    try:
        data = SearchCreate.model_validate(body)
        search = await searches.create(session, data, owner=user, url_policy=url_policy)
    except (ValidationError, PlanLimitExceeded, InvalidInput) as exc:
        return await _form_page(
            request, session, user, runtime, values=body, template=template, failure=exc
        )
    notice = f"Saved “{search.name}”. Its first check runs in a few seconds, or now with Check now."
    return redirect(request, page_url(request, "searches"), notice=notice)


@router.post("/searches/validate", name="validate_search")
async def validate_search(form: CheckedForm, user: WebUser) -> JSONResponse:
    """The messages the search form would get if it were sent now (for live validation)."""
    errors: dict[str, str] = {}
    try:
        data = SearchCreate.model_validate(forms.search_body(form))
        plans.check_search_settings(
            user.plan,
            marketplaces=len(data.marketplaces),
            check_frequency_minutes=data.check_frequency_minutes,
        )
    except ValidationError as exc:
        errors = forms.field_errors(exc)
    except PlanLimitExceeded as exc:
        errors = {forms.FORM_ERROR: exc.detail}
    return JSONResponse({"errors": errors})


@router.get("/searches/{search_id}/edit", name="edit_search")
async def edit_search_page(
    request: Request,
    search_id: uuid.UUID,
    session: SessionDep,
    user: WebUser,
    runtime: MonitoringDep,
) -> Response:
    search = await searches.get(session, search_id, owner_id=user.id)
    return await _form_page(
        request, session, user, runtime, values=forms.search_values(search), search=search
    )


@router.post("/searches/{search_id}/edit")
async def update_search(
    request: Request,
    search_id: uuid.UUID,
    form: CheckedForm,
    session: SessionDep,
    user: WebUser,
    runtime: MonitoringDep,
    url_policy: URLPolicyDep,
) -> Response:
    search = await searches.get(session, search_id, owner_id=user.id)
    body = forms.search_body(form, kept=forms.kept_values(search))
    try:
        data = SearchCreate.model_validate(body)
        await searches.replace(session, search_id, data, owner=user, url_policy=url_policy)
    except (ValidationError, PlanLimitExceeded, InvalidInput) as exc:
        return await _form_page(
            request, session, user, runtime, values=body, search=search, failure=exc
        )
    return redirect(request, page_url(request, "searches"), notice=f"Saved “{search.name}”.")


@router.post("/searches/{search_id}/pause", name="pause_search")
async def pause_search(
    request: Request, search_id: uuid.UUID, _form: CheckedForm, session: SessionDep, user: WebUser
) -> Response:
    search = await searches.pause(session, search_id, owner_id=user.id)
    return redirect(request, page_url(request, "searches"), notice=f"Paused “{search.name}”.")


@router.post("/searches/{search_id}/resume", name="resume_search")
async def resume_search(
    request: Request, search_id: uuid.UUID, _form: CheckedForm, session: SessionDep, user: WebUser
) -> Response:
    search = await searches.resume(session, search_id, owner=user)
    return redirect(request, page_url(request, "searches"), notice=f"Resumed “{search.name}”.")


@router.post("/searches/{search_id}/delete", name="delete_search")
async def delete_search(
    request: Request, search_id: uuid.UUID, _form: CheckedForm, session: SessionDep, user: WebUser
) -> Response:
    search = await searches.get(session, search_id, owner_id=user.id)
    name = search.name
    await searches.delete(session, search_id, owner_id=user.id)
    return redirect(request, page_url(request, "searches"), notice=f"Deleted “{name}”.")


@router.post("/searches/{search_id}/check", name="check_search")
async def check_search(
    request: Request,
    search_id: uuid.UUID,
    _form: CheckedForm,
    session: SessionDep,
    user: WebUser,
    runtime: MonitoringDep,
) -> Response:
    search, report = await searches.check_now(session, runtime, search_id, owner=user)
    notice, level = _check_notice(search, report)
    return redirect(request, page_url(request, "searches"), notice=notice, level=level)


async def _form_page(
    request: Request,
    session: SessionDep,
    user: User,
    runtime: MonitoringDep,
    *,
    values: dict[str, Any],
    search: Search | None = None,
    template: SearchTemplate | None = None,
    failure: Exception | None = None,
) -> Response:
    """The search form; after a failed save, with the input as sent and the messages."""
    errors: dict[str, str] = {}
    status_code = 200
    if isinstance(failure, ValidationError):
        values, errors, status_code = forms.search_values(values), forms.field_errors(failure), 422
    elif isinstance(failure, InvalidInput) and failure.field is not None:
        values, errors = (
            forms.search_values(values),
            forms.input_error(failure.field, failure.detail),
        )
        status_code = 422
    elif isinstance(failure, PlanLimitExceeded | InvalidInput):
        values, errors = forms.search_values(values), {forms.FORM_ERROR: failure.detail}
        status_code = 403 if isinstance(failure, PlanLimitExceeded) else 422
    template_rows: list[SearchTemplate] = []
    if search is None:
        template_rows, _ = await templates.list_templates(session, limit=MAX_TEMPLATES, offset=0)
    described = marketplaces.describe_all(runtime)
    return render(
        request,
        "search_form.html",
        status_code=status_code,
        values=values,
        errors=errors,
        search=search,
        template=template,
        templates=template_rows,
        marketplaces=described,
        marketplace_options={
            item.name: forms.option_fields(getattr(item, "options_schema", None))
            for item in described
        },
        channels=list(AlertChannel),
        limits=plans.limits_for(user.plan),
    )


async def _posted_template(session: SessionDep, form: CheckedForm) -> SearchTemplate | None:
    """The template a new search starts from (the form's hidden `template_id`), if any."""
    value = forms.text(form, "template_id")
    if not value:
        return None
    try:
        template_id = uuid.UUID(value)
    except ValueError as exc:
        raise NotFound("Template not found") from exc
    return await templates.get(session, template_id)


def _check_notice(search: Search, report: CycleReport) -> tuple[str, NoticeLevel]:
    if report.searches == 0:
        return f"“{search.name}” was being checked already; its results will show shortly.", "ok"
    if report.errors:
        return f"Checked “{search.name}”: {'; '.join(report.errors)}", "error"
    found = report.matches_new
    plural = "match" if found == 1 else "matches"
    return f"Checked “{search.name}”: {found} new {plural}.", "ok"
