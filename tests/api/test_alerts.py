"""GET /alerts/ (feed and delivery log) and POST /users/me/test-alert."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.models import Alert, ApiUsage, Plan, User
from app.services import plans


async def add_alert(session: AsyncSession, user: User, **fields: object) -> Alert:
    values: dict[str, object] = {
        "channel": "in_app",
        "kind": "new_listing",
        "status": "sent",
        "payload": {
            "title": "Lego 75192 Millennium Falcon",
            "price": "499.00",
            "currency": "GBP",
            "url": "https://www.ebay.co.uk/itm/1",
            "raw_provider_body": "never shown",
        },
        **fields,
    }
    alert = Alert(
        user_id=user.id,
        idempotency_key=f"k:{uuid.uuid4()}",
        attempts=1,
        next_attempt_at=utcnow(),
        **values,
    )
    session.add(alert)
    await session.commit()
    return alert


async def test_feed_lists_only_my_alerts_newest_first_with_filters(
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: User,
    other_user: User,
    headers: dict[str, str],
) -> None:
    first = await add_alert(session, user)
    failed = await add_alert(
        session, user, channel="email", status="failed", last_error="invalid recipient"
    )
    await add_alert(session, other_user)

    response = await client.get("/api/v1/alerts/", headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == 2
    assert [item["id"] for item in body["items"]] == [str(failed.id), str(first.id)]
    item = body["items"][1]
    assert item["listings"][0]["title"] == "Lego 75192 Millennium Falcon"
    assert "raw_provider_body" not in response.text

    only_failed = await client.get("/api/v1/alerts/?status=failed", headers=headers)
    assert [i["last_error"] for i in only_failed.json()["items"]] == ["invalid recipient"]
    by_channel = await client.get("/api/v1/alerts/?channel=in_app", headers=headers)
    assert by_channel.json()["total"] == 1


async def test_feed_rejects_bad_filters(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    for query in ("status=lost", "channel=pigeon", "limit=101", "search_id=nope"):
        response = await client.get(f"/api/v1/alerts/?{query}", headers=headers)
        assert response.status_code == 422, query
        assert response.json()["code"] == "validation_error"
    assert (await client.get("/api/v1/alerts/")).status_code == 401


async def test_test_alert_on_the_in_app_channel_is_delivered(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.post(
        "/api/v1/users/me/test-alert", json={"channel": "in_app"}, headers=headers
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["delivered"] is True
    assert (result["alert"]["kind"], result["alert"]["status"]) == ("test", "sent")
    feed = await client.get("/api/v1/alerts/?kind=test", headers=headers)
    assert feed.json()["total"] == 1


async def test_test_alert_reports_a_channel_the_user_has_not_set_up(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.post(
        "/api/v1/users/me/test-alert", json={"channel": "sms"}, headers=headers
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["delivered"] is False
    assert result["alert"]["status"] == "failed"
    assert result["alert"]["last_error"] == "the FREE plan includes no SMS"


async def test_test_alerts_are_capped_per_day(
    client: httpx.AsyncClient, session: AsyncSession, user: User, headers: dict[str, str]
) -> None:
    limit = plans.limits_for(Plan.FREE).test_alerts_per_day
    session.add(ApiUsage(user_id=user.id, day=utcnow().date(), kind="test_alert", count=limit))
    await session.commit()
    response = await client.post(
        "/api/v1/users/me/test-alert", json={"channel": "in_app"}, headers=headers
    )
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    await session.rollback()
    assert (await session.scalars(select(Alert))).all() == []


async def test_test_alert_rejects_unknown_channels_and_fields(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    for body in ({"channel": "pigeon"}, {}, {"channel": "in_app", "to": "x@example.com"}):
        response = await client.post("/api/v1/users/me/test-alert", json=body, headers=headers)
        assert response.status_code == 422, body
