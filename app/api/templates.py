"""Routes of /api/v1/templates."""

from fastapi import APIRouter

router = APIRouter(prefix="/templates", tags=["templates"])
