"""GET /metrics: the Prometheus exposition, for the scraper only.

With METRICS_TOKEN set, a request must carry `Authorization: Bearer <token>`. Without it,
only loopback clients are answered (a Prometheus on the same host, or `curl` on the box):
the series name marketplaces, channels and volumes that are nobody else's business.
"""

from __future__ import annotations

import ipaddress
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from app import metrics
from app.api.deps import ClientIP, SettingsDep
from app.db import utcnow
from app.errors import AuthenticationFailed, PermissionDenied
from app.schemas.common import ErrorOut
from app.services import health as health_service

router = APIRouter(tags=["ops"])


def require_scraper(request: Request, settings: SettingsDep, client: ClientIP) -> None:
    """The caller may read /metrics: it has the token, or no token is set and it is local."""
    token = settings.metrics_token.get_secret_value()
    if token:
        scheme, _, offered = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(
            offered.strip().encode(), token.encode()
        ):
            raise AuthenticationFailed("A valid metrics token is required (METRICS_TOKEN)")
        return
    if not _is_loopback(client):
        raise PermissionDenied(
            "/metrics answers loopback clients only; set METRICS_TOKEN to scrape it from elsewhere"
        )


ScraperAllowed = Annotated[None, Depends(require_scraper)]


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {metrics.CONTENT_TYPE: {}}, "description": "Prometheus text format"},
        401: {"model": ErrorOut, "description": "METRICS_TOKEN is set and the request lacks it"},
        403: {
            "model": ErrorOut,
            "description": "No METRICS_TOKEN is set and the client is not on loopback",
        },
    },
)
async def prometheus_metrics(request: Request, _allowed: ScraperAllowed) -> Response:
    """Counters and histograms of every process, plus the outbox and scheduler state."""
    state = await health_service.engine_state(request.app.state.session_factory, now=utcnow())
    return Response(metrics.render(state), media_type=metrics.CONTENT_TYPE)


def _is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is loopback too
    return address.is_loopback
