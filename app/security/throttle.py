"""Login and sign-up throttling with `limits`: in memory for one process, Redis when shared.

Guessing a password stays expensive, yet nobody can keep an owner out of their account:
- each address gets a few tries per account (`pair_failure_limit`), counted before the
  password is checked, so parallel guesses cannot all slip through, and forgotten on a
  success;
- each address gets a budget of failures over all accounts (`address_failure_limit`);
- each account has a generous ceiling of failures from every address together
  (`account_failure_limit`). Over it, an address that has already failed against the
  account gets no more tries, while one that has not (the owner at home) still does.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse

from app.errors import TooManyRequests
from app.ratelimit import SharedLimiter


class AuthThrottle:
    """Per-IP limits on the auth endpoints and the login failure limits above."""

    def __init__(
        self,
        storage_url: str,
        *,
        ip_limit: str,
        pair_failure_limit: str,
        address_failure_limit: str,
        account_failure_limit: str,
    ) -> None:
        """`storage_url` is a `limits` storage URI: memory://, redis://, rediss://, ..."""
        self._shared = SharedLimiter(storage_url)
        self._limiter = self._shared.limiter
        self._ip_limit = parse(ip_limit)
        self._pair_limit = parse(pair_failure_limit)
        self._address_limit = parse(address_failure_limit)
        self._account_limit = parse(account_failure_limit)

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

    async def claim_login_attempt(self, account: str, ip: str) -> None:
        """Count one login attempt on `account` from `ip` before the password is checked;
        raise TooManyRequests when this address may not try now (see the module)."""
        if not await self._limiter.hit(self._pair_limit, "pair", account, ip):
            raise TooManyRequests(
                "Too many failed logins for this account from this address; try again later",
                retry_after_s=await self._retry_after(self._pair_limit, "pair", account, ip),
            )
        if not await self._limiter.test(self._address_limit, "address", ip):
            raise TooManyRequests(
                "Too many failed logins from this address; try again later",
                retry_after_s=await self._retry_after(self._address_limit, "address", ip),
            )
        if await self._limiter.test(self._account_limit, "account", account):
            return
        pair = await self._limiter.get_window_stats(self._pair_limit, "pair", account, ip)
        # This attempt is already counted: anything more is an earlier failure.
        if self._pair_limit.amount - pair.remaining > 1:
            raise TooManyRequests(
                "Too many failed logins for this account; try again later",
                retry_after_s=await self._retry_after(self._account_limit, "account", account),
            )

    async def record_failure(self, account: str, ip: str) -> bool:
        """Count a wrong password; True when this failure took the account over its
        ceiling, the moment to tell the owner their account is under attack."""
        await self._limiter.hit(self._address_limit, "address", ip)
        was_open = await self._limiter.test(self._account_limit, "account", account)
        await self._limiter.hit(self._account_limit, "account", account)
        return was_open and not await self._limiter.test(self._account_limit, "account", account)

    async def record_success(self, account: str, ip: str) -> None:
        """Forget this address's attempts on the account: only failures since count."""
        await self._limiter.clear(self._pair_limit, "pair", account, ip)

    async def _retry_after(self, item: RateLimitItem, *identifiers: str) -> int:
        stats = await self._limiter.get_window_stats(item, *identifiers)
        return max(1, math.ceil(stats.reset_time - time.time()))
