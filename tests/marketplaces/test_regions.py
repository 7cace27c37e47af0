"""Free-text locations -> country -> eBay site and currency."""

from __future__ import annotations

import pytest

from app.marketplaces import regions


@pytest.mark.parametrize(
    ("location", "country"),
    [
        ("London", "GB"),
        ("london", "GB"),
        ("Manchester, UK", "GB"),
        ("United Kingdom", "GB"),
        ("U.K.", "GB"),
        ("central London", "GB"),
        ("Belfast, Northern Ireland", "GB"),
        ("SW1A 1AA", "GB"),
        ("sw1a1aa", "GB"),
        ("Berlin", "DE"),
        ("Deutschland", "DE"),
        ("Köln", "DE"),
        ("MÜNCHEN", "DE"),
        ("Zürich", "CH"),
        ("New York", "US"),
        ("new york city", "US"),
        ("10001", "US"),
        ("Los Angeles, CA", "US"),
        ("Manchester, USA", "US"),
        ("Paris", "FR"),
        ("Rome, IT", "IT"),
        ("Madrid", "ES"),
        ("Sydney", "AU"),
        ("Toronto", "CA"),
        ("M5V 2T6", "CA"),
        ("Dublin", "IE"),
    ],
)
def test_a_location_is_read_as_its_country(location: str, country: str) -> None:
    assert regions.country_for(location, default_country="GB") == country


@pytest.mark.parametrize("location", [None, "", "   ", "Atlantis", "somewhere nice", "東京"])
def test_an_unknown_or_missing_location_falls_back_to_the_default_country(
    location: str | None,
) -> None:
    assert regions.country_for(location, default_country="GB") == "GB"
    assert regions.country_for(location, default_country="us") == "US"


def test_two_letter_words_inside_free_text_are_not_read_as_country_codes() -> None:
    assert regions.country_for("pick up at home, be quick", default_country="GB") == "GB"


def test_a_bare_five_digit_postcode_belongs_to_a_default_country_that_uses_them() -> None:
    assert regions.country_for("10115", default_country="DE") == "DE"
    assert regions.country_for("10115", default_country="GB") == "US"
    assert regions.country_for("10001-1234", default_country="DE") == "US"


@pytest.mark.parametrize(
    ("country", "marketplace_id", "currency"),
    [
        ("GB", "EBAY_GB", "GBP"),
        ("us", "EBAY_US", "USD"),
        ("DE", "EBAY_DE", "EUR"),
        ("FR", "EBAY_FR", "EUR"),
        ("IT", "EBAY_IT", "EUR"),
        ("ES", "EBAY_ES", "EUR"),
        ("AU", "EBAY_AU", "AUD"),
        ("CA", "EBAY_CA", "CAD"),
        ("CH", "EBAY_CH", "CHF"),
    ],
)
def test_a_country_has_its_ebay_site_and_currency(
    country: str, marketplace_id: str, currency: str
) -> None:
    region = regions.region(country)
    assert region.ebay_marketplace_id == marketplace_id
    assert region.currency == currency


def test_every_city_and_alias_names_a_known_country() -> None:
    assert set(regions.CITIES.values()) <= set(regions.COUNTRIES)
    for code, country in regions.COUNTRIES.items():
        assert country.code == code
        assert country.ebay_marketplace_id == f"EBAY_{code}"
        assert len(country.currency) == 3
        assert (
            regions.country_for(country.name, default_country="PL" if code != "PL" else "GB")
            == code
        )
        for alias in country.aliases:
            assert regions.country_for(alias, default_country="PH") == code, alias


def test_a_postcode_is_recognised_only_when_it_is_the_whole_location() -> None:
    assert regions.postcode_in("SW1A 1AA") == "SW1A1AA"
    assert regions.postcode_in(" 10001 ") == "10001"
    assert regions.postcode_in("London") is None
    assert regions.postcode_in(None) is None


def test_an_unknown_country_code_has_no_region() -> None:
    with pytest.raises(KeyError):
        regions.region("XX")
    assert regions.country_name("XX") == "XX"
    assert regions.country_name("gb") == "United Kingdom"
