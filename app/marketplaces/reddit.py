"""Reddit: the newest posts of a subreddit (trading subreddits such as r/hardwareswap).

Wire format: `external-apis.md` section 8. `new.json` lists a subreddit's newest posts
whatever the keywords, so every search on one subreddit shares one fetch and keywords are
matched locally. Reddit throttles generic User-Agents hard and allows 10 requests a
minute without OAuth: REDDIT_USER_AGENT names the app and its operator. A price is read
from titles written the trading way: "[UK-London] [H] RTX 3080 [W] £400" asks £400.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import httpx
from pydantic import BeforeValidator, Field, StringConstraints

from app.marketplaces import regions, scraping
from app.marketplaces.base import (
    Capabilities,
    Listing,
    MarketplaceError,
    MarketplaceOptions,
    PageLayoutChanged,
    Query,
)
from app.marketplaces.scraping import CardError, CardParser, PageFetcher

if TYPE_CHECKING:
    from app.config import Settings
    from app.security.ssrf import Resolver

PAGE_SIZE = 100
_LEADING_TAG = re.compile(r"^\s*\[([^\]]{1,40})\]")
_TRADE_TAGS = frozenset({"h", "w", "wtb", "wts", "wtt", "fs", "ft", "sold", "closed", "meta"})
_HAVE_WANT = re.compile(r"\[\s*(?P<tag>[hw])\s*\]", re.IGNORECASE)
# Trading subreddits mark a finished trade by its flair or a tag in the title ("[SOLD]",
# "(Closed)"); such a post offers nothing any more.
_FINISHED_FLAIRS = frozenset(
    {"closed", "sold", "completed", "complete", "expired", "traded", "sold out"}
)
_FINISHED_TAG = re.compile(
    r"[\[(]\s*(?:closed|sold|completed|expired|traded)\s*[\])]|^\s*(?:closed|sold)\b[\s:!-]",
    re.IGNORECASE,
)
# A post that wants to buy: its flair says so, or all it has to offer is money.
_BUYING_FLAIRS = frozenset({"buying", "wtb", "want to buy", "looking for", "iso"})
_BUYING_TAG = re.compile(r"^\s*(?:\[[^\]]*\]\s*)*\[\s*(?:wtb|buying|iso)\s*\]", re.IGNORECASE)
_MONEY_WORDS = re.compile(
    r"paypal|pay\s*pal|cash|money|venmo|zelle|bank transfer|revolut|g&s|f&f|local|shipped"
    r"|[$£€]|\d|usd|gbp|eur|[,/+&]|\band\b|\bor\b",
    re.IGNORECASE,
)


def _subreddit_name(value: object) -> object:
    # People paste "r/hardwareswap" or "/r/hardwareswap/"; the name is what counts.
    if isinstance(value, str):
        value = value.strip().strip("/")
        value = value[2:] if value.lower().startswith("r/") else value
        return value.lower()
    return value


class RedditOptions(MarketplaceOptions):
    subreddit: Annotated[
        str,
        BeforeValidator(_subreddit_name),
        StringConstraints(pattern=r"^[a-z0-9][a-z0-9_]{1,20}$"),
    ] = Field(description="The subreddit's name, e.g. hardwareswap or ukmarketplace")


class RedditAdapter(scraping.SiteAdapter):
    name = "reddit"
    # 10 requests a minute without OAuth; keep well under for every worker together.
    capabilities = Capabilities(keyword_filter=False, page_size=PAGE_SIZE, requests_per_minute=6)
    options_model: ClassVar[type[MarketplaceOptions] | None] = RedditOptions

    def __init__(
        self,
        fetcher: PageFetcher,
        *,
        base_url: str = "https://www.reddit.com",
        default_currency: str = "GBP",
    ) -> None:
        self.fetcher = fetcher
        self.base_url = base_url.rstrip("/")
        self.default_currency = default_currency
        self.cards = CardParser("reddit")

    @classmethod
    def from_settings(
        cls, client: httpx.AsyncClient, settings: Settings, _resolve: Resolver | None = None
    ) -> RedditAdapter:
        fetcher = PageFetcher.for_marketplace(
            "Reddit",
            client,
            settings,
            proxy_url=settings.reddit_proxy_url,
            user_agent=settings.reddit_user_agent,
        )
        country = regions.COUNTRIES.get(settings.default_country.upper())
        return cls(
            fetcher,
            base_url=settings.reddit_base_url,
            default_currency=country.currency if country else "GBP",
        )

    async def aclose(self) -> None:
        await self.fetcher.aclose()

    async def search(self, query: Query) -> list[Listing]:
        """The subreddit's newest posts, newest first. Raises MarketplaceError (no or an
        unknown subreddit), Blocked (403, a private subreddit), RateLimited."""
        subreddit = query.option("subreddit")
        if not subreddit:
            raise MarketplaceError(
                "the search names no subreddit (criteria.marketplace_options.reddit.subreddit)"
            )
        path = f"/r/{subreddit}/new.json"
        response, body = await self.fetcher.get_json(
            self.base_url + path, params={"limit": str(PAGE_SIZE), "raw_json": "1"}
        )
        # An unknown subreddit redirects to the subreddit search.
        if response.status_code == httpx.codes.NOT_FOUND or not response.url.path.endswith(path):
            raise MarketplaceError(f"r/{subreddit} does not exist")
        if response.status_code != httpx.codes.OK:
            raise scraping.unexpected_status("Reddit", response)
        return self.parse_listing(body)

    def parse_listing(self, body: object) -> list[Listing]:
        data = body.get("data") if isinstance(body, dict) else None
        children = data.get("children") if isinstance(data, dict) else None
        if (
            not isinstance(body, dict)
            or body.get("kind") != "Listing"
            or not isinstance(children, list)
        ):
            raise PageLayoutChanged("reddit: the answer is not a listing of posts")
        posts = [
            c
            for c in children
            if not isinstance(c, dict)
            or (c.get("kind") == "t3" and not is_finished_or_buying(c.get("data")))
        ]
        return self.cards.parse(posts, self._post)

    def _post(self, child: Any) -> Listing:
        post = child["data"]
        post_id = post["id"]
        title = post["title"]
        if not isinstance(post_id, str) or not post_id.isalnum():
            raise CardError("no id")
        if not isinstance(title, str) or not title.strip():
            raise CardError("no title")
        permalink = post.get("permalink")
        url = (
            scraping.absolute_url(self.base_url, permalink)
            if isinstance(permalink, str) and permalink
            else f"{self.base_url}/comments/{post_id}/"
        )
        price, currency = trade_price(title)
        created = post.get("created_utc")
        thumbnail = post.get("thumbnail")
        author = post.get("author")
        selftext = post.get("selftext")
        return Listing(
            marketplace=self.name,
            external_id=post_id,
            title=scraping.clip(title, 500) or "",
            url=url,
            price=price,
            currency=currency,
            image_url=thumbnail
            if isinstance(thumbnail, str) and thumbnail.startswith("http")
            else None,
            location=location_tag(title),
            seller=scraping.clip(author if isinstance(author, str) else None, 255),
            description=selftext[:5000] or None if isinstance(selftext, str) else None,
            posted_at=datetime.fromtimestamp(float(created), UTC)
            if isinstance(created, int | float) and not isinstance(created, bool)
            else None,
            raw={
                key: post.get(key)
                for key in ("id", "name", "permalink", "url", "link_flair_text", "over_18")
            },
        )


def is_finished_or_buying(post: object) -> bool:
    """Whether a post is no listing to alert: a trade already closed, sold or completed
    (by its link flair or a tag in its title), or a post that wants to buy (flair, a [WTB]
    tag, or an [H] that offers only money: "[H] PayPal [W] GPU")."""
    if not isinstance(post, dict):
        return False
    flair = post.get("link_flair_text")
    if isinstance(flair, str):
        label = flair.strip().strip("[]()").strip().casefold()
        if label in _FINISHED_FLAIRS or label in _BUYING_FLAIRS:
            return True
    title = post.get("title")
    if not isinstance(title, str):
        return False
    if _FINISHED_TAG.search(title) or _BUYING_TAG.match(title):
        return True
    return _offers_only_money(title)


def _offers_only_money(title: str) -> bool:
    parts = _HAVE_WANT.split(title)
    have = " ".join(
        text for tag, text in zip(parts[1::2], parts[2::2], strict=True) if tag.lower() == "h"
    )
    return bool(have.strip()) and not _MONEY_WORDS.sub(" ", have).strip()


def trade_price(title: str) -> tuple[Decimal | None, str | None]:
    """The asking price of a trading post: a price in what the poster wants ("[W] £200"),
    or in a title without [H]/[W] tags. A post that offers money ("[H] PayPal [W] GPU") is
    a want-to-buy and has none. Only amounts with a currency count."""
    sections: dict[str, str] = {}
    parts = _HAVE_WANT.split(title)
    # split keeps the tag letters: [before, tag, text, tag, text, ...]
    for tag, text in zip(parts[1::2], parts[2::2], strict=True):
        sections[tag.lower()] = sections.get(tag.lower(), "") + " " + text
    if not sections:
        return scraping.parse_price(title, needs_currency=True)
    return scraping.parse_price(sections.get("w", ""), needs_currency=True)


def location_tag(title: str) -> str | None:
    """The place tag trading subreddits start titles with: "[USA-CA]", "[UK-London]"."""
    match = _LEADING_TAG.match(title)
    if match is None or match.group(1).strip().lower() in _TRADE_TAGS:
        return None
    return scraping.clip(match.group(1), 255)
