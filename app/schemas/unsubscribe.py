"""The answer to an unsubscribe link."""

from __future__ import annotations

import uuid

from app.schemas.common import OutputModel


class UnsubscribeResult(OutputModel):
    search_id: uuid.UUID
    search_name: str
    alert_channels: list[str]
    detail: str
