"""Plain async factories with sensible defaults: `await make_search(session, owner=user)`."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from fastapi import FastAPI
from pwdlib import PasswordHash
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.models import Listing, Plan, Search, SearchMatch, User

DEFAULT_PASSWORD = "correct-horse-battery"
# Hashing once keeps hundreds of test users from costing an Argon2 hash each.
_DEFAULT_HASH = PasswordHash.recommended().hash(DEFAULT_PASSWORD)


async def make_user(
    session: AsyncSession,
    *,
    email: str = "user@example.com",
    plan: Plan = Plan.FREE,
    is_admin: bool = False,
    is_active: bool = True,
    email_verified: bool = True,
    **fields: Any,
) -> User:
    """A user; verified email (and phone, when one is given) unless told otherwise."""
    fields.setdefault("phone_verified", fields.get("phone_number") is not None)
    user = User(
        email=email,
        password_hash=_DEFAULT_HASH,
        plan=plan.value,
        is_admin=is_admin,
        is_active=is_active,
        email_verified=email_verified,
        apprise_urls=[],
        **fields,
    )
    session.add(user)
    await session.commit()
    return user


def token_headers(app: FastAPI, user: User) -> dict[str, str]:
    """A valid Bearer header for the user, signed with the app's own key."""
    policy = app.state.token_policy
    token, _ = policy.signer.issue(
        subject=user.id, token_type="access", now=utcnow(), lifetime=policy.access_lifetime
    )
    return {"Authorization": f"Bearer {token}"}


async def make_search(
    session: AsyncSession,
    *,
    owner: User,
    name: str = "iPhone deals",
    keywords: list[str] | None = None,
    marketplaces: list[str] | None = None,
    is_active: bool = True,
    check_frequency_minutes: int = 30,
    alert_channels: list[str] | None = None,
    **fields: Any,
) -> Search:
    search = Search(
        owner_id=owner.id,
        name=name,
        criteria={"keywords": keywords or ["iphone 13"], "max_price": 400},
        marketplaces=marketplaces or ["ebay"],
        alert_channels=alert_channels or ["email"],
        check_frequency_minutes=check_frequency_minutes,
        is_active=is_active,
        next_check_at=utcnow() if is_active else None,
        **fields,
    )
    session.add(search)
    await session.commit()
    return search


async def make_listing(
    session: AsyncSession,
    *,
    marketplace: str = "ebay",
    external_id: str = "v1|1000|0",
    title: str = "Apple iPhone 13 128GB Blue",
    price: Decimal | None = Decimal("350.00"),
    currency: str = "GBP",
    first_seen_at: datetime | None = None,
    **fields: Any,
) -> Listing:
    listing = Listing(
        marketplace=marketplace,
        external_id=external_id,
        title=title,
        price=price,
        currency=currency,
        url=f"https://www.example.com/itm/{external_id}",
        first_seen_at=first_seen_at or utcnow(),
        last_seen_at=first_seen_at or utcnow(),
        **fields,
    )
    session.add(listing)
    await session.commit()
    return listing


async def make_match(
    session: AsyncSession,
    *,
    search: Search,
    listing: Listing,
    matched_at: datetime | None = None,
    **fields: Any,
) -> SearchMatch:
    match = SearchMatch(
        search_id=search.id,
        listing_id=listing.id,
        user_id=search.owner_id,
        matched_at=matched_at or utcnow(),
        price_at_match=listing.price,
        **fields,
    )
    session.add(match)
    await session.commit()
    return match
