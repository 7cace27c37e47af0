"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) against
`marketmon run` on 127.0.0.1: sign up, a search from a template, a check on the demo
marketplace, matches, hiding one, a setting, and a second user kept out; and README's
Quick start followed to its first alert on a server with nothing configured.

The browser reaches nothing but the server under test: every other request is refused (and
recorded: there must be none), and host names never resolve. Without Chromium or
Playwright the tests are skipped; with CI=true that is a failure instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import ON_CI
from tests.test_cli import MARKETMON, _environment, _free_port, _stop, _wait_until_healthy

try:
    from playwright.async_api import Browser, Page, Route, async_playwright, expect
except ImportError:  # pragma: no cover - depends on the machine
    async_playwright = None

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
# Set to a folder (docs/screenshots) to refresh the README's screenshots.
SCREENSHOTS_DIR = os.environ.get("DASHBOARD_SCREENSHOTS_DIR", "")
TIMEOUT_MS = 20_000
# What a page asked of any host but the server (refused): nothing, as every page is whole.
OTHER_HOST_REQUESTS: list[str] = []
PASSWORD = "a-long-password"
DESKTOP = {"width": 1100, "height": 800}
# Chromium resolves no host name at all; the server is reached by its IP literal.
CHROMIUM_ARGS = [
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--no-proxy-server",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _missing_browser() -> str | None:
    if async_playwright is None:
        return "Playwright for Python is not installed (pip install -e '.[dev]')"
    if not Path(CHROMIUM).is_file():
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)"
    return None


@pytest.fixture(scope="module")
def browser_required() -> None:
    reason = _missing_browser()
    if reason is None:
        return
    if ON_CI:
        pytest.fail(f"Browser tests must run on CI: {reason}")
    pytest.skip(reason)


def _marketmon_run(folder: Path, **settings: str) -> Iterator[str]:
    """`marketmon run` on a free loopback port with a fresh SQLite database in `folder`
    and these settings; yields its address and stops the server afterwards."""
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = folder / "server.log"
    env = _environment(
        DATABASE_URL=f"sqlite+aiosqlite:///{folder / 'marketmon.db'}",
        # The demo's photos and listing pages are served by the server itself.
        PUBLIC_BASE_URL=base_url,
        **settings,
    )
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [MARKETMON, "run", "--host", "127.0.0.1", "--port", str(port)],
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_until_healthy(base_url, process, log_path)
        yield base_url
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def server(browser_required: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`marketmon run` on a free loopback port, on a fresh SQLite database."""
    yield from _marketmon_run(
        tmp_path_factory.mktemp("dashboard"),
        # "Check now" does the checking here; no background cycle races it.
        EMBEDDED_WORKER="false",
        DEMO_LISTING_INTERVAL_S="2",
        # The plan limits the form explains are the free plan's.
        DEFAULT_PLAN="free",
    )


@pytest.fixture(scope="module")
async def chromium(browser_required: None) -> AsyncIterator[Browser]:
    assert async_playwright is not None
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


async def new_page(chromium: Browser, server: str, **context_options: object) -> Page:
    """A page in a fresh context (its own cookies) that can reach only the server."""
    context = await chromium.new_context(**context_options)  # type: ignore[arg-type]
    context.set_default_timeout(TIMEOUT_MS)
    own_host = urlsplit(server).netloc

    async def only_loopback(route: Route) -> None:
        url = urlsplit(route.request.url)
        if url.netloc == own_host:
            await route.continue_()
        else:
            OTHER_HOST_REQUESTS.append(route.request.url)
            await route.abort()

    await context.route("**/*", only_loopback)
    return await context.new_page()


async def test_a_new_user_finds_hides_and_configures_and_nobody_else_sees_it(
    chromium: Browser, server: str
) -> None:
    page = await new_page(chromium, server, viewport=DESKTOP)

    # Sign up.
    await page.goto(f"{server}/app/")
    await expect(page).to_have_url(re.compile(r"/app/login"))
    await page.get_by_role("link", name="Create an account").click()
    await page.get_by_label("Email").fill("first@example.com")
    await page.get_by_label("Name (optional)").fill("First Person")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign up").click()
    await expect(page).to_have_url(re.compile(r"/app/searches/new$"))
    await expect(page.get_by_role("status")).to_contain_text("Welcome!")

    # Start from a template, which starts on the demo marketplace here (this server has no
    # eBay keys); live validation explains the plan's marketplace limit, on the marketplaces
    # and in the summary above the button, while two are ticked.
    await page.get_by_role("link", name=re.compile("iPhone Flips UK")).click()
    await expect(page.get_by_label("Name", exact=True)).to_have_value("iPhone Flips UK")
    await expect(page.get_by_label("demo")).to_be_checked()
    await page.get_by_label("gumtree").check()
    plan_error = page.locator("#error-marketplaces")
    summary = page.locator("#error-summary")
    await expect(plan_error).to_have_text(re.compile("allows 1 marketplace"))
    await expect(summary).to_contain_text("Marketplaces: Your plan allows 1 marketplace")
    await page.get_by_label("gumtree").uncheck()
    await expect(plan_error).to_be_hidden()
    await expect(summary).to_be_hidden()
    # Any price and condition, so the demo's listings match whatever their price today.
    await page.get_by_label("Lowest price").fill("")
    await page.get_by_label("Highest price").fill("")
    await page.get_by_label("Condition").select_option("")
    await page.get_by_label("in-app").check()
    await page.evaluate("window.scrollTo(0, 0)")
    await _screenshot(page, "search-form.png")
    await page.get_by_role("button", name="Save search").click()
    await expect(page).to_have_url(re.compile(r"/app/searches$"))
    await expect(page.get_by_role("status")).to_contain_text("Saved “iPhone Flips UK”")

    # Check now, against the demo marketplace.
    await page.get_by_role("button", name="Check now").click()
    notice = page.get_by_role("status")
    await expect(notice).to_contain_text(re.compile(r"Checked “iPhone Flips UK”: \d+ new match"))
    found = int(re.search(r": (\d+) new", await notice.inner_text()).group(1))  # type: ignore[union-attr]
    assert found > 0
    search_id = (await page.locator(".card.search").get_attribute("id") or "").removeprefix(
        "search-"
    )
    await page.set_viewport_size({"width": 390, "height": 760})
    await _screenshot(page, "searches-phone.png")
    await page.set_viewport_size(DESKTOP)

    # The matches appear; hiding one takes it out of the feed, for good.
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Matches").click()
    listings = page.locator("li.listing")
    await expect(listings.first).to_be_visible()
    shown = await listings.count()
    assert shown == min(found, 20)
    # Real photos, served by the server itself (the demo's), not broken images.
    photo = listings.first.locator("img")
    await expect(photo).to_have_attribute("src", re.compile(rf"^{re.escape(server)}/demo/images/"))
    await photo.scroll_into_view_if_needed()
    assert await photo.evaluate("img => img.complete && img.naturalWidth > 0")
    await _screenshot(page, "matches.png")
    first = listings.first
    # By id, not title: the demo can list two items under one title.
    hidden_id = await first.get_attribute("id")
    await first.get_by_role("button", name="Hide").click()
    await expect(listings).to_have_count(shown - 1)
    await page.reload()
    await expect(listings).to_have_count(min(found - 1, 20))
    await expect(page.locator(f"li.listing[id='{hidden_id}']")).to_have_count(0)

    # Change a setting.
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    await page.get_by_label("Time zone").fill("Europe/London")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.get_by_role("status")).to_have_text("Settings saved.")
    await expect(page.get_by_label("Time zone")).to_have_value("Europe/London")

    # Another user cannot open the first user's pages.
    intruder = await new_page(chromium, server)
    await intruder.goto(f"{server}/app/signup")
    await intruder.get_by_label("Email").fill("second@example.com")
    await intruder.get_by_label("Password").fill(PASSWORD)
    await intruder.get_by_role("button", name="Sign up").click()
    await expect(intruder).to_have_url(re.compile(r"/app/searches/new$"))
    for path in (f"/app/searches/{search_id}/edit", f"/app/matches?search_id={search_id}"):
        response = await intruder.goto(f"{server}{path}")
        assert response is not None
        assert response.status == 404, path
        await expect(intruder.get_by_role("heading", level=1)).to_have_text("Not found")
    await intruder.goto(f"{server}/app/matches")
    await expect(intruder.locator("li.listing")).to_have_count(0)
    await intruder.context.close()
    await page.context.close()


async def test_the_pages_fit_a_phone_screen(chromium: Browser, server: str) -> None:
    page = await new_page(
        chromium, server, viewport={"width": 390, "height": 760}, is_mobile=True, has_touch=True
    )
    await page.goto(f"{server}/app/signup")
    await page.get_by_label("Email").fill("phone@example.com")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign up").click()
    for path in ("/app/searches/new", "/app/matches", "/app/alerts", "/app/settings"):
        await page.goto(f"{server}{path}")
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{path} scrolls sideways by {overflow}px on a phone"
    await page.context.close()


async def _screenshot(page: Page, name: str) -> None:
    if SCREENSHOTS_DIR:  # Playwright creates the folder
        await page.screenshot(path=str(Path(SCREENSHOTS_DIR) / name))


# --- README's Quick start -------------------------------------------------------------

FIRST_ALERT_WITHIN_S = 60
# What pydantic says when its messages reach people unchanged.
VALIDATOR_WORDING = re.compile(r"should have|Input should|value_error|String should|Field required")


@pytest.fixture(scope="module")
def quick_start_server(
    browser_required: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`marketmon run` as README starts it: every setting at its default (the embedded
    worker on, the demo marketplace on), only the database in a folder of its own."""
    yield from _marketmon_run(tmp_path_factory.mktemp("quick-start"))


async def test_a_template_saved_as_it_comes_alerts_in_app_within_a_minute(
    chromium: Browser, quick_start_server: str
) -> None:
    server = quick_start_server
    page = await new_page(chromium, server, viewport=DESKTOP)

    # "/" leads to the dashboard, which asks a stranger to log in or sign up.
    await page.goto(f"{server}/")
    await expect(page).to_have_url(re.compile(r"/app/login"))
    await page.get_by_role("link", name="Create an account").click()
    await page.get_by_label("Email").fill("newcomer@example.com")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign up").click()
    await expect(page).to_have_url(re.compile(r"/app/searches/new$"))

    # The first template, taken as it comes.
    await page.locator("a.template").first.click()
    form = page.locator("#search-form")
    await expect(form).to_be_visible()
    await _nothing_offered_that_cannot_work(page)
    # eBay (the template's) has no keys here: the form moved the search to the demo.
    await expect(form.locator("input[name=marketplaces][value=ebay]")).to_be_disabled()
    await expect(form.locator("input[name=marketplaces][value=demo]")).to_be_checked()
    await expect(form.locator("input[name=alert_channels][value=email]")).to_be_disabled()
    await expect(form.locator("input[name=alert_channels][value=in_app]")).to_be_checked()

    await page.get_by_role("button", name="Save search").click()
    saved_at = time.monotonic()
    await expect(page).to_have_url(re.compile(r"/app/searches$"))
    await expect(page.locator(".badge").first).to_have_text("active")

    # No further click: the alert badge in the menu appears by itself.
    badge = page.locator("nav [data-unread-badge]")
    left_ms = (FIRST_ALERT_WITHIN_S - (time.monotonic() - saved_at)) * 1000
    await expect(badge).to_be_visible(timeout=max(left_ms, 1))
    arrived_after_s = time.monotonic() - saved_at
    assert arrived_after_s <= FIRST_ALERT_WITHIN_S

    # The alert log shows it, linked to the listing and to the search.
    await page.get_by_role("link", name=re.compile(r"^Alerts")).click()
    rows = page.locator("table tbody tr")
    await expect(rows.first).to_be_visible()
    await expect(rows.first).to_contain_text("in_app")

    for path in ("/app/searches", "/app/matches", "/app/alerts", "/app/settings", "/app/billing"):
        await page.goto(f"{server}{path}")
        await _nothing_offered_that_cannot_work(page)
        text = await page.locator("body").inner_text()
        assert not VALIDATOR_WORDING.search(text), (path, text)
    assert OTHER_HOST_REQUESTS == []


async def _nothing_offered_that_cannot_work(page: Page) -> None:
    """Every control this server cannot honour is disabled and says which setting enables
    it; nothing that cannot work is pre-selected."""
    for box in await page.locator("input[type=checkbox][disabled]").all():
        assert not await box.is_checked()
        label = await box.locator("xpath=ancestor::label").inner_text()
        assert "not set up" in label or "Settings" in label, label
    for option in await page.locator("option[disabled]").all():
        assert not await option.evaluate("o => o.selected")
