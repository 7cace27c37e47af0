"""Search criteria validation: what a saved search may look for."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import ValidationError

from app.schemas.searches import SearchCreate, SearchCriteria, SearchUpdate

MAX = Decimal(1_000_000_000)
prices = st.decimals(min_value=0, max_value=MAX, places=2, allow_nan=False, allow_infinity=False)


def criteria(**fields: Any) -> dict[str, Any]:
    return {"keywords": ["iphone 13"], **fields}


def test_seed_guide_criteria_are_accepted_and_stored_with_two_place_prices() -> None:
    parsed = SearchCriteria.model_validate(
        {
            "keywords": ["iPhone 13", "iPhone 14"],
            "max_price": 400,
            "exclude_keywords": ["broken", "faulty"],
            "location": "London",
        }
    )
    assert parsed.stored() == {
        "keywords": ["iPhone 13", "iPhone 14"],
        "exclude_keywords": ["broken", "faulty"],
        "max_price": "400.00",
        "location": "London",
    }


def test_stored_criteria_validate_back_unchanged() -> None:
    parsed = SearchCriteria.model_validate(
        criteria(min_price="1e2", max_price=399.99, currency="gbp", condition=" Used ")
    )
    stored = parsed.stored()
    assert stored["min_price"] == "100.00"
    assert stored["max_price"] == "399.99"
    assert stored["currency"] == "GBP"
    assert stored["condition"] == "used"
    assert SearchCriteria.model_validate(stored).stored() == stored


def test_duplicate_keywords_are_dropped_case_insensitively_keeping_the_first() -> None:
    parsed = SearchCriteria.model_validate(
        criteria(keywords=["iPhone 13", "IPHONE 13", " iphone   13 ", "Pixel 8", "pixel 8"])
    )
    assert parsed.keywords == ["iPhone 13", "Pixel 8"]


def test_quoted_phrases_are_kept_as_exact_phrases() -> None:
    parsed = SearchCriteria.model_validate(criteria(keywords=['"iphone 13"', '"  pixel 8 "']))
    assert parsed.keywords == ['"iphone 13"', '"pixel 8"']


def test_radius_is_accepted_with_a_location() -> None:
    parsed = SearchCriteria.model_validate(criteria(location="Leeds", radius_km=25))
    assert parsed.radius_km == 25


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"keywords": []}, "no keywords"),
        ({"keywords": [f"item {n}" for n in range(21)]}, "too many keywords"),
        ({"keywords": [""]}, "empty keyword"),
        ({"keywords": ["   "]}, "blank keyword"),
        ({"keywords": ["x" * 101]}, "keyword too long"),
        ({"keywords": ['""']}, "empty quoted phrase"),
        ({"keywords": ["!!!"]}, "keyword without letters or digits"),
        ({"exclude_keywords": [f"word {n}" for n in range(51)]}, "too many excludes"),
        ({"exclude_keywords": [""]}, "empty exclude"),
        ({"exclude_keywords": ["y" * 101]}, "exclude too long"),
        ({"min_price": -1}, "negative price"),
        ({"max_price": "1000000000.01"}, "price too high"),
        ({"max_price": "1.234"}, "three decimal places"),
        ({"max_price": "NaN"}, "not a number"),
        ({"min_price": 10, "max_price": 5}, "min above max"),
        ({"currency": "GB"}, "currency too short"),
        ({"currency": "GBPX"}, "currency too long"),
        ({"currency": "G1P"}, "currency with a digit"),
        ({"location": "l" * 201}, "location too long"),
        ({"location": "Leeds", "radius_km": 0}, "radius zero"),
        ({"location": "Leeds", "radius_km": 501}, "radius too large"),
        ({"radius_km": 10}, "radius without location"),
        ({"condition": "refurbished"}, "unknown condition"),
        ({"category": "c" * 101}, "category too long"),
        ({"colour": "blue"}, "unknown key"),
        ({"keywords": ["iphone\x00"]}, "NUL byte"),
    ],
)
def test_invalid_criteria_are_rejected(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError):
        SearchCriteria.model_validate(criteria(**fields))


def test_patch_refuses_null_for_a_field_that_needs_a_value_but_allows_null_description() -> None:
    with pytest.raises(ValidationError, match="name needs a value"):
        SearchUpdate.model_validate({"name": None})
    assert SearchUpdate.model_validate({"description": None}).model_fields_set == {"description"}


def test_create_defaults_to_in_app_alerts_every_thirty_minutes() -> None:
    body = SearchCreate.model_validate(
        {"name": "n", "criteria": criteria(), "marketplaces": ["ebay"]}
    )
    assert body.alert_channels == ["in_app"]
    assert body.check_frequency_minutes == 30
    assert body.alert_on_first_check is False
    assert body.alert_on_price_drop is False


@given(low=prices, high=prices)
def test_any_price_range_with_min_not_above_max_is_accepted(low: Decimal, high: Decimal) -> None:
    low, high = min(low, high), max(low, high)
    parsed = SearchCriteria.model_validate(criteria(min_price=str(low), max_price=str(high)))
    assert parsed.min_price == low
    assert parsed.max_price == high
    assert SearchCriteria.model_validate(parsed.stored()) == parsed


@given(low=prices, high=prices)
def test_any_price_range_with_min_above_max_is_rejected(low: Decimal, high: Decimal) -> None:
    assume(low != high)
    low, high = max(low, high), min(low, high)
    with pytest.raises(ValidationError) as refused:
        SearchCriteria.model_validate(criteria(min_price=str(low), max_price=str(high)))
    (error,) = refused.value.errors()
    assert error["loc"] == ("max_price",)
    assert error["msg"].endswith("The highest price must be at least the lowest price")


@given(
    keywords=st.lists(
        st.text(alphabet=st.sampled_from('abcAB 1"'), min_size=1, max_size=12),
        min_size=1,
        max_size=20,
    )
)
def test_accepted_keywords_are_clean_unique_and_never_empty(keywords: list[str]) -> None:
    try:
        parsed = SearchCriteria.model_validate(criteria(keywords=keywords))
    except ValidationError:
        return
    folded = [keyword.casefold() for keyword in parsed.keywords]
    assert len(folded) == len(set(folded))
    for keyword in parsed.keywords:
        assert keyword == keyword.strip()
        assert "  " not in keyword
        assert any(char.isalnum() for char in keyword)
        assert 1 <= len(keyword) <= 100


def test_require_price_is_stored_only_when_asked_for() -> None:
    assert SearchCriteria.model_validate(criteria(require_price=True)).stored()["require_price"]
    for unset in ({}, {"require_price": False}, {"require_price": None}):
        assert "require_price" not in SearchCriteria.model_validate(criteria(**unset)).stored()
    with pytest.raises(ValidationError):
        SearchCriteria.model_validate(criteria(require_price="sometimes"))
