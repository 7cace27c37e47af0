"""Any RSS or Atom feed the user names (a saved search's feed, a shop's new arrivals).

The URL is the user's, so it is fetched only through `ssrf.get_safely`: checked when the
search is saved and again at every fetch, each redirect checked too, the answer capped
and never decompressed by the client. Feeds are parsed with feedparser and entries keyed
on their id (else their link). A feed lists its newest entries whatever the keywords, so
every search on one feed shares one fetch and keywords are matched locally.
"""

from __future__ import annotations

import hashlib
import io
import time
import zlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import feedparser
import httpx
from pydantic import Field, StringConstraints
from selectolax.lexbor import LexborHTMLParser

from app.marketplaces import scraping
from app.marketplaces.base import (
    Blocked,
    Capabilities,
    Listing,
    MarketplaceError,
    MarketplaceOptions,
    PageLayoutChanged,
    Query,
    RateLimited,
)
from app.marketplaces.scraping import CardError, CardParser
from app.retry_after import parse_retry_after
from app.security import ssrf

if TYPE_CHECKING:
    from app.config import Settings

FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.8, */*;q=0.5"
)
MAX_ID_CHARS = 255


class RssOptions(MarketplaceOptions):
    url: Annotated[
        str,
        StringConstraints(max_length=ssrf.MAX_URL_LENGTH, pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://"),
    ] = Field(description="The feed's http(s) URL")

    user_url_fields = ("url",)


class RssAdapter(scraping.SiteAdapter):
    name = "rss"
    capabilities = Capabilities(keyword_filter=False, page_size=100, requests_per_minute=60)
    options_model: ClassVar[type[MarketplaceOptions] | None] = RssOptions

    def __init__(
        self,
        client: httpx.AsyncClient,
        policy: ssrf.URLPolicy,
        *,
        user_agent: str,
        timeout_s: float = 15.0,
        max_bytes: int = 2 * 1024 * 1024,
        default_currency: str = "GBP",
    ) -> None:
        self.client = client
        self.policy = policy
        self.user_agent = user_agent
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.default_currency = default_currency
        self.cards = CardParser("rss")

    @classmethod
    def from_settings(
        cls,
        client: httpx.AsyncClient,
        settings: Settings,
        resolve: ssrf.Resolver | None = None,
    ) -> RssAdapter:
        """Under the URL policy the API applies when a feed URL is saved; never via a proxy
        (a proxy would resolve and connect where the check cannot see)."""
        policy = ssrf.URLPolicy(
            resolve=resolve or ssrf.system_resolver,
            allow_http=settings.debug,
            allow_loopback=settings.ssrf_allow_loopback,
        )
        country = settings.default_country.upper()
        return cls(
            client,
            policy,
            user_agent=settings.scraper_user_agent,
            timeout_s=settings.scraper_timeout_s,
            max_bytes=settings.rss_max_bytes,
            default_currency="GBP" if country == "GB" else "USD" if country == "US" else "EUR",
        )

    async def search(self, query: Query) -> list[Listing]:
        """The feed's entries in feed order (newest first, as feeds list them). Raises
        MarketplaceError (no URL, an unsafe URL, no answer, not a feed), Blocked,
        RateLimited, PageLayoutChanged."""
        url = query.option("url")
        if not url:
            raise MarketplaceError(
                "the search names no feed (criteria.marketplace_options.rss.url)"
            )
        body = await self._fetch(url)
        # Bytes in a stream: feedparser fetches anything it is given as a string itself.
        # No base URL either, so ids stay as the feed writes them (they key the listings).
        parsed = feedparser.parse(io.BytesIO(body))
        entries = list(parsed.entries)
        if not entries and not parsed.get("version"):
            reason = scraping.block_reason(body.decode("utf-8", "replace"))
            if reason:
                raise Blocked(reason)
            raise PageLayoutChanged("rss: the URL did not answer with an RSS or Atom feed")
        return self.cards.parse(entries, self._entry)

    async def _fetch(self, url: str) -> bytes:
        """The feed document, decompressed."""
        try:
            response = await ssrf.get_safely(
                self.client,
                url,
                {"User-Agent": self.user_agent, "Accept": FEED_ACCEPT},
                policy=self.policy,
                timeout_s=self.timeout_s,
                max_response_bytes=self.max_bytes + 1,
            )
        except ssrf.UnsafeURL as exc:
            raise MarketplaceError(f"feed URL refused: {exc.detail}") from exc
        except httpx.TimeoutException as exc:
            raise MarketplaceError(f"the feed did not answer within {self.timeout_s:g} s") from exc
        except httpx.HTTPError as exc:
            raise MarketplaceError(f"could not reach the feed ({type(exc).__name__})") from exc
        status = response.status_code
        if status in (httpx.codes.TOO_MANY_REQUESTS, httpx.codes.SERVICE_UNAVAILABLE):
            retry_after_s = parse_retry_after(response.headers.get("Retry-After"))
            raise RateLimited(f"the feed answered {status}", retry_after_s=retry_after_s)
        if status == httpx.codes.FORBIDDEN:
            raise Blocked("HTTP 403")
        if status in ssrf.REDIRECT_STATUSES:
            raise MarketplaceError(f"the feed redirects more than {ssrf.MAX_REDIRECTS} times")
        if status != httpx.codes.OK:
            raise MarketplaceError(f"the feed answered {status}")
        too_large = MarketplaceError(f"the feed is larger than {self.max_bytes} bytes")
        if len(response.body_prefix) > self.max_bytes:
            raise too_large
        encoding = response.headers.get("Content-Encoding", "")
        body = _decoded(response.body_prefix, encoding, limit=self.max_bytes + 1)
        if body is None:
            raise MarketplaceError(f"the feed sent a body we cannot read ({encoding})")
        if len(body) > self.max_bytes:
            raise too_large
        return body

    def _entry(self, entry: Any) -> Listing:
        link = entry.get("link")
        if not isinstance(link, str) or not link.startswith(("https://", "http://")):
            raise CardError("no http(s) link")
        key = entry.get("id") or link
        if not isinstance(key, str):
            raise CardError("no id")
        if len(key) > MAX_ID_CHARS:
            key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
        title = scraping.clip(_plain(entry.get("title")), 500)
        if not title:
            raise CardError("no title")
        price, currency = scraping.parse_price(title, needs_currency=True)
        author = entry.get("author")
        return Listing(
            marketplace=self.name,
            external_id=key,
            title=title,
            url=link[:2048],
            price=price,
            currency=currency,
            image_url=_image(entry),
            seller=scraping.clip(author if isinstance(author, str) else None, 255),
            description=scraping.clip(_plain(entry.get("summary")), 5000),
            posted_at=_time(entry.get("published_parsed") or entry.get("updated_parsed")),
            raw={"id": entry.get("id"), "link": link},
        )


def _decoded(body: bytes, content_encoding: str, *, limit: int) -> bytes | None:
    """The body as a document: a gzip or deflate answer (sent although we asked for none)
    is inflated to at most `limit` bytes. None for an encoding we cannot read."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        return None
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # | 32: a gzip or a zlib header
    try:
        return inflater.decompress(body, limit)
    except zlib.error:
        return None


def _plain(value: object) -> str | None:
    """Text of a title or summary that may hold (sanitised) HTML."""
    if not isinstance(value, str) or not value.strip():
        return None
    if "<" not in value:
        return value
    body = LexborHTMLParser(value).body
    return body.text(separator=" ") if body is not None else None


def _image(entry: Any) -> str | None:
    candidates: list[object] = []
    for key in ("media_thumbnail", "media_content"):
        media = entry.get(key)
        if isinstance(media, list):
            candidates += [m.get("url") for m in media if isinstance(m, dict)]
    for link in entry.get("links") or ():
        if isinstance(link, dict) and str(link.get("type", "")).startswith("image/"):
            candidates.append(link.get("href"))
    for url in candidates:
        if isinstance(url, str) and url.startswith(("https://", "http://")) and len(url) <= 2048:
            return url
    return None


def _time(value: object) -> datetime | None:
    """A feedparser time (a UTC struct_time) as an aware datetime."""
    if not isinstance(value, time.struct_time):
        return None
    try:
        return datetime(*value[:6], tzinfo=UTC)
    except ValueError:
        return None
