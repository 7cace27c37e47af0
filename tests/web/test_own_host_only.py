"""No dashboard page, no API docs page, and no file they load sends a browser to another
host: every URL they name is relative or names this server. So they work on a server
without internet, and tell no third party who reads them.

Pages are read for every URL they name (src, href, action, srcset, URL-valued data
attributes, inline styles and scripts); stylesheets for url() and @import; scripts for
what they load (fetch, import, XMLHttpRequest, workers, sockets, `src`), not for every URL
string they carry (licence and specification links in Swagger UI's bundle are text).
Everything a page loads from this server is fetched and read the same way. The docs pages
are also opened in Chromium, as in the browser tests: they render, and no request of theirs
reaches another host.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from app.config import Settings
from app.main import create_app
from tests.conftest import make_settings
from tests.web import test_browser
from tests.web.conftest import csrf_of, post_form

if TYPE_CHECKING:
    from playwright.async_api import Browser, Route

# The browser tests' Chromium and `marketmon run`, for the docs pages as a browser sees them.
browser_required = test_browser.browser_required
chromium = test_browser.chromium
server = test_browser.server

BASE_URL = "http://test"  # the `browser` client's
PASSWORD = "a-long-password"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
ANONYMOUS_PAGES = ["/app/login", "/app/signup", "/app/forgot-password"]
DOCS_PAGES = ["/api/v1/docs", "/api/v1/redoc", "/api/v1/docs/oauth2-redirect"]
# Loads that a script names on another host, with why no browser makes them. ReDoc's menu
# shows Redocly's logo from its CDN whatever its options; the docs pages' Content-Security-
# Policy (checked below) blocks it, and ReDoc then leaves the logo out.
ALLOWED_LOADS = {
    ("/api/v1/docs-assets/redoc.standalone.js", "https://cdn.redoc.ly/redoc/logo-mini.svg")
}

# A JavaScript string literal in any of the three quotes.
_JS_STRING = r"""(['"`])((?:\\.|(?!\1)[^\\\n])*)\1"""
# What a script loads, rather than every URL it mentions.
_JS_LOADS = {
    name: re.compile(pattern, re.M)
    for name, pattern in {
        "fetch()": r"\bfetch\(\s*" + _JS_STRING,
        "import()": r"\bimport\(\s*" + _JS_STRING,
        "import": r"(?:^|[;\s])import\s*(?:[\w$*{}\s,]+?\s*from\s*)?" + _JS_STRING,
        "XMLHttpRequest.open()": r"\.open\(\s*['\"`][A-Za-z]+['\"`]\s*,\s*" + _JS_STRING,
        "new": r"\bnew\s+(?:Worker|SharedWorker|EventSource|WebSocket|Audio)\(\s*" + _JS_STRING,
        "importScripts()": r"\bimportScripts\(\s*" + _JS_STRING,
        "sendBeacon()": r"\bsendBeacon\(\s*" + _JS_STRING,
        "setAttribute()": r"\bsetAttribute\(\s*['\"](?:src|srcset|href|data)['\"]\s*,\s*"
        + _JS_STRING,
        # `.src = "..."`, or a `{src: "..."}` prop of an element a framework builds.
        "src": r"\bsrc\s*[:=]\s*" + _JS_STRING,
        "@import": r"@import\s+(?:url\(\s*)?" + _JS_STRING,
    }.items()
}
# Markup and styles a script builds in a string: only absolute URLs there can leave.
_JS_BUILT = re.compile(
    # Case-sensitive: `new URL("https://" + host)` parses an address, it loads nothing.
    r"\b(src|href|srcset|url\()\s*=?\s*\\?['\"]?\s*((?:[a-z][a-z0-9+.-]*:)?//[^'\"`)\s\\>,]+)"
)
# The options objects a page hands its scripts (Swagger UI's `url: '/api/v1/openapi.json'`).
_INLINE_JS_OPTIONS = re.compile(r"\b(?:url|specUrl|spec_url)\s*:\s*" + _JS_STRING)
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_CSS_URL = re.compile(r"""\burl\(\s*(?:(['"])((?:\\.|(?!\1).)*)\1|([^)'"\s]*))\s*\)""", re.I | re.S)
_CSS_IMPORT = re.compile(r"""@import\s+(['"])((?:\\.|(?!\1).)*)\1""", re.I)
_META_REFRESH_URL = re.compile(r"url\s*=\s*['\"]?([^'\";]+)", re.I)
# Attributes whose value is a URL the browser follows or loads.
_HREF_ATTRIBUTES = {"href", "xlink:href"}
_LINK_ATTRIBUTES = {"action", "formaction", "cite", "ping"}
_LOAD_ATTRIBUTES = {"src", "poster", "data", "background", "manifest", "spec-url"}
_SRCSET_ATTRIBUTES = {"srcset", "imagesrcset"}
# Tags whose href is somewhere to go, not something to load.
_NAVIGATION_TAGS = {"a", "area", "base"}


@dataclass(frozen=True)
class Reference:
    """A URL a document names: `where` says how, `is_load` whether a browser fetches it
    (rather than going there when asked)."""

    where: str
    url: str
    is_load: bool


@pytest.fixture
def settings(database_url: str) -> Settings:
    # Links to demo listings and their photos name PUBLIC_BASE_URL: the client's address.
    return make_settings(database_url, public_base_url=BASE_URL)


@pytest.mark.parametrize(
    ("kind", "document"),
    [
        ("html", '<html><head><script src="https://cdn.example/x.js"></script></head></html>'),
        ("html", '<img srcset="/a.png 1x, //cdn.example/b.png 2x">'),
        ("html", '<a href="https://cdn.example/page">elsewhere</a>'),
        ("html", '<form action="http://cdn.example/collect" method="post"></form>'),
        ("html", '<link rel="stylesheet" href="HTTPS://CDN.EXAMPLE/x.css">'),
        ("html", '<div style="background: url(https://cdn.example/bg.png)"></div>'),
        ("html", '<button data-save-url="https://cdn.example/save">Save</button>'),
        ("html", '<meta http-equiv="refresh" content="0; url=https://cdn.example/">'),
        ("html", "<style>@import 'https://cdn.example/fonts.css';</style>"),
        ("html", "<script>fetch('https://cdn.example/track')</script>"),
        ("html", "<script>SwaggerUIBundle({url: 'https://cdn.example/openapi.json'})</script>"),
        ("html", '<svg><image xlink:href="https://cdn.example/x.png"/></svg>'),
        ("html", '<redoc spec-url="https://cdn.example/openapi.json"></redoc>'),
        ("css", 'body { background: url("https://cdn.example/bg.png") }'),
        ("css", "@import url(//cdn.example/theme.css);"),
        ("css", '@import "https://fonts.example/css?family=Roboto";'),
        ("js", 'fetch("https://cdn.example/track", {method: "POST"})'),
        ("js", "const m = await import(`https://cdn.example/module.js`)"),
        ("js", 'import x from "https://cdn.example/module.js";'),
        ("js", 'request.open("GET", "https://cdn.example/data")'),
        ("js", 'new WebSocket("wss://cdn.example/socket")'),
        ("js", 'el.setAttribute("src", "https://cdn.example/x.png")'),
        ("js", 'createElement("img", {alt: "", src: "https://cdn.example/logo.svg"})'),
        ("js", "node.innerHTML = '<img src=\\\"https://cdn.example/x.png\\\">'"),
        ("js", 'style.textContent = "a { background: url(https://cdn.example/bg.png) }"'),
    ],
)
def test_the_reader_reports_a_url_on_another_host(kind: str, document: str) -> None:
    references = list(_references(kind, document))
    assert [r for r in references if _is_elsewhere(r.url, f"{BASE_URL}/app/page")], references


def test_the_reader_lets_relative_and_own_urls_pass() -> None:
    page = (
        '<link rel="stylesheet" href="/app/static/app.css"><script src="app.js"></script>'
        '<a href="http://test/app/matches">Matches</a><a href="#main">Skip</a>'
        '<img src="data:image/png;base64,AAAA" srcset="/a.png 1x, /b.png 2x">'
        "<form action=\"\"></form><script>fetch(`${base}/x`); fetch('/api/v1/x')</script>"
    )
    references = list(_references("html", page))
    # Every URL is read (the one the script builds at run time names no host of its own).
    assert [r.url for r in references] == [
        "/app/static/app.css",
        "app.js",
        "http://test/app/matches",
        "#main",
        "data:image/png;base64,AAAA",
        "/a.png",
        "/b.png",
        "",
        "/api/v1/x",
    ]
    assert not [r for r in references if _is_elsewhere(r.url, f"{BASE_URL}/app/page")]


async def test_no_page_nor_anything_it_loads_names_another_host(
    browser: httpx.AsyncClient,
) -> None:
    pages = {path: await browser.get(path) for path in ANONYMOUS_PAGES}
    await _sign_up(browser)
    chooser = await browser.get("/app/searches/new")
    template = re.search(rf"/app/searches/new\?template=({UUID})", chooser.text)
    assert template, "the new search page offers no template"
    await _check_a_demo_search(browser)
    searches = await browser.get("/app/searches")
    search = re.search(rf'id="search-({UUID})"', searches.text)
    assert search, "the searches page lists no search"
    for path in (
        "/app/",
        "/app/searches",
        "/app/searches/new",
        f"/app/searches/new?template={template.group(1)}",
        f"/app/searches/{search.group(1)}/edit",
        "/app/matches",
        "/app/alerts",
        "/app/settings",
        "/app/settings/tokens",
        "/app/billing",
        "/app/nowhere",
        *DOCS_PAGES,
    ):
        pages[path] = await browser.get(path, follow_redirects=True)
    # The matches page shows demo listings, so their links and photos are read too, and
    # so is the page a listing's link opens.
    listing = re.search(r'class="listing-link" href="([^"]+)"', pages["/app/matches"].text)
    assert listing, "the matches page shows no listing"
    pages[listing.group(1)] = await browser.get(listing.group(1))

    elsewhere: list[str] = []
    fetched: dict[str, httpx.Response] = {}
    to_read = [(path, response) for path, response in pages.items()]
    while to_read:
        path, response = to_read.pop()
        expected = 404 if path == "/app/nowhere" else 200
        assert response.status_code == expected, (path, response.status_code)
        document_url = str(response.url)
        for reference in _references(_kind_of(response), response.text):
            if _is_elsewhere(reference.url, document_url):
                if (urlsplit(document_url).path, reference.url) not in ALLOWED_LOADS:
                    elsewhere.append(f"{path}: {reference.where} {reference.url}")
            elif reference.is_load and not reference.url.lower().startswith("data:"):
                asset = urljoin(document_url, reference.url)
                if asset not in fetched:
                    fetched[asset] = await browser.get(asset)
                    to_read.append((urlsplit(asset).path, fetched[asset]))
    assert elsewhere == []
    # The pages' own files were found and read, not only the pages.
    assert {f"{BASE_URL}/app/static/app.css", f"{BASE_URL}/app/static/app.js"} <= set(fetched)
    assert f"{BASE_URL}/api/v1/docs-assets/redoc.standalone.js" in fetched
    assert f"{BASE_URL}/api/v1/docs-assets/swagger-ui-bundle.js" in fetched


async def test_the_docs_pages_may_load_from_this_server_only(browser: httpx.AsyncClient) -> None:
    for path in DOCS_PAGES:
        policy = (await browser.get(path)).headers["content-security-policy"]
        directives = dict(
            [*part.split(maxsplit=1), ""][:2] for part in policy.split(";") if part.strip()
        )
        fetch_directives = {
            name: sources for name, sources in directives.items() if name.endswith("-src")
        }
        assert "default-src" in fetch_directives, policy
        for name, sources in fetch_directives.items():
            for source in sources.split():
                assert source in {"'self'", "'unsafe-inline'", "data:", "blob:", "'none'"}, (
                    path,
                    name,
                    source,
                )


async def test_with_the_docs_off_neither_their_pages_nor_their_files_are_served() -> None:
    app = create_app(make_settings("sqlite+aiosqlite://", api_docs_enabled=False))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        for path in (
            *DOCS_PAGES,
            "/api/v1/openapi.json",
            "/api/v1/docs-assets/swagger-ui-bundle.js",
            "/api/v1/docs-assets/redoc.standalone.js",
        ):
            assert (await http.get(path)).status_code == 404, path
    await app.state.engine.dispose()


async def test_the_docs_render_in_a_browser_that_reaches_no_other_host(
    chromium: Browser, server: str
) -> None:
    for path, title in (
        ("/api/v1/docs", ".swagger-ui .info .title"),
        ("/api/v1/redoc", ".api-content h1"),
    ):
        assert await _requests_elsewhere(chromium, server, path, title) == [], path


def _references(kind: str, text: str) -> Iterator[Reference]:
    if kind == "html":
        reader = _HTMLReferences()
        reader.feed(text)
        reader.close()
        yield from reader.references
    elif kind == "css":
        yield from _css_references(text, "css")
    elif kind == "js":
        yield from _js_references(text, "js")


def _kind_of(response: httpx.Response) -> str:
    content_type = response.headers.get("content-type", "")
    if "html" in content_type or "svg" in content_type:
        return "html"
    if "css" in content_type:
        return "css"
    if "javascript" in content_type:
        return "js"
    return "other"  # pictures and the like name no URL


def _is_elsewhere(url: str, document_url: str) -> bool:
    """True when `url`, read in the document at `document_url`, leaves this server."""
    target = urlsplit(urljoin(document_url, url.strip()))
    if target.scheme == "data":
        return False
    own = urlsplit(document_url)
    return (target.scheme, target.netloc.lower()) != (own.scheme, own.netloc.lower())


class _HTMLReferences(HTMLParser):
    """The URLs in an HTML (or SVG) document: attributes, inline styles and scripts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.references: list[Reference] = []
        self._inside = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value for name, value in attrs if value is not None}
        for name, value in values.items():
            where = f"<{tag} {name}>"
            if name in _SRCSET_ATTRIBUTES:
                for candidate in value.split(","):
                    if candidate.strip():
                        self._add(where, candidate.split()[0], is_load=True)
            elif name in _LOAD_ATTRIBUTES:
                self._add(where, value, is_load=True)
            elif name in _HREF_ATTRIBUTES:
                self._add(where, value, is_load=tag not in _NAVIGATION_TAGS)
            elif name in _LINK_ATTRIBUTES:
                self._add(where, value, is_load=False)
            elif name.endswith("url"):
                # data-*-url and the like: addresses the page's script calls.
                self._add(where, value, is_load=False)
            elif name == "style":
                self.references.extend(_css_references(value, where))
        if tag == "meta" and values.get("http-equiv", "").lower() == "refresh":
            found = _META_REFRESH_URL.search(values.get("content", ""))
            if found:
                self._add("<meta refresh>", found.group(1), is_load=False)
        self._inside = tag if tag in {"script", "style"} else ""

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        self._inside = ""

    def handle_endtag(self, tag: str) -> None:
        self._inside = ""

    def handle_data(self, data: str) -> None:
        if self._inside == "style":
            self.references.extend(_css_references(data, "<style>"))
        elif self._inside == "script":
            self.references.extend(_js_references(data, "<script>"))
            for found in _INLINE_JS_OPTIONS.finditer(data):
                self._add("<script> options", _unescape_js(found.group(2)), is_load=True)

    def _add(self, where: str, url: str, *, is_load: bool) -> None:
        self.references.append(Reference(where, url.strip(), is_load))


def _css_references(css: str, where: str) -> Iterator[Reference]:
    css = _CSS_COMMENT.sub("", css)
    for found in _CSS_URL.finditer(css):
        url = found.group(2) if found.group(1) else found.group(3)
        yield Reference(f"{where} url()", url, is_load=True)
    for found in _CSS_IMPORT.finditer(css):
        yield Reference(f"{where} @import", found.group(2), is_load=True)


def _js_references(js: str, where: str) -> Iterator[Reference]:
    for name, pattern in _JS_LOADS.items():
        for found in pattern.finditer(js):
            url = _unescape_js(found.group(2))
            # A literal the script completes at run time names no host of its own.
            if url and not url.startswith(("${", "'+", '"+')):
                yield Reference(f"{where} {name}", url, is_load=False)
    for found in _JS_BUILT.finditer(js):
        yield Reference(f"{where} {found.group(1)} in a string", found.group(2), is_load=False)


def _unescape_js(literal: str) -> str:
    return literal.replace("\\/", "/").replace('\\"', '"').replace("\\'", "'")


async def _requests_elsewhere(chromium: Browser, server: str, path: str, title: str) -> list[str]:
    """Open `path` in Chromium, wait for its `title` element to name the app and for the
    network to settle; the requests for another host that the page let out."""
    page = await test_browser.new_page(chromium, server)
    own_host = urlsplit(server).netloc
    elsewhere: list[str] = []

    async def record(route: Route) -> None:
        # Requests the page's policy blocks never get here: nothing else may.
        if urlsplit(route.request.url).netloc != own_host:
            elsewhere.append(route.request.url)
        await route.fallback()

    await page.context.route("**/*", record)
    await page.goto(f"{server}{path}")
    heading = page.locator(title)
    await heading.wait_for()
    assert "Marketplace Monitor" in await heading.inner_text(), path
    await page.wait_for_load_state("networkidle")
    await page.context.close()
    return elsewhere


async def _sign_up(browser: httpx.AsyncClient) -> None:
    token = await csrf_of(browser, "/app/signup")
    response = await browser.post(
        "/app/signup",
        data={"email": "newcomer@example.com", "password": PASSWORD, "csrf_token": token},
    )
    assert response.status_code == 303, response.text


async def _check_a_demo_search(browser: httpx.AsyncClient) -> None:
    """Save a search on the demo marketplace and check it now, so there are matches."""
    saved = await post_form(
        browser,
        "/app/searches/new",
        "/app/searches/new",
        {
            "name": "Cheap iPhones",
            "keywords": "iPhone 13",
            "marketplaces": ["demo"],
            "alert_channels": ["in_app"],
            "check_frequency_minutes": "30",
        },
    )
    assert saved.status_code == 303, saved.text
    listed = await browser.get("/app/searches")
    search_id = re.search(rf'id="search-({UUID})"', listed.text)
    assert search_id, "the saved search is not listed"
    checked = await post_form(browser, "/app/searches", f"/app/searches/{search_id.group(1)}/check")
    assert checked.status_code == 303, checked.text
