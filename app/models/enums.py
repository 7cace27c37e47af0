"""Enumerations stored as plain strings, so adding a marketplace or channel needs no migration."""

from enum import StrEnum


class Plan(StrEnum):
    FREE = "free"
    STARTER = "starter"
    PRO = "pro"
    BUSINESS = "business"


class Marketplace(StrEnum):
    EBAY = "ebay"
    GUMTREE = "gumtree"
    CRAIGSLIST = "craigslist"
    FACEBOOK = "facebook"
    DEMO = "demo"
    VINTED = "vinted"
    REDDIT = "reddit"
    RSS = "rss"


class AlertChannel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    WEBHOOK = "webhook"
    APPRISE = "apprise"
    IN_APP = "in_app"


class AlertMode(StrEnum):
    """When a search's matches reach the external channels."""

    INSTANT = "instant"
    HOURLY = "hourly"
    DAILY = "daily"


class AlertStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    DEAD = "dead"


class AlertKind(StrEnum):
    NEW_LISTING = "new_listing"
    PRICE_DROP = "price_drop"
    DIGEST = "digest"
    TEST = "test"
    SYSTEM = "system"
