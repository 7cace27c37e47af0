"""All models, imported here so Alembic and the app see the full metadata."""

from app.models.account import ApiToken, CodePurpose, OneTimeCode
from app.models.alert import Alert
from app.models.billing import AuditLog, StripeEvent
from app.models.enums import AlertChannel, AlertKind, AlertMode, AlertStatus, Marketplace, Plan
from app.models.listing import Listing, ListingPrice, SearchMatch
from app.models.search import Search
from app.models.template import SearchTemplate
from app.models.user import ApiUsage, RefreshToken, User

__all__ = [
    "Alert",
    "AlertChannel",
    "AlertKind",
    "AlertMode",
    "AlertStatus",
    "ApiToken",
    "ApiUsage",
    "AuditLog",
    "CodePurpose",
    "Listing",
    "ListingPrice",
    "Marketplace",
    "OneTimeCode",
    "Plan",
    "RefreshToken",
    "Search",
    "SearchMatch",
    "SearchTemplate",
    "StripeEvent",
    "User",
]
