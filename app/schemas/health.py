"""Probe bodies."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Readiness(BaseModel):
    """GET /health/ready, on 200 and on 503: each dependency and "ok" or why it is not."""

    status: Literal["ok", "unavailable"]
    checks: dict[str, str]
