"""Rendering: email (HTML + text), chat/push text and SMS-sized text for every alert kind."""

from __future__ import annotations

import re
import uuid
from html.parser import HTMLParser

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.alerts import render
from app.alerts.channels.base import AlertMessage, ListingInfo

IPHONE = ListingInfo(
    title="iPhone 14 128GB",
    url="https://www.ebay.co.uk/itm/1234",
    marketplace="ebay",
    price="349.99",
    currency="GBP",
    image_url="https://i.ebayimg.com/images/g/1/s-l225.jpg",
    location="London",
)
MANAGE_URL = "https://mm.example/searches/5b7c"


def message(
    kind: str = "new_listing",
    listings: tuple[ListingInfo, ...] = (IPHONE,),
    **overrides: object,
) -> AlertMessage:
    fields: dict[str, object] = {
        "alert_id": uuid.UUID("00000000-0000-4000-8000-000000000001"),
        "idempotency_key": f"{kind}:test",
        "kind": kind,
        "subject": "New match: iPhone 14 128GB",
        "listings": listings,
        "search_name": "iPhones",
        "manage_url": MANAGE_URL,
    }
    fields.update(overrides)
    return AlertMessage(**fields)  # type: ignore[arg-type]


def listing(n: int, **overrides: object) -> ListingInfo:
    fields: dict[str, object] = {
        "title": f"iPhone {n}",
        "url": f"https://www.ebay.co.uk/itm/{n}",
        "marketplace": "ebay",
        "price": f"{100 + n}.00",
        "currency": "GBP",
    }
    fields.update(overrides)
    return ListingInfo(**fields)  # type: ignore[arg-type]


class _Structure(HTMLParser):
    """Start tags with their attribute names: what a title must never be able to change."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, tuple[str, ...]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, tuple(name for name, _ in attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def structure(html: str) -> _Structure:
    parser = _Structure()
    parser.feed(html)
    parser.close()
    return parser


# --- money --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("349.99", "GBP", "£349.99"),
        ("349.00", "GBP", "£349"),
        ("1200", "USD", "$1,200"),
        ("5.5", "EUR", "€5.50"),
        ("349.99", "CAD", "CAD 349.99"),
        ("349.99", "gbp", "£349.99"),
        ("12", None, "12"),
        (None, "GBP", None),
    ],
)
def test_money_uses_the_symbol_for_gbp_usd_eur_and_the_code_otherwise(
    amount: str | None, currency: str | None, expected: str | None
) -> None:
    assert render.format_money(amount, currency) == expected


# --- email --------------------------------------------------------------------------------


def test_new_listing_email_shows_image_title_price_location_and_both_links() -> None:
    email = render.render_email(message())

    assert email.subject == "New match: iPhone 14 128GB"
    for part in ("iPhone 14 128GB", "£349.99", "London", IPHONE.url, MANAGE_URL):
        assert part in email.text
        assert part in email.html
    assert f'<img src="{IPHONE.image_url}"' in email.html
    assert f'<a href="{IPHONE.url}"' in email.html
    assert "View listing" in email.html
    assert f'<a href="{MANAGE_URL}"' in email.html
    assert "Manage this search" in email.html
    assert "<" not in email.text


def test_script_in_a_title_is_escaped_in_html_and_left_as_text_in_plain_text() -> None:
    evil = ListingInfo(
        title='<script>alert("x")</script> iPhone', url="https://e.example/1", marketplace="ebay"
    )

    email = render.render_email(message(listings=(evil,)))

    assert "<script>" not in email.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; iPhone" in email.html
    assert '<script>alert("x")</script> iPhone' in email.text


def test_links_that_are_not_http_are_never_rendered_as_links_or_images() -> None:
    sneaky = ListingInfo(
        title="Camera",
        url="javascript:alert(1)",
        marketplace="ebay",
        image_url="data:image/svg+xml,<svg onload=alert(1)>",
    )

    email = render.render_email(message(listings=(sneaky,), manage_url="javascript:void(0)"))

    assert "javascript:" not in email.html
    assert "data:" not in email.html
    assert "<img" not in email.html
    assert "View listing" not in email.html
    assert "Manage this search" not in email.html


def test_price_drop_shows_was_and_now() -> None:
    dropped = listing(14, price="349.99", previous_price="400.00")

    email = render.render_email(message("price_drop", (dropped,), subject="Price drop"))

    assert "was £400, now £349.99" in email.text
    assert "£400" in email.html
    assert "£349.99" in email.html
    assert "Price drop for &#39;iPhones&#39;" in email.html


def test_digest_lists_its_listings_then_and_k_more() -> None:
    listings = tuple(listing(n) for n in range(3))

    email = render.render_email(
        message("digest", listings, more_count=4, subject="7 new matches for 'iPhones'")
    )

    assert "7 new matches for 'iPhones'" in email.text
    for item in listings:
        assert item.title in email.text
        assert item.title in email.html
    assert "and 4 more" in email.text
    assert "and 4 more" in email.html


def test_digest_longer_than_the_cap_folds_the_rest_into_and_k_more() -> None:
    listings = tuple(listing(n) for n in range(5))

    text = render.plain_text(message("digest", listings, more_count=1), max_listings=2)

    assert "iPhone 1" in text
    assert "iPhone 2" not in text
    assert "and 4 more" in text


@pytest.mark.parametrize("kind", ["test", "system"])
def test_test_and_system_messages_render_their_text(kind: str) -> None:
    note = message(
        kind,
        (),
        subject="Your search 'iPhones' is failing",
        text="The last 5 checks were blocked by the marketplace.",
    )

    email = render.render_email(note)

    assert email.subject == "Your search 'iPhones' is failing"
    assert "The last 5 checks were blocked" in email.text
    assert "The last 5 checks were blocked" in email.html


def test_subject_is_one_line_even_when_the_message_subject_is_not() -> None:
    email = render.render_email(message(subject="New match:\r\nBcc: victim@example.com"))

    assert "\n" not in email.subject
    assert "\r" not in email.subject


# --- chat / push ----------------------------------------------------------------------------


def test_plain_text_has_a_title_line_listings_with_price_location_link_and_manage_link() -> None:
    text = render.plain_text(message())

    lines = text.splitlines()
    assert lines[0] == "New match for 'iPhones'"
    assert "iPhone 14 128GB" in lines
    assert "£349.99 · London · eBay" in lines
    assert IPHONE.url in lines
    assert lines[-1] == f"Manage this search: {MANAGE_URL}"


def test_plain_text_without_title_leaves_the_title_to_the_service() -> None:
    text = render.plain_text(message(), include_title=False)

    assert text.splitlines()[0] == "iPhone 14 128GB"


# --- SMS ----------------------------------------------------------------------------------


def test_short_text_for_one_listing_is_price_title_location_and_link() -> None:
    assert render.short_text(message()) == (
        "£349.99 iPhone 14 128GB - London https://www.ebay.co.uk/itm/1234"
    )


def test_short_text_for_a_price_drop_shows_the_old_price() -> None:
    dropped = listing(14, price="349.99", previous_price="400.00", location=None)

    assert render.short_text(message("price_drop", (dropped,))) == (
        "£349.99 (was £400) iPhone 14 https://www.ebay.co.uk/itm/14"
    )


def test_short_text_for_a_digest_counts_matches_and_shows_the_first() -> None:
    listings = tuple(listing(n) for n in range(1, 4))

    text = render.short_text(message("digest", listings, more_count=2))

    assert text == f"5 new matches for 'iPhones': £101 iPhone 1 +4 more {MANAGE_URL}"


def test_short_text_shortens_a_long_title_but_keeps_the_link() -> None:
    long_title = "Apple iPhone 14 128GB Midnight Unlocked " * 6

    text = render.short_text(message(listings=(listing(14, title=long_title),)))

    assert len(text) <= 160
    assert text.startswith("£114 Apple iPhone 14")
    assert text.endswith("... https://www.ebay.co.uk/itm/14")


def test_short_text_drops_a_link_too_long_to_fit() -> None:
    huge_link = "https://www.ebay.co.uk/itm/" + "x" * 200
    text = render.short_text(message(listings=(listing(14, url=huge_link),)))

    assert text == "£114 iPhone 14"


def test_short_text_of_a_system_message_is_subject_and_text() -> None:
    note = message("system", (), subject="Search failing", text="Check your eBay keys.")

    assert render.short_text(note) == "Search failing: Check your eBay keys."


@given(
    title=st.text(max_size=400),
    location=st.none() | st.text(max_size=80),
    kind=st.sampled_from(["new_listing", "price_drop", "digest"]),
    more=st.integers(min_value=0, max_value=500),
)
def test_short_text_never_exceeds_the_limit(
    title: str, location: str | None, kind: str, more: int
) -> None:
    item = listing(1, title=title, location=location, previous_price="999.99")

    text = render.short_text(message(kind, (item,), more_count=more))

    assert len(text) <= 160


# --- properties ---------------------------------------------------------------------------


TITLE_START, TITLE_END = "[[title-start]]", "[[title-end]]"


@given(title=st.text(max_size=300), location=st.none() | st.text(max_size=80))
def test_any_title_renders_with_angle_brackets_escaped_and_the_same_tags(
    title: str, location: str | None
) -> None:
    """Whatever a marketplace puts in a title, `<` and `>` reach the HTML only escaped
    (checked between markers around the title), the page has the same tags as with a
    harmless title, and its text reads the title."""
    marked = f"{TITLE_START}{title}{TITLE_END}"
    item = ListingInfo(
        title=marked,
        url="https://e.example/1",
        marketplace="ebay",
        price="10",
        currency="GBP",
        location=location,
        image_url="https://e.example/1.jpg",
    )
    harmless = ListingInfo(
        title="x",
        url="https://e.example/1",
        marketplace="ebay",
        price="10",
        currency="GBP",
        location=location,
        image_url="https://e.example/1.jpg",
    )

    email = render.render_email(message(listings=(item,), search_name=marked))
    baseline = render.render_email(message(listings=(harmless,), search_name="x"))

    from_titles = re.findall(f"{re.escape(TITLE_START)}(.*?){re.escape(TITLE_END)}", email.html)
    assert len(from_titles) >= 4  # <title>, preheader, heading, alt text, card, footer
    assert not any("<" in part or ">" in part for part in from_titles)
    assert structure(email.html).tags == structure(baseline.html).tags
    assert render.listing_view(item).title in "".join(structure(email.html).text)
    assert render.plain_text(message(listings=(item,)))
