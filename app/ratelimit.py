"""`limits` rate limiters over memory:// (one process) or Redis (shared by every process)."""

from __future__ import annotations

import redis.asyncio as redis
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string


class SharedLimiter:
    """A moving-window limiter; `limiter` is the `limits` API, `aclose()` frees connections."""

    def __init__(self, storage_url: str) -> None:
        """`storage_url` is a `limits` storage URI: memory://, redis://, rediss://, ..."""
        url = storage_url if storage_url.startswith("async+") else f"async+{storage_url}"
        options: dict[str, object] = {}
        self._redis_pool: redis.ConnectionPool | None = None
        if url.startswith("async+redis"):
            # limits' async Redis storage defaults to coredis; redis-py is the client we ship.
            options["implementation"] = "redispy"
            if url.startswith(("async+redis://", "async+rediss://")):
                # Our own pool, so that aclose() can release its connections.
                self._redis_pool = redis.ConnectionPool.from_url(url.removeprefix("async+"))
                options["connection_pool"] = self._redis_pool
        # `connection_pool` is a documented option; the options' annotation leaves it out.
        storage = storage_from_string(url, **options)  # type: ignore[arg-type]
        self.limiter = MovingWindowRateLimiter(storage)

    async def aclose(self) -> None:
        """Release the storage's connections; call once on shutdown."""
        if self._redis_pool is not None:
            await self._redis_pool.disconnect()
