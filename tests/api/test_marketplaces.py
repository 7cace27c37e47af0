"""GET /marketplaces/: every known marketplace, what it can do, whether it is set up."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.main import create_app
from app.models import Marketplace
from tests.conftest import make_settings
from tests.factories import make_user, token_headers


async def test_lists_every_marketplace_with_availability_and_capabilities(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get("/api/v1/marketplaces/", headers=headers)
    assert response.status_code == 200, response.text
    by_name = {entry["name"]: entry for entry in response.json()}
    assert set(by_name) == {m.value for m in Marketplace}
    demo = by_name["demo"]
    assert demo["available"] is True
    assert demo["configured"] is True
    assert demo["capabilities"]["page_size"] > 0
    # The tests give facebook no browser: known, but unable to check anything.
    facebook = by_name["facebook"]
    assert (facebook["available"], facebook["configured"]) == (True, False)


async def test_marketplaces_need_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/marketplaces/")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


async def test_scraped_marketplaces_show_their_options_and_what_they_filter(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get("/api/v1/marketplaces/", headers=headers)
    by_name = {entry["name"]: entry for entry in response.json()}
    for name in ("gumtree", "craigslist", "vinted", "reddit", "rss"):
        assert (by_name[name]["available"], by_name[name]["configured"]) == (True, True)
    assert by_name["craigslist"]["required_options"] == ["city"]
    assert set(by_name["craigslist"]["options_schema"]["properties"]) == {"city", "area_id"}
    assert by_name["rss"]["required_options"] == ["url"]
    assert by_name["reddit"]["required_options"] == ["subreddit"]
    assert by_name["vinted"]["required_options"] == []
    assert "co.uk" in by_name["vinted"]["capabilities"]["regions"]
    assert by_name["gumtree"]["options_schema"] is None
    assert by_name["gumtree"]["capabilities"]["regions"] == ["GB"]
    assert by_name["reddit"]["capabilities"]["keyword_filter"] is False
    assert by_name["ebay"]["capabilities"]["keyword_filter"] is True


async def test_marketplaces_left_out_of_marketplaces_enabled_are_unavailable(
    database_url: str, session: AsyncSession
) -> None:
    settings = make_settings(database_url, marketplaces_enabled="demo,gumtree")
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        owner = await make_user(session, email="enabled@example.com")
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            response = await http.get(
                "/api/v1/marketplaces/", headers=token_headers(application, owner)
            )
    available = {entry["name"] for entry in response.json() if entry["available"]}
    assert available == {"demo", "gumtree"}
