"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.schemas.health import Readiness
from app.services import health as health_service

router = APIRouter(tags=["ops"])


@router.get("/health")
async def liveness() -> dict[str, str]:
    """The process is up and serving; touches nothing else."""
    return {"status": "ok"}


@router.get(
    "/health/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A dependency is unreachable"}},
)
async def readiness(request: Request) -> JSONResponse:
    """The database (and the broker, when one is configured) answer."""
    checks = await health_service.check_dependencies(
        request.app.state.engine, broker_url=request.app.state.settings.broker_url
    )
    ready = all(check == "ok" for check in checks.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, 200 if ready else 503
    )
