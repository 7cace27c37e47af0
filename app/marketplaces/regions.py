"""Free-text locations -> ISO country -> marketplace region (eBay site id, currency).

Deliberately small and explicit: the countries that have an eBay site, their names and
common aliases, a few dozen major cities and the postcode shapes people type. Anything
else falls back to the configured default country. It is not a geocoder.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class Country:
    code: str
    name: str
    currency: str
    ebay_marketplace_id: str
    aliases: tuple[str, ...] = ()
    # A bare five-digit number is read as this country's postcode when it is the default.
    has_five_digit_postcodes: bool = False


COUNTRIES: dict[str, Country] = {
    country.code: country
    for country in (
        Country(
            "GB",
            "United Kingdom",
            "GBP",
            "EBAY_GB",
            (
                "uk",
                "great britain",
                "britain",
                "england",
                "scotland",
                "wales",
                "northern ireland",
            ),
        ),
        Country(
            "US",
            "United States",
            "USD",
            "EBAY_US",
            (
                "usa",
                "united states of america",
                "america",
                "california",
                "texas",
                "florida",
                "washington dc",
                "new york state",
            ),
            has_five_digit_postcodes=True,
        ),
        Country(
            "DE",
            "Germany",
            "EUR",
            "EBAY_DE",
            ("deutschland", "bayern", "bavaria"),
            has_five_digit_postcodes=True,
        ),
        Country("FR", "France", "EUR", "EBAY_FR", has_five_digit_postcodes=True),
        Country("IT", "Italy", "EUR", "EBAY_IT", ("italia",), has_five_digit_postcodes=True),
        Country("ES", "Spain", "EUR", "EBAY_ES", ("espana",), has_five_digit_postcodes=True),
        Country(
            "AU",
            "Australia",
            "AUD",
            "EBAY_AU",
            ("new south wales", "queensland", "western australia"),
        ),
        Country(
            "CA", "Canada", "CAD", "EBAY_CA", ("ontario", "quebec", "british columbia", "alberta")
        ),
        Country("AT", "Austria", "EUR", "EBAY_AT", ("osterreich", "oesterreich")),
        Country("BE", "Belgium", "EUR", "EBAY_BE", ("belgie", "belgique", "belgien")),
        Country("CH", "Switzerland", "CHF", "EBAY_CH", ("schweiz", "suisse", "svizzera")),
        Country("IE", "Ireland", "EUR", "EBAY_IE", ("eire", "republic of ireland")),
        Country("NL", "Netherlands", "EUR", "EBAY_NL", ("nederland", "holland")),
        Country("PL", "Poland", "PLN", "EBAY_PL", ("polska",)),
        Country("HK", "Hong Kong", "HKD", "EBAY_HK"),
        Country("SG", "Singapore", "SGD", "EBAY_SG"),
        Country("MY", "Malaysia", "MYR", "EBAY_MY", has_five_digit_postcodes=True),
        Country("PH", "Philippines", "PHP", "EBAY_PH"),
    )
}

CITIES: dict[str, str] = {
    # United Kingdom
    "london": "GB",
    "manchester": "GB",
    "birmingham": "GB",
    "leeds": "GB",
    "liverpool": "GB",
    "glasgow": "GB",
    "edinburgh": "GB",
    "bristol": "GB",
    "cardiff": "GB",
    "belfast": "GB",
    "sheffield": "GB",
    "newcastle": "GB",
    "nottingham": "GB",
    "brighton": "GB",
    "cambridge": "GB",
    "oxford": "GB",
    # United States
    "new york": "US",
    "new york city": "US",
    "nyc": "US",
    "los angeles": "US",
    "chicago": "US",
    "houston": "US",
    "san francisco": "US",
    "seattle": "US",
    "boston": "US",
    "miami": "US",
    # Germany, Austria, Switzerland
    "berlin": "DE",
    "hamburg": "DE",
    "munich": "DE",
    "munchen": "DE",
    "cologne": "DE",
    "koln": "DE",
    "frankfurt": "DE",
    "stuttgart": "DE",
    "vienna": "AT",
    "wien": "AT",
    "zurich": "CH",
    "geneva": "CH",
    # France, Italy, Spain, Benelux, Ireland, Poland
    "paris": "FR",
    "lyon": "FR",
    "marseille": "FR",
    "rome": "IT",
    "roma": "IT",
    "milan": "IT",
    "milano": "IT",
    "madrid": "ES",
    "barcelona": "ES",
    "amsterdam": "NL",
    "rotterdam": "NL",
    "brussels": "BE",
    "bruxelles": "BE",
    "dublin": "IE",
    "warsaw": "PL",
    "warszawa": "PL",
    "krakow": "PL",
    # Australia, Canada
    "sydney": "AU",
    "melbourne": "AU",
    "brisbane": "AU",
    "perth": "AU",
    "toronto": "CA",
    "montreal": "CA",
    "vancouver": "CA",
    "ottawa": "CA",
    "calgary": "CA",
}

_UK_POSTCODE = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}$")
_US_ZIP = re.compile(r"^[0-9]{5}(-[0-9]{4})?$")
_CA_POSTCODE = re.compile(r"^[A-Z][0-9][A-Z] ?[0-9][A-Z][0-9]$")
_NON_WORD = re.compile(r"[^0-9a-z]+")
_LONGEST_NAME_WORDS = 4

_BY_NAME: dict[str, str] = {
    name: country.code
    for country in COUNTRIES.values()
    for name in (country.name.lower(), *country.aliases)
}
# Two-letter codes count only as a whole part ("Rome, IT"): inside free text "it", "at"
# and "be" are words. CA and DE are also US states, so "Los Angeles, CA" tries cities first.
_STATE_LIKE_CODES = frozenset({"ca", "de"})
_BY_CODE: dict[str, str] = {code.lower(): code for code in COUNTRIES}
_CLEAR_CODES = {code: c for code, c in _BY_CODE.items() if code not in _STATE_LIKE_CODES}
_AMBIGUOUS_CODES = {code: c for code, c in _BY_CODE.items() if code in _STATE_LIKE_CODES}


def region(country_code: str) -> Country:
    """The region of a known country code (case-insensitive); KeyError for others."""
    return COUNTRIES[country_code.upper()]


def country_for(location: str | None, *, default_country: str) -> str:
    """The ISO country a free-text location is in, or `default_country` when unknown.

    Reads, in order: a postcode ("SW1A 1AA", "10001", "M5V 2T6"), a country name or alias
    ("United Kingdom", "Deutschland", "UK"), then a city ("London", "Berlin, Germany" reads
    the country first). A bare five-digit number is a postcode of the default country when
    that country uses them (a German default reads "10115" as Berlin), a US ZIP otherwise.
    """
    default = default_country.upper()
    if not location or not location.strip():
        return default
    postcode_country = _postcode_country(location, default)
    if postcode_country:
        return postcode_country
    parts = [_words(part) for part in re.split(r"[,;/|]", location)]
    parts = [part for part in parts if part]
    # "Manchester, UK": the last part is usually the widest, so parts are read right to left.
    for table in (_BY_NAME, _CLEAR_CODES, CITIES, _AMBIGUOUS_CODES):
        for part in reversed(parts):
            if part in table:
                return table[part]
    for table in (_BY_NAME, CITIES):
        found = _first_name_in(" ".join(parts), table)
        if found:
            return found
    for part in parts:
        postcode_country = _postcode_country(part, default)
        if postcode_country:
            return postcode_country
    return default


def postcode_in(location: str | None) -> str | None:
    """A UK, US or Canadian postcode when the whole location is one, without spaces."""
    if not location:
        return None
    compact = location.strip().upper()
    if _UK_POSTCODE.match(compact) or _US_ZIP.match(compact) or _CA_POSTCODE.match(compact):
        return compact.replace(" ", "")
    return None


def country_name(country_code: str) -> str:
    """The English name of a known country, else the code as given."""
    country = COUNTRIES.get(country_code.upper())
    return country.name if country else country_code


def _postcode_country(text: str, default: str) -> str | None:
    compact = text.strip().upper()
    if _UK_POSTCODE.match(compact):
        return "GB"
    if _CA_POSTCODE.match(compact):
        return "CA"
    if _US_ZIP.match(compact):
        country = COUNTRIES.get(default)
        if country and country.has_five_digit_postcodes and "-" not in compact:
            return default
        return "US"
    return None


def _words(text: str) -> str:
    """Lower-case, accent-free, single-spaced: "  Köln " -> "koln"."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    # "U.K." and "St. Albans" read as "uk" and "st albans".
    return " ".join(_NON_WORD.sub(" ", plain.casefold().replace(".", "")).split())


def _first_name_in(text: str, table: dict[str, str]) -> str | None:
    """The country of the longest, then leftmost, run of words that is a known name."""
    words = text.split()
    for width in range(min(_LONGEST_NAME_WORDS, len(words)), 0, -1):
        for start in range(len(words) - width + 1):
            candidate = " ".join(words[start : start + width])
            if candidate in table:
                return table[candidate]
    return None
