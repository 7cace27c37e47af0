"""The SSRF gatekeeper refuses every vector that can be judged without connecting.

Names are resolved only by fake resolvers (dicts): these tests never look up a real name.
Vector numbers refer to the SSRF vector list the project's threat model keeps.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.config import ConfigurationError
from app.errors import InvalidInput
from app.security import ssrf
from tests.conftest import make_settings

PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:4700:4700::1111"


class UnexpectedLookup(Exception):
    """A name the test did not expect to be resolved (never an OSError, so it propagates)."""


class FakeResolver:
    """Answers from a dict and records every lookup."""

    def __init__(self, answers: dict[str, list[str]] | None = None) -> None:
        self.answers = answers or {}
        self.lookups: list[str] = []

    async def __call__(self, host: str) -> list[str]:
        self.lookups.append(host)
        if host not in self.answers:
            raise UnexpectedLookup(host)
        return self.answers[host]


class RebindingResolver:
    """A TTL-0 name: each lookup gets the next answer."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def __call__(self, host: str) -> list[str]:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return answer


# Names some vectors use; the internal ones answer what an internal resolver would.
NAMES = {
    "hooks.example.com": [PUBLIC_V4],
    "v6.example.com": [PUBLIC_V6],
    "localhost": ["127.0.0.1"],
    "foo.localhost": ["127.0.0.1"],
    "metadata.google.internal": ["169.254.169.254"],
    "loopback.example.com": ["127.0.0.1"],
    "mixed.example.com": [PUBLIC_V4, "10.0.0.5"],
    "mixed-v6.example.com": [PUBLIC_V6, "fd00::5"],
    "printer.local": ["192.168.1.50"],
    "redis": ["10.0.0.7"],
    "postgres": ["10.0.0.8"],
    "rebind.example.com": ["127.0.0.1"],
}

VECTORS = [
    pytest.param("https://127.0.0.1/", id="01-loopback"),
    pytest.param("https://127.255.255.254/", id="02-loopback-top"),
    pytest.param("https://[::1]/", id="03-ipv6-loopback"),
    pytest.param("https://localhost/", id="04-localhost"),
    pytest.param("https://localhost./", id="05-localhost-trailing-dot"),
    pytest.param("https://LOCALHOST/", id="05b-localhost-upper-case"),
    pytest.param("https://foo.localhost/", id="06-sub-localhost"),
    pytest.param("https://10.0.0.1/", id="07-rfc1918-10"),
    pytest.param("https://172.16.0.1/", id="08-rfc1918-172"),
    pytest.param("https://192.168.1.1/", id="09-rfc1918-192"),
    pytest.param("https://169.254.169.254/latest/meta-data/", id="10-cloud-metadata"),
    pytest.param("https://[fd00:ec2::254]/", id="11-aws-metadata-v6"),
    pytest.param("https://metadata.google.internal/", id="12-gcp-metadata-name"),
    pytest.param("https://100.64.0.1/", id="13-cgnat"),
    pytest.param("https://100.100.100.200/", id="14-alibaba-metadata"),
    pytest.param("https://0.0.0.0/", id="15-zero"),
    pytest.param("https://0/", id="15b-bare-zero"),
    pytest.param("https://[::]/", id="16-ipv6-unspecified"),
    pytest.param("https://224.0.0.1/", id="17-multicast"),
    pytest.param("https://[ff02::1]/", id="18-ipv6-multicast"),
    pytest.param("https://240.0.0.1/", id="19-reserved"),
    pytest.param("https://255.255.255.255/", id="20-broadcast"),
    pytest.param("https://192.0.2.1/", id="21-test-net"),
    pytest.param("https://198.18.0.1/", id="21b-benchmarking"),
    pytest.param("https://[fc00::1]/", id="22-ipv6-ula"),
    pytest.param("https://[fe80::1]/", id="23-ipv6-link-local"),
    pytest.param("https://[::ffff:127.0.0.1]/", id="24-ipv4-mapped"),
    pytest.param("https://[64:ff9b::7f00:1]/", id="25-nat64"),
    pytest.param("https://[64:ff9b:1::7f00:1]/", id="25b-local-nat64"),
    pytest.param("https://[2002:7f00:1::]/", id="26-6to4"),
    pytest.param("https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", id="27-teredo"),
    pytest.param("https://[::127.0.0.1]/", id="28-ipv4-compatible"),
    pytest.param("https://2130706433/", id="29-decimal"),
    pytest.param("https://0x7f000001/", id="30-hex"),
    pytest.param("https://0177.0.0.1/", id="31-octal"),
    pytest.param("https://127.1/", id="32-short-form"),
    pytest.param("http://evil@127.0.0.1/", id="33-userinfo"),
    pytest.param("https://evil@hooks.example.com/", id="33b-userinfo-public"),
    pytest.param("http://evil.example\\@127.0.0.1/", id="34-backslash-userinfo"),
    pytest.param("https://hooks.example.com:6379/", id="35-redis-port"),
    pytest.param("https://hooks.example.com:5432/", id="35b-postgres-port"),
    pytest.param("http://93.184.216.34:6379/", id="35c-literal-redis-port"),
    pytest.param("file:///etc/passwd", id="36-file"),
    pytest.param("gopher://127.0.0.1:6379/_INFO", id="36b-gopher"),
    pytest.param("https://loopback.example.com/", id="38-name-to-loopback"),
    pytest.param("https://mixed.example.com/", id="39-public-and-private"),
    pytest.param("https://mixed-v6.example.com/", id="39b-public-and-private-v6"),
    pytest.param("https://rebind.example.com/", id="40-rebinding-private-at-check"),
    pytest.param("https://redis/", id="41-redis"),
    pytest.param("https://postgres/", id="41b-postgres"),
    pytest.param("https://printer.local/", id="mdns-local"),
    pytest.param(
        "https://\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11/", id="fullwidth-digits"
    ),
    pytest.param("https://127.0.0.1.nip.io.internal/", id="internal-suffix"),
    pytest.param("https:///path-only", id="no-host"),
    pytest.param("https://%31%32%37.0.0.1/", id="percent-encoded-host"),
    pytest.param("https://hooks.example.com:99999/", id="port-out-of-range"),
    pytest.param("https://hooks.example.com:0/", id="port-zero"),
]


@pytest.mark.parametrize("url", VECTORS)
async def test_vector_is_refused(url: str) -> None:
    with pytest.raises(ssrf.UnsafeURL):
        await ssrf.validate_public_url(url, resolve=FakeResolver(NAMES), allow_http=True)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://10.0.0.1/", id="private"),
        pytest.param("https://169.254.169.254/", id="metadata"),
        pytest.param("https://localhost/", id="localhost-name"),
        pytest.param("https://mixed.example.com/", id="public-and-private"),
    ],
)
async def test_loopback_allowance_still_refuses_everything_else(url: str) -> None:
    with pytest.raises(ssrf.UnsafeURL):
        await ssrf.validate_public_url(
            url, resolve=FakeResolver(NAMES), allow_http=True, allow_loopback=True
        )


async def test_unsafe_url_is_invalid_input_so_the_api_answers_422() -> None:
    with pytest.raises(InvalidInput) as refused:
        await ssrf.validate_public_url(
            "https://10.0.0.1/", resolve=FakeResolver(), allow_http=False
        )
    assert refused.value.code == "unsafe_url"


async def test_public_name_is_accepted_with_its_checked_addresses() -> None:
    resolver = FakeResolver(NAMES)
    checked = await ssrf.validate_public_url(
        "https://Hooks.Example.COM./in/hook?x=1#frag", resolve=resolver, allow_http=False
    )
    assert checked == ssrf.CheckedURL(
        scheme="https",
        host="hooks.example.com",
        port=443,
        path="/in/hook",
        query="x=1",
        addresses=(PUBLIC_V4,),
    )
    assert checked.url == "https://hooks.example.com/in/hook?x=1"
    assert checked.target == "/in/hook?x=1"
    assert resolver.lookups == ["hooks.example.com"]


async def test_public_literals_are_accepted_without_a_lookup() -> None:
    resolver = FakeResolver()
    v4 = await ssrf.validate_public_url(
        f"https://{PUBLIC_V4}:443", resolve=resolver, allow_http=False
    )
    v6 = await ssrf.validate_public_url(
        f"https://[{PUBLIC_V6}]/", resolve=resolver, allow_http=False
    )
    assert v4.addresses == (PUBLIC_V4,)
    assert v4.url == f"https://{PUBLIC_V4}/"
    assert v6.url == f"https://[{PUBLIC_V6}]/"
    assert resolver.lookups == []


async def test_international_names_are_idna_encoded_before_the_lookup() -> None:
    resolver = FakeResolver({"xn--bcher-kva.example.com": [PUBLIC_V4]})
    checked = await ssrf.validate_public_url(
        "https://Bücher.example.com/ä", resolve=resolver, allow_http=False
    )
    assert checked.host == "xn--bcher-kva.example.com"
    assert checked.url == "https://xn--bcher-kva.example.com/%C3%A4"


async def test_name_is_resolved_once_and_the_checked_answer_is_kept() -> None:
    # A TTL-0 name that turns private after the check: the sender dials the pinned address.
    resolver = RebindingResolver([PUBLIC_V4], ["127.0.0.1"])
    checked = await ssrf.validate_public_url(
        "https://rebind.example.com/", resolve=resolver, allow_http=False
    )
    assert resolver.calls == 1
    assert checked.addresses == (PUBLIC_V4,)


async def test_http_is_refused_unless_allowed_and_then_only_on_port_80() -> None:
    resolver = FakeResolver(NAMES)
    with pytest.raises(ssrf.UnsafeURL, match="Only https"):
        await ssrf.validate_public_url(
            "http://hooks.example.com/", resolve=resolver, allow_http=False
        )
    checked = await ssrf.validate_public_url(
        "http://hooks.example.com/", resolve=resolver, allow_http=True
    )
    assert checked.port == 80
    with pytest.raises(ssrf.UnsafeURL, match="port"):
        await ssrf.validate_public_url(
            "http://hooks.example.com:8080/", resolve=resolver, allow_http=True
        )
    with pytest.raises(ssrf.UnsafeURL, match="port"):
        await ssrf.validate_public_url(
            "https://hooks.example.com:80/", resolve=resolver, allow_http=True
        )


async def test_loopback_allowance_admits_local_fakes_on_any_port() -> None:
    checked = await ssrf.validate_public_url(
        "http://127.0.0.1:8025/hook", resolve=FakeResolver(), allow_http=True, allow_loopback=True
    )
    assert checked.url == "http://127.0.0.1:8025/hook"
    assert checked.addresses == ("127.0.0.1",)
    v6 = await ssrf.validate_public_url(
        "http://[::1]:9000/", resolve=FakeResolver(), allow_http=True, allow_loopback=True
    )
    assert v6.url == "http://[::1]:9000/"


async def test_url_policy_applies_its_settings() -> None:
    policy = ssrf.URLPolicy(resolve=FakeResolver(NAMES), allow_http=False)
    assert (await policy.check("https://hooks.example.com/")).addresses == (PUBLIC_V4,)
    with pytest.raises(ssrf.UnsafeURL):
        await policy.check("http://hooks.example.com/")


async def test_names_that_do_not_resolve_are_refused() -> None:
    class Failing:
        async def __call__(self, host: str) -> list[str]:
            raise OSError("Name or service not known")

    async def empty(host: str) -> list[str]:
        return []

    async def garbage(host: str) -> list[str]:
        return ["not-an-address"]

    for resolver in (Failing(), empty, garbage):
        with pytest.raises(ssrf.UnsafeURL, match=r"hooks\.example\.com"):
            await ssrf.validate_public_url(
                "https://hooks.example.com/", resolve=resolver, allow_http=False
            )


async def test_refusal_of_a_name_does_not_reveal_what_it_resolves_to() -> None:
    with pytest.raises(ssrf.UnsafeURL) as refused:
        await ssrf.validate_public_url(
            "https://mixed.example.com/", resolve=FakeResolver(NAMES), allow_http=False
        )
    assert "10.0.0.5" not in refused.value.detail
    assert "private" in refused.value.detail


async def test_overlong_urls_are_refused() -> None:
    url = "https://hooks.example.com/" + "a" * ssrf.MAX_URL_LENGTH
    with pytest.raises(ssrf.UnsafeURL, match="2048"):
        await ssrf.validate_public_url(url, resolve=FakeResolver(NAMES), allow_http=False)


async def test_system_resolver_answers_an_address_literal_without_dns() -> None:
    assert await ssrf.system_resolver("127.0.0.1") == ["127.0.0.1"]


# Private, shared, reserved and special-purpose IPv4 space (IANA special-purpose registry).
NON_PUBLIC_V4 = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
]


@st.composite
def non_public_ipv4(draw: st.DrawFn) -> ipaddress.IPv4Address:
    network = ipaddress.IPv4Network(draw(st.sampled_from(NON_PUBLIC_V4)))
    offset = draw(st.integers(min_value=0, max_value=network.num_addresses - 1))
    return network[offset]


@given(address=non_public_ipv4())
async def test_any_non_public_ipv4_is_refused_in_every_disguise(
    address: ipaddress.IPv4Address,
) -> None:
    mapped = ipaddress.IPv6Address(f"::ffff:{address}")
    nat64 = ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | int(address))
    resolver = FakeResolver({"hooks.example.com": [PUBLIC_V4, str(address)]})
    for url in (
        f"https://{address}/",
        f"https://[{mapped}]/",
        f"https://[{nat64}]/",
        "https://hooks.example.com/",
    ):
        with pytest.raises(ssrf.UnsafeURL):
            await ssrf.validate_public_url(url, resolve=resolver, allow_http=True)


@given(address=non_public_ipv4())
def test_address_policy_refuses_non_public_ipv4(address: ipaddress.IPv4Address) -> None:
    assert ssrf.address_problem(address) is not None
    if not address.is_loopback:
        assert ssrf.address_problem(address, allow_loopback=True) is not None


@pytest.mark.parametrize(
    "url",
    [
        "tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/-100123456",
        "discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js",
        "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general",
        "pover://uQiRzpo4DXghDmr9QzzfQu27cmVRsG@azGDORePK8gMaC0QOYAMyEEuzJnyUi",
        "pbul://o.gn5kj6nfhv736I7jC3cj3QLRiyhgl98b",
        "msteams://mycompany/8b3c8e7a-1234/9f8e7d6c/abcdef/",
        "ntfy://my-alerts_1",
        "ntfy://my-alerts?priority=high&mode=cloud",
    ],
)
def test_fixed_host_apprise_urls_are_accepted(url: str) -> None:
    assert ssrf.check_apprise_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("json://127.0.0.1:8080/hook", id="json"),
        pytest.param("jsons://hooks.example.com/hook", id="jsons"),
        pytest.param("xml://10.0.0.1/hook", id="xml"),
        pytest.param("form://169.254.169.254/latest", id="form"),
        pytest.param("https://hooks.slack.com/services/T/B/C", id="https"),
        pytest.param("http://127.0.0.1:6379/", id="http"),
        pytest.param("gotify://10.0.0.1/token", id="gotify-self-hosted"),
        pytest.param("mailto://user:pass@127.0.0.1?smtp=127.0.0.1", id="mailto"),
        pytest.param("ntfy://127.0.0.1:8080/topic", id="ntfy-own-server"),
        pytest.param("ntfy://ntfy.internal/topic", id="ntfy-host-and-topic"),
        pytest.param("ntfy://redis/topic", id="ntfy-single-label-server"),
        pytest.param("ntfy://user:pass@10.0.0.1/topic", id="ntfy-userinfo"),
        pytest.param("ntfy://topic?mode=private", id="ntfy-private-mode"),
        pytest.param("ntfys://10.0.0.1/topic", id="ntfys"),
        pytest.param("tgram:// spaced/token", id="whitespace"),
        pytest.param("tgram://", id="no-tokens"),
        pytest.param("not a url", id="no-scheme"),
    ],
)
def test_apprise_urls_that_can_reach_any_host_are_refused(url: str) -> None:
    with pytest.raises(ssrf.UnsafeURL):
        ssrf.check_apprise_url(url)


def test_production_refuses_the_loopback_allowance() -> None:
    production = {
        "debug": False,
        "secret_key": "x" * 48,
    }
    database_url = "postgresql://marketmon@127.0.0.1/marketmon"
    assert make_settings(database_url, **production).ssrf_allow_loopback is False
    with pytest.raises(ConfigurationError, match="SSRF_ALLOW_LOOPBACK"):
        make_settings(database_url, ssrf_allow_loopback=True, **production)
    assert make_settings(database_url, ssrf_allow_loopback=True).ssrf_allow_loopback is True
