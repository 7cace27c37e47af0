"""Search-template bodies."""

from __future__ import annotations

import uuid

from app.schemas.common import InputModel, OutputModel
from app.schemas.searches import (
    AlertChannels,
    CheckFrequency,
    Location,
    Marketplaces,
    SearchCriteriaOut,
    SearchName,
)


class TemplateOut(OutputModel):
    id: uuid.UUID
    slug: str
    name: str
    description: str
    category: str
    is_featured: bool
    criteria: SearchCriteriaOut
    marketplaces: list[str]
    check_frequency_minutes: int


class TemplateUse(InputModel):
    """POST /templates/{id}/use: optional overrides of what the template sets."""

    name: SearchName | None = None
    marketplaces: Marketplaces | None = None
    alert_channels: AlertChannels | None = None
    check_frequency_minutes: CheckFrequency | None = None
    location: Location | None = None
