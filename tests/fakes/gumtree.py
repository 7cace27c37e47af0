"""A fake Gumtree UK on 127.0.0.1: the public search page, `external-apis.md` section 8.

Result pages are built from `Ad`s in Gumtree's card markup (`article[data-q=search-result]`
with its anchor, title, price, location, date and image), gzipped when the client accepts
it. The fake checks the query string the way the site needs it (`q`, `search_category`,
`search_location`, `sort=date`, numeric prices and page) and answers 400 otherwise:

    with GumtreeFake() as fake:
        fake.set_ads([Ad("1400000001", "Canon 50mm lens", "£120")], q="canon 50mm")
        adapter = GumtreeAdapter(PageFetcher("Gumtree", client, policy), base_url=fake.base_url)
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass

from tests.fakes.pages import Received, ScriptedFake, html_reply
from tests.fakes.server import Reply

REQUIRED_PARAMS = ("q", "search_category", "search_location", "sort", "page")


@dataclass(frozen=True)
class Ad:
    """One ad as its result card shows it."""

    ad_id: str
    title: str
    price: str | None = "£100"
    location: str | None = "Hackney, London"
    posted: str | None = "2 mins ago"
    category: str = "cameras-camcorders"
    image: str | None = "https://i.ebayimg.com/00/s/NjAwWDgwMA==/z/abc/$_78.JPG"
    promoted: bool = False
    # A card whose markup changed: no anchor and no title, as after a redesign.
    broken: bool = False

    def card(self) -> str:
        if self.broken:
            return (
                '<article data-q="search-result" class="css-1ho6n7b">'
                '<div class="new-tile"><span>Something else entirely</span></div></article>'
            )
        slug = "-".join(self.title.lower().split())[:60]
        badge = (
            '<div data-q="tile-featured-badge" class="css-featured">Featured</div>'
            if self.promoted
            else ""
        )
        price = (
            f'<div data-q="tile-price" class="css-price">{html.escape(self.price)}</div>'
            if self.price is not None
            else ""
        )
        location = (
            f'<div data-q="tile-location">{html.escape(self.location)}</div>'
            if self.location
            else ""
        )
        posted = f'<div data-q="tile-datePosted">{self.posted}</div>' if self.posted else ""
        image = (
            f'<figure><img src="{self.image}" alt="{html.escape(self.title)}"></figure>'
            if self.image
            else ""
        )
        return f"""
<article data-q="search-result" class="css-1ho6n7b">
  <a data-q="search-result-anchor" href="/p/{self.category}/{html.escape(slug)}/{self.ad_id}">
    {badge}{image}
    <div class="css-body">
      <div data-q="tile-title" class="css-title">{html.escape(self.title)}</div>
      {location}
      <div data-q="tile-description">Collection or post.</div>
      {price}
      {posted}
    </div>
  </a>
</article>"""


def results_page(ads: Iterable[Ad], *, query: str = "") -> str:
    cards = "\n".join(ad.card() for ad in ads)
    return f"""<!DOCTYPE html>
<html lang="en-GB"><head><meta charset="utf-8">
<title>{html.escape(query)} | Gumtree</title>
<script src="https://www.google.com/recaptcha/api.js" async></script></head>
<body><header><a href="/login">Login</a></header>
<main><h1 data-q="srp-title">Results for {html.escape(query)}</h1>
<div data-q="search-results">{cards}</div>
<nav data-q="pagination"><a data-q="pagination-forward-page" href="?page=2">Next</a></nav>
</main></body></html>"""


def no_results_page(query: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en-GB"><head><meta charset="utf-8"><title>Gumtree</title></head>
<body><main><h1 data-q="srp-title">0 ads for {html.escape(query)}</h1>
<div data-q="no-results"><p>Sorry, we couldn't find any results. Try a wider area.</p></div>
</main></body></html>"""


REDESIGNED_PAGE = """<!DOCTYPE html>
<html lang="en-GB"><head><title>Gumtree</title></head>
<body><main><ul class="results-grid"><li class="tile">Canon lens £120</li></ul></main>
</body></html>"""


class GumtreeFake(ScriptedFake):
    def __init__(self) -> None:
        super().__init__()
        # (query or None for any query, page) -> ads
        self._pages: dict[tuple[str | None, int], list[Ad]] = {}
        self._raw_pages: dict[int, str] = {}

    def set_ads(self, ads: Iterable[Ad], *, q: str | None = None, page: int = 1) -> None:
        with self._lock:
            self._pages[(q.lower() if q else None, page)] = list(ads)

    def set_raw_page(self, page_html: str, *, page: int = 1) -> None:
        """Serve this HTML for result page `page` of any query."""
        with self._lock:
            self._raw_pages[page] = page_html

    @property
    def search_requests(self) -> list[Received]:
        return self.requests_to("/search")

    def serve(self, request: Received) -> Reply:
        if request.path != "/search":
            return html_reply(404, "<html><body>Page not found</body></html>")
        missing = [name for name in REQUIRED_PARAMS if not request.param(name)]
        if missing or request.param("sort") != "date":
            return html_reply(400, f"<html><body>Bad request: {missing}</body></html>")
        for bound in ("min_price", "max_price", "distance"):
            value = request.param(bound)
            if value is not None and not value.isdigit():
                return html_reply(400, f"<html><body>{bound} must be whole</body></html>")
        query = request.param("q") or ""
        page = int(request.param("page") or "1")
        gzipped = self.wants_gzip(request)
        with self._lock:
            raw = self._raw_pages.get(page)
            ads = self._pages.get((query.lower(), page), self._pages.get((None, page)))
        if raw is not None:
            return html_reply(200, raw, gzipped=gzipped)
        if not ads:
            return html_reply(200, no_results_page(query), gzipped=gzipped)
        return html_reply(200, results_page(ads, query=query), gzipped=gzipped)
