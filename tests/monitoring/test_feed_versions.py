"""Feed versions: one UPDATE raising each named user's version once, nothing for no one."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import User
from app.monitoring import feed_versions
from tests.factories import make_listing, make_match, make_search, make_user
from tests.statements import statements_run


async def versions(session: AsyncSession) -> dict[uuid.UUID, int]:
    await session.commit()  # a fresh snapshot
    rows = await session.execute(select(User.id, User.feed_version))
    return {user_id: version for user_id, version in rows}


async def test_a_new_user_starts_at_version_zero(session: AsyncSession, user: User) -> None:
    assert (await versions(session))[user.id] == 0


async def test_bump_raises_each_named_user_once_in_one_update(
    app: FastAPI, session: AsyncSession, user: User, other_user: User
) -> None:
    third = await make_user(session, email="third@example.com")
    updated_at = user.updated_at

    with statements_run(app.state.engine) as statements:
        await feed_versions.bump(session, [other_user.id, user.id, other_user.id])
    await session.commit()

    assert len(statements) == 1
    assert statements[0].lstrip().upper().startswith("UPDATE")
    if session.get_bind().dialect.name == "postgresql":
        # The rows are locked in id order by a sub-select of the same statement, so
        # concurrent bumps cannot deadlock.
        assert "ORDER BY users.id FOR NO KEY UPDATE" in statements[0]
    assert await versions(session) == {user.id: 1, other_user.id: 1, third.id: 0}
    await session.refresh(user)
    assert user.updated_at == updated_at


async def test_bump_of_no_one_runs_nothing(app: FastAPI, session: AsyncSession, user: User) -> None:
    with statements_run(app.state.engine) as statements:
        await feed_versions.bump(session, [])
        await feed_versions.bump(session, iter(()))
        await feed_versions.bump_owners_of_listings(session, [])

    assert statements == []
    assert await versions(session) == {user.id: 0}


async def test_bump_owners_of_listings_raises_exactly_their_owners_once(
    session: AsyncSession, user: User, other_user: User
) -> None:
    bystander = await make_user(session, email="bystander@example.com")
    mine = await make_search(session, owner=user, name="Mine")
    mine_too = await make_search(session, owner=user, name="Mine too")
    theirs = await make_search(session, owner=other_user, name="Theirs")
    bystanders = await make_search(session, owner=bystander, name="Bystander's")
    shared = await make_listing(session, external_id="shared")
    only_mine = await make_listing(session, external_id="only-mine")
    elsewhere = await make_listing(session, external_id="elsewhere")
    await make_match(session, search=mine, listing=shared)
    await make_match(session, search=mine_too, listing=shared)
    await make_match(session, search=theirs, listing=shared)
    await make_match(session, search=mine, listing=only_mine)
    await make_match(session, search=bystanders, listing=elsewhere)

    await feed_versions.bump_owners_of_listings(session, [shared.id, only_mine.id, shared.id])
    await session.commit()

    assert await versions(session) == {user.id: 1, other_user.id: 1, bystander.id: 0}


async def test_more_ids_than_one_statement_takes_are_all_bumped(
    session: AsyncSession, user: User, other_user: User
) -> None:
    search = await make_search(session, owner=other_user)
    listing = await make_listing(session, external_id="last")
    await make_match(session, search=search, listing=listing)
    unknown = [uuid.uuid4() for _ in range(feed_versions.MAX_IDS_PER_STATEMENT)]

    await feed_versions.bump(session, [*unknown, user.id])
    await feed_versions.bump_owners_of_listings(session, [*unknown, listing.id])
    await session.commit()

    assert await versions(session) == {user.id: 1, other_user.id: 1}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_bumps_of_overlapping_users_wait_for_each_other_and_never_deadlock(
    app: FastAPI, session: AsyncSession
) -> None:
    # Stored high id first, so a plan visiting rows in storage order would meet it first.
    high = await make_user(session, email="high@example.com", id=uuid.UUID(int=2))
    low = await make_user(session, email="low@example.com", id=uuid.UUID(int=1))
    high_id, low_id = high.id, low.id
    first = app.state.session_factory()
    second = app.state.session_factory()
    try:
        await feed_versions.bump(first, [low_id])  # holds low until it commits
        # Waits for low, holding nothing, as it locks in id order: were it to lock high
        # first, the first transaction's next bump would deadlock with it.
        waiting = asyncio.create_task(feed_versions.bump(second, [high_id, low_id]))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await feed_versions.bump(first, [high_id])
        await first.commit()
        await asyncio.wait_for(waiting, timeout=10)
        await second.commit()
    finally:
        await first.close()
        await second.close()

    assert await versions(session) == {low_id: 2, high_id: 2}
