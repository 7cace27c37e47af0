"""Routes of /api/v1/marketplaces: what this server can watch."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.api.deps import CurrentUser, MonitoringDep
from app.schemas.marketplaces import MarketplaceOut
from app.services import marketplaces

router = APIRouter(prefix="/marketplaces", tags=["marketplaces"])

_AUTH: dict[int | str, dict[str, Any]] = {401: {"description": "Missing or invalid token"}}


@router.get("/", response_model=list[MarketplaceOut], responses=_AUTH)
async def list_marketplaces(runtime: MonitoringDep, _user: CurrentUser) -> list[MarketplaceOut]:
    """Every marketplace known to the product, with what it can filter upstream and whether
    this server is set up to check it."""
    return marketplaces.describe_all(runtime)
