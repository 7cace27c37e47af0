"""Users, their refresh-token families and their metered usage."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Integer,
    String,
    Time,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, new_id, utcnow
from app.models.enums import Plan


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    full_name: Mapped[str | None] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    plan: Mapped[str] = mapped_column(String(20), default=Plan.FREE.value)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")

    # Notification settings: validated by the API, used by the alert channels.
    phone_number: Mapped[str | None] = mapped_column(String(20))
    # The number above answered a code sent to it; a new number starts unverified.
    phone_verified: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    webhook_url: Mapped[str | None] = mapped_column(String(2048))
    webhook_secret: Mapped[str | None] = mapped_column(String(128))
    # During a rotation the previous secret keeps signing too, until it expires.
    webhook_previous_secret: Mapped[str | None] = mapped_column(String(128))
    webhook_previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Deliveries to the webhook have failed since this moment (None = last one worked).
    webhook_failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when the endpoint answered 410 or failed for days; cleared by saving a URL again.
    webhook_disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    webhook_disabled_reason: Mapped[str | None] = mapped_column(String(300))
    # The newest alert the owner has seen in the alert log: later ones count as unread.
    alerts_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    apprise_urls: Mapped[list[str]] = mapped_column(JSON, default=list)
    quiet_hours_start: Mapped[time | None] = mapped_column(Time)
    quiet_hours_end: Mapped[time | None] = mapped_column(Time)

    # Billing state, written only by Stripe events or an admin.
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255))
    subscription_status: Mapped[str | None] = mapped_column(String(32))
    current_period_end: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # Raised in the same transaction as every change to what the user's listing pages
    # show, so a page cached under one value can never be served once it is stale.
    feed_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    # Carried by every token as `cv`; raising it (password change or reset, "log out
    # everywhere") ends every token issued before, access tokens included.
    credentials_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class RefreshToken(Base):
    """One issued refresh token. Tokens rotate within a family; re-use revokes the family."""

    __tablename__ = "refresh_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    family_id: Mapped[uuid.UUID] = mapped_column(index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiUsage(Base):
    """A per-user, per-day counter of metered actions (manual checks, test alerts, SMS sent)."""

    __tablename__ = "api_usage"
    __table_args__ = (UniqueConstraint("user_id", "day", "kind"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(32))
    count: Mapped[int] = mapped_column(Integer, default=0)
