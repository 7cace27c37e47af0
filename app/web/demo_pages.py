"""The demo marketplace's photos and listing pages, served by the app itself so its links
work offline and without credentials (`app/marketplaces/demo.py` makes the listings).

Only what passes a strict check reaches a page: the id must have the demo's own format
(hex digits, a dash, digits), and the photo's kind must be one of a fixed set.
"""

from __future__ import annotations

import colorsys
import hashlib

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from app.errors import NotFound
from app.marketplaces import demo

router = APIRouter(prefix="/demo", include_in_schema=False)

# An id's photo never changes: browsers and proxies may keep it for good.
IMAGE_CACHE_CONTROL = "public, max-age=31536000, immutable"
# Neither response may run script or load anything; inline styles only.
IMAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'"
PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
NOT_FOUND = "No such demo listing"

# White line drawings on a 240 x 240 card, one per kind of product.
GLYPHS: dict[str, str] = {
    "phone": '<rect x="94" y="46" width="52" height="100" rx="10"/><path d="M112 132h16"/>',
    "computer": '<rect x="66" y="56" width="108" height="70" rx="6"/><path d="M50 142h140"/>',
    "console": (
        '<path d="M82 76h76a30 30 0 0 1 0 60H82a30 30 0 0 1 0-60z"/>'
        '<path d="M84 106h24M96 94v24"/><circle cx="144" cy="100" r="4"/>'
        '<circle cx="156" cy="112" r="4"/>'
    ),
    "watch": (
        '<circle cx="120" cy="96" r="32"/><path d="M106 66V42h28v24M106 126v24h28v-24"/>'
        '<path d="M120 96V80M120 96l12 8"/>'
    ),
    "camera": (
        '<rect x="60" y="68" width="120" height="78" rx="10"/><circle cx="120" cy="107" r="24"/>'
        '<path d="M96 68l8-14h32l8 14"/>'
    ),
    "bike": (
        '<circle cx="78" cy="116" r="26"/><circle cx="162" cy="116" r="26"/>'
        '<path d="M78 116l26-38h44l14 38M104 78l18 38H78M122 116l26-38M96 68h18M148 78l-6-14h12"/>'
    ),
    "clothing": (
        '<path d="M98 50L74 62 58 90l20 10 8-12v62h68V88l8 12 20-10-16-28-24-12q-22 16-44 0z"/>'
    ),
    "item": '<path d="M120 44l50 24v60l-50 24-50-24V68zM70 68l50 24 50-24M120 92v60"/>',
}
LABELS = {
    "phone": "Phone",
    "computer": "Computer",
    "console": "Games console",
    "watch": "Watch",
    "camera": "Camera",
    "bike": "Bike",
    "clothing": "Clothing",
    "item": "Item",
}

_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 240 240" width="240" height="240"'
    ' role="img" aria-label="{label}">'
    '<rect width="240" height="240" rx="28" fill="{background}"/>'
    '<circle cx="120" cy="100" r="76" fill="{halo}"/>'
    '<g fill="none" stroke="#fff" stroke-width="6" stroke-linecap="round"'
    ' stroke-linejoin="round">{glyph}</g>'
    '<text x="120" y="204" text-anchor="middle" font-family="sans-serif" font-size="20"'
    ' font-weight="600" fill="#fff">Demo {label_lower}</text></svg>'
)

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>Demo listing {external_id}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 36rem; margin: 3rem auto;
  padding: 0 1rem; line-height: 1.5; color: #1f2933; }}
code {{ background: #eef2f6; padding: 0.1rem 0.3rem; border-radius: 0.25rem; }}
</style>
</head>
<body>
<h1>Demo listing</h1>
<p>This listing was made up by the demo marketplace so you can try the service without
marketplace credentials. Nothing is for sale here.</p>
<p>Listing id: <code>{external_id}</code></p>
<p><a href="/app/matches">Back to your matches</a></p>
</body>
</html>
"""


@router.get("/images/{external_id}.svg", name="demo_image")
async def demo_image(external_id: str, p: str = demo.DEFAULT_IMAGE_KIND) -> Response:
    """The listing's photo: a card coloured by its id, showing the kind `p` of product."""
    _check_id(external_id)
    if p not in GLYPHS:
        raise NotFound(NOT_FOUND)
    return Response(
        _svg(external_id, p),
        media_type="image/svg+xml",
        headers={
            "Cache-Control": IMAGE_CACHE_CONTROL,
            "Content-Security-Policy": IMAGE_CSP,
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/listings/{external_id}", name="demo_listing", response_class=HTMLResponse)
async def demo_listing(external_id: str) -> HTMLResponse:
    """A page saying the listing is simulated, where the listing's link leads."""
    _check_id(external_id)
    return HTMLResponse(
        _PAGE.format(external_id=external_id),
        headers={
            "Content-Security-Policy": PAGE_CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
        },
    )


def _check_id(external_id: str) -> None:
    if not demo.is_listing_id(external_id):
        raise NotFound(NOT_FOUND)


def _svg(external_id: str, kind: str) -> str:
    hue = int.from_bytes(hashlib.sha256(external_id.encode()).digest()[:2], "big") / 65536
    label = LABELS[kind]
    return _SVG.format(
        label=label,
        label_lower=label.lower(),
        background=_hex_colour(hue, lightness=0.38, saturation=0.5),
        halo=_hex_colour(hue, lightness=0.5, saturation=0.55),
        glyph=GLYPHS[kind],
    )


def _hex_colour(hue: float, *, lightness: float, saturation: float) -> str:
    # Hex rather than hsl(): every image viewer and mail client reads it.
    red, green, blue = colorsys.hls_to_rgb(hue, lightness, saturation)
    return "#" + "".join(f"{round(channel * 255):02x}" for channel in (red, green, blue))
