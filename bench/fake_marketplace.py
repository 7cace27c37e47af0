"""A fake eBay for the benchmarks, run as its own process on 127.0.0.1.

    python -m bench.fake_marketplace --latency-ms 150 --listings-per-query 50

It speaks what the app's eBay adapter reads (`external-apis.md` sections 1-2): the OAuth
client-credentials token and Browse `item_summary/search` (q, limit, offset, `next`),
so the real adapter runs unchanged. Every answer waits `latency`; every request is
counted. Each query has `listings_per_query` stable listings, and new ones can be
published at random moments (`POST /_bench/publish {"queries", "rate_per_s",
"duration_s", "seed"}`), newest first as `sort=newlyListed` shows them.

Control endpoints (not counted as upstream calls): `GET /_bench/stats`,
`GET /_bench/requests` (when each query was asked for), `GET /_bench/published`,
`POST /_bench/reset`. It prints `port=<port>` on its first line of output.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import socket
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import orjson
import uvicorn

from bench.infra import Child, start_child

TOKEN_PATH = "/identity/v1/oauth2/token"
SEARCH_PATH = "/buy/browse/v1/item_summary/search"
MAX_LIMIT = 200
TOKEN_TTL_S = 7200

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass
class Published:
    id: int
    q: str
    at: float  # time.time() when it became visible


@dataclass
class MarketplaceState:
    latency_s: float
    listings_per_query: int
    search_requests: int = 0
    token_requests: int = 0
    items_served: int = 0
    other_requests: int = 0
    # q -> time.time() of each search request for it, in arrival order.
    request_times: dict[str, list[float]] = field(default_factory=dict)
    published: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    publish_log: list[Published] = field(default_factory=list)
    _stable: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def reset(self) -> None:
        self.search_requests = self.token_requests = self.items_served = 0
        self.other_requests = 0
        self.request_times.clear()
        self.published.clear()
        self.publish_log.clear()

    def items_for(self, q: str) -> list[dict[str, Any]]:
        """Newest first: what was published for `q`, then its stable listings."""
        stable = self._stable.get(q)
        if stable is None:
            stable = self._stable[q] = _stable_items(q, self.listings_per_query)
        return [*self.published.get(q, ()), *stable]

    def publish(self, q: str) -> Published:
        entry = Published(id=len(self.publish_log) + 1, q=q, at=time.time())
        item = _item(9_000_000_000 + entry.id, f"{q} pub-{entry.id}", created=entry.at)
        self.published.setdefault(q, []).insert(0, item)
        self.publish_log.append(entry)
        return entry


class FakeMarketplaceApp:
    """The ASGI app: eBay's two endpoints and the control endpoints."""

    def __init__(self, state: MarketplaceState) -> None:
        self.state = state
        self._publishers: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        path, method = scope["path"], scope["method"]
        params = dict(parse_qsl(scope["query_string"].decode()))
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if path == SEARCH_PATH and method == "GET":
            status, document = await self._search(params, headers)
        elif path == TOKEN_PATH and method == "POST":
            status, document = await self._token(headers)
        elif path.startswith("/_bench/"):
            status, document = self._control(method, path, body)
        else:
            self.state.other_requests += 1
            status, document = 404, {"errors": [{"errorId": 404, "message": "Not found"}]}
        await _send_json(send, status, document)

    async def _token(self, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.state.token_requests += 1
        await asyncio.sleep(self.state.latency_s)
        if not headers.get("authorization", "").startswith("Basic "):
            return 401, {
                "error": "invalid_client",
                "error_description": "client authentication failed",
            }
        return 200, {
            "access_token": "v^1.1#bench-token",
            "expires_in": TOKEN_TTL_S,
            "token_type": "Application Access Token",
        }

    async def _search(
        self, params: dict[str, str], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        state = self.state
        state.search_requests += 1
        q = params.get("q", "")
        state.request_times.setdefault(q, []).append(time.time())
        # What is listed when the request arrives is what it sees.
        items = state.items_for(q)
        await asyncio.sleep(state.latency_s)
        if not headers.get("authorization", "").startswith("Bearer "):
            return 401, {"errors": [{"errorId": 1001, "message": "Invalid access token"}]}
        limit = min(int(params.get("limit", "50")), MAX_LIMIT)
        offset = int(params.get("offset", "0"))
        page = items[offset : offset + limit]
        state.items_served += len(page)
        document: dict[str, Any] = {
            "href": f"{SEARCH_PATH}?{urlencode(params)}",
            "total": len(items),
            "limit": limit,
            "offset": offset,
            "itemSummaries": page,
        }
        if offset + limit < len(items):
            document["next"] = f"{SEARCH_PATH}?{urlencode({**params, 'offset': offset + limit})}"
        return 200, document

    def _control(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        state = self.state
        if path == "/_bench/stats":
            return 200, {
                "search_requests": state.search_requests,
                "token_requests": state.token_requests,
                "items_served": state.items_served,
                "other_requests": state.other_requests,
                "distinct_queries": len(state.request_times),
            }
        if path == "/_bench/requests":
            return 200, state.request_times
        if path == "/_bench/published":
            return 200, [vars(entry) for entry in state.publish_log]
        if path == "/_bench/reset" and method == "POST":
            for task in self._publishers:
                task.cancel()
            state.reset()
            return 200, {"reset": True}
        if path == "/_bench/publish" and method == "POST":
            plan = orjson.loads(body)
            task = asyncio.create_task(self._publish_randomly(**plan))
            self._publishers.add(task)
            task.add_done_callback(self._publishers.discard)
            return 202, {"publishing": True}
        return 404, {"detail": "unknown control endpoint"}

    async def _publish_randomly(
        self, queries: list[str], rate_per_s: float, duration_s: float, seed: int
    ) -> None:
        """New listings at the moments of a Poisson process, each on a random query."""
        rng = random.Random(seed)
        deadline = time.monotonic() + duration_s
        while True:
            await asyncio.sleep(rng.expovariate(rate_per_s))
            if time.monotonic() >= deadline:
                return
            self.state.publish(rng.choice(queries))


def _stable_items(q: str, count: int) -> list[dict[str, Any]]:
    # Ids derive from the query, so every run and every process sees the same listings.
    base = int(hashlib.sha1(q.encode()).hexdigest()[:10], 16) * 1000
    return [_item(base + n, f"{q} listing {n}", created=1_735_689_600.0) for n in range(count)]


def _item(number: int, title: str, *, created: float) -> dict[str, Any]:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(created))
    return {
        "itemId": f"v1|{number}|0",
        "title": title,
        "itemHref": f"https://api.ebay.com/buy/browse/v1/item/v1%7C{number}%7C0",
        "price": {"value": f"{10 + number % 490}.00", "currency": "GBP"},
        "image": {"imageUrl": f"https://i.ebayimg.com/images/g/{number}/s-l225.jpg"},
        "itemWebUrl": f"https://www.ebay.co.uk/itm/{number}",
        "condition": "Used",
        "conditionId": "3000",
        "seller": {"username": f"seller_{number % 997}", "feedbackPercentage": "99.1"},
        "itemLocation": {"postalCode": "SW1***", "country": "GB"},
        "buyingOptions": ["FIXED_PRICE"],
        "itemCreationDate": stamp,
        "itemOriginDate": stamp,
    }


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send_json(send: Send, status: int, document: Any) -> None:
    body = orjson.dumps(document)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


# --- the process, and its handle for the benchmark ------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=150.0)
    parser.add_argument("--listings-per-query", type=int, default=50)
    options = parser.parse_args()
    state = MarketplaceState(
        latency_s=options.latency_ms / 1000, listings_per_query=options.listings_per_query
    )
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    print(f"port={sock.getsockname()[1]}", flush=True)  # noqa: T201  (the parent reads it)
    config = uvicorn.Config(
        FakeMarketplaceApp(state), log_level="warning", access_log=False, backlog=2048
    )
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


class FakeMarketplace:
    """The benchmark's handle on a fake marketplace process."""

    def __init__(self, child: Child, port: int) -> None:
        self.child = child
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self._client = httpx.Client(base_url=self.base_url, trust_env=False, timeout=30)

    @classmethod
    def start(
        cls, workdir: Any, env: dict[str, str], *, latency_ms: float, listings_per_query: int
    ) -> FakeMarketplace:
        child = start_child(
            "fake-marketplace",
            [
                "-m",
                "bench.fake_marketplace",
                "--latency-ms",
                str(latency_ms),
                "--listings-per-query",
                str(listings_per_query),
            ],
            env=env,
            workdir=workdir,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            child.check_alive()
            for line in child.log.read_text(errors="replace").splitlines():
                if line.startswith("port="):
                    return cls(child, int(line.removeprefix("port=")))
            time.sleep(0.05)
        raise RuntimeError(f"the fake marketplace did not start:\n{child.tail()}")

    def stats(self) -> dict[str, int]:
        return dict(self._client.get("/_bench/stats").raise_for_status().json())

    def request_times(self) -> dict[str, list[float]]:
        return dict(self._client.get("/_bench/requests").raise_for_status().json())

    def published(self) -> list[Published]:
        rows = self._client.get("/_bench/published").raise_for_status().json()
        return [Published(**row) for row in rows]

    def reset(self) -> None:
        self._client.post("/_bench/reset").raise_for_status()

    def publish_randomly(
        self, queries: list[str], *, rate_per_s: float, duration_s: float, seed: int
    ) -> None:
        plan = {"queries": queries, "rate_per_s": rate_per_s, "duration_s": duration_s}
        self._client.post("/_bench/publish", json={**plan, "seed": seed}).raise_for_status()

    def close(self) -> None:
        self._client.close()


if __name__ == "__main__":
    main()
