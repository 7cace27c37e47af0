"""Search templates: the shipped set, browsing them, and starting a search from one."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidInput, NotFound
from app.models import Search, SearchTemplate, User
from app.schemas.searches import SearchCreate, SearchCriteria
from app.schemas.templates import TemplateUse
from app.services import availability, plans, searches

# Every template must be usable as-is on the FREE plan: one marketplace, every 30 minutes.
_COMMON_EXCLUDES = ["broken", "faulty", "for parts", "spares or repair", "job lot"]

BUILTIN_TEMPLATES: list[dict[str, Any]] = [
    {
        "slug": "iphone-flips-uk",
        "name": "iPhone Flips UK",
        "description": (
            "Recent iPhones in working order priced well under resale value, for flipping. "
            "Prices in GBP."
        ),
        "category": "electronics",
        "is_featured": True,
        "criteria": {
            "keywords": ["iPhone 13", "iPhone 14", "iPhone 15"],
            "exclude_keywords": [
                *_COMMON_EXCLUDES,
                "cracked",
                "icloud locked",
                "activation locked",
                "case only",
                "box only",
            ],
            "min_price": 100,
            "max_price": 400,
            "currency": "GBP",
            "condition": "used",
        },
        "marketplaces": ["ebay"],
        "check_frequency_minutes": 30,
    },
    {
        "slug": "vintage-gaming-deals",
        "name": "Vintage Gaming Deals",
        "description": (
            "Retro consoles from the 80s and 90s, boxed or loose, at collector-friendly "
            "prices. Prices in GBP."
        ),
        "category": "gaming",
        "is_featured": True,
        "criteria": {
            "keywords": [
                "Nintendo 64",
                "Super Nintendo",
                "SNES console",
                "Sega Mega Drive",
                "Game Boy Color",
                "Sega Dreamcast",
            ],
            "exclude_keywords": [
                *_COMMON_EXCLUDES,
                "reproduction",
                "repro",
                "empty box",
                "mini",
            ],
            "max_price": 150,
            "currency": "GBP",
        },
        "marketplaces": ["ebay"],
        "check_frequency_minutes": 30,
    },
    {
        "slug": "designer-clothing-steals",
        "name": "Designer Clothing Steals",
        "description": (
            "Genuine designer coats and jackets well below retail price; replicas and "
            "'inspired' pieces filtered out. Prices in GBP."
        ),
        "category": "fashion",
        "is_featured": True,
        "criteria": {
            "keywords": [
                "Burberry trench coat",
                "Barbour jacket",
                "Stone Island jacket",
                "Moncler jacket",
                "Canada Goose",
            ],
            "exclude_keywords": [
                "replica",
                "fake",
                "inspired",
                "style",
                "damaged",
                "stained",
                "ripped",
            ],
            "max_price": 200,
            "currency": "GBP",
        },
        "marketplaces": ["ebay"],
        "check_frequency_minutes": 30,
    },
    {
        "slug": "collectible-watches",
        "name": "Collectible Watches",
        "description": (
            "Sought-after mechanical watches from established makers; replicas, homages and "
            "non-working pieces filtered out. Prices in GBP."
        ),
        "category": "watches",
        "is_featured": False,
        "criteria": {
            "keywords": [
                "Omega Seamaster",
                "Omega Speedmaster",
                "Seiko 6139",
                "Seiko SKX007",
                "Tudor Black Bay",
                "Longines automatic",
            ],
            "exclude_keywords": [
                *_COMMON_EXCLUDES,
                "replica",
                "homage",
                "fake",
                "strap only",
                "box only",
                "not working",
            ],
            "min_price": 100,
            "max_price": 3000,
            "currency": "GBP",
            "condition": "used",
        },
        "marketplaces": ["ebay"],
        "check_frequency_minutes": 30,
    },
    {
        "slug": "laptop-bargains",
        "name": "Laptop Bargains",
        "description": (
            "Recent MacBooks and business ultrabooks in working order, priced to save. "
            "Prices in GBP."
        ),
        "category": "electronics",
        "is_featured": False,
        "criteria": {
            "keywords": [
                "MacBook Air M1",
                "MacBook Air M2",
                "MacBook Pro M1",
                "ThinkPad X1 Carbon",
                "Dell XPS 13",
            ],
            "exclude_keywords": [
                *_COMMON_EXCLUDES,
                "cracked screen",
                "bios locked",
                "icloud locked",
                "no hard drive",
            ],
            "min_price": 150,
            "max_price": 600,
            "currency": "GBP",
            "condition": "used",
        },
        "marketplaces": ["ebay"],
        "check_frequency_minutes": 30,
    },
    {
        "slug": "bicycle-deals",
        "name": "Bicycle Deals",
        "description": (
            "Quality road, gravel and folding bikes from known brands, complete and "
            "rideable. Prices in GBP."
        ),
        "category": "sports",
        "is_featured": False,
        "criteria": {
            "keywords": [
                "Brompton",
                "road bike Specialized",
                "road bike Trek",
                "Cannondale",
                "gravel bike",
            ],
            "exclude_keywords": [
                *_COMMON_EXCLUDES,
                "frame only",
                "wheels only",
                "kids",
                "wanted",
            ],
            "min_price": 100,
            "max_price": 800,
            "currency": "GBP",
            "condition": "used",
        },
        "marketplaces": ["ebay"],
        "check_frequency_minutes": 30,
    },
]

_UPDATABLE = (
    "name",
    "description",
    "category",
    "is_featured",
    "criteria",
    "marketplaces",
    "check_frequency_minutes",
)


async def load_builtin_templates(session: AsyncSession) -> None:
    """Insert or update the shipped templates by slug; safe to run at every start, and by
    several processes at once. Templates not shipped (any more) are left alone. Flushes."""
    shipped = {item["slug"]: _canonical(item) for item in BUILTIN_TEMPLATES}
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    for values in shipped.values():
        # DO NOTHING on a taken slug: a concurrent start may have inserted it first.
        await session.execute(
            insert(SearchTemplate)
            .values(id=uuid.uuid4(), **values)
            .on_conflict_do_nothing(index_elements=[SearchTemplate.slug])
        )
    existing = await session.scalars(
        select(SearchTemplate).where(SearchTemplate.slug.in_(list(shipped)))
    )
    for template in existing:
        for field in _UPDATABLE:
            value = shipped[template.slug][field]
            if getattr(template, field) != value:
                setattr(template, field, value)
    await session.flush()


async def list_templates(
    session: AsyncSession,
    *,
    category: str | None = None,
    featured: bool | None = None,
    limit: int,
    offset: int,
) -> tuple[list[SearchTemplate], int]:
    """One page of templates (featured first, then by name) and the total count."""
    conditions: list[Any] = []
    if category is not None:
        conditions.append(SearchTemplate.category == category)
    if featured is not None:
        conditions.append(SearchTemplate.is_featured.is_(featured))
    total = await session.scalar(
        select(func.count()).select_from(SearchTemplate).where(*conditions)
    )
    rows = await session.scalars(
        select(SearchTemplate)
        .where(*conditions)
        .order_by(SearchTemplate.is_featured.desc(), SearchTemplate.name, SearchTemplate.id)
        .limit(limit)
        .offset(offset)
    )
    return list(rows), total or 0


async def get(session: AsyncSession, template_id: uuid.UUID) -> SearchTemplate:
    """The template; NotFound if there is none with this id."""
    template = await session.get(SearchTemplate, template_id)
    if template is None:
        raise NotFound("Template not found")
    return template


async def use(
    session: AsyncSession,
    template_id: uuid.UUID,
    overrides: TemplateUse | None,
    *,
    owner: User,
    setup: availability.ServerSetup,
) -> Search:
    """A new search of the owner's from the template, with the given overrides; without
    marketplaces of their own, the template's this server can check (see
    `availability.starting_marketplaces`).

    Raises NotFound, and whatever `searches.create` raises (plan limits, channels).
    """
    template = await get(session, template_id)
    overrides = overrides or TemplateUse()
    criteria = dict(template.criteria)
    if overrides.location is not None:
        criteria["location"] = overrides.location
    body: dict[str, Any] = {
        "name": overrides.name or template.name,
        "description": template.description,
        "criteria": criteria,
        "marketplaces": overrides.marketplaces
        or availability.starting_marketplaces(
            template.marketplaces,
            setup.adapters,
            limit=plans.limits_for(owner.plan).max_marketplaces_per_search,
        ),
        "check_frequency_minutes": (
            overrides.check_frequency_minutes or template.check_frequency_minutes
        ),
    }
    if overrides.alert_channels is not None:
        body["alert_channels"] = overrides.alert_channels
    try:
        data = SearchCreate.model_validate(body)
    except ValidationError as exc:
        # Only reachable if a stored template was edited into an invalid one by hand.
        raise InvalidInput(f"This template cannot be used: {exc.errors()[0]['msg']}") from exc
    return await searches.create(session, data, owner=owner)


def _canonical(item: dict[str, Any]) -> dict[str, Any]:
    """The row values of a shipped template, its criteria in their stored form."""
    return {**item, "criteria": SearchCriteria.model_validate(item["criteria"]).stored()}
