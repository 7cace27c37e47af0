"""What the check-cycle chaos tests share: a population of eBay searches served by the fake
eBay, the Celery environment that checks them, and the audit of what was stored.

The audit counts, rather than assumes: every search checked, every expected (search,
listing) match present once, and every matched listing announced exactly once per
channel across the alert outbox (a new-listing alert or a line of a digest), with no
idempotency key twice.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.models import Alert, Listing, Search, SearchMatch, User
from tests.factories import make_user
from tests.fakes.ebay import EbayFake, item_summary

CHANNELS = ("email", "in_app")


@dataclass
class Population:
    search_ids: list[uuid.UUID]
    # search -> the eBay item ids its query returns (every one of them matches it).
    expected_items: dict[uuid.UUID, set[str]]


@dataclass
class Audit:
    searches: int = 0
    unchecked: int = 0
    stale_leases: int = 0
    # Nothing failed upstream: an interrupted check must not be recorded as a failure.
    failures_recorded: int = 0
    matches_expected: int = 0
    matches_lost: int = 0
    matches_duplicated: int = 0
    alerts: int = 0
    announcements_lost: int = 0
    announcements_duplicated: int = 0
    keys_duplicated: int = 0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.searches} searches ({self.unchecked} unchecked, {self.stale_leases} stale "
            f"leases, {self.failures_recorded} with a failure recorded); "
            f"{self.matches_expected} matches expected: {self.matches_lost} lost, "
            f"{self.matches_duplicated} duplicated; {self.alerts} outbox rows: "
            f"{self.announcements_lost} announcements lost, {self.announcements_duplicated} "
            f"duplicated, {self.keys_duplicated} idempotency keys repeated"
        )


async def populate(
    session: AsyncSession,
    ebay: EbayFake,
    *,
    searches: int,
    queries: int,
    items_per_query: int,
    users: int,
    prefix: str = "lens",
    first_item: int = 0,
) -> Population:
    """`searches` eBay searches spread over `queries` distinct queries and `users` owners,
    all due now, alerting from their first check on email and in-app. A second population
    needs its own prefix (users, queries) and first_item (listings)."""
    owners: list[User] = [
        await make_user(session, email=f"{prefix}{n}@example.com") for n in range(users)
    ]
    items: dict[str, list[str]] = {}
    for q in range(queries):
        keyword = f"{prefix}{q:03d}"
        summaries = [
            item_summary(first_item + q * 1000 + k, f"{keyword.capitalize()} prime {k}")
            for k in range(items_per_query)
        ]
        ebay.set_items(summaries, q=keyword)
        items[keyword] = [s["itemId"] for s in summaries]
    rows = []
    for n in range(searches):
        keyword = f"{prefix}{n % queries:03d}"
        rows.append(
            Search(
                owner_id=owners[n % users].id,
                name=f"{prefix} search {n}",
                criteria={"keywords": [keyword]},
                marketplaces=["ebay"],
                alert_channels=["email"],
                alert_on_first_check=True,
                check_frequency_minutes=60,
                next_check_at=utcnow(),
            )
        )
    session.add_all(rows)
    await session.commit()
    return Population(
        search_ids=[r.id for r in rows],
        expected_items={r.id: set(items[r.criteria["keywords"][0]]) for r in rows},
    )


def celery_env(database_url: str, broker_url: str, ebay: EbayFake) -> dict[str, str]:
    return {
        **os.environ,
        "EBAY_APP_ID": ebay.app_id,
        "EBAY_CERT_ID": ebay.cert_id,
        "EBAY_API_BASE_URL": ebay.base_url,
        "EBAY_OAUTH_BASE_URL": ebay.base_url,
        "EBAY_REQUESTS_PER_MINUTE": "100000",
        "EBAY_MAX_PAGES": "1",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "REDIS_URL": broker_url,
        "SCHEDULER_TICK_S": "1",
        # Small batches keep a cycle long enough to be cut in the middle, and a kill still
        # loses a batch of more than one group.
        "CHECK_GROUPS_PER_TASK": "2",
        "DEBUG": "true",
        "SECRET_KEY": "chaos-secret-key-with-more-than-thirty-two-bytes",
    }


def monitoring_worker_args(name: str) -> list[str]:
    return [
        "worker",
        "-Q",
        "marketplace_monitoring",
        "-c",
        "2",
        "-l",
        "info",
        "--without-mingle",
        "--without-gossip",
        "-n",
        f"{name}@%h",
    ]


async def unchecked(session: AsyncSession, population: Population) -> int:
    session.expire_all()
    return (
        await session.scalar(
            select(func.count())
            .select_from(Search)
            .where(Search.id.in_(population.search_ids), Search.last_checked_at.is_(None))
        )
        or 0
    )


async def wait_until_checked(
    session: AsyncSession,
    population: Population,
    processes: list[subprocess.Popen[bytes]],
    logs: Path,
    *,
    timeout_s: float,
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while await unchecked(session, population) and loop.time() < deadline:
        if any(p.poll() is not None for p in processes):
            pytest.fail("a Celery process exited:\n" + tail_logs(logs))
        await asyncio.sleep(0.5)


def tail_logs(folder: Path) -> str:
    return "\n".join(
        f"--- {f.name}\n" + f.read_text(errors="replace")[-3000:] for f in folder.glob("*.log")
    )


async def audit(session: AsyncSession, population: Population) -> Audit:
    session.expire_all()
    ids = population.search_ids
    result = Audit(searches=len(ids))
    searches = (await session.scalars(select(Search).where(Search.id.in_(ids)))).all()
    now = utcnow()
    for search in searches:
        if search.last_error is not None or search.consecutive_failures:
            result.failures_recorded += 1
            result.problems.append(f"search {search.id}: {search.last_error}")
        if search.last_checked_at is None:
            result.unchecked += 1
            # Claimed and never checked: it waits for its lease to run out.
            if search.next_check_at is not None and search.next_check_at > now:
                result.stale_leases += 1

    match_rows = (
        await session.execute(
            select(SearchMatch.search_id, SearchMatch.listing_id).where(
                SearchMatch.search_id.in_(ids)
            )
        )
    ).all()
    external = dict(
        (
            await session.execute(
                select(Listing.id, Listing.external_id).where(
                    Listing.id.in_({row.listing_id for row in match_rows})
                )
            )
        ).all()
    )
    pairs = Counter((row.search_id, external[row.listing_id]) for row in match_rows)
    expected = {(s, item) for s, items in population.expected_items.items() for item in items}
    result.matches_expected = len(expected)
    result.matches_lost = len(expected - set(pairs))
    result.matches_duplicated = sum(n - 1 for n in pairs.values())
    unexpected = set(pairs) - expected
    if unexpected:
        result.problems.append(f"{len(unexpected)} unexpected matches")

    alerts = (
        await session.execute(
            select(
                Alert.search_id, Alert.channel, Alert.kind, Alert.payload, Alert.idempotency_key
            ).where(Alert.search_id.in_(ids))
        )
    ).all()
    result.alerts = len(alerts)
    keys = Counter(a.idempotency_key for a in alerts)
    result.keys_duplicated = sum(n - 1 for n in keys.values())
    announced: Counter[tuple[uuid.UUID, str, str]] = Counter()
    listing_ids = {str(k): v for k, v in external.items()}
    for alert in alerts:
        listed = alert.payload.get("listings", []) if alert.kind == "digest" else [alert.payload]
        for line in listed:
            item = listing_ids.get(line.get("listing_id", ""))
            announced[(alert.search_id, item or "?", alert.channel)] += 1
    wanted = {(s, item, channel) for s, item in expected for channel in CHANNELS}
    result.announcements_lost = len(wanted - set(announced))
    extra = set(announced) - wanted
    if extra:
        result.problems.append(f"{len(extra)} announcements of listings that do not match")
    result.announcements_duplicated = sum(n - 1 for n in announced.values())
    return result
