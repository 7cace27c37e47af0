"""A fake Craigslist on 127.0.0.1: the search JSON (`sapi`) and the static HTML results page,
`external-apis.md` section 8.

One server plays both hosts: `/web/v8/postings/search/full` is the JSON, `/<city>/search/<cat>`
the HTML page (point CRAIGSLIST_BASE_URL at `<base_url>/{city}`). The JSON is encoded the
way the site encodes it: ids and times as offsets from `decode`, items as arrays with
tagged parts and the title last. Requests are checked (`batch`, `cc`, `lang`, `searchPath`,
`query`, `sort=date`, whole-number prices) and answered 400 when wrong.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.pages import Received, ScriptedFake, html_reply
from tests.fakes.server import Reply, json_reply

JSON_PATH = "/web/v8/postings/search/full"
MIN_POSTING_ID = 7_700_000_000
MIN_POSTED_DATE = 1_777_000_000
# decode.locations: [area id, host name, sub-area]
LOCATIONS: list[Any] = [[1, "sfbay", "sfc"], [1, "sfbay", "eby"], [1, "sfbay", "pen"]]


@dataclass(frozen=True)
class Posting:
    posting_id: int
    title: str
    price: int = 100  # -1: no price
    posted_at: int = MIN_POSTED_DATE + 3600
    slug: str = "san-francisco-item"
    area_index: int = 0
    image_ids: tuple[str, ...] = ("3:00a0a_abcdefghijk_0t20CI",)
    price_text: str | None = None  # the [10, "$1,524"] part, when the site sends one
    hood: str = "mission district"
    # An item whose arrays lost their shape after a change on the site.
    broken: bool = False
    extra_tags: list[list[Any]] = field(default_factory=list)

    def item(self) -> list[Any]:
        if self.broken:
            return [self.posting_id - MIN_POSTING_ID, "not a number"]
        parts: list[Any] = [
            self.posting_id - MIN_POSTING_ID,
            self.posted_at - MIN_POSTED_DATE,
            145,
            self.price,
            f"{self.area_index}:2~37.7599~-122.4148",
            0,
        ]
        if self.image_ids:
            parts.append([4, *self.image_ids])
        parts.append([6, self.slug])
        if self.price_text is not None:
            parts.append([10, self.price_text])
        parts += self.extra_tags
        parts.append(self.title)
        return parts

    def card(self) -> str:
        if self.broken:
            return '<li class="cl-static-search-result"><div class="gallery-card"></div></li>'
        price = "" if self.price < 0 else f'<div class="price">${self.price:,}</div>'
        return f"""
<li class="cl-static-search-result" title="{html.escape(self.title)}">
  <a href="https://sfbay.craigslist.org/sfc/ele/d/{self.slug}/{self.posting_id}.html">
    <div class="title">{html.escape(self.title)}</div>
    <div class="details">{price}<div class="location">{html.escape(self.hood)}</div></div>
  </a>
</li>"""


def search_json(postings: Iterable[Posting]) -> dict[str, Any]:
    items = [p.item() for p in postings]
    if not items:
        return {"data": {"items": [], "decode": 0, "totalResultCount": 0}, "errors": []}
    return {
        "data": {
            "items": items,
            "decode": {
                "minPostingId": MIN_POSTING_ID,
                "minPostedDate": MIN_POSTED_DATE,
                "locations": LOCATIONS,
                "locationDescriptions": ["san francisco", "east bay", "peninsula"],
            },
            "totalResultCount": len(items),
        },
        "errors": [],
    }


def results_page(postings: Iterable[Posting]) -> str:
    cards = "\n".join(p.card() for p in postings)
    return f"""<!DOCTYPE html>
<html><head><title>SF bay area for sale - craigslist</title></head>
<body><div class="cl-search-results"><ol class="cl-static-search-results">
<li class="cl-static-hub-links">see also</li>
{cards}
</ol></div></body></html>"""


NO_RESULTS_PAGE = """<!DOCTYPE html>
<html><head><title>SF bay area for sale - craigslist</title></head>
<body><div class="cl-search-results"><ol class="cl-static-search-results">
<li class="cl-static-hub-links">see also</li></ol>
<div class="no-results">no results</div></div></body></html>"""


class CraigslistFake(ScriptedFake):
    def __init__(self) -> None:
        super().__init__()
        self._postings: dict[str, list[Posting]] = {}
        self.json_broken = False

    def set_postings(self, postings: Iterable[Posting], *, city: str = "sfbay") -> None:
        with self._lock:
            self._postings[city] = list(postings)

    @property
    def json_requests(self) -> list[Received]:
        return self.requests_to(JSON_PATH)

    @property
    def html_requests(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path != JSON_PATH and "/search/" in r.path]

    def serve(self, request: Received) -> Reply:
        if request.path == JSON_PATH:
            return self._json(request)
        city, _, rest = request.path.strip("/").partition("/")
        if rest.startswith("search/"):
            return self._html(request, city)
        return html_reply(404, "<html><body>page not found</body></html>")

    def _json(self, request: Received) -> Reply:
        batch = request.param("batch") or ""
        area, _, rest = batch.partition("-")
        problems = [
            name
            for name, ok in (
                ("batch", area.isdigit() and rest == "0-360-0-0"),
                ("cc", request.param("cc") == "US"),
                ("lang", request.param("lang") == "en"),
                ("searchPath", len(request.param("searchPath") or "") == 3),
                ("query", bool(request.param("query"))),
                ("sort", request.param("sort") == "date"),
                ("prices", _whole(request, "min_price") and _whole(request, "max_price")),
            )
            if not ok
        ]
        if problems:
            return json_reply(400, {"data": 0, "errors": [f"bad {name}" for name in problems]})
        if self.json_broken:
            return json_reply(200, {"data": {"items": "changed"}, "errors": []})
        city = {"1": "sfbay", "3": "newyork"}.get(area, "")
        with self._lock:
            postings = self._postings.get(city, [])
        return json_reply(200, search_json(postings))

    def _html(self, request: Received, city: str) -> Reply:
        if not request.param("query") or request.param("sort") != "date":
            return html_reply(400, "<html><body>bad request</body></html>")
        with self._lock:
            postings = self._postings.get(city, [])
        if not postings:
            return html_reply(200, NO_RESULTS_PAGE)
        return html_reply(200, results_page(postings), gzipped=self.wants_gzip(request))


def _whole(request: Received, name: str) -> bool:
    value = request.param(name)
    return value is None or value.isdigit()
