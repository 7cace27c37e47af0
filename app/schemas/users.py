"""User bodies. The notification settings live here too (the alerts issue uses them)."""

from __future__ import annotations

import uuid
from datetime import datetime, time

from app.schemas.common import OutputModel


class UserOut(OutputModel):
    id: uuid.UUID
    email: str
    full_name: str | None
    plan: str
    is_active: bool
    email_verified: bool
    timezone: str
    phone_number: str | None
    webhook_url: str | None
    apprise_urls: list[str]
    quiet_hours_start: time | None
    quiet_hours_end: time | None
    created_at: datetime
