"""Quiet hours in the user's own time zone: deliveries inside them wait, they are not dropped."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def quiet_until(
    now: datetime, *, start: time | None, end: time | None, timezone: str
) -> datetime | None:
    """When quiet hours covering `now` end (UTC), or None when `now` is not in them.

    A window whose start is after its end runs overnight (22:00-07:00).
    """
    if start is None or end is None or start == end:
        return None
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    local = now.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    overnight = start > end
    inside = (clock >= start or clock < end) if overnight else (start <= clock < end)
    if not inside:
        return None
    end_today = datetime.combine(local.date(), end, tzinfo=zone)
    ends = end_today if end_today > local else end_today + timedelta(days=1)
    return ends.astimezone(UTC)
