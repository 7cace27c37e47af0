"""Builds the engine's long-lived parts from settings, once per process.

A Celery worker process builds one at worker_process_init; the API process builds one in
its lifespan (for "check now" and the embedded runner). Both close it on the way out.
"""

from __future__ import annotations

import httpx
import redis.asyncio as redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.marketplaces.registry import build_adapters
from app.monitoring.cache import MemoryCache, RedisCache, ResponseCache
from app.monitoring.fetch import MonitoringRuntime, UpstreamRateLimiter

# httpx degrades sharply beyond ~50 requests in flight per client on this class of machine.
MAX_CONNECTIONS = 50


def build_monitoring_runtime(
    settings: Settings, session_factory: async_sessionmaker[AsyncSession]
) -> MonitoringRuntime:
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(15.0, connect=5.0),
        limits=httpx.Limits(max_connections=MAX_CONNECTIONS),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": f"{settings.app_name.replace(' ', '')}/0.1"},
    )
    cache: ResponseCache
    if settings.redis_url:
        cache = RedisCache(redis.from_url(settings.redis_url))
        limiter_url = settings.redis_url
    else:
        cache = MemoryCache()
        limiter_url = "memory://"
    return MonitoringRuntime(
        session_factory=session_factory,
        adapters=build_adapters(client, settings),
        cache=cache,
        limiter=UpstreamRateLimiter(limiter_url),
        cache_ttl_s=settings.fetch_cache_ttl_s,
        http_client=client,
    )


async def close_monitoring_runtime(runtime: MonitoringRuntime) -> None:
    await runtime.http_client.aclose()
    await runtime.cache.aclose()
    await runtime.limiter.aclose()
