"""The demo marketplace's photos and listing pages, served by the app itself."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

import httpx
import pytest

from app.main import create_app
from app.marketplaces.base import Query
from app.marketplaces.demo import DEFAULT_IMAGE_KIND, IMAGE_KINDS, DemoAdapter
from tests.conftest import make_settings

QUERY = Query(keywords=("omega seamaster",))
GOOD_ID = "0123456789-85000000"
BAD_IDS = [
    "abc",
    "0123456789",
    "0123456789-",
    "0123456789-01",
    "0123456789--1",
    "0123456789-1x",
    "0123456789-1.5",
    "012345678-1",
    "0123456789a-1",
    "0123456789-1%0A",
    "0123456789-1%00",
    "0123456789-" + "9" * 17,
    "0123456789-1" + "0" * 5000,
    "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    "..%2F..%2F..%2Fetc%2Fpasswd",
    "%2E%2E%2F%2E%2E%2Fapp%2Fconfig.py",
    "..%5C..%5Cwindows",
    "0123456789-1%2F..%2F..%2Fetc%2Fpasswd",
]


def path_of(url: str | None) -> str:
    assert url is not None
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


async def test_a_listings_photo_is_a_small_safe_svg_kept_for_good(
    client: httpx.AsyncClient,
) -> None:
    listing = (await DemoAdapter().search(QUERY))[0]

    response = await client.get(path_of(listing.image_url))

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/svg+xml"
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert (
        response.headers["content-security-policy"]
        == "default-src 'none'; style-src 'unsafe-inline'"
    )
    assert response.headers["x-content-type-options"] == "nosniff"
    assert len(response.content) < 3000
    svg = ET.fromstring(response.content)
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    assert "Demo watch" in response.text
    assert "<script" not in response.text
    assert "href" not in response.text  # nothing to load, nothing to follow
    again = await client.get(path_of(listing.image_url))
    assert again.content == response.content


async def test_every_kind_of_photo_is_served_and_colours_differ_by_listing(
    client: httpx.AsyncClient,
) -> None:
    bodies = set()
    for kind in [*IMAGE_KINDS, DEFAULT_IMAGE_KIND]:
        response = await client.get(f"/demo/images/{GOOD_ID}.svg", params={"p": kind})
        assert response.status_code == 200, kind
        assert len(response.content) < 3000
        ET.fromstring(response.content)
        bodies.add(response.content)
    assert len(bodies) == len(IMAGE_KINDS) + 1
    without_kind = await client.get(f"/demo/images/{GOOD_ID}.svg")
    other_listing = await client.get("/demo/images/0123456789-85000001.svg")
    assert without_kind.status_code == other_listing.status_code == 200
    assert without_kind.content != other_listing.content


@pytest.mark.parametrize("bad_id", BAD_IDS)
async def test_anything_but_a_demo_id_is_not_found(client: httpx.AsyncClient, bad_id: str) -> None:
    image = await client.get(f"/demo/images/{bad_id}.svg")
    page = await client.get(f"/demo/listings/{bad_id}")
    assert (image.status_code, page.status_code) == (404, 404)
    assert image.json()["code"] == page.json()["code"] == "not_found"


@pytest.mark.parametrize(
    "kind", ["", "Phone", "phone ", "<script>", "../phone", "item\n", "x" * 10_000]
)
async def test_a_photo_kind_outside_the_fixed_set_is_not_found(
    client: httpx.AsyncClient, kind: str
) -> None:
    response = await client.get(f"/demo/images/{GOOD_ID}.svg", params={"p": kind})
    assert response.status_code == 404
    assert "script" not in response.text


async def test_a_listings_link_opens_a_page_saying_it_is_simulated(
    client: httpx.AsyncClient,
) -> None:
    listing = (await DemoAdapter().search(QUERY))[0]

    response = await client.get(path_of(listing.url))

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "made up by the demo marketplace" in response.text
    assert listing.external_id in response.text
    assert 'href="/app/matches"' in response.text
    assert "http" not in response.text  # no external assets
    assert "<script" not in response.text


async def test_the_pages_are_not_served_when_the_demo_is_off(database_url: str) -> None:
    settings = make_settings(
        database_url, demo_marketplace_enabled=False, load_templates_on_startup=False
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get(f"/demo/images/{GOOD_ID}.svg")).status_code == 404
            assert (await client.get(f"/demo/listings/{GOOD_ID}")).status_code == 404
