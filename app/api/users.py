"""Routes of /api/v1/users."""

from fastapi import APIRouter

router = APIRouter(prefix="/users", tags=["users"])
