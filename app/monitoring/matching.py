"""Search criteria -> a predicate over normalised listings (PRODUCT.md section 5).

A keyword matches when all its words occur in the title as whole words, in any order; a
keyword in double quotes must occur as that exact phrase. Case, accents and punctuation
are normalised. Any exclude keyword (same rules) rejects. Prices are only compared in
the search's own currency.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

from app.marketplaces.base import Listing

_NON_WORD = re.compile(r"[^0-9a-z]+")

_NEW_CONDITIONS = {"new", "brand new", "new with tags", "new without tags", "new other"}


def normalise(text: str) -> tuple[str, ...]:
    """Lower-case, accent-free words: "Café iPhone-13!" -> ("cafe", "iphone", "13")."""
    decomposed = unicodedata.normalize("NFKD", text)
    without_accents = "".join(c for c in decomposed if not unicodedata.combining(c))
    return tuple(_NON_WORD.sub(" ", without_accents.casefold()).split())


@lru_cache(maxsize=16_384)
def _title_words(title: str) -> tuple[tuple[str, ...], frozenset[str]]:
    # A group's listings are matched against every search in it (hundreds for a popular
    # query): each title is normalised once, not once per search.
    words = normalise(title)
    return words, frozenset(words)


@dataclass(frozen=True)
class _Term:
    words: tuple[str, ...]
    is_phrase: bool

    def occurs_in(self, title_words: tuple[str, ...], title_set: frozenset[str]) -> bool:
        if not self.words:
            return False
        if not self.is_phrase:
            return all(word in title_set for word in self.words)
        width = len(self.words)
        return any(
            title_words[i : i + width] == self.words for i in range(len(title_words) - width + 1)
        )


def _term(keyword: str) -> _Term:
    stripped = keyword.strip()
    is_phrase = len(stripped) >= 2 and stripped.startswith('"') and stripped.endswith('"')
    return _Term(normalise(stripped), is_phrase)


@dataclass(frozen=True)
class Matcher:
    keywords: tuple[_Term, ...]
    excludes: tuple[_Term, ...]
    min_price: Decimal | None
    max_price: Decimal | None
    currency: str | None
    condition: str | None
    # False: an unknown price passes the price range (product rule: "price unknown").
    require_price: bool = False

    def matches(self, listing: Listing) -> bool:
        title_words, title_set = _title_words(listing.title)
        if not any(term.occurs_in(title_words, title_set) for term in self.keywords):
            return False
        if any(term.occurs_in(title_words, title_set) for term in self.excludes):
            return False
        return self._price_ok(listing) and self._condition_ok(listing)

    def _price_ok(self, listing: Listing) -> bool:
        if listing.price is None:
            return not self.require_price
        if self.min_price is None and self.max_price is None:
            return True
        if self.currency and listing.currency and listing.currency.upper() != self.currency:
            return False
        if self.min_price is not None and listing.price < self.min_price:
            return False
        return self.max_price is None or listing.price <= self.max_price

    def _condition_ok(self, listing: Listing) -> bool:
        # An unknown condition is kept: the marketplace already filtered when it could.
        if self.condition in (None, "any") or not listing.condition:
            return True
        is_new = " ".join(normalise(listing.condition)) in _NEW_CONDITIONS
        return is_new if self.condition == "new" else not is_new


def build_matcher(criteria: Mapping[str, Any], *, currency: str | None) -> Matcher:
    """Compile validated search criteria; `currency` is the search's effective currency."""
    return Matcher(
        keywords=tuple(_term(k) for k in criteria.get("keywords", ())),
        excludes=tuple(_term(k) for k in criteria.get("exclude_keywords", ())),
        min_price=_decimal(criteria.get("min_price")),
        max_price=_decimal(criteria.get("max_price")),
        currency=currency.upper() if currency else None,
        condition=criteria.get("condition"),
        require_price=bool(criteria.get("require_price")),
    )


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))
