"""Login and sign-up throttling with `limits`: in memory for one process, Redis when shared."""

from __future__ import annotations

import math
import time

from limits import parse

from app.errors import TooManyRequests
from app.ratelimit import SharedLimiter


class AuthThrottle:
    """Per-IP limits on the auth endpoints and per-account limits on failed logins."""

    def __init__(self, storage_url: str, *, ip_limit: str, account_failure_limit: str) -> None:
        """`storage_url` is a `limits` storage URI: memory://, redis://, rediss://, ..."""
        self._shared = SharedLimiter(storage_url)
        self._limiter = self._shared.limiter
        self._ip_limit = parse(ip_limit)
        self._failure_limit = parse(account_failure_limit)

    async def aclose(self) -> None:
        """Release the storage's connections; call once on shutdown."""
        await self._shared.aclose()

    async def hit_ip(self, ip: str, action: str) -> None:
        """Count one request from this IP; raise TooManyRequests over the limit."""
        if not await self._limiter.hit(self._ip_limit, "ip", action, ip):
            raise TooManyRequests(
                "Too many requests from this address; try again later",
                retry_after_s=await self._retry_after(self._ip_limit, "ip", action, ip),
            )

    async def claim_account_attempt(self, email: str) -> None:
        """Count one login attempt against the account, from any IP, before the password is
        checked; raise TooManyRequests while too many attempts have not ended in a success.

        Counting up front (one atomic hit) rather than after a failure keeps parallel guesses
        from all passing the check before any of them is recorded.
        """
        if not await self._limiter.hit(self._failure_limit, "account", email):
            raise TooManyRequests(
                "Too many failed logins for this account; try again later",
                retry_after_s=await self._retry_after(self._failure_limit, "account", email),
            )

    async def record_success(self, email: str) -> None:
        """Forget the account's attempts: only failures since the last success count."""
        await self._limiter.clear(self._failure_limit, "account", email)

    async def _retry_after(self, item: object, *identifiers: str) -> int:
        stats = await self._limiter.get_window_stats(item, *identifiers)  # type: ignore[arg-type]
        return max(1, math.ceil(stats.reset_time - time.time()))
