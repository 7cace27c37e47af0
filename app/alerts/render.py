"""Alert messages as words: HTML and plain-text email, chat/push text and SMS-sized text.

Every channel renders through here, so a listing reads the same everywhere. Jinja2 with
StrictUndefined (a missing variable is a bug, not an empty string) and autoescaping for
HTML templates: a listing title is untrusted text from a marketplace.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from app.alerts.channels.base import AlertMessage, ListingInfo

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
# A digest lists at most this many listings by default; the rest become "and K more".
DEFAULT_MAX_LISTINGS = 10
SMS_LIMIT = 160
MAX_SUBJECT_CHARS = 150

CURRENCY_SYMBOLS = {"GBP": "£", "USD": "$", "EUR": "€"}
MARKETPLACE_NAMES = {
    "ebay": "eBay",
    "gumtree": "Gumtree",
    "craigslist": "Craigslist",
    "facebook": "Facebook Marketplace",
    "vinted": "Vinted",
    "reddit": "Reddit",
    "rss": "RSS feed",
    "demo": "Demo marketplace",
}

_WHITESPACE = re.compile(r"\s+")
# Short text adds only GSM-7 characters (a hyphen and three dots, not a dash or an ellipsis
# character): one character outside that alphabet turns an SMS into UCS-2, whose segments
# hold 70 characters.
_ELLIPSIS = "..."
_MIN_TITLE_CHARS = 12

_environment = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class ListingView:
    """One listing as templates show it: money formatted, links only when http(s)."""

    title: str
    marketplace: str
    url: str | None
    image_url: str | None
    price: str | None
    previous_price: str | None
    location: str | None

    @property
    def price_text(self) -> str | None:
        """ "£349.99", or "was £400, now £349.99" on a price drop; None without a price."""
        if self.price and self.previous_price:
            return f"was {self.previous_price}, now {self.price}"
        return self.price

    @property
    def details(self) -> str:
        """Price, location and marketplace on one line, e.g. "£349.99 · London · eBay"."""
        parts = (self.price_text, self.location, self.marketplace)
        return " · ".join(part for part in parts if part)


def render_email(
    message: AlertMessage, *, max_listings: int = DEFAULT_MAX_LISTINGS
) -> RenderedEmail:
    """Subject, plain-text and HTML bodies of the email for `message`."""
    context = _context(message, max_listings)
    return RenderedEmail(
        subject=subject_line(message),
        text=_environment.get_template("email.txt").render(context),
        html=_environment.get_template("email.html").render(context),
    )


def plain_text(
    message: AlertMessage,
    *,
    max_listings: int = DEFAULT_MAX_LISTINGS,
    include_title: bool = True,
) -> str:
    """The message for chat and push services: a title line (unless the service shows a
    title of its own), up to `max_listings` listings with price, location and link, "and K
    more", and the link to manage the search."""
    context = {**_context(message, max_listings), "include_title": include_title}
    return _environment.get_template("message.txt").render(context).strip() + "\n"


def short_text(message: AlertMessage, limit: int = SMS_LIMIT) -> str:
    """The most useful summary within `limit` characters, for SMS.

    "£349.99 iPhone 14 128GB - London https://..." for one listing, "5 new matches for
    'iPhones': £349 iPhone 14 +4 more https://..." for a digest. The location, then the
    title's tail, then the link give way until it fits; never longer than `limit`.
    """
    views = [listing_view(item) for item in message.listings]
    if message.kind in ("test", "system") or not views:
        body = _one_line(message.text or "")
        subject = _one_line(message.subject)
        full = f"{subject}: {body}" if subject and body else subject or body
        return _truncate(full or headline(message), limit)
    if message.kind == "digest" or len(views) > 1 or message.more_count:
        return _short_digest(message, views, limit)
    return _short_single(views[0], limit)


def subject_line(message: AlertMessage) -> str:
    """The message's subject on one line, or its headline when it has none."""
    return _truncate(_one_line(message.subject) or headline(message), MAX_SUBJECT_CHARS, "…")


def headline(message: AlertMessage) -> str:
    """The first line of every rendering: what happened, for which search."""
    search = f" for '{_one_line(message.search_name)}'" if message.search_name else ""
    total = len(message.listings) + message.more_count
    if message.kind == "price_drop":
        return f"Price drop{search}"
    if message.kind == "new_listing":
        return f"New match{search}"
    if message.kind == "digest":
        noun = "new match" if total == 1 else "new matches"
        return f"{total} {noun}{search}"
    return _one_line(message.subject) or ("Test alert" if message.kind == "test" else "Notice")


def format_money(amount: str | Decimal | None, currency: str | None) -> str | None:
    """ "£349.99", "$1,200", "€5.50", "CAD 349.99" (the code for other currencies); None
    without an amount. Whole amounts drop the pence."""
    if amount is None or amount == "":
        return None
    code = (currency or "").strip().upper()
    try:
        value = Decimal(amount)
    except (InvalidOperation, ValueError):
        return f"{code} {amount}".strip()
    if not value.is_finite():
        return f"{code} {amount}".strip()
    number = f"{abs(value):,.0f}" if value == value.to_integral_value() else f"{abs(value):,.2f}"
    sign = "-" if value < 0 else ""
    symbol = CURRENCY_SYMBOLS.get(code)
    if symbol:
        return f"{sign}{symbol}{number}"
    return f"{code} {sign}{number}".strip()


def listing_view(listing: ListingInfo) -> ListingView:
    return ListingView(
        title=_one_line(listing.title) or "Untitled listing",
        marketplace=MARKETPLACE_NAMES.get(listing.marketplace, listing.marketplace.title()),
        url=web_url(listing.url),
        image_url=web_url(listing.image_url),
        price=format_money(listing.price, listing.currency),
        previous_price=format_money(listing.previous_price, listing.currency),
        location=_one_line(listing.location) or None,
    )


def _context(message: AlertMessage, max_listings: int) -> dict[str, object]:
    views = [listing_view(item) for item in message.listings]
    shown = views[: max(0, max_listings)]
    return {
        "kind": message.kind,
        "include_title": True,
        "headline": headline(message),
        "intro": (message.text or "").strip(),
        "listings": shown,
        "more_count": message.more_count + len(views) - len(shown),
        "search_name": message.search_name,
        "manage_url": web_url(message.manage_url),
        "unsubscribe_url": web_url(message.unsubscribe_url),
    }


def _short_single(view: ListingView, limit: int) -> str:
    price = view.price
    if view.price and view.previous_price:
        price = f"{view.price} (was {view.previous_price})"
    head = f"{price} " if price else ""
    location = f" - {view.location}" if view.location else ""
    link = f" {view.url}" if view.url else ""
    return _best_fit(
        view.title,
        [(head, location + link), (head, link)],
        [(head, location), (head, "")],
        limit,
    )


def _short_digest(message: AlertMessage, views: Sequence[ListingView], limit: int) -> str:
    total = len(views) + message.more_count
    noun = "new match" if total == 1 else "new matches"
    name = _truncate(_one_line(message.search_name or ""), 30)
    head = f"{total} {noun} for '{name}': " if name else f"{total} {noun}: "
    first = views[0]
    price = f"{first.price} " if first.price else ""
    more = f" +{total - 1} more" if total > 1 else ""
    target = web_url(message.manage_url) or first.url
    link = f" {target}" if target else ""
    short_head = f"{total} {noun}: "
    return _best_fit(
        first.title,
        [(head + price, more + link), (short_head + price, more + link)],
        [(head + price, more), (short_head + price, more)],
        limit,
    )


def _best_fit(
    title: str,
    with_link: Sequence[tuple[str, str]],
    without_link: Sequence[tuple[str, str]],
    limit: int,
) -> str:
    """The first (head, tail) arrangement around `title` that fits, preferring the whole
    title, then a shortened one, with the link before without it."""
    for options in (with_link, without_link):
        for head, tail in options:
            if len(head) + len(title) + len(tail) <= limit:
                return head + title + tail
        for head, tail in options:
            room = limit - len(head) - len(tail)
            if room >= _MIN_TITLE_CHARS:
                return head + _truncate(title, room) + tail
    head, tail = without_link[-1]
    return _truncate(head + title + tail, limit)


def _truncate(text: str, limit: int, ellipsis: str = _ELLIPSIS) -> str:
    if len(text) <= limit:
        return text
    if limit <= len(ellipsis):
        return text[:limit]
    return text[: limit - len(ellipsis)].rstrip() + ellipsis


def _one_line(text: str | None) -> str:
    return _WHITESPACE.sub(" ", text or "").strip()


def web_url(url: str | None) -> str | None:
    """`url` when it is an absolute http(s) URL; anything else (javascript:, data:) is
    never shown as a link or an image."""
    if not url:
        return None
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced "[" in the host
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    if any(char.isspace() or ord(char) < 32 for char in url):
        return None
    return url
