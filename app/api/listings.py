"""Routes of /api/v1/listings."""

from fastapi import APIRouter

router = APIRouter(prefix="/listings", tags=["listings"])
