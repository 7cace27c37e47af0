"""What scraped marketplaces share: price and relative-time parsing, block pages, cards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from app.marketplaces.base import Listing, PageLayoutChanged
from app.marketplaces.scraping import (
    CardError,
    CardParser,
    block_reason,
    keyword_terms,
    parse_price,
    parse_relative_time,
)
from tests.fakes.pages import ACCESS_DENIED_PAGE, CAPTCHA_PAGE, CHALLENGE_PAGE, LOGIN_WALL_PAGE

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
AMOUNTS = st.decimals(
    min_value=Decimal("0.01"), max_value=Decimal("99999999.99"), places=2, allow_nan=False
)
WHOLE_AMOUNTS = st.integers(min_value=0, max_value=999_999_999)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("£1,250", (Decimal("1250.00"), "GBP")),
        ("£20 ono", (Decimal("20.00"), "GBP")),
        ("£120.50", (Decimal("120.50"), "GBP")),
        ("Free", (Decimal("0.00"), "EUR")),
        ("$5", (Decimal("5.00"), "USD")),
        ("US$ 1,999", (Decimal("1999.00"), "USD")),
        ("12,50 €", (Decimal("12.50"), "EUR")),
        ("1.250,00 €", (Decimal("1250.00"), "EUR")),
        ("1 250,00 €", (Decimal("1250.00"), "EUR")),
        ("€1,250.50", (Decimal("1250.50"), "EUR")),
        ("100 zł", (Decimal("100.00"), "PLN")),
        ("2 for £10", (Decimal("10.00"), "GBP")),
        ("£10 - £20", (Decimal("10.00"), "GBP")),
        ("150", (Decimal("150.00"), "EUR")),
        ("POA", (None, None)),
        ("Swap", (None, None)),
        ("", (None, None)),
        ("£99999999999", (None, None)),  # beyond what a listing's price column holds
    ],
)
def test_prices_as_listing_pages_write_them(
    text: str, expected: tuple[Decimal | None, str | None]
) -> None:
    assert parse_price(text, default_currency="EUR") == expected


def test_a_bare_number_is_no_price_where_a_currency_is_needed() -> None:
    assert parse_price("RTX 3080 10GB", needs_currency=True) == (None, None)
    assert parse_price("RTX 3080 for $450", needs_currency=True) == (Decimal("450.00"), "USD")


@given(AMOUNTS)
def test_pounds_with_thousands_commas_read_back(amount: Decimal) -> None:
    assert parse_price(f"£{amount:,.2f}") == (amount, "GBP")
    assert parse_price(f"£{amount:,.2f} ono") == (amount, "GBP")


@given(AMOUNTS)
def test_euros_in_continental_style_read_back(amount: Decimal) -> None:
    # 1234.5 -> "1.234,50 €"
    continental = f"{amount:,.2f}".replace(",", " ").replace(".", ",").replace(" ", ".")
    assert parse_price(f"{continental} €") == (amount, "EUR")


@given(WHOLE_AMOUNTS)
def test_whole_dollars_read_back(amount: int) -> None:
    assert parse_price(f"${amount:,}") == (Decimal(amount).quantize(Decimal("0.01")), "USD")


@given(st.text(max_size=80))
def test_any_text_gives_a_price_or_none_and_never_raises(text: str) -> None:
    amount, currency = parse_price(text, default_currency="GBP")
    assert amount is None or (amount >= 0 and amount == amount.quantize(Decimal("0.01")))
    assert currency is None or len(currency) == 3


@pytest.mark.parametrize(
    ("text", "age"),
    [
        ("2 mins ago", timedelta(minutes=2)),
        ("1 min ago", timedelta(minutes=1)),
        ("an hour ago", timedelta(hours=1)),
        ("Posted 5 hours ago", timedelta(hours=5)),
        ("3d ago", timedelta(days=3)),
        ("1 week ago", timedelta(weeks=1)),
        ("2 months ago", timedelta(days=60)),
        ("30 secs ago", timedelta(seconds=30)),
        ("Just now", timedelta(0)),
        ("Yesterday", timedelta(days=1)),
    ],
)
def test_relative_times_become_moments(text: str, age: timedelta) -> None:
    assert parse_relative_time(text, now=NOW) == NOW - age


@pytest.mark.parametrize("text", ["", "soon", "01/05/2026", "99999999999 days ago", None])
def test_times_we_cannot_read_are_none(text: str | None) -> None:
    assert parse_relative_time(text, now=NOW) is None


UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}


@given(st.integers(min_value=1, max_value=500), st.sampled_from(sorted(UNITS)))
def test_n_units_ago_is_n_units_before_now(count: int, unit: str) -> None:
    text = f"{count} {unit}{'s' if count > 1 else ''} ago"
    assert parse_relative_time(text, now=NOW) == NOW - timedelta(seconds=count * UNITS[unit])


@given(st.text(max_size=40))
def test_a_relative_time_is_never_in_the_future(text: str) -> None:
    moment = parse_relative_time(text, now=NOW)
    assert moment is None or moment <= NOW


@pytest.mark.parametrize(
    ("page", "reason"),
    [
        (ACCESS_DENIED_PAGE, "an access-denied page"),
        (CAPTCHA_PAGE, "a CAPTCHA page"),
        (CHALLENGE_PAGE, "a bot challenge page"),
        (LOGIN_WALL_PAGE, "a login wall"),
        ("<html><body><h1>Results for lens</h1></body></html>", None),
    ],
)
def test_block_pages_are_recognised(page: str, reason: str | None) -> None:
    assert block_reason(page) == reason


def test_keyword_terms_drop_quotes_and_repeats_and_stop_at_five() -> None:
    keywords = ('"iphone 13"', "iphone 13", "a", "b", "c", "d", "e")
    assert keyword_terms(keywords) == ["iphone 13", "a", "b", "c", "d"]


def listing(external_id: str) -> Listing:
    return Listing(marketplace="x", external_id=external_id, title="t", url="https://x.test/")


def test_cards_that_fail_are_skipped_and_counted() -> None:
    def parse(card: str) -> Listing | None:
        if card == "promoted":
            return None
        if card == "broken":
            raise CardError("no title")
        return listing(card)

    def skipped_metric() -> float:
        sample = REGISTRY.get_sample_value(
            "marketmon_listing_cards_skipped_total", {"marketplace": "test-site"}
        )
        return sample or 0.0

    before = skipped_metric()
    parser = CardParser("test-site")
    assert parser.parse(["1", "broken", "promoted", "2"], parse) == [listing("1"), listing("2")]
    assert (parser.cards_failed, parser.cards_parsed) == (1, 3)
    assert skipped_metric() == before + 1
    assert parser.parse([], parse) == []
    with pytest.raises(PageLayoutChanged):
        parser.parse(["broken", "broken"], parse)
    assert parser.cards_failed == 3
