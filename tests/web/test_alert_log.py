"""The alert log: links on from each alert, unread alerts (the nav badge, highlighted rows,
seen once the log is opened, the JSON the page script polls) and an empty log that explains
when alerts will come."""

from __future__ import annotations

import html
import re
import uuid
from datetime import datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.models import Alert, Search, User
from app.services import alerts
from tests.factories import make_search

LOG = "/app/alerts"
UNREAD = "/app/alerts/unread"


async def add_alert(
    session: AsyncSession,
    user: User,
    *,
    channel: str = "in_app",
    kind: str = "new_listing",
    search: Search | None = None,
    title: str = "Canon EF 50mm",
    url: str = "https://www.ebay.co.uk/itm/1",
    created_at: datetime | None = None,
    payload: dict[str, object] | None = None,
) -> Alert:
    alert = Alert(
        user_id=user.id,
        search_id=search.id if search else None,
        channel=channel,
        kind=kind,
        idempotency_key=f"k:{uuid.uuid4()}",
        payload=payload if payload is not None else {"title": title, "url": url, "price": "45"},
        status="sent",
        attempts=1,
        next_attempt_at=utcnow(),
        created_at=created_at or utcnow(),
    )
    session.add(alert)
    await session.commit()
    return alert


async def one_alert_on_three_channels(
    session: AsyncSession, user: User, search: Search | None, title: str, created_at: datetime
) -> None:
    """What a check writes for one new match: a row per channel, the in-app one included."""
    for channel in ("email", "webhook", "in_app"):
        await add_alert(
            session, user, channel=channel, search=search, title=title, created_at=created_at
        )


def badge(page: httpx.Response) -> str | None:
    """The nav's unread count as a screen reader reads it, or None when the badge is hidden."""
    found = re.search(r'<span class="unread" data-unread-badge( hidden)?>(.*?)</a>', page.text)
    assert found, "the nav has no unread badge"
    if found.group(1):
        return None
    return html.unescape(re.sub(r"<[^>]+>", "", found.group(2))).strip()


def unread_rows(page: httpx.Response) -> int:
    return page.text.count('<tr class="is-unread">')


async def test_each_alert_counts_once_and_the_badge_is_on_every_page(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    now = utcnow()
    search = await make_search(session, owner=user, name="Lenses")
    await one_alert_on_three_channels(session, user, search, "Canon EF 50mm", now)
    await one_alert_on_three_channels(session, user, search, "Canon EF 85mm", now)
    # A test alert by email is the sender's own doing, not news.
    await add_alert(session, user, channel="email", kind="test", payload={"subject": "Test"})

    for path in ("/app/searches", "/app/matches", "/app/settings"):
        page = await signed_in.get(path)
        assert badge(page) == "2 (2 unread alerts)", path
    assert (await signed_in.get(UNREAD)).json()["unread"] == 2


async def test_opening_the_log_marks_everything_seen_and_highlights_what_was_new(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    now = utcnow()
    await one_alert_on_three_channels(session, user, None, "Seen before", now - timedelta(hours=2))
    user.alerts_seen_at = now - timedelta(hours=1)
    await session.commit()
    await one_alert_on_three_channels(session, user, None, "Fresh", now)

    first = await signed_in.get(LOG)

    assert first.status_code == 200
    assert unread_rows(first) == 3  # the one new alert, on each of its channels
    assert badge(first) is None  # the log is open: nothing is unread any more
    await session.refresh(user)
    assert user.alerts_seen_at == now
    again = await signed_in.get(LOG)
    assert unread_rows(again) == 0
    assert (await signed_in.get(UNREAD)).json() == {"unread": 0, "latest": None}


async def test_a_filtered_or_later_page_marks_nothing_seen(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    await add_alert(session, user)

    filtered = await signed_in.get(f"{LOG}?channel=in_app")
    later = await signed_in.get(f"{LOG}?offset=25")

    assert unread_rows(filtered) == 1
    assert badge(later) == "1 (1 unread alert)"
    await session.refresh(user)
    assert user.alerts_seen_at is None


async def test_the_unread_json_gives_the_count_and_the_newest_alert(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    assert (await signed_in.get(UNREAD)).json() == {"unread": 0, "latest": None}
    search = await make_search(session, owner=user, name="Lenses")
    await add_alert(session, user, title="Older lens", created_at=utcnow() - timedelta(minutes=5))
    newest = await add_alert(session, user, search=search, title="Canon EF 50mm")

    response = await signed_in.get(UNREAD)

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["unread"] == 2
    assert body["latest"] == {
        "id": str(newest.id),
        "subject": "New match: Canon EF 50mm",
        "search_name": "Lenses",
        "created_at": newest.created_at.isoformat(),
    }


async def test_the_unread_json_needs_a_session(browser: httpx.AsyncClient) -> None:
    response = await browser.get(UNREAD)

    assert response.status_code == 303
    assert "/app/login" in response.headers["location"]


async def test_rows_link_to_the_listing_and_to_the_search(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    search = await make_search(session, owner=user, name="Lenses")
    await add_alert(session, user, search=search, url="https://www.ebay.co.uk/itm/42")
    await add_alert(session, user, title="Sneaky", url="javascript:alert(1)")

    page = (await signed_in.get(LOG)).text

    assert (
        '<a href="https://www.ebay.co.uk/itm/42" target="_blank" rel="noopener noreferrer">'
        "Canon EF 50mm</a>"
    ) in page
    assert f'href="/app/matches?search_id={search.id}">Lenses</a>' in page
    assert f'href="/app/searches/{search.id}/edit"' in page
    assert "javascript:" not in page
    assert "Sneaky" in page


async def test_an_empty_log_without_searches_says_to_create_one(
    signed_in: httpx.AsyncClient,
) -> None:
    page = (await signed_in.get(LOG)).text

    assert "You have no searches yet" in page
    assert 'href="/app/searches/new"' in page
    assert "No alerts yet." not in page


async def test_an_empty_log_explains_when_alerts_come_and_when_the_next_check_is(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    soon = await make_search(session, owner=user)
    soon.next_check_at = utcnow() + timedelta(minutes=30, seconds=30)
    await make_search(session, owner=user, is_active=False, name="Paused")
    # Left out of the schedule until the operator sets its marketplace up.
    await make_search(session, owner=user, name="Waiting", waiting_for_setup=True)
    await session.commit()

    page = html.unescape((await signed_in.get(LOG)).text)

    assert "An alert comes when a check of one of your searches finds a new listing" in page
    assert "The first check of a search only records what is already listed" in page
    assert "Alert on what is already listed at the first check" in page
    assert "The next check of your searches is" in page
    assert ">in 30 min</time>" in page


async def test_an_empty_log_with_only_paused_searches_says_so(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    await make_search(session, owner=user, is_active=False)

    page = (await signed_in.get(LOG)).text

    assert "All your searches are paused" in page


async def test_an_empty_filtered_log_offers_every_alert(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    await add_alert(session, user)

    page = (await signed_in.get(f"{LOG}?status=failed")).text

    assert "No alerts with these filters." in page
    assert "You have no searches yet" not in page


async def test_the_api_counts_unread_alerts_the_same_way(
    client: httpx.AsyncClient, session: AsyncSession, user: User, headers: dict[str, str]
) -> None:
    await one_alert_on_three_channels(session, user, None, "Canon", utcnow())

    response = await client.get("/api/v1/alerts/unread-count", headers=headers)

    assert response.status_code == 200, response.text
    assert response.json() == {"unread": 1}
    assert (await client.get("/api/v1/alerts/unread-count")).status_code == 401


async def test_the_count_stops_at_the_cap(session: AsyncSession, user: User) -> None:
    for _ in range(4):
        await add_alert(session, user)

    assert await alerts.unread_count(session, user, cap=3) == 3
    assert await alerts.unread_count(session, user) == 4
