"""Routes of /api/v1/marketplaces: what this server can watch."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request

from app.api.deps import CurrentUser
from app.models import Marketplace
from app.monitoring.fetch import MonitoringRuntime
from app.schemas.marketplaces import CapabilitiesOut, MarketplaceOut

router = APIRouter(prefix="/marketplaces", tags=["marketplaces"])

_AUTH: dict[int | str, dict[str, Any]] = {401: {"description": "Missing or invalid token"}}


@router.get("/", response_model=list[MarketplaceOut], responses=_AUTH)
async def list_marketplaces(request: Request, _user: CurrentUser) -> list[MarketplaceOut]:
    """Every marketplace known to the product, with what it can filter upstream and whether
    this server is set up to check it."""
    runtime: MonitoringRuntime = request.app.state.monitoring_runtime
    described = []
    for marketplace in Marketplace:
        adapter = runtime.adapters.get(marketplace.value)
        described.append(
            MarketplaceOut(
                name=marketplace.value,
                available=adapter is not None,
                configured=adapter is not None and adapter.is_configured(),
                capabilities=None
                if adapter is None
                else CapabilitiesOut(**asdict(adapter.capabilities)),
            )
        )
    return described
