"""/api/v1/templates: the shipped templates, browsing them, and starting a search from one."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Plan, Search, SearchTemplate, User
from app.schemas.searches import SearchCriteria
from app.services import plans
from app.services.templates import BUILTIN_TEMPLATES, load_builtin_templates
from tests.factories import make_search, make_user, token_headers

URL = "/api/v1/templates/"
SHIPPED_NAMES = {
    "iPhone Flips UK",
    "Vintage Gaming Deals",
    "Designer Clothing Steals",
    "Collectible Watches",
    "Laptop Bargains",
    "Bicycle Deals",
}


async def all_templates(client: httpx.AsyncClient, headers: dict[str, str]) -> list[Any]:
    response = await client.get(URL, params={"limit": 100}, headers=headers)
    assert response.status_code == 200, response.text
    items: list[Any] = response.json()["items"]
    return items


async def template_id(client: httpx.AsyncClient, headers: dict[str, str], name: str) -> str:
    found: str = next(t["id"] for t in await all_templates(client, headers) if t["name"] == name)
    return found


async def snapshot(session: AsyncSession) -> list[tuple[Any, ...]]:
    await session.rollback()
    session.expire_all()
    rows = await session.scalars(select(SearchTemplate).order_by(SearchTemplate.slug))
    return [
        (t.id, t.slug, t.name, t.description, t.category, t.is_featured, t.criteria,
         t.marketplaces, t.check_frequency_minutes, t.updated_at)
        for t in rows
    ]  # fmt: skip


# --- the shipped set ------------------------------------------------------------------


@pytest.mark.parametrize("template", BUILTIN_TEMPLATES, ids=lambda t: t["slug"])
def test_every_shipped_template_has_valid_criteria_and_fits_the_free_plan(
    template: dict[str, Any],
) -> None:
    criteria = SearchCriteria.model_validate(template["criteria"])
    assert criteria.keywords
    assert {"broken", "faulty", "replica"} & {k.lower() for k in criteria.exclude_keywords}
    plans.check_search_settings(
        Plan.FREE,
        marketplaces=len(template["marketplaces"]),
        check_frequency_minutes=template["check_frequency_minutes"],
    )
    assert template["marketplaces"] == ["ebay"]


def test_the_six_templates_are_shipped_with_unique_slugs() -> None:
    assert {t["name"] for t in BUILTIN_TEMPLATES} == SHIPPED_NAMES
    assert len({t["slug"] for t in BUILTIN_TEMPLATES}) == len(BUILTIN_TEMPLATES) == 6


async def test_loading_the_templates_again_changes_nothing(
    app: FastAPI, session: AsyncSession
) -> None:
    loaded_at_start = await snapshot(session)
    assert len(loaded_at_start) == 6
    await load_builtin_templates(session)
    await session.commit()
    await load_builtin_templates(session)
    await session.commit()
    assert await snapshot(session) == loaded_at_start


async def test_loading_restores_edited_fields_in_place_without_duplicates(
    app: FastAPI, session: AsyncSession
) -> None:
    before = {row[1]: row for row in await snapshot(session)}
    template = await session.scalar(
        select(SearchTemplate).where(SearchTemplate.slug == "laptop-bargains")
    )
    assert template is not None
    template.name = "Old name"
    template.criteria = {"keywords": ["netbook"]}
    template.is_featured = True
    await session.commit()

    await load_builtin_templates(session)
    await session.commit()

    after = {row[1]: row for row in await snapshot(session)}
    assert set(after) == set(before)
    restored = after["laptop-bargains"]
    assert restored[0] == before["laptop-bargains"][0]  # same id: updated, not re-created
    assert restored[2] == "Laptop Bargains"
    assert restored[5] is False
    assert restored[6] == before["laptop-bargains"][6]
    total = await session.scalar(select(func.count()).select_from(SearchTemplate))
    assert total == 6


async def test_loading_leaves_templates_it_does_not_ship_alone(
    app: FastAPI, session: AsyncSession
) -> None:
    session.add(
        SearchTemplate(
            slug="local-furniture",
            name="Local Furniture",
            description="Added by the operator",
            category="home",
            criteria={"keywords": ["oak table"]},
            marketplaces=["gumtree"],
            check_frequency_minutes=60,
        )
    )
    await session.commit()
    await load_builtin_templates(session)
    await session.commit()
    assert len(await snapshot(session)) == 7


# --- browsing -------------------------------------------------------------------------


async def test_list_shows_the_six_templates_featured_first(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get(URL, headers=headers)
    assert response.status_code == 200
    page = response.json()
    assert (page["total"], page["limit"], page["offset"]) == (6, 20, 0)
    assert {t["name"] for t in page["items"]} == SHIPPED_NAMES
    featured = [t["is_featured"] for t in page["items"]]
    assert featured == sorted(featured, reverse=True)
    iphone = next(t for t in page["items"] if t["name"] == "iPhone Flips UK")
    assert iphone["criteria"]["currency"] == "GBP"
    assert "broken" in iphone["criteria"]["exclude_keywords"]
    assert iphone["marketplaces"] == ["ebay"]
    assert iphone["check_frequency_minutes"] == 30


async def test_list_filters_by_category_and_featured_and_paginates(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    electronics = (
        await client.get(URL, params={"category": "electronics"}, headers=headers)
    ).json()
    assert {t["name"] for t in electronics["items"]} == {"iPhone Flips UK", "Laptop Bargains"}
    assert electronics["total"] == 2

    featured = (await client.get(URL, params={"featured": True}, headers=headers)).json()
    assert featured["total"] >= 1
    assert all(t["is_featured"] for t in featured["items"])
    not_featured = (await client.get(URL, params={"featured": False}, headers=headers)).json()
    assert featured["total"] + not_featured["total"] == 6

    nothing = (await client.get(URL, params={"category": "boats"}, headers=headers)).json()
    assert (nothing["items"], nothing["total"]) == ([], 0)

    first = (await client.get(URL, params={"limit": 4}, headers=headers)).json()
    rest = (await client.get(URL, params={"limit": 4, "offset": 4}, headers=headers)).json()
    assert len(first["items"]) == 4
    assert len(rest["items"]) == 2
    assert {t["id"] for t in first["items"]}.isdisjoint({t["id"] for t in rest["items"]})


@pytest.mark.parametrize(
    "params",
    [{"limit": 101}, {"featured": "sometimes"}, {"category": "x\x00"}, {"category": "c" * 51}],
    ids=["limit over 100", "not a boolean", "NUL byte", "category too long"],
)
async def test_bad_list_parameters_are_422(
    client: httpx.AsyncClient, headers: dict[str, str], params: dict[str, Any]
) -> None:
    response = await client.get(URL, params=params, headers=headers)
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


async def test_templates_need_a_token(client: httpx.AsyncClient) -> None:
    assert (await client.get(URL)).status_code == 401
    assert (await client.get(f"{URL}{uuid.uuid4()}")).status_code == 401
    assert (await client.post(f"{URL}{uuid.uuid4()}/use")).status_code == 401


async def test_get_returns_one_template_and_unknown_ids_are_404(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    listed = next(iter(await all_templates(client, headers)))
    response = await client.get(f"{URL}{listed['id']}", headers=headers)
    assert response.status_code == 200
    assert response.json() == listed
    missing = await client.get(f"{URL}{uuid.uuid4()}", headers=headers)
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Template not found", "code": "not_found"}
    assert (await client.get(f"{URL}nope", headers=headers)).status_code == 422


# --- use ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SHIPPED_NAMES))
async def test_a_free_user_can_start_a_search_from_every_template(
    client: httpx.AsyncClient, headers: dict[str, str], name: str
) -> None:
    template = next(t for t in await all_templates(client, headers) if t["name"] == name)
    response = await client.post(f"{URL}{template['id']}/use", headers=headers)
    assert response.status_code == 201, response.text
    search = response.json()
    assert search["name"] == name
    assert search["criteria"] == template["criteria"]
    # The shipped templates name eBay, which has no keys here: the search starts on the
    # demo marketplace instead of waiting for a setup the user cannot do.
    assert search["marketplaces"] == ["demo"]
    assert set(template["marketplaces"]) == {"ebay"}
    assert search["check_frequency_minutes"] == template["check_frequency_minutes"]
    assert search["alert_channels"] == ["in_app"]
    assert search["status"] == "active"
    mine = await client.get(f"/api/v1/searches/{search['id']}", headers=headers)
    assert mine.status_code == 200


async def test_use_applies_the_overrides(
    client: httpx.AsyncClient, session: AsyncSession, app: FastAPI
) -> None:
    pro = await make_user(session, email="pro@example.com", plan=Plan.PRO)
    pro_headers = token_headers(app, pro)
    template_id_ = await template_id(client, pro_headers, "Bicycle Deals")
    overrides = {
        "name": "Bikes near Leeds",
        "marketplaces": ["ebay", "gumtree"],
        "alert_channels": ["in_app"],
        "check_frequency_minutes": 10,
        "location": "Leeds",
    }
    response = await client.post(f"{URL}{template_id_}/use", json=overrides, headers=pro_headers)
    assert response.status_code == 201, response.text
    search = response.json()
    assert search["name"] == "Bikes near Leeds"
    assert search["marketplaces"] == ["ebay", "gumtree"]
    assert search["alert_channels"] == ["in_app"]
    assert search["check_frequency_minutes"] == 10
    assert search["criteria"]["location"] == "Leeds"
    assert "Brompton" in search["criteria"]["keywords"]


async def test_an_empty_body_uses_the_template_as_is(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    template_id_ = await template_id(client, headers, "Collectible Watches")
    response = await client.post(f"{URL}{template_id_}/use", json={}, headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "Collectible Watches"


async def test_use_respects_the_plan(
    client: httpx.AsyncClient, headers: dict[str, str], session: AsyncSession, user: User
) -> None:
    template_id_ = await template_id(client, headers, "iPhone Flips UK")
    two = {"marketplaces": ["ebay", "gumtree"]}
    refused = await client.post(f"{URL}{template_id_}/use", json=two, headers=headers)
    assert refused.status_code == 403
    assert refused.json()["detail"].startswith("Your plan allows 1 marketplace per search")
    fast = {"check_frequency_minutes": 5}
    assert (
        await client.post(f"{URL}{template_id_}/use", json=fast, headers=headers)
    ).status_code == 403

    await make_search(session, owner=user)
    await make_search(session, owner=user)
    full = await client.post(f"{URL}{template_id_}/use", headers=headers)
    assert full.status_code == 403
    assert full.json()["code"] == "plan_limit_exceeded"
    await session.rollback()
    count = await session.scalar(
        select(func.count()).select_from(Search).where(Search.owner_id == user.id)
    )
    assert count == 2


async def test_use_checks_the_chosen_alert_channels(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    template_id_ = await template_id(client, headers, "Laptop Bargains")
    response = await client.post(
        f"{URL}{template_id_}/use", json={"alert_channels": ["webhook"]}, headers=headers
    )
    assert response.status_code == 422
    assert "webhook_url" in response.json()["detail"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"criteria": {"keywords": ["x"]}},
        {"name": ""},
        {"marketplaces": ["amazon"]},
        {"marketplaces": []},
        {"check_frequency_minutes": 0},
        {"location": "l" * 201},
        {"name": "bad\x00name"},
    ],
    ids=[
        "unknown field",
        "empty name",
        "unknown marketplace",
        "no marketplaces",
        "frequency zero",
        "location too long",
        "NUL byte",
    ],
)
async def test_invalid_overrides_are_422(
    client: httpx.AsyncClient, headers: dict[str, str], overrides: dict[str, Any]
) -> None:
    template_id_ = await template_id(client, headers, "Laptop Bargains")
    response = await client.post(f"{URL}{template_id_}/use", json=overrides, headers=headers)
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


async def test_using_an_unknown_template_is_404(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.post(f"{URL}{uuid.uuid4()}/use", headers=headers)
    assert response.status_code == 404
