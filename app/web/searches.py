"""Searches: the list with each one's state, create (blank or from a template) and edit
with the API's validation messages, pause/resume, delete and "check now"."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from app.api.deps import MonitoringDep, ServerSetupDep, SessionDep, URLPolicyDep
from app.db import utcnow
from app.errors import DomainError, InvalidInput, NotFound, PlanLimitExceeded
from app.marketplaces import registry as marketplace_registry
from app.models import AlertChannel, Marketplace, Search, SearchTemplate, User
from app.monitoring.cycle import CycleReport
from app.monitoring.fetch import MonitoringRuntime
from app.schemas.marketplaces import MarketplaceOut
from app.schemas.searches import SearchCreate, SearchOut
from app.services import availability, listings, marketplaces, plans, searches, templates
from app.web import forms
from app.web.render import page_url, pager, redirect, render
from app.web.session import CheckedForm, NoticeLevel, WebUser

router = APIRouter()

PAGE_SIZE = 20
MAX_TEMPLATES = 50
# The longest interval between checks a search may ask for (CheckFrequency): every plan allows it.
MAX_FREQUENCY_MINUTES = 24 * 60
Offset = Annotated[int, Query(ge=0, le=1_000_000)]


@router.get("/searches", name="searches")
async def list_searches(
    request: Request, session: SessionDep, user: WebUser, setup: ServerSetupDep, offset: Offset = 0
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
        searches=[SearchOut.on_server(row, setup) for row in rows],
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
    values = forms.search_values(chosen)
    notice = None
    if chosen is not None:
        values["marketplaces"] = availability.starting_marketplaces(
            chosen.marketplaces,
            runtime.adapters,
            limit=plans.limits_for(user.plan).max_marketplaces_per_search,
        )
        notice = _replaced_marketplaces_notice(chosen.marketplaces, values["marketplaces"], runtime)
    return await _form_page(
        request, session, user, runtime, values=values, template=chosen, notice=notice
    )


def _replaced_marketplaces_notice(
    wanted: list[str], starting: list[str], runtime: MonitoringRuntime
) -> str | None:
    """Why the form does not tick a template's marketplaces, when it cannot."""
    setups = {name: availability.marketplace_setup(name, runtime.adapters) for name in wanted}
    left_out = [name for name in wanted if name not in starting and setups[name] is not None]
    if not left_out:
        return None
    reasons = " ".join(
        f"This server cannot check {name} yet: the operator sets {setups[name]}."
        for name in left_out
    )
    instead = (
        " This search starts on the demo marketplace, which makes up listings every few "
        "seconds so you can see matches and alerts arrive."
        if starting == ["demo"]
        else ""
    )
    return reasons + instead


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
    """The messages the search form would get if it were sent now (for live validation),
    each on its field: the schema's, and even while some fields are invalid, the plan's
    limits, the channels the user has not set up and the marketplaces' own options."""
    body = forms.search_body(form)
    errors: dict[str, str] = {}
    try:
        SearchCreate.model_validate(body)
    except ValidationError as exc:
        errors = forms.field_errors(exc)
    return JSONResponse({"errors": _with_setting_problems(errors, user, body)})


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
    notice: str | None = None,
) -> Response:
    """The search form; after a failed save, with the input as sent and the messages:
    all that the form would be refused for, each on its field, so that one round trip
    shows every problem even without the script."""
    errors: dict[str, str] = {}
    status_code = 200
    if isinstance(failure, ValidationError | DomainError):
        if isinstance(failure, ValidationError):
            errors = forms.field_errors(failure)
        else:
            errors = forms.domain_errors(failure)
        status_code = 403 if isinstance(failure, PlanLimitExceeded) else 422
        problems = _with_setting_problems(errors, user, values)
        if (
            isinstance(failure, InvalidInput)
            and "alert_channels" in problems
            and errors.keys() == {forms.FORM_ERROR}
        ):
            # The service's refusal was that channel, said for API clients: the message on
            # the channels says it for people.
            del problems[forms.FORM_ERROR]
        values, errors = forms.search_values(values), problems
    template_rows: list[SearchTemplate] = []
    if search is None:
        template_rows, _ = await templates.list_templates(session, limit=MAX_TEMPLATES, offset=0)
    described = marketplaces.describe_all(runtime)
    delivery = getattr(request.app.state, "delivery_runtime", None)
    setup_channels = delivery.channels if delivery is not None else {}
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
        # Each channel with the settings this server lacks for it, and what the user has
        # still to set up for it (None: nothing).
        channels=[
            {
                "name": channel.value,
                "server_setup": availability.channel_setup(channel.value, setup_channels),
                "user_setup": availability.user_channel_setup(user, channel.value),
            }
            for channel in AlertChannel
        ],
        labels=_labels(described),
        limits=plans.limits_for(user.plan),
        setup_notice=notice,
    )


def _with_setting_problems(
    errors: dict[str, str], user: User, body: Mapping[str, Any]
) -> dict[str, str]:
    """`errors` and what saving would be refused for next, found on the body as sent so
    they show while other fields are still invalid: the plan's limits (in place of the
    schema's message on the same field: they say what this plan needs), channels the user
    has not set up, and the ticked marketplaces' own options."""
    found = dict(errors)
    found.update(_plan_problems(user.plan, body))
    channels = _channel_problem(user, body.get("alert_channels") or [])
    if channels is not None:
        found.setdefault("alert_channels", channels)
    known = {item.value for item in Marketplace}
    chosen = [name for name in body.get("marketplaces") or [] if name in known]
    criteria = body.get("criteria") or {}
    try:
        marketplace_registry.check_options(chosen, criteria.get("marketplace_options") or {})
    except InvalidInput as exc:
        for field, message in forms.domain_errors(exc).items():
            found.setdefault(field, message)
    return found


def _plan_problems(plan: str, body: Mapping[str, Any]) -> dict[str, str]:
    """Each plan limit the body is over, on its field. The plan check stops at the first
    limit, so each setting is checked on its own, the other at a value every plan allows."""
    marketplaces = len(set(body.get("marketplaces") or []))
    try:
        minutes = int(str(body.get("check_frequency_minutes", "")).strip())
    except ValueError:
        minutes = None
    problems: dict[str, str] = {}
    for count, every in ((marketplaces, MAX_FREQUENCY_MINUTES), (0, minutes)):
        if every is None:
            continue
        try:
            plans.check_search_settings(plan, marketplaces=count, check_frequency_minutes=every)
        except PlanLimitExceeded as exc:
            problems[exc.field or forms.FORM_ERROR] = exc.detail
    return problems


def _channel_problem(user: User, channels: list[str]) -> str | None:
    """Why saving would be refused for the chosen channels (the service's rule: the
    setting they send to is missing), in words for the form."""
    missing = {
        AlertChannel.SMS.value: (
            not user.phone_number,
            "SMS alerts need your phone number: add it in Settings, or untick sms",
        ),
        AlertChannel.WEBHOOK.value: (
            not user.webhook_url,
            "Webhook alerts need a webhook URL: add it in Settings, or untick webhook",
        ),
        AlertChannel.APPRISE.value: (
            not user.apprise_urls,
            "Apprise alerts need an Apprise URL: add one in Settings, or untick apprise",
        ),
    }
    problems = [
        text for name, (is_missing, text) in missing.items() if name in channels and is_missing
    ]
    return "; ".join(problems) or None


def _labels(described: list[MarketplaceOut]) -> dict[str, str]:
    """What the form's summary of problems calls each input."""
    labels = dict(forms.SEARCH_LABELS)
    for item in described:
        for field in forms.option_fields(item.options_schema):
            labels[f"{forms.OPTION_PREFIX}{item.name}:{field['key']}"] = (
                f"{item.name}: {field['label']}"
            )
    return labels


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
