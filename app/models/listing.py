"""Listings (stored once per marketplace + external id), their price history and the matches."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, new_id, utcnow

Money = Numeric(12, 2)


class Listing(Base):
    __tablename__ = "listings"
    __table_args__ = (UniqueConstraint("marketplace", "external_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    marketplace: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(String(500))
    description: Mapped[str | None] = mapped_column(Text)
    price: Mapped[Decimal | None] = mapped_column(Money)
    currency: Mapped[str | None] = mapped_column(String(3))
    url: Mapped[str] = mapped_column(String(2048))
    image_url: Mapped[str | None] = mapped_column(String(2048))
    location: Mapped[str | None] = mapped_column(String(255))
    condition: Mapped[str | None] = mapped_column(String(50))
    seller: Mapped[str | None] = mapped_column(String(255))
    posted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    raw: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class ListingPrice(Base):
    """One observed price of a listing; a row is added whenever the price changes."""

    __tablename__ = "listing_prices"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    listing_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("listings.id", ondelete="CASCADE"), index=True
    )
    price: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SearchMatch(Base):
    """A listing that matched a search, with the owner's own view of it (saved, hidden, viewed)."""

    __tablename__ = "search_matches"
    __table_args__ = (
        UniqueConstraint("search_id", "listing_id"),
        Index("ix_search_matches_user_matched", "user_id", "matched_at"),
        # The owner is the search's owner: one key checks both the search and who owns
        # it, where a key per column paid a second lookup and row lock, on users, for
        # every match row inserted.
        ForeignKeyConstraint(
            ["search_id", "user_id"], ["searches.id", "searches.owner_id"], ondelete="CASCADE"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    # No index of its own: the unique (search_id, listing_id) index serves lookups by search,
    # and every index is paid for on the hottest insert path.
    search_id: Mapped[uuid.UUID] = mapped_column()
    listing_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("listings.id", ondelete="CASCADE"), index=True
    )
    # Denormalised owner: every listing query is "this user's matches", so it needs no join.
    user_id: Mapped[uuid.UUID] = mapped_column()
    matched_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    price_at_match: Mapped[Decimal | None] = mapped_column(Money)
    is_saved: Mapped[bool] = mapped_column(Boolean, default=False)
    is_hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    viewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
