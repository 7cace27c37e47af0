"""Login and sign-up throttling with `limits`: in memory for one process, Redis when shared."""

from __future__ import annotations

import math
import time

from limits import parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from app.errors import TooManyRequests


class AuthThrottle:
    """Per-IP limits on the auth endpoints and per-account limits on failed logins."""

    def __init__(self, storage_url: str, *, ip_limit: str, account_failure_limit: str) -> None:
        url = storage_url if storage_url.startswith("async+") else f"async+{storage_url}"
        self._limiter = MovingWindowRateLimiter(storage_from_string(url))
        self._ip_limit = parse(ip_limit)
        self._failure_limit = parse(account_failure_limit)

    async def hit_ip(self, ip: str, action: str) -> None:
        """Count one request from this IP; raise TooManyRequests over the limit."""
        if not await self._limiter.hit(self._ip_limit, "ip", action, ip):
            raise TooManyRequests(
                "Too many requests from this address; try again later",
                retry_after_s=await self._retry_after(self._ip_limit, "ip", action, ip),
            )

    async def check_account(self, email: str) -> None:
        """Refuse a login attempt while the account has too many recent failures, from any IP."""
        if not await self._limiter.test(self._failure_limit, "account", email):
            raise TooManyRequests(
                "Too many failed logins for this account; try again later",
                retry_after_s=await self._retry_after(self._failure_limit, "account", email),
            )

    async def record_failure(self, email: str) -> None:
        await self._limiter.hit(self._failure_limit, "account", email)

    async def record_success(self, email: str) -> None:
        await self._limiter.clear(self._failure_limit, "account", email)

    async def _retry_after(self, item: object, *identifiers: str) -> int:
        stats = await self._limiter.get_window_stats(item, *identifiers)  # type: ignore[arg-type]
        return max(1, math.ceil(stats.reset_time - time.time()))
