"""Saved searches (the seed's search_configs) and the engine's bookkeeping on each."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, new_id, utcnow


class Search(Base):
    __tablename__ = "searches"
    __table_args__ = (
        Index("ix_searches_due", "is_active", "next_check_at"),
        # What search_matches' key on (search_id, user_id) refers to.
        Index("ix_searches_id_owner", "id", "owner_id", unique=True),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    owner_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    criteria: Mapped[dict[str, Any]] = mapped_column(JSON)
    marketplaces: Mapped[list[str]] = mapped_column(JSON)
    alert_channels: Mapped[list[str]] = mapped_column(JSON)
    check_frequency_minutes: Mapped[int] = mapped_column(Integer)
    alert_on_first_check: Mapped[bool] = mapped_column(Boolean, default=False)
    alert_on_price_drop: Mapped[bool] = mapped_column(Boolean, default=False)
    # instant | hourly | daily (AlertMode); periodic searches alert in-app at once and
    # send one digest per channel when the period ends.
    alert_mode: Mapped[str] = mapped_column(String(16), default="instant", server_default="instant")
    last_digest_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paused_reason: Mapped[str | None] = mapped_column(String(200))

    # Engine state: when to check next and how the last checks went.
    next_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    # None of its marketplaces can be checked on this server yet (no credentials): it is
    # left out of the schedule, without failures, until the operator sets one up.
    waiting_for_setup: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
