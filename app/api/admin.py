"""Routes of /api/v1/admin: support actions for administrators, audited."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from app.api.deps import CurrentAdmin, SessionDep
from app.schemas.billing import AdminPlanIn, PlanChangeOut
from app.services import billing

router = APIRouter(prefix="/admin", tags=["admin"])


@router.put(
    "/users/{user_id}/plan",
    response_model=PlanChangeOut,
    responses={
        401: {"description": "Missing or invalid token"},
        403: {"description": "Administrator access required"},
        404: {"description": "No such user"},
        422: {"description": "Unknown plan or invalid body"},
    },
)
async def set_user_plan(
    user_id: uuid.UUID, body: AdminPlanIn, session: SessionDep, admin: CurrentAdmin
) -> PlanChangeOut:
    """Set a user's plan by hand (support cases). Fitting a lower plan pauses searches as
    a Stripe downgrade does; the change is audited with you as the actor. A later Stripe
    event about the user's subscription sets the plan from Stripe again."""
    change = await billing.admin_set_plan(
        session,
        user_id,
        body.plan,
        actor_id=admin.id,
        source=billing.PlanSource.ADMIN,
        reason=body.reason,
    )
    return PlanChangeOut.of(change)
