"""The hourly housekeeping: stale listings, and refresh tokens and dashboard sessions that
can no longer be used."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.models import Listing, OneTimeCode, RefreshToken, User
from app.services import housekeeping
from tests.factories import make_listing, make_match, make_search


async def test_housekeeping_deletes_spent_tokens_and_stale_listings_and_keeps_the_rest(
    session: AsyncSession, user: User
) -> None:
    now = utcnow()
    family = uuid.uuid4()
    rows = {
        "expired": RefreshToken(expires_at=now - timedelta(seconds=1)),
        "revoked": RefreshToken(expires_at=now + timedelta(days=3), revoked_at=now),
        # Used but live: kept, so that presenting it again still revokes its family.
        "used": RefreshToken(expires_at=now + timedelta(days=3), used_at=now),
        "live": RefreshToken(expires_at=now + timedelta(days=3)),
    }
    for jti, row in rows.items():
        row.jti, row.user_id, row.family_id = jti, user.id, family
        session.add(row)
    long_ago = now - timedelta(hours=2)
    for purpose, used_at, expires_at, created_at in [
        ("verify_email", long_ago, now + timedelta(days=1), long_ago),  # used: deleted
        ("reset_password", None, now - timedelta(minutes=1), long_ago),  # expired: deleted
        ("verify_email", None, now + timedelta(days=1), long_ago),  # still usable: kept
        ("verify_phone", now, now, now),  # spent, but counts for sending limits: kept
    ]:
        session.add(
            OneTimeCode(
                user_id=user.id,
                purpose=purpose,
                secret_hash=purpose,
                target=user.email,
                expires_at=expires_at,
                used_at=used_at,
                created_at=created_at,
            )
        )
    search = await make_search(session, owner=user)
    stale = await make_listing(session, external_id="old", first_seen_at=now - timedelta(days=60))
    await make_match(session, search=search, listing=stale)
    fresh = await make_listing(session, external_id="new")
    await session.commit()

    report = await housekeeping.run(session, now=now, listing_retention=timedelta(days=30))

    assert report == housekeeping.HousekeepingReport(
        stale_listings=1, spent_tokens=2, spent_codes=2
    )
    left = set((await session.scalars(select(RefreshToken.jti))).all())
    assert left == {"used", "live"}
    assert set((await session.scalars(select(Listing.id))).all()) == {fresh.id}
    again = await housekeeping.run(session, now=now, listing_retention=timedelta(days=30))
    assert again == housekeeping.HousekeepingReport(stale_listings=0, spent_tokens=0, spent_codes=0)
    assert len((await session.scalars(select(OneTimeCode.id))).all()) == 2
