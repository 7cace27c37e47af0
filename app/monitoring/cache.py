"""A brief cache of upstream responses: in memory in one process, Redis across workers."""

from __future__ import annotations

import json
import time
from dataclasses import fields
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import redis.asyncio as redis

from app.marketplaces.base import Listing

_LISTING_FIELDS = tuple(field.name for field in fields(Listing))


class ResponseCache(Protocol):
    async def get(self, key: str) -> list[Listing] | None: ...

    async def set(self, key: str, listings: list[Listing], ttl_s: float) -> None: ...

    async def aclose(self) -> None: ...


class MemoryCache:
    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: dict[str, tuple[float, list[Listing]]] = {}
        self._max_entries = max_entries

    async def get(self, key: str) -> list[Listing] | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            self._entries.pop(key, None)
            return None
        return entry[1]

    async def set(self, key: str, listings: list[Listing], ttl_s: float) -> None:
        if len(self._entries) >= self._max_entries:
            self._entries.clear()  # crude but bounded; entries live seconds anyway
        self._entries[key] = (time.monotonic() + ttl_s, listings)

    async def aclose(self) -> None:
        self._entries.clear()


class RedisCache:
    def __init__(self, client: redis.Redis, prefix: str = "marketmon:fetch:") -> None:
        self._client = client
        self._prefix = prefix

    async def get(self, key: str) -> list[Listing] | None:
        raw = await self._client.get(self._prefix + key)
        if raw is None:
            return None
        return [_listing_from_json(item) for item in json.loads(raw)]

    async def set(self, key: str, listings: list[Listing], ttl_s: float) -> None:
        # A shallow dict per listing: asdict() deep-copies each raw document first, which
        # cost seven times the encoding itself on every fetch of a busy worker.
        payload = json.dumps(
            [{name: getattr(item, name) for name in _LISTING_FIELDS} for item in listings],
            default=_encode,
        )
        await self._client.set(self._prefix + key, payload, px=max(1, int(ttl_s * 1000)))

    async def aclose(self) -> None:
        await self._client.aclose()


def _encode(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot cache {type(value).__name__}")


def _listing_from_json(data: dict[str, Any]) -> Listing:
    if data.get("price") is not None:
        data["price"] = Decimal(data["price"])
    if data.get("posted_at"):
        data["posted_at"] = datetime.fromisoformat(data["posted_at"])
    return Listing(**data)
