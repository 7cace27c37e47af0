"""Searches in the dashboard: list, create (blank and from a template) with the schemas'
messages, edit, pause/resume, delete and "check now" against the demo marketplace."""

from __future__ import annotations

import re
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Plan, Search, SearchMatch, SearchTemplate, User
from tests.factories import make_search, make_user
from tests.web.conftest import csrf_of, error_of, log_in, notice_of, post_form

NEW = "/app/searches/new"


def search_form(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": "Cheap iPhones",
        "keywords": "iPhone 13\niPhone 14",
        "exclude_keywords": "broken, faulty",
        "max_price": "400",
        "marketplaces": ["demo"],
        "alert_channels": ["in_app"],
        "check_frequency_minutes": "30",
    }
    values.update(overrides)
    return values


async def owned_searches(session: AsyncSession, user: User) -> list[Search]:
    rows = await session.scalars(select(Search).where(Search.owner_id == user.id))
    return list(rows)


async def test_a_new_search_from_the_form_is_saved_with_the_api_rules(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    response = await post_form(signed_in, NEW, NEW, search_form(alert_on_price_drop="on"))

    assert response.status_code == 303
    assert response.headers["location"] == "/app/searches"
    (search,) = await owned_searches(session, user)
    assert search.name == "Cheap iPhones"
    assert search.criteria == {
        "keywords": ["iPhone 13", "iPhone 14"],
        "exclude_keywords": ["broken", "faulty"],
        "max_price": "400.00",
    }
    assert search.marketplaces == ["demo"]
    assert search.alert_channels == ["in_app"]
    assert search.alert_on_price_drop is True
    assert search.alert_on_first_check is False
    listed = await signed_in.get("/app/searches")
    assert "Saved “Cheap iPhones”" in notice_of(listed)
    assert "Cheap iPhones" in listed.text
    assert ">active<" in listed.text


async def test_the_form_shows_the_schema_messages_next_to_the_fields_and_keeps_the_input(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    response = await post_form(
        signed_in,
        NEW,
        NEW,
        search_form(
            name="  ",
            keywords="!!!",
            min_price="500",
            max_price="abc",
            marketplaces=["nowhere"],
            check_frequency_minutes="0",
        ),
    )

    assert response.status_code == 422
    page = response.text
    assert error_of(page, "name") == "Give it a name"
    assert error_of(page, "keywords") == "“!!!”: Each keyword needs at least one letter or digit"
    assert error_of(page, "max_price") == "Enter a number, like 250 or 249.99"
    assert error_of(page, "marketplaces").startswith("“nowhere”: Choose one of: ebay, ")
    # The plan's own lower bound says more than the schema's "1 or more".
    assert error_of(page, "check_frequency_minutes") == (
        "Your plan checks at most every 30 minutes: choose 30 or more"
    )
    assert error_of(page, "currency") == ""
    assert 'aria-invalid="true"' in page
    assert 'value="500"' in page  # what was typed stays in the form
    assert await owned_searches(session, user) == []


async def test_a_price_range_the_wrong_way_round_is_shown_on_the_highest_price(
    signed_in: httpx.AsyncClient,
) -> None:
    response = await post_form(signed_in, NEW, NEW, search_form(min_price="500"))

    assert response.status_code == 422
    assert error_of(response.text, "max_price") == (
        "The highest price must be at least the lowest price"
    )
    assert error_of(response.text, "criteria") == ""


async def test_plan_limits_and_missing_channel_settings_are_explained_on_the_form(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    too_many = await post_form(signed_in, NEW, NEW, search_form(marketplaces=["demo", "ebay"]))
    no_phone = await post_form(signed_in, NEW, NEW, search_form(alert_channels=["sms"]))

    assert too_many.status_code == 403
    assert error_of(too_many.text, "marketplaces") == (
        "Your plan allows 1 marketplace per search: untick one, or upgrade in Plan"
    )
    assert no_phone.status_code == 422
    assert error_of(no_phone.text, "alert_channels") == (
        "SMS alerts need your phone number: add it in Settings, or untick sms"
    )
    assert "PUT /api/v1" not in no_phone.text
    assert await owned_searches(session, user) == []


async def test_live_validation_answers_with_the_same_messages(
    signed_in: httpx.AsyncClient,
) -> None:
    token = await csrf_of(signed_in, NEW)
    invalid = await signed_in.post(
        "/app/searches/validate",
        data={**search_form(keywords="", check_frequency_minutes="5"), "csrf_token": token},
    )
    over_plan = await signed_in.post(
        "/app/searches/validate",
        data={**search_form(check_frequency_minutes="5"), "csrf_token": token},
    )
    valid = await signed_in.post(
        "/app/searches/validate", data={**search_form(), "csrf_token": token}
    )
    no_token = await signed_in.post("/app/searches/validate", data=search_form())

    frequency = "Your plan checks at most every 30 minutes: choose 30 or more"
    assert invalid.json() == {
        "errors": {"keywords": "Enter at least one keyword", "check_frequency_minutes": frequency}
    }
    assert over_plan.json() == {"errors": {"check_frequency_minutes": frequency}}
    assert valid.json() == {"errors": {}}
    assert no_token.status_code == 403


async def test_a_search_starts_from_a_template_on_another_marketplace(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    template = await session.scalar(
        select(SearchTemplate).where(SearchTemplate.slug == "iphone-flips-uk")
    )
    assert template is not None
    chooser = await signed_in.get(NEW)
    assert f"/app/searches/new?template={template.id}" in chooser.text

    page = await signed_in.get(f"{NEW}?template={template.id}")
    assert page.status_code == 200
    assert 'value="iPhone Flips UK"' in page.text
    assert "iPhone 13\niPhone 14\niPhone 15</textarea>" in page.text
    assert f'name="template_id" value="{template.id}"' in page.text
    # The template's eBay has no keys here: shown disabled with its settings, not ticked,
    # and the form starts on the demo marketplace, saying why.
    assert re.search(r'value="ebay"[^>]* disabled', page.text)
    assert re.search(r'value="demo" checked', page.text)
    assert re.search(r'value="in_app" checked', page.text)
    assert re.search(r'value="email"[^>]* disabled', page.text)
    assert (
        "This server cannot check ebay yet: the operator sets EBAY_APP_ID and EBAY_CERT_ID"
        in page.text
    )
    assert "This search starts on the demo marketplace" in page.text

    fields = search_form(
        name="iPhone Flips UK",
        keywords="iPhone 13\niPhone 14\niPhone 15",
        exclude_keywords="broken",
        min_price="100",
        max_price="400",
        currency="GBP",
        condition="used",
        template_id=str(template.id),
    )
    response = await post_form(signed_in, f"{NEW}?template={template.id}", NEW, fields)

    assert response.status_code == 303
    (search,) = await owned_searches(session, user)
    assert search.marketplaces == ["demo"]
    assert search.criteria["currency"] == "GBP"
    assert search.criteria["condition"] == "used"


async def test_an_unknown_template_is_a_404_page(signed_in: httpx.AsyncClient) -> None:
    missing = await signed_in.get(f"{NEW}?template=00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    assert "Template not found" in missing.text
    assert missing.headers["content-type"].startswith("text/html")


async def test_editing_a_search_replaces_its_settings(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    search = await make_search(session, owner=user, alert_on_price_drop=True)
    edit = f"/app/searches/{search.id}/edit"
    page = await signed_in.get(edit)
    assert page.status_code == 200
    assert 'value="iPhone deals"' in page.text

    assert '<option value="instant" selected>' in page.text

    response = await post_form(
        signed_in,
        edit,
        edit,
        search_form(name="Renamed", keywords="iphone 15", alert_mode="daily"),
    )

    assert response.status_code == 303
    await session.refresh(search)
    assert search.name == "Renamed"
    assert search.criteria["keywords"] == ["iphone 15"]
    assert search.alert_on_price_drop is False  # an unticked box is a "no"
    assert search.alert_mode == "daily"
    assert '<option value="daily" selected>' in (await signed_in.get(edit)).text
    bad = await post_form(signed_in, edit, edit, search_form(alert_mode="weekly"))
    assert bad.status_code == 422
    await session.refresh(search)
    assert search.alert_mode == "daily"


async def test_pause_resume_and_delete(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    search = await make_search(session, owner=user)
    base = f"/app/searches/{search.id}"

    paused = await post_form(signed_in, "/app/searches", f"{base}/pause")
    await session.refresh(search)
    assert paused.status_code == 303
    assert not search.is_active
    listed = await signed_in.get("/app/searches")
    assert ">paused<" in listed.text
    assert "Paused by the owner" in listed.text

    await post_form(signed_in, "/app/searches", f"{base}/resume")
    await session.refresh(search)
    assert search.is_active

    deleted = await post_form(signed_in, "/app/searches", f"{base}/delete")
    assert deleted.status_code == 303
    assert await owned_searches(session, user) == []
    assert "Deleted “iPhone deals”" in notice_of(await signed_in.get("/app/searches"))


async def test_resuming_over_the_plan_limit_says_why_on_the_list(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    await make_search(session, owner=user, name="one")
    await make_search(session, owner=user, name="two")
    paused = await make_search(session, owner=user, name="three", is_active=False)

    response = await post_form(signed_in, "/app/searches", f"/app/searches/{paused.id}/resume")

    assert response.status_code == 303
    assert response.headers["location"] == "/app/searches"
    page = await signed_in.get("/app/searches")
    assert "The FREE plan allows 2 active searches" in notice_of(page)
    assert 'class="notice notice-error"' in page.text
    await session.refresh(paused)
    assert not paused.is_active


async def test_check_now_runs_the_demo_marketplace_and_the_matches_appear(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    await post_form(signed_in, NEW, NEW, search_form())
    (search,) = await owned_searches(session, user)

    response = await post_form(signed_in, "/app/searches", f"/app/searches/{search.id}/check")

    assert response.status_code == 303
    listed = await signed_in.get("/app/searches")
    notice = notice_of(listed)
    found = re.search(r"Checked “Cheap iPhones”: (\d+) new match", notice)
    assert found, notice
    stored = await session.scalar(
        select(func.count()).select_from(SearchMatch).where(SearchMatch.search_id == search.id)
    )
    assert int(found.group(1)) == stored > 0
    assert f'/app/matches?search_id={search.id}">{stored}</a>' in listed.text
    assert "not yet" not in listed.text  # the last check is shown
    matches = await signed_in.get(f"/app/matches?search_id={search.id}")
    assert matches.text.count('class="listing ') == min(stored, 20)


async def test_check_now_on_a_paused_search_explains_itself(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    search = await make_search(session, owner=user, marketplaces=["demo"], is_active=False)

    await post_form(signed_in, "/app/searches", f"/app/searches/{search.id}/check")

    page = await signed_in.get("/app/searches")
    assert "This search is paused; resume it before asking for a check" in notice_of(page)


async def test_the_list_shows_last_errors_and_paginates(
    browser: httpx.AsyncClient, session: AsyncSession
) -> None:
    owner = await make_user(session, email="business@example.com", plan=Plan.BUSINESS)
    for number in range(23):
        await make_search(session, owner=owner, name=f"search {number:02}")
    failing = await make_search(
        session, owner=owner, name="failing", last_error="ebay: not configured on this server"
    )
    await log_in(browser, owner.email)

    first = await browser.get("/app/searches")
    second = await browser.get("/app/searches?offset=20")

    assert first.text.count('class="card search"') == 20
    assert "Last error: ebay: not configured on this server" in first.text
    assert str(failing.id) in first.text  # newest first
    assert 'href="/app/searches?offset=20"' in first.text
    assert second.text.count('class="card search"') == 4
    assert (await browser.get("/app/searches?offset=-1")).status_code == 422


async def test_a_marketplaces_own_options_are_offered_and_saved_with_the_search(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    page = await signed_in.get(NEW)
    assert 'name="option:rss:url"' in page.text
    assert 'name="option:craigslist:city"' in page.text

    missing = await post_form(signed_in, NEW, NEW, search_form(marketplaces=["rss"]))
    saved = await post_form(
        signed_in,
        NEW,
        NEW,
        search_form(
            marketplaces=["rss"],
            **{
                "option:rss:url": "https://feeds.example.com/deals.xml",
                # Options of a marketplace that is not ticked are left out.
                "option:reddit:subreddit": "hardwareswap",
            },
        ),
    )

    assert missing.status_code == 422
    assert error_of(missing.text, "option:rss:url") == "This field is required"
    assert saved.status_code == 303, saved.text
    (search,) = await owned_searches(session, user)
    assert search.criteria["marketplace_options"] == {
        "rss": {"url": "https://feeds.example.com/deals.xml"}
    }
    edit = await signed_in.get(f"/app/searches/{search.id}/edit")
    assert 'value="https://feeds.example.com/deals.xml"' in edit.text


async def test_leaving_out_listings_without_a_price_is_a_checkbox_kept_on_edit(
    signed_in: httpx.AsyncClient, session: AsyncSession, user: User
) -> None:
    response = await post_form(signed_in, NEW, NEW, search_form(require_price="on"))
    assert response.status_code == 303
    (search,) = await owned_searches(session, user)
    assert search.criteria["require_price"] is True
    edit = f"/app/searches/{search.id}/edit"
    page = await signed_in.get(edit)
    assert re.search(r'name="require_price" checked', page.text)

    unticked = await post_form(signed_in, edit, edit, search_form())
    assert unticked.status_code == 303
    await session.refresh(search)
    assert "require_price" not in search.criteria
