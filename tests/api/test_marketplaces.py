"""GET /marketplaces/: every known marketplace, what it can do, whether it is set up."""

from __future__ import annotations

import httpx

from app.models import Marketplace


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
    facebook = by_name["facebook"]
    assert (facebook["available"], facebook["configured"], facebook["capabilities"]) == (
        False,
        False,
        None,
    )


async def test_marketplaces_need_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/marketplaces/")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
