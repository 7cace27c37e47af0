"""Routes of /api/v1/searches."""

from fastapi import APIRouter

router = APIRouter(prefix="/searches", tags=["searches"])
