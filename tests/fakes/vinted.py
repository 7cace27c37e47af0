"""A fake Vinted on 127.0.0.1: the home page that sets the session cookie and the catalog
items JSON, `external-apis.md` section 8.

Each domain lives under `/<domain>` (point VINTED_BASE_URL at `<base_url>/{domain}`). The
home page sets `access_token_web`; the catalog answers 401 without a valid one, and
`expire_sessions()` makes every cookie handed out so far invalid, as a real expiry does.
The catalog checks `search_text`, `order=newest_first`, `per_page`, `page` and numeric
price bounds.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any

from tests.fakes.pages import Received, ScriptedFake, html_reply
from tests.fakes.server import Reply, json_reply

CATALOG_PATH = "/api/v2/catalog/items"
HOME_PAGE = "<!DOCTYPE html><html><head><title>Vinted</title></head><body>Vinted</body></html>"


@dataclass(frozen=True)
class Item:
    item_id: int
    title: str
    amount: str = "12.0"
    currency: str = "GBP"
    brand: str | None = "Nike"
    size: str | None = "M"
    status: str = "Very good"
    photo: str | None = "https://images1.vinted.net/t/01_abc/f800/1714000000.jpeg"
    login: str = "jane_d"
    plain_price: bool = False  # the older plain-string price
    broken: bool = False

    def json(self, domain: str) -> dict[str, Any]:
        if self.broken:
            return {"id": self.item_id, "price": {"amount": "1.0"}}
        price: Any = (
            self.amount
            if self.plain_price
            else {"amount": self.amount, "currency_code": self.currency}
        )
        return {
            "id": self.item_id,
            "title": self.title,
            "price": price,
            "total_item_price": {"amount": self.amount, "currency_code": self.currency},
            "brand_title": self.brand or "",
            "size_title": self.size or "",
            "status": self.status,
            "url": f"https://www.vinted.{domain}/items/{self.item_id}-{self.title.lower()[:20]}",
            "photo": {"url": self.photo} if self.photo else None,
            "user": {"id": 42, "login": self.login},
            "is_visible": True,
        }


class VintedFake(ScriptedFake):
    def __init__(self) -> None:
        super().__init__()
        self._items: dict[tuple[str, str | None], list[Item]] = {}
        self._valid_tokens: set[str] = set()
        self.set_cookie = True
        # False: every cookie is refused, as when the site stopped trusting this client.
        self.accepts_sessions = True

    def set_items(
        self, items: Iterable[Item], *, domain: str = "co.uk", q: str | None = None
    ) -> None:
        with self._lock:
            self._items[(domain, q.lower() if q else None)] = list(items)

    def expire_sessions(self) -> None:
        with self._lock:
            self._valid_tokens.clear()

    def home_requests(self, domain: str = "co.uk") -> list[Received]:
        return self.requests_to(f"/{domain}/")

    def catalog_requests(self, domain: str = "co.uk") -> list[Received]:
        return self.requests_to(f"/{domain}{CATALOG_PATH}")

    def serve(self, request: Received) -> Reply:
        domain, _, rest = request.path.lstrip("/").partition("/")
        if rest == "":
            return self._home()
        if "/" + rest == CATALOG_PATH:
            return self._catalog(request, domain)
        return html_reply(404, "<html><body>not found</body></html>")

    def _home(self) -> Reply:
        if not self.set_cookie:
            return html_reply(200, HOME_PAGE)
        token = secrets.token_urlsafe(16)
        with self._lock:
            self._valid_tokens.add(token)
        cookie = f"access_token_web={token}; Path=/; HttpOnly; SameSite=Lax"
        return html_reply(200, HOME_PAGE, headers={"Set-Cookie": cookie})

    def _catalog(self, request: Received, domain: str) -> Reply:
        cookies = SimpleCookie(request.headers.get("cookie", ""))
        token = cookies["access_token_web"].value if "access_token_web" in cookies else None
        with self._lock:
            is_valid = token in self._valid_tokens and self.accepts_sessions
        if not is_valid:
            return json_reply(
                401,
                {
                    "code": 100,
                    "message": "Please log in",
                    "message_code": "invalid_authentication_token",
                },
            )
        problems = [
            name
            for name, ok in (
                ("search_text", bool(request.param("search_text"))),
                ("order", request.param("order") == "newest_first"),
                ("per_page", (request.param("per_page") or "").isdigit()),
                ("page", request.param("page") == "1"),
                ("price_from", _number(request.param("price_from"))),
                ("price_to", _number(request.param("price_to"))),
            )
            if not ok
        ]
        if problems:
            return json_reply(400, {"code": 99, "message": f"bad {', '.join(problems)}"})
        query = (request.param("search_text") or "").lower()
        with self._lock:
            items = self._items.get((domain, query), self._items.get((domain, None), []))
        return json_reply(
            200,
            {
                "items": [item.json(domain) for item in items],
                "pagination": {
                    "current_page": 1,
                    "total_pages": 1,
                    "total_entries": len(items),
                    "per_page": 20,
                },
            },
        )


def _number(value: str | None) -> bool:
    if value is None:
        return True
    try:
        float(value)
    except ValueError:
        return False
    return True
