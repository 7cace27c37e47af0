"""A fake Reddit on 127.0.0.1: `/r/<sub>/new.json`, `external-apis.md` section 8.

Answers a `Listing` of `t3` posts, newest first. Like Reddit it throttles clients with a
generic User-Agent (429) and wants `<platform>:<app id>:<version> (by /u/<name>)`; an
unknown subreddit redirects to the subreddit search, a private one answers 403.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tests.fakes.pages import Received, ScriptedFake
from tests.fakes.server import Reply, json_reply

CREATED_UTC = 1_777_000_000.0
# What Reddit asks of a User-Agent; library defaults such as python-httpx/0.28 are throttled.
DESCRIPTIVE_AGENT = re.compile(r"^[^:\s]+:[^:\s]+:[^:\s]+ \(.+\)$")


@dataclass(frozen=True)
class Post:
    post_id: str
    title: str
    selftext: str = "Timestamps: https://imgur.com/a/abc\n\nLocal cash or PayPal G&S."
    author: str = "trader_joe"
    created_utc: float = CREATED_UTC
    thumbnail: str = "https://b.thumbs.redditmedia.com/abc.jpg"
    flair: str | None = "Selling"
    broken: bool = False

    def child(self, subreddit: str) -> dict[str, Any]:
        if self.broken:
            return {"kind": "t3", "data": {"id": self.post_id}}
        slug = "_".join(re.findall(r"[a-z0-9]+", self.title.lower()))[:50]
        return {
            "kind": "t3",
            "data": {
                "id": self.post_id,
                "name": f"t3_{self.post_id}",
                "title": self.title,
                "selftext": self.selftext,
                "url": f"https://www.reddit.com/r/{subreddit}/comments/{self.post_id}/{slug}/",
                "permalink": f"/r/{subreddit}/comments/{self.post_id}/{slug}/",
                "created_utc": self.created_utc,
                "author": self.author,
                "link_flair_text": self.flair,
                "thumbnail": self.thumbnail,
                "over_18": False,
                "subreddit": subreddit,
            },
        }


def listing(children: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "kind": "Listing",
        "data": {"after": None, "dist": len(children), "children": children, "before": None},
    }


class RedditFake(ScriptedFake):
    def __init__(self) -> None:
        super().__init__()
        self._posts: dict[str, list[Post]] = {}
        self.private: set[str] = set()

    def set_posts(self, subreddit: str, posts: Iterable[Post]) -> None:
        with self._lock:
            self._posts[subreddit.lower()] = list(posts)

    def serve(self, request: Received) -> Reply:
        if not DESCRIPTIVE_AGENT.match(request.headers.get("user-agent", "")):
            return json_reply(429, {"message": "Too Many Requests", "error": 429})
        if request.path.startswith("/subreddits/search"):
            return json_reply(200, listing([]))
        match = re.fullmatch(r"/r/([A-Za-z0-9_]+)/new\.json", request.path)
        if match is None:
            return json_reply(404, {"message": "Not Found", "error": 404})
        subreddit = match.group(1).lower()
        if request.param("limit") != "100":
            return json_reply(400, {"message": "limit must be 100 here", "error": 400})
        if subreddit in self.private:
            return json_reply(403, {"reason": "private", "message": "Forbidden", "error": 403})
        with self._lock:
            posts = self._posts.get(subreddit)
        if posts is None:
            return Reply(302, b"", {"Location": f"/subreddits/search.json?q={subreddit}"})
        return json_reply(
            200,
            listing([post.child(subreddit) for post in posts]),
            headers={
                "X-Ratelimit-Used": "1",
                "X-Ratelimit-Remaining": "9",
                "X-Ratelimit-Reset": "60",
            },
        )
