"""The plan table and every limit check, in one place."""

from __future__ import annotations

from dataclasses import dataclass

from app.config import Settings
from app.errors import PlanLimitExceeded
from app.models.enums import Plan
from app.services import stripe_client


@dataclass(frozen=True)
class PlanLimits:
    max_active_searches: int | None  # None = unlimited
    max_marketplaces_per_search: int
    min_check_frequency_minutes: int
    manual_checks_per_day: int
    test_alerts_per_day: int
    sms_per_day: int


PLAN_LIMITS: dict[Plan, PlanLimits] = {
    Plan.FREE: PlanLimits(2, 1, 30, 10, 5, 0),
    Plan.STARTER: PlanLimits(5, 1, 15, 50, 10, 20),
    Plan.PRO: PlanLimits(25, 3, 5, 200, 20, 100),
    Plan.BUSINESS: PlanLimits(None, 4, 1, 1000, 50, 500),
}


def signup_plan(settings: Settings) -> Plan:
    """The plan a new account starts on (DEFAULT_PLAN)."""
    if settings.default_plan != "auto":
        return Plan(settings.default_plan)
    # Without Stripe nobody can upgrade: the server's own people get everything it offers.
    return Plan.FREE if stripe_client.billing_configured(settings) else Plan.BUSINESS


def limits_for(plan: str) -> PlanLimits:
    return PLAN_LIMITS[Plan(plan)]


def check_new_active_search(plan: str, active_searches: int) -> None:
    """Raise PlanLimitExceeded when one more active search would exceed the plan."""
    limit = limits_for(plan).max_active_searches
    if limit is not None and active_searches >= limit:
        raise PlanLimitExceeded(
            f"The {_label(plan)} plan allows {limit} active searches; "
            "pause or delete one, or upgrade your plan"
        )


def check_search_settings(plan: str, *, marketplaces: int, check_frequency_minutes: int) -> None:
    """Raise PlanLimitExceeded when a search's marketplaces or frequency exceed the plan."""
    limits = limits_for(plan)
    allowed = limits.max_marketplaces_per_search
    if marketplaces > allowed:
        extra = marketplaces - allowed
        raise PlanLimitExceeded(
            f"Your plan allows {allowed} marketplace{'' if allowed == 1 else 's'} per search: "
            f"untick {'one' if extra == 1 else extra}, or upgrade in Plan",
            field="marketplaces",
        )
    fastest = limits.min_check_frequency_minutes
    if check_frequency_minutes < fastest:
        raise PlanLimitExceeded(
            f"Your plan checks at most every {fastest} minutes: choose {fastest} or more",
            field="check_frequency_minutes",
        )


def _label(plan: str) -> str:
    return Plan(plan).name
