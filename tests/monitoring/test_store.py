"""Storing a fetch: listings once, price history, matches once, outbox rows once."""

from __future__ import annotations

import uuid
from dataclasses import replace
from decimal import Decimal

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.marketplaces.base import Listing
from app.models import Alert, ListingPrice, SearchMatch, User
from app.models import Listing as ListingRow
from app.monitoring.matching import build_matcher
from app.monitoring.store import SearchToStore, store_fetch, upsert_listings
from tests.factories import make_search
from tests.statements import statements_run


def item(n: int, title: str = "Apple iPhone 13 128GB", price: str = "300") -> Listing:
    return Listing(
        marketplace="ebay",
        external_id=f"v1|{n}|0",
        title=title,
        url=f"https://www.ebay.co.uk/itm/{n}",
        price=Decimal(price),
        currency="GBP",
    )


async def spec(
    session: AsyncSession, owner: User, *, silent: bool = False, price_drop: bool = False
) -> SearchToStore:
    search = await make_search(session, owner=owner)
    return SearchToStore(
        id=search.id,
        owner_id=owner.id,
        matcher=build_matcher(
            {"keywords": ["iphone 13"], "exclude_keywords": ["broken"], "max_price": 400},
            currency="GBP",
        ),
        alert_channels=("email", "in_app"),
        is_silent=silent,
        alert_on_price_drop=price_drop,
    )


async def count(session: AsyncSession, model: type) -> int:
    return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_matches_and_alerts_are_written_once_however_often_stored(
    session: AsyncSession, user: User
) -> None:
    search = await spec(session, user)
    fetched = [item(1), item(2, "iPhone 13 broken screen"), item(3, "iPhone 13", "999"), item(1)]
    first = await store_fetch(session, "ebay", fetched, [search], now=utcnow())
    await session.commit()
    again = await store_fetch(session, "ebay", fetched, [search], now=utcnow())
    await session.commit()

    assert (first.listings_new, first.matches_new, first.alerts_created) == (3, 1, 2)
    assert (again.listings_new, again.matches_new, again.alerts_created) == (0, 0, 0)
    assert await count(session, ListingRow) == 3
    assert await count(session, SearchMatch) == 1
    channels = (await session.scalars(select(Alert.channel).order_by(Alert.channel))).all()
    assert channels == ["email", "in_app"]


async def test_first_check_is_silent_but_records_matches(session: AsyncSession, user: User) -> None:
    search = await spec(session, user, silent=True)
    result = await store_fetch(session, "ebay", [item(1), item(2)], [search], now=utcnow())
    await session.commit()
    assert result.matches_new == 2
    assert await count(session, Alert) == 0


async def test_price_change_is_kept_in_history_and_a_drop_alerts_when_asked(
    session: AsyncSession, user: User, other_user: User
) -> None:
    dropping = await spec(session, user, price_drop=True)
    plain = await spec(session, other_user)
    await store_fetch(session, "ebay", [item(1, price="350")], [dropping, plain], now=utcnow())
    await session.commit()
    cheaper = replace(item(1), price=Decimal("299.99"))
    result = await store_fetch(session, "ebay", [cheaper], [dropping, plain], now=utcnow())
    await session.commit()

    assert result.alerts_created == 2  # two channels, only for the search that asked
    drops = (await session.scalars(select(Alert).where(Alert.kind == "price_drop"))).all()
    assert {a.search_id for a in drops} == {dropping.id}
    assert drops[0].payload["previous_price"] == "350.00"
    prices = (
        await session.scalars(select(ListingPrice.price).order_by(ListingPrice.observed_at))
    ).all()
    assert prices == [Decimal("350.00"), Decimal("299.99")]
    stored = await session.scalar(select(ListingRow))
    assert stored is not None
    assert stored.price == Decimal("299.99")


async def test_listing_shared_by_two_users_is_stored_once_matched_twice(
    session: AsyncSession, user: User, other_user: User
) -> None:
    searches = [await spec(session, user), await spec(session, other_user)]
    await store_fetch(session, "ebay", [item(1)], searches, now=utcnow())
    await session.commit()
    assert await count(session, ListingRow) == 1
    owners = set((await session.scalars(select(SearchMatch.user_id))).all())
    assert owners == {user.id, other_user.id}


async def test_large_fetch_is_batched(session: AsyncSession, user: User) -> None:
    search = await spec(session, user, silent=True)
    fetched = [item(n) for n in range(1200)]
    result = await store_fetch(session, "ebay", fetched, [search], now=utcnow())
    await session.commit()
    assert result.listings_new == 1200
    assert await count(session, SearchMatch) == 1200
    assert uuid.UUID(str(result.new_match_ids[0]))


async def test_a_group_of_searches_writes_its_matches_and_alerts_in_one_statement_each(
    session: AsyncSession, user: User, other_user: User
) -> None:
    searches = [await spec(session, owner) for owner in (user, other_user) * 10]
    with statements_run(session.get_bind()) as sent:
        result = await store_fetch(session, "ebay", [item(1), item(2)], searches, now=utcnow())
    statements = [" ".join(statement.split()).upper() for statement in sent]
    await session.commit()
    assert result.matches_new == 40
    assert await count(session, SearchMatch) == 40
    # Two new listings per search: one digest per channel (email, in_app) per search.
    assert result.alerts_created == await count(session, Alert) == 40
    assert sum("INSERT INTO SEARCH_MATCHES" in s for s in statements) == 1
    assert sum("INSERT INTO ALERTS" in s for s in statements) == 1


async def test_a_group_stores_only_the_matches_each_search_does_not_have_yet(
    session: AsyncSession, user: User, other_user: User
) -> None:
    first, second = await spec(session, user), await spec(session, other_user)
    await store_fetch(session, "ebay", [item(1)], [first], now=utcnow())
    await session.commit()
    result = await store_fetch(session, "ebay", [item(1), item(2)], [first, second], now=utcnow())
    await session.commit()
    # first already had listing 1; second gets both, first gets listing 2 only.
    assert result.matches_new == 3
    assert len(set(result.new_match_ids)) == 3
    pairs = {
        (row.search_id, row.listing_id)
        for row in await session.execute(select(SearchMatch.search_id, SearchMatch.listing_id))
    }
    assert len(pairs) == await count(session, SearchMatch) == 4
    # first: one alert per channel for its single new listing (as after the first store);
    # second: a digest per channel for its two.
    assert result.alerts_created == 4
    kinds = sorted(
        (row.search_id == first.id, row.kind)
        for row in await session.execute(select(Alert.search_id, Alert.kind))
    )
    assert kinds == [(False, "digest")] * 2 + [(True, "new_listing")] * 4


async def test_a_known_listing_is_changed_only_when_a_shown_field_differs(
    session: AsyncSession,
) -> None:
    first = replace(item(1), raw={"itemId": "v1|1|0", "seller": {"feedback": 99.5}})
    await upsert_listings(session, "ebay", [first, item(2), item(3)], now=utcnow())
    again = [
        replace(first, raw={"itemId": "v1|1|0", "seen": 2}),  # only raw differs
        replace(item(2), image_url="https://i.ebayimg.com/images/g/2/s-l500.jpg"),
        replace(item(3), price=Decimal("250")),
        item(4),
    ]
    stored = await upsert_listings(session, "ebay", again, now=utcnow())
    await session.commit()
    assert [(s.is_new, s.changed) for s in stored] == [
        (False, False),
        (False, True),
        (False, True),
        (True, False),
    ]
    assert stored[2].previous_price == Decimal("300")
    raw = await session.scalar(select(ListingRow.raw).where(ListingRow.external_id == "v1|1|0"))
    assert raw == {"itemId": "v1|1|0", "seller": {"feedback": 99.5}}
    # History: the three first prices, then listing 3's drop and listing 4's first price.
    assert await count(session, ListingPrice) == 5


async def test_storing_raises_the_feed_version_of_users_whose_pages_changed(
    session: AsyncSession, user: User, other_user: User
) -> None:
    mine, theirs = await spec(session, user), await spec(session, other_user)
    await store_fetch(session, "ebay", [item(1)], [mine, theirs], now=utcnow())
    await session.commit()
    await session.refresh(user)
    await session.refresh(other_user)
    before = user.feed_version, other_user.feed_version

    # Seen again unchanged, for mine only: nothing on anyone's pages changed.
    await store_fetch(session, "ebay", [item(1)], [mine], now=utcnow())
    await session.commit()
    await session.refresh(user)
    await session.refresh(other_user)
    assert (user.feed_version, other_user.feed_version) == before

    # Its price changes, seen by mine only: theirs shows that listing too.
    await store_fetch(session, "ebay", [item(1, price="280")], [mine], now=utcnow())
    await session.commit()
    await session.refresh(user)
    await session.refresh(other_user)
    assert (user.feed_version, other_user.feed_version) == (before[0] + 1, before[1] + 1)

    # A new match for theirs only.
    await store_fetch(session, "ebay", [item(2)], [theirs], now=utcnow())
    await session.commit()
    await session.refresh(user)
    await session.refresh(other_user)
    assert (user.feed_version, other_user.feed_version) == (before[0] + 1, before[1] + 2)


async def test_a_match_row_names_its_searchs_owner_and_goes_with_them(
    session: AsyncSession, user: User, other_user: User
) -> None:
    owner_id, other_id = user.id, other_user.id
    search_id = (await make_search(session, owner=user)).id
    listing_id = (await upsert_listings(session, "demo", [item(1)], now=utcnow()))[0].id
    await session.commit()
    session.add(SearchMatch(search_id=search_id, listing_id=listing_id, user_id=other_id))
    with pytest.raises(IntegrityError):
        await session.commit()
    await session.rollback()

    session.add(SearchMatch(search_id=search_id, listing_id=listing_id, user_id=owner_id))
    await session.commit()
    await session.execute(delete(User).where(User.id == owner_id))
    await session.commit()
    assert await count(session, SearchMatch) == 0
