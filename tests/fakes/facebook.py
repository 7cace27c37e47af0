"""Local pages shaped like Facebook Marketplace's results page, for the facebook adapter.

`/marketplace/<city>/search?query=...` answers a results grid (`aria-label="Collection of
Marketplace items"`) of cards, each a link to `/marketplace/item/<id>/` holding an image and
text lines: price (and a struck-out former price), title, location. Four cards are in the
page; four more are added by script when the page is scrolled, like the site's lazy
loading. A query of `login` answers the login wall, `nothing` an empty grid, `changed` a
page without the grid. Every request is recorded.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from tests.fakes.server import FakeHTTPServer, Reply


@dataclass(frozen=True)
class Card:
    item_id: str
    lines: tuple[str, ...]
    has_image: bool = True


FIRST_CARDS = (
    Card("1001", ("£120", "IKEA Kivik sofa", "London, United Kingdom")),
    Card("1002", ("£80", "£150", "Road bike, 54cm frame", "Hackney, United Kingdom")),
    Card("1003", ("Free", "Moving boxes", "Camden, United Kingdom")),
    Card("1004", ("Čajová konvice — ručně malovaná", "Islington, United Kingdom"), has_image=False),
)
LAZY_CARDS = (
    Card("1005", ("£1,250", "MacBook Pro 14 M3", "Westminster, United Kingdom")),
    Card("1006", ("£40", "Desk lamp", "Brixton, United Kingdom")),
    Card("1007", ("€30", "Chaise pliante", "Paris, France")),
    Card("1008", ("£15", "Plant pots", "Soho, United Kingdom")),
)
# An item link the adapter cannot read (no numeric id), beside one it can.
BROKEN_CARDS = (
    Card("not-a-number", ("£5", "Mystery item", "Nowhere")),
    Card("1009", ("£7", "Vase", "Hackney, United Kingdom")),
)


def card_html(card: Card) -> str:
    spans = "".join(f"<div><span>{html.escape(line)}</span></div>" for line in card.lines)
    # Served by this fake: the page refers to nothing beyond 127.0.0.1.
    image = f'<img src="/img/{card.item_id}.jpg" alt="">' if card.has_image else ""
    return (
        f'<div class="card"><a href="/marketplace/item/{card.item_id}/?ref=search">'
        f"{image}{spans}</a></div>"
    )


def results_page(cards: tuple[Card, ...], lazy: tuple[Card, ...]) -> str:
    lazy_json = json.dumps([card_html(card) for card in lazy])
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Marketplace</title>
<style>.card {{ height: 600px; }}</style></head><body>
<div aria-label="Collection of Marketplace items" role="main" id="grid">
{"".join(card_html(card) for card in cards)}
</div>
<script>
const lazy = {lazy_json};
let loaded = false;
window.addEventListener("scroll", () => {{
  if (loaded) return;
  loaded = true;
  setTimeout(() => {{
    const grid = document.getElementById("grid");
    for (const card of lazy) grid.insertAdjacentHTML("beforeend", card);
  }}, 200);
}});
</script></body></html>"""


LOGIN_PAGE = """<!doctype html><html><body><h2>Log in to Facebook</h2>
<form id="login_form" action="/login/device-based/regular/login/" method="post">
<input name="email"><input name="pass" type="password"><button name="login">Log in</button>
</form></body></html>"""
SLOW_S = 3.0
# A 1x1 transparent GIF.
PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
CHANGED_PAGE = "<!doctype html><html><body><div>Something else entirely</div></body></html>"


class FacebookPagesFake(FakeHTTPServer):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[str] = []

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        with self._lock:
            self.requests.append(target)
        parts = urlsplit(target)
        query = parse_qs(parts.query).get("query", [""])[0]
        if parts.path.startswith("/img/"):
            return Reply(200, PIXEL, {"Content-Type": "image/gif"})
        if not parts.path.startswith("/marketplace/") or not parts.path.endswith("/search"):
            return page(404, "<html><body>Not found</body></html>")
        if query == "login":
            return page(200, LOGIN_PAGE)
        if query == "changed":
            return page(200, CHANGED_PAGE)
        if query == "nothing":
            return page(200, results_page((), ()))
        if query == "broken":
            return page(200, results_page(BROKEN_CARDS, ()))
        if query == "slow":
            time.sleep(SLOW_S)
        return page(200, results_page(FIRST_CARDS, LAZY_CARDS))

    @property
    def searches(self) -> list[str]:
        with self._lock:
            return [r for r in self.requests if "/search" in r]


def page(status: int, text: str) -> Reply:
    return Reply(status, text.encode(), {"Content-Type": "text/html; charset=utf-8"})
