"""The Stripe API client: billing configuration, an httpx-backed client per use, and the
mapping of Stripe's failures onto domain errors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx
import stripe

from app.config import Settings
from app.errors import ServiceUnavailable
from app.models import Plan

logger = logging.getLogger(__name__)

T = TypeVar("T")

NOT_CONFIGURED = "Billing is not configured on this server"
MISCONFIGURED = "Billing is misconfigured on this server"
STRIPE_TIMEOUT_S = 20.0
# The library retries connection errors, 409 and 5xx with the same idempotency key.
STRIPE_NETWORK_RETRIES = 2


def billing_configured(settings: Settings) -> bool:
    """Whether this server can talk to Stripe at all (a secret key is set)."""
    return bool(settings.stripe_secret_key.get_secret_value())


def plan_prices(settings: Settings) -> dict[Plan, str]:
    """The Stripe price id of each paid plan that has one configured."""
    prices = {
        Plan.STARTER: settings.stripe_price_starter,
        Plan.PRO: settings.stripe_price_pro,
        Plan.BUSINESS: settings.stripe_price_business,
    }
    return {plan: price for plan, price in prices.items() if price}


def require_configured(settings: Settings) -> None:
    """Raise ServiceUnavailable unless billing is configured."""
    if not billing_configured(settings):
        raise ServiceUnavailable(NOT_CONFIGURED)


class ResourceMissing(Exception):
    """Stripe answered resource_missing; `param` names what is missing."""

    def __init__(self, param: str | None) -> None:
        super().__init__(param)
        self.param = param


@asynccontextmanager
async def open_client(settings: Settings) -> AsyncIterator[stripe.StripeClient]:
    """A Stripe client on this server's key and API base, closed on exit."""
    # One HTTP client per use: billing calls are rare, and a client never outlives the
    # event loop it was made on.
    http_client = _StripeHTTPClient(timeout_s=STRIPE_TIMEOUT_S)
    client = stripe.StripeClient(
        settings.stripe_secret_key.get_secret_value(),
        base_addresses={"api": settings.stripe_api_base},
        http_client=http_client,
        max_network_retries=STRIPE_NETWORK_RETRIES,
    )
    try:
        yield client
    finally:
        await http_client.close_async()


async def call(request: Awaitable[T]) -> T:
    """Await a Stripe request; its failures become domain errors (503: the user cannot fix
    them) except resource_missing, which callers decide about."""
    try:
        return await request
    except stripe.InvalidRequestError as exc:
        if exc.code == "resource_missing":
            raise ResourceMissing(exc.param) from exc
        logger.error("Stripe refused a request: %s", exc)
        raise ServiceUnavailable(
            "Stripe refused the request; the server's billing settings may be wrong"
        ) from exc
    except (stripe.AuthenticationError, stripe.PermissionError) as exc:
        logger.error("Stripe refused the API key: %s", exc)
        raise ServiceUnavailable(f"{MISCONFIGURED}: Stripe refused its API key") from exc
    except stripe.RateLimitError as exc:
        raise ServiceUnavailable(
            "Stripe is receiving too many requests; try again in a minute"
        ) from exc
    except stripe.StripeError as exc:
        logger.warning("Stripe request failed: %s", exc)
        raise ServiceUnavailable("Stripe could not be reached; try again shortly") from exc


class _StripeHTTPClient(stripe.HTTPClient):
    """The stripe library's HTTP interface on httpx. (Its bundled httpx client posts the
    encoded form as `data=`, which httpx deprecates; this one sends it as `content`.)
    The library's own retry loop calls `request_async` and `sleep_async`."""

    name = "httpx"

    def __init__(self, *, timeout_s: float) -> None:
        super().__init__()
        self._http = httpx.AsyncClient(timeout=timeout_s)

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        try:
            response = await self._http.request(
                method, url, headers=dict(headers), content=post_data or None
            )
        except httpx.HTTPError as exc:
            raise stripe.APIConnectionError(  # type: ignore[no-untyped-call]
                f"Could not reach Stripe ({type(exc).__name__})", should_retry=True
            ) from exc
        return response.content, response.status_code, response.headers

    async def close_async(self) -> None:
        await self._http.aclose()

    def sleep_async(self, secs: float) -> Awaitable[None]:
        return asyncio.sleep(secs)
