"""A fake feed host on 127.0.0.1: RSS 2.0 and Atom documents at fixed paths, plus the
awkward answers a user-supplied feed URL can give (a redirect, a redirect to a private
address, an HTML page, a CAPTCHA, a huge or a gzipped body).

    with FeedFake() as fake:
        url = fake.base_url + "/feed.xml"
"""

from __future__ import annotations

import gzip

from tests.fakes.pages import CAPTCHA_PAGE, Received, ScriptedFake, html_reply
from tests.fakes.server import Reply

RSS_FEED = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/">
<channel>
  <title>Camera shop - new arrivals</title>
  <link>https://shop.example.com/</link>
  <description>Newest second-hand cameras</description>
  <item>
    <title>Leica M6 body - £2,450</title>
    <link>https://shop.example.com/items/leica-m6</link>
    <guid isPermaLink="false">shop-item-1002</guid>
    <pubDate>Fri, 01 May 2026 09:15:02 GMT</pubDate>
    <author>sales@shop.example.com (Camera Shop)</author>
    <description><![CDATA[<p>Serviced in <b>2025</b>. Box &amp; papers.</p>]]></description>
    <media:thumbnail url="https://shop.example.com/img/leica-m6.jpg" />
  </item>
  <item>
    <title>Objectif Canon 50mm f/1.8, très bon état</title>
    <link>https://shop.example.com/items/canon-50mm</link>
    <pubDate>Thu, 30 Apr 2026 18:00:00 GMT</pubDate>
    <enclosure url="https://shop.example.com/img/canon-50mm.jpg" type="image/jpeg" length="1234"/>
  </item>
  <item>
    <title>Broken entry without a link</title>
    <guid isPermaLink="false">shop-item-0999</guid>
  </item>
</channel>
</rss>"""

ATOM_FEED = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>r/ukmarketplace</title>
  <id>https://www.reddit.example/r/ukmarketplace/new/.rss</id>
  <updated>2026-05-01T10:00:00+00:00</updated>
  <entry>
    <id>t3_1xyz9</id>
    <title>[WTS] Nintendo Switch OLED £220</title>
    <link href="https://www.reddit.example/r/ukmarketplace/comments/1xyz9/switch/"/>
    <updated>2026-05-01T09:59:00+00:00</updated>
    <author><name>/u/seller</name></author>
    <content type="html">&lt;p&gt;Collection in Leeds&lt;/p&gt;</content>
  </entry>
</feed>"""

EMPTY_FEED = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>Nothing yet</title><link>https://shop.example.com/</link>
<description>No items</description></channel></rss>"""

HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>Shop</title></head><body><h1>Welcome</h1></body></html>"
)

RSS_TYPE = {"Content-Type": "application/rss+xml; charset=utf-8"}


class FeedFake(ScriptedFake):
    def __init__(self, *, big_feed_bytes: int = 64 * 1024) -> None:
        super().__init__()
        self.big_feed_bytes = big_feed_bytes

    def serve(self, request: Received) -> Reply:
        routes = {
            "/feed.xml": lambda: Reply(200, RSS_FEED.encode(), RSS_TYPE),
            "/atom.xml": lambda: Reply(
                200, ATOM_FEED.encode(), {"Content-Type": "application/atom+xml"}
            ),
            "/empty.xml": lambda: Reply(200, EMPTY_FEED.encode(), RSS_TYPE),
            "/page.html": lambda: html_reply(200, HTML_PAGE),
            "/captcha": lambda: html_reply(200, CAPTCHA_PAGE),
            "/moved": lambda: Reply(301, b"", {"Location": "/feed.xml"}),
            "/loop": lambda: Reply(302, b"", {"Location": "/loop"}),
            "/to-private": lambda: Reply(302, b"", {"Location": "http://10.1.2.3/feed.xml"}),
            "/to-public": lambda: Reply(
                302, b"", {"Location": "http://feeds.example.com/feed.xml"}
            ),
            "/to-metadata": lambda: Reply(
                302, b"", {"Location": "http://metadata.google.internal/computeMetadata/v1/"}
            ),
            "/big.xml": lambda: Reply(200, self._big_feed(), RSS_TYPE),
            "/gzip.xml": lambda: Reply(
                200, gzip.compress(RSS_FEED.encode()), {**RSS_TYPE, "Content-Encoding": "gzip"}
            ),
        }
        route = routes.get(request.path)
        if route is None:
            return html_reply(404, "<html><body>not found</body></html>")
        return route()

    def _big_feed(self) -> bytes:
        item = "<item><title>x</title><link>https://shop.example.com/x</link></item>"
        count = self.big_feed_bytes // len(item) + 1
        return RSS_FEED.replace("<channel>", "<channel>" + item * count).encode()
