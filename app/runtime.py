"""Builds the engine's long-lived parts from settings, once per process.

A Celery worker process builds one at worker_process_init; the API process builds one in
its lifespan (for "check now" and the embedded runner). Both close it on the way out.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from datetime import timedelta

import httpx
import redis.asyncio as redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.alerts.channels.registry import build_channels
from app.alerts.delivery import DeliveryRuntime
from app.alerts.outbox import RetryPolicy
from app.config import Settings
from app.marketplaces.registry import build_adapters, close_adapters
from app.monitoring.cache import MemoryCache, RedisCache, ResponseCache
from app.monitoring.fetch import MonitoringRuntime, UpstreamRateLimiter
from app.security import ssrf
from app.security.ssrf import Resolver

# httpx degrades sharply beyond ~50 requests in flight per client on this class of machine.
MAX_CONNECTIONS = 50


def _http_client(settings: Settings) -> httpx.AsyncClient:
    # No redirects and no proxy variables: every outbound call goes exactly where we say.
    return httpx.AsyncClient(
        timeout=httpx.Timeout(15.0, connect=5.0),
        limits=httpx.Limits(max_connections=MAX_CONNECTIONS),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": f"{settings.app_name.replace(' ', '')}/0.1"},
    )


def build_monitoring_runtime(
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    *,
    resolve: Resolver = ssrf.system_resolver,
) -> MonitoringRuntime:
    """`resolve` resolves the host names of user-supplied feed URLs for the SSRF check."""
    client = _http_client(settings)
    cache: ResponseCache
    if settings.redis_url:
        cache = RedisCache(redis.from_url(settings.redis_url))
        limiter_url = settings.redis_url
    else:
        cache = MemoryCache()
        limiter_url = "memory://"
    return MonitoringRuntime(
        session_factory=session_factory,
        adapters=build_adapters(client, settings, resolve),
        cache=cache,
        limiter=UpstreamRateLimiter(limiter_url),
        cache_ttl_s=settings.fetch_cache_ttl_s,
        http_client=client,
        claim_lease=timedelta(seconds=settings.check_lease_s),
        first_follow_up=timedelta(seconds=settings.first_follow_up_s),
        store_slots=asyncio.Semaphore(settings.database_pool_size),
    )


async def close_monitoring_runtime(runtime: MonitoringRuntime) -> None:
    await close_adapters(runtime.adapters.values())
    await runtime.http_client.aclose()
    await runtime.cache.aclose()
    await runtime.limiter.aclose()


def build_delivery_runtime(
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    *,
    resolve: Resolver = ssrf.system_resolver,
) -> DeliveryRuntime:
    lease = timedelta(seconds=settings.alert_lease_s)
    client = _http_client(settings)
    return DeliveryRuntime(
        session_factory=session_factory,
        channels=build_channels(client, settings, resolve),
        http_client=client,
        policy=RetryPolicy(tuple(settings.alert_retry_schedule_s)),
        lease=lease,
        worker_id=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
        public_base_url=settings.public_base_url,
        digest_max_listings=settings.alert_digest_max_listings,
        digest_daily_hour=settings.digest_daily_hour,
        link_signing_key=settings.secret_key.get_secret_value(),
        channel_pause=timedelta(seconds=settings.alert_channel_pause_s),
        send_timeout_s=min(60.0, lease.total_seconds() / 2),
        concurrency=settings.alert_delivery_concurrency,
    )


async def close_delivery_runtime(runtime: DeliveryRuntime) -> None:
    await runtime.http_client.aclose()
