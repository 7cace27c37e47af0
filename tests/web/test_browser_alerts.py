"""Unread alerts and the matches page in a real headless Chromium against `marketmon run`
(the server and browser of test_browser.py): the nav badge, a new alert read out while a
page is open, the match count after Hide, and filters that fold away on a phone."""

from __future__ import annotations

import re

from playwright.async_api import Browser, Page, expect

from tests.web.test_browser import (  # noqa: F401  (fixtures)
    DESKTOP,
    PASSWORD,
    browser_required,
    chromium,
    new_page,
    server,
)

EMAIL = "alerts@example.com"


async def sign_up_with_alerting_search(page: Page, base_url: str) -> None:
    """Sign up, then (through the API, with the same account) a demo search that alerts
    on what is already listed, checked at once."""
    await page.goto(f"{base_url}/app/signup")
    await page.get_by_label("Email").fill(EMAIL)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign up").click()
    await expect(page).to_have_url(re.compile(r"/app/searches/new$"))
    login = await page.request.post(
        f"{base_url}/api/v1/auth/login", data={"email": EMAIL, "password": PASSWORD}
    )
    assert login.ok, await login.text()
    headers = {"Authorization": f"Bearer {(await login.json())['access_token']}"}
    created = await page.request.post(
        f"{base_url}/api/v1/searches/",
        headers=headers,
        data={
            "name": "Phones",
            "criteria": {"keywords": ["iphone"]},
            "marketplaces": ["demo"],
            "alert_channels": ["in_app"],
            "alert_on_first_check": True,
        },
    )
    assert created.status == 201, await created.text()
    search_id = (await created.json())["id"]
    checked = await page.request.post(
        f"{base_url}/api/v1/searches/{search_id}/check", headers=headers
    )
    assert checked.ok, await checked.text()


async def test_unread_alerts_the_match_count_and_the_filters(
    chromium: Browser,  # noqa: F811
    server: str,  # noqa: F811
) -> None:
    page = await new_page(chromium, server, viewport=DESKTOP)
    await sign_up_with_alerting_search(page, server)
    nav = page.get_by_role("navigation", name="Main")

    # The check's alert is unread on every page; on a wide screen the filters are open.
    await page.goto(f"{server}/app/matches")
    await expect(
        nav.get_by_role("link", name="Alerts (1 unread alert)", exact=True)
    ).to_be_visible()
    await expect(page.locator("details[data-filters]")).to_have_attribute("open", "")
    await expect(page.get_by_label("Title contains")).to_be_visible()

    # Hide updates the count without a reload.
    listings = page.locator("li.listing")
    count = page.locator("#match-count")
    total = int(await count.get_attribute("data-count") or 0)
    assert total >= 1
    await listings.first.get_by_role("button", name="Hide").click()
    left = total - 1
    await expect(count).to_have_text(f"{left} listing{'' if left == 1 else 's'}")

    # An alert arriving while the page is open updates the badge and is read out; a tab
    # coming back into view asks at once rather than at the next 10 s poll.
    other_tab = await page.context.new_page()
    await other_tab.goto(f"{server}/app/settings")
    await expect(other_tab.get_by_label("Channel")).to_have_value("in_app")
    await other_tab.get_by_role("button", name="Send test").click()
    await expect(other_tab.get_by_role("status")).to_have_text("Test alert sent by in_app.")
    await other_tab.close()
    await page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    await expect(page.locator("[data-alert-announcer]")).to_have_text(
        "Test alert from Marketplace Monitor"
    )
    await expect(
        nav.get_by_role("link", name="Alerts (2 unread alerts)", exact=True)
    ).to_be_visible()

    # Opening the log shows what was new, once, and clears the badge.
    await nav.get_by_role("link", name=re.compile(r"^Alerts")).click()
    await expect(page.locator("tr.is-unread")).to_have_count(2)
    await expect(page.locator("nav [data-unread-badge]")).to_be_hidden()
    await expect(page.get_by_role("link", name="Phones").first).to_be_visible()
    await page.reload()
    await expect(page.locator("tr.is-unread")).to_have_count(0)

    # On a phone the matches come first: the filters stay folded until asked for.
    await page.set_viewport_size({"width": 390, "height": 760})
    await page.goto(f"{server}/app/matches")
    await expect(page.locator("details[data-filters]")).not_to_have_attribute("open", "")
    await expect(page.get_by_label("Title contains")).to_be_hidden()
    await expect(listings.first).to_be_in_viewport()
    await page.locator("details[data-filters] > summary").click()
    await expect(page.get_by_label("Title contains")).to_be_visible()
    await page.context.close()
