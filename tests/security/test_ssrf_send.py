"""The SSRF-safe sender connects to nothing but checked public addresses.

Every connection attempt goes through a guard that dials loopback addresses as asked and
diverts anything else to a counting canary listener on 127.0.0.1, so a vector that slipped
through would show up as an attempt and a canary connection, and nothing ever leaves this
machine. Names are answered by fake resolvers only.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from app.security import signing, ssrf
from tests.fakes.feeds import FeedFake
from tests.fakes.webhook_receiver import GuardedBackend, Reply, WebhookReceiver, guarded_client
from tests.security.test_ssrf import (
    NAMES,
    PUBLIC_V4,
    VECTORS,
    FakeResolver,
    RebindingResolver,
)

SECRET = signing.generate_secret()
BODY = b'{"type":"test","data":{"text":"hello"}}'


def signed_headers(msg_id: str = "msg_ssrf") -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        **signing.headers([SECRET], msg_id, int(time.time()), BODY),
    }


def loopback_policy(answers: dict[str, list[str]] | None = None) -> ssrf.URLPolicy:
    """The test-only policy: loopback (any port) allowed, everything else still refused."""
    return ssrf.URLPolicy(resolve=FakeResolver(answers), allow_http=True, allow_loopback=True)


@pytest.fixture
def canary() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as receiver:
        yield receiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as endpoint:
        yield endpoint


@pytest.fixture
async def guarded(
    canary: WebhookReceiver,
) -> AsyncIterator[tuple[httpx.AsyncClient, GuardedBackend]]:
    client, backend = guarded_client(canary.port)
    async with client:
        yield client, backend


@pytest.mark.parametrize("url", VECTORS)
async def test_refused_vector_makes_no_connection(
    url: str, guarded: tuple[httpx.AsyncClient, GuardedBackend], canary: WebhookReceiver
) -> None:
    client, backend = guarded
    policy = ssrf.URLPolicy(resolve=FakeResolver(NAMES), allow_http=True)
    with pytest.raises(ssrf.UnsafeURL):
        await ssrf.post_json_safely(client, url, BODY, signed_headers(), policy=policy, timeout_s=2)
    assert backend.attempts == []
    assert canary.connections == 0


@pytest.mark.parametrize(
    "template",
    [
        pytest.param("http://127.0.0.1:{port}/hook", id="loopback"),
        pytest.param("http://localhost:{port}/hook", id="localhost"),
        pytest.param("http://2130706433:{port}/hook", id="decimal"),
        pytest.param("http://0x7f000001:{port}/hook", id="hex"),
        pytest.param("http://0177.0.0.1:{port}/hook", id="octal"),
        pytest.param("http://127.1:{port}/hook", id="short-form"),
        pytest.param("http://[::ffff:127.0.0.1]:{port}/hook", id="ipv4-mapped"),
        pytest.param("http://evil@127.0.0.1:{port}/hook", id="userinfo"),
        pytest.param("http://loopback.example.com:{port}/hook", id="name-to-loopback"),
    ],
)
async def test_vector_aimed_at_a_live_local_listener_never_reaches_it(
    template: str, receiver: WebhookReceiver
) -> None:
    # A plain client, no guard: if the check failed, these would really connect.
    url = template.format(port=receiver.port)
    policy = ssrf.URLPolicy(resolve=FakeResolver(NAMES), allow_http=True)
    async with httpx.AsyncClient(trust_env=False) as client:
        with pytest.raises(ssrf.UnsafeURL):
            await ssrf.post_json_safely(
                client, url, BODY, signed_headers(), policy=policy, timeout_s=2
            )
    assert receiver.connections == 0


async def test_name_that_turns_private_after_saving_is_refused_at_send(
    guarded: tuple[httpx.AsyncClient, GuardedBackend], canary: WebhookReceiver
) -> None:
    resolver = RebindingResolver([PUBLIC_V4], ["127.0.0.1"])
    policy = ssrf.URLPolicy(resolve=resolver, allow_http=False)
    url = "https://rebind.example.com/hook"
    assert (await policy.check(url)).addresses == (PUBLIC_V4,)  # what saving saw

    client, backend = guarded
    with pytest.raises(ssrf.UnsafeURL, match="loopback"):
        await ssrf.post_json_safely(client, url, BODY, signed_headers(), policy=policy, timeout_s=2)
    assert resolver.calls == 2
    assert backend.attempts == []
    assert canary.connections == 0


@pytest.mark.parametrize(
    "location",
    [
        pytest.param("http://169.254.169.254/latest/meta-data/", id="metadata"),
        pytest.param("http://127.0.0.1:{port}/again", id="loopback"),
        pytest.param("/again", id="relative"),
    ],
)
async def test_redirect_is_returned_not_followed(
    location: str,
    receiver: WebhookReceiver,
    guarded: tuple[httpx.AsyncClient, GuardedBackend],
    canary: WebhookReceiver,
) -> None:
    receiver.script(Reply(302, {"Location": location.format(port=receiver.port)}))
    client, backend = guarded
    response = await ssrf.post_json_safely(
        client,
        receiver.url,
        BODY,
        signed_headers(),
        policy=loopback_policy(),
        timeout_s=5,
    )
    assert response.status_code == 302
    assert not response.is_success
    assert backend.attempts == [("127.0.0.1", receiver.port)]
    assert len(receiver.requests) == 1
    assert canary.connections == 0


async def test_connection_goes_to_the_checked_address_with_the_name_as_host(
    receiver: WebhookReceiver,
    guarded: tuple[httpx.AsyncClient, GuardedBackend],
    canary: WebhookReceiver,
) -> None:
    receiver.script(Reply(202, {"X-Request-Id": "r-1"}, b"queued"))
    resolver = FakeResolver({"hooks.example.com": ["127.0.0.1"]})
    policy = ssrf.URLPolicy(resolve=resolver, allow_http=True, allow_loopback=True)
    client, backend = guarded

    response = await ssrf.post_json_safely(
        client,
        f"http://hooks.example.com:{receiver.port}/hook?source=mm",
        BODY,
        signed_headers(),
        policy=policy,
        timeout_s=5,
    )

    assert (response.status_code, response.body_prefix) == (202, b"queued")
    assert response.headers["x-request-id"] == "r-1"
    assert response.is_success
    assert response.elapsed_s >= 0
    assert resolver.lookups == ["hooks.example.com"]
    assert backend.attempts == [("127.0.0.1", receiver.port)]
    [request] = receiver.accepted
    assert request.headers["host"] == f"hooks.example.com:{receiver.port}"
    assert request.path == "/hook?source=mm"
    assert request.body == BODY
    assert canary.connections == 0


async def test_an_address_that_refuses_falls_through_to_the_next_checked_one(
    receiver: WebhookReceiver,
    guarded: tuple[httpx.AsyncClient, GuardedBackend],
) -> None:
    # The receiver listens on 127.0.0.1 only, so 127.0.0.2 refuses the connection.
    policy = loopback_policy({"hooks.example.com": ["127.0.0.2", "127.0.0.1"]})
    client, backend = guarded
    response = await ssrf.post_json_safely(
        client,
        f"http://hooks.example.com:{receiver.port}/hook",
        BODY,
        signed_headers(),
        policy=policy,
        timeout_s=5,
    )
    assert response.status_code == 200
    assert backend.attempts == [("127.0.0.2", receiver.port), ("127.0.0.1", receiver.port)]


async def test_nothing_listening_is_a_connect_error(
    guarded: tuple[httpx.AsyncClient, GuardedBackend],
) -> None:
    client, _ = guarded
    with pytest.raises(httpx.ConnectError):
        await ssrf.post_json_safely(
            client,
            f"http://127.0.0.1:{closed_port()}/hook",
            BODY,
            signed_headers(),
            policy=loopback_policy(),
            timeout_s=5,
        )


async def test_only_a_prefix_of_a_large_answer_is_read(
    receiver: WebhookReceiver, guarded: tuple[httpx.AsyncClient, GuardedBackend]
) -> None:
    receiver.script(Reply(200, {}, b"x" * 300_000))
    client, _ = guarded
    response = await ssrf.post_json_safely(
        client,
        receiver.url,
        BODY,
        signed_headers(),
        policy=loopback_policy(),
        timeout_s=5,
        max_response_bytes=1000,
    )
    assert response.body_prefix == b"x" * 1000


async def test_slow_endpoint_times_out(
    receiver: WebhookReceiver, guarded: tuple[httpx.AsyncClient, GuardedBackend]
) -> None:
    receiver.script(Reply(200, delay_s=5))
    client, _ = guarded
    with pytest.raises(httpx.TimeoutException):
        await ssrf.post_json_safely(
            client,
            receiver.url,
            BODY,
            signed_headers(),
            policy=loopback_policy(),
            timeout_s=0.3,
        )


async def test_client_cookies_are_not_sent_to_user_endpoints(receiver: WebhookReceiver) -> None:
    async with httpx.AsyncClient(trust_env=False, cookies={"session": "operator"}) as client:
        await ssrf.post_json_safely(
            client,
            receiver.url,
            BODY,
            signed_headers(),
            policy=loopback_policy(),
            timeout_s=5,
        )
    [request] = receiver.accepted
    assert "cookie" not in request.headers


async def test_client_reading_proxy_settings_from_the_environment_is_refused(
    receiver: WebhookReceiver,
) -> None:
    async with httpx.AsyncClient(trust_env=True) as client:
        with pytest.raises(ValueError, match="trust_env"):
            await ssrf.post_json_safely(
                client,
                receiver.url,
                BODY,
                signed_headers(),
                policy=loopback_policy(),
                timeout_s=5,
            )
    assert receiver.connections == 0


# --- TLS: the certificate is checked against the name, not the address dialled --------


def self_signed(directory: Path, name: str) -> tuple[str, str]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN={name}",
            "-addext",
            f"subjectAltName=DNS:{name}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@needs_openssl
@pytest.mark.parametrize(
    ("cert_name", "verifies"),
    [
        pytest.param("hooks.example.com", True, id="certificate-for-the-name"),
        pytest.param("other.example.com", False, id="certificate-for-another-name"),
    ],
)
async def test_tls_uses_the_name_for_sni_and_certificate_checks(
    tmp_path: Path, canary: WebhookReceiver, cert_name: str, verifies: bool
) -> None:
    certfile, keyfile = self_signed(tmp_path, cert_name)
    trust = ssl.create_default_context(cafile=certfile)
    client, backend = guarded_client(canary.port, verify=trust)
    with WebhookReceiver(SECRET, certfile=certfile, keyfile=keyfile) as tls_receiver:
        url = f"https://hooks.example.com:{tls_receiver.port}/hook"
        policy = loopback_policy({"hooks.example.com": ["127.0.0.1"]})
        async with client:
            if verifies:
                response = await ssrf.post_json_safely(
                    client, url, BODY, signed_headers(), policy=policy, timeout_s=5
                )
                assert response.status_code == 200
                [request] = tls_receiver.accepted
                assert request.headers["host"] == f"hooks.example.com:{tls_receiver.port}"
            else:
                with pytest.raises(httpx.ConnectError):
                    await ssrf.post_json_safely(
                        client, url, BODY, signed_headers(), policy=policy, timeout_s=5
                    )
                assert tls_receiver.requests == []
        assert tls_receiver.server_names == ["hooks.example.com"]
    assert backend.attempts == [("127.0.0.1", tls_receiver.port)]


def closed_port() -> int:
    """A local port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- GET (feeds) ----------------------------------------------------------------------


@pytest.fixture
def feeds() -> Iterator[FeedFake]:
    with FeedFake() as server:
        yield server


async def test_get_follows_a_redirect_only_after_checking_its_target(feeds: FeedFake) -> None:
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await ssrf.get_safely(
            client, feeds.base_url + "/moved", {}, policy=loopback_policy(), timeout_s=5
        )
    assert response.status_code == 200
    assert response.url == feeds.base_url + "/feed.xml"
    assert response.body_prefix.startswith(b"<?xml")
    assert [r.path for r in feeds.received] == ["/moved", "/feed.xml"]
    assert all(r.headers["accept-encoding"] == "identity" for r in feeds.received)


@pytest.mark.parametrize("path", ["/to-private", "/to-metadata"])
async def test_get_refuses_a_redirect_to_a_private_target_before_connecting(
    path: str, feeds: FeedFake, guarded: tuple[httpx.AsyncClient, GuardedBackend]
) -> None:
    client, backend = guarded
    with pytest.raises(ssrf.UnsafeURL):
        await ssrf.get_safely(
            client, feeds.base_url + path, {}, policy=loopback_policy(NAMES), timeout_s=5
        )
    assert backend.attempts == [("127.0.0.1", feeds.port)]


async def test_get_dials_the_checked_address_of_a_redirect_target(
    feeds: FeedFake, guarded: tuple[httpx.AsyncClient, GuardedBackend], canary: WebhookReceiver
) -> None:
    client, backend = guarded
    policy = loopback_policy({"feeds.example.com": [PUBLIC_V4]})
    await ssrf.get_safely(client, feeds.base_url + "/to-public", {}, policy=policy, timeout_s=5)
    # The public address the check saw, never a fresh lookup (diverted to the canary here).
    assert backend.attempts == [("127.0.0.1", feeds.port), (PUBLIC_V4, 80)]
    assert canary.connections == 1


async def test_get_without_the_loopback_allowance_never_reaches_a_local_feed(
    feeds: FeedFake, guarded: tuple[httpx.AsyncClient, GuardedBackend]
) -> None:
    client, backend = guarded
    policy = ssrf.URLPolicy(resolve=FakeResolver(NAMES), allow_http=True)
    with pytest.raises(ssrf.UnsafeURL, match=r"default http port"):
        await ssrf.get_safely(client, feeds.base_url + "/feed.xml", {}, policy=policy, timeout_s=5)
    assert backend.attempts == []
    assert feeds.received == []


async def test_get_stops_after_three_redirects_and_reads_at_most_the_cap(feeds: FeedFake) -> None:
    async with httpx.AsyncClient(trust_env=False) as client:
        looping = await ssrf.get_safely(
            client, feeds.base_url + "/loop", {}, policy=loopback_policy(), timeout_s=5
        )
        capped = await ssrf.get_safely(
            client,
            feeds.base_url + "/big.xml",
            {},
            policy=loopback_policy(),
            timeout_s=5,
            max_response_bytes=1000,
        )
    assert looping.status_code == 302
    assert len([r for r in feeds.received if r.path == "/loop"]) == 4
    assert len(capped.body_prefix) == 1000


async def test_get_needs_a_client_that_ignores_proxy_settings(feeds: FeedFake) -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(ValueError, match="trust_env=False"):
            await ssrf.get_safely(
                client, feeds.base_url + "/feed.xml", {}, policy=loopback_policy(), timeout_s=5
            )
