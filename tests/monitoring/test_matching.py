"""Search semantics of PRODUCT.md section 5, as examples and as properties."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.marketplaces.base import Listing
from app.monitoring.matching import build_matcher, normalise


def listing(title: str, price: str | None = "100", currency: str = "GBP", **kw: Any) -> Listing:
    return Listing(
        marketplace="demo",
        external_id="1",
        title=title,
        url="https://example.com/1",
        price=None if price is None else Decimal(price),
        currency=currency,
        **kw,
    )


def matches(criteria: dict[str, Any], item: Listing, currency: str | None = "GBP") -> bool:
    return build_matcher(criteria, currency=currency).matches(item)


@pytest.mark.parametrize(
    ("keyword", "title", "expected"),
    [
        ("iPhone 13", "Apple iPhone 13 128GB", True),
        ("iPhone 13", "13 x Apple iPhone cases", True),  # all words, any order
        ("iPhone 13", "Apple iPhone 130", False),  # whole words only
        ('"iphone 13"', "Apple iPhone 13 Pro", True),
        ('"iphone 13"', "13 iPhone", False),  # a quoted phrase keeps its order
        ('"iphone 13"', "iPhone 12 13", False),  # and its adjacency
        ("cafe", "Café racer jacket", True),  # accents
        ("iphone 13", "iPhone-13 unlocked", True),  # punctuation
        ("PS5", "ps5 console", True),  # case
        ("ipad", "iPad's charger", True),
    ],
)
def test_keyword_semantics(keyword: str, title: str, expected: bool) -> None:
    assert matches({"keywords": [keyword]}, listing(title)) is expected


def test_any_keyword_matches_and_any_exclusion_rejects() -> None:
    criteria = {"keywords": ["iPhone 13", "iPhone 14"], "exclude_keywords": ["broken", "faulty"]}
    assert matches(criteria, listing("iPhone 14 Pro Max"))
    assert not matches(criteria, listing("iPhone 14 Pro Max - BROKEN screen"))
    assert not matches(criteria, listing("Faulty iPhone 13"))
    assert not matches(criteria, listing("Samsung Galaxy S23"))


def test_price_bounds_are_inclusive_and_an_unknown_price_passes_unless_required() -> None:
    criteria = {"keywords": ["ps5"], "min_price": 100, "max_price": 400}
    assert matches(criteria, listing("PS5", "400.00"))
    assert matches(criteria, listing("PS5", "100"))
    assert not matches(criteria, listing("PS5", "400.01"))
    assert not matches(criteria, listing("PS5", "99.99"))
    # "POA", no price on the card: shown as price unknown, not silently dropped.
    assert matches(criteria, listing("PS5", None))
    assert matches({"keywords": ["ps5"]}, listing("PS5", None))
    required = {**criteria, "require_price": True}
    assert not matches(required, listing("PS5", None))
    assert not matches({"keywords": ["ps5"], "require_price": True}, listing("PS5", None))
    assert matches(required, listing("PS5", "250"))
    # Free is a price (0), not an unknown one.
    assert matches({"keywords": ["ps5"], "require_price": True}, listing("PS5", "0"))


def test_prices_are_never_compared_across_currencies() -> None:
    criteria = {"keywords": ["ps5"], "max_price": 400}
    assert not matches(criteria, listing("PS5", "300", currency="USD"), currency="GBP")
    assert matches(criteria, listing("PS5", "300", currency="gbp"), currency="GBP")


@pytest.mark.parametrize(
    ("wanted", "condition", "expected"),
    [
        ("new", "Brand New", True),
        ("new", "Pre-owned", False),
        ("used", "Used", True),
        ("used", "New", False),
        ("any", "Used", True),
        ("new", None, True),  # unknown: the marketplace filtered already
    ],
)
def test_condition(wanted: str, condition: str | None, expected: bool) -> None:
    item = listing("PS5", condition=condition)
    assert matches({"keywords": ["ps5"], "condition": wanted}, item) is expected


words = st.lists(st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True), min_size=1, max_size=6)


@given(title_words=words, data=st.data())
def test_a_keyword_made_of_title_words_always_matches(title_words: list[str], data: Any) -> None:
    chosen = data.draw(st.lists(st.sampled_from(title_words), min_size=1, max_size=4))
    shuffled = data.draw(st.permutations(chosen))
    assert matches({"keywords": [" ".join(shuffled)]}, listing(" ".join(title_words)))


@given(title_words=words, data=st.data())
def test_a_contiguous_slice_matches_as_a_quoted_phrase(title_words: list[str], data: Any) -> None:
    start = data.draw(st.integers(0, len(title_words) - 1))
    end = data.draw(st.integers(start + 1, len(title_words)))
    phrase = '"' + " ".join(title_words[start:end]) + '"'
    assert matches({"keywords": [phrase]}, listing(" ".join(title_words).upper()))


@given(title_words=words, extra=st.from_regex(r"[a-z]{9,12}", fullmatch=True))
def test_a_word_absent_from_the_title_never_matches(title_words: list[str], extra: str) -> None:
    assert not matches({"keywords": [f"{title_words[0]} {extra}"]}, listing(" ".join(title_words)))


@given(text=st.text(max_size=60))
def test_normalise_is_idempotent(text: str) -> None:
    once = normalise(text)
    assert normalise(" ".join(once)) == once
