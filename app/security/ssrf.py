"""The gatekeeper for user-supplied URLs (webhooks, feeds, Apprise): nothing private is reachable.

A URL is parsed once; the name is normalised and screened, resolved once, and every address
it resolves to must be public. The result (`CheckedURL`) carries the addresses that were
checked, so a sender dials exactly those (with the name as Host header and TLS SNI) and a
DNS answer that changes between the check and the send cannot redirect it.

`post_json_safely` (webhooks) and `get_safely` (feeds) are those senders, and the only way
user URLs are called: they check the URL again at send time, dial the checked address,
read at most a capped prefix of the answer, and either never follow redirects (POST) or
check every redirect target like the URL itself (GET).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import SplitResult, parse_qsl, quote, urljoin, urlsplit

import httpx

from app.errors import InvalidInput

Resolver = Callable[[str], Awaitable[list[str]]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
RESOLVE_TIMEOUT_S = 5.0
DEFAULT_PORTS = {"https": 443, "http": 80}
CONNECT_TIMEOUT_S = 5.0
MAX_RESPONSE_BYTES = 64 * 1024
MAX_REDIRECTS = 3
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

# Names that only ever mean something inside a network (RFC 6761, RFC 8375, ICANN's
# .internal) or are common private conventions; no public service lives under them.
_PRIVATE_NAME_SUFFIXES = frozenset(
    {"localhost", "local", "internal", "localdomain", "arpa", "lan", "home", "corp", "intranet"}
)
# Ranges that embed or tunnel to another address (NAT64, 6to4, Teredo, IPv4-compatible),
# plus ones that older Pythons call global although they are not.
_DENIED_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "64:ff9b::/96",
        "64:ff9b:1::/48",
        "2002::/16",
        "2001::/32",
        "::/96",
        "fec0::/10",
        "192.0.0.0/24",
        "192.88.99.0/24",
    )
)
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$")
# Backslashes and controls are read differently by different URL parsers; refuse them.
_AMBIGUOUS_CHARACTERS = re.compile(r"[\x00-\x20\x7f\\]")

# Apprise delivers these through fixed, public hosts it builds itself; every other scheme
# (json://, xml://, form://, gotify://, mailto://, ...) can point at any host.
APPRISE_FIXED_HOST_SCHEMES = frozenset(
    {"tgram", "discord", "slack", "pover", "pbul", "msteams", "ntfy"}
)
_NTFY_TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_NTFY_SERVER_REFUSED = "Own ntfy servers are not allowed, only public ntfy.sh topics (ntfy://topic)"


class UnsafeURL(InvalidInput):
    """The URL is malformed or could reach a private, local or otherwise non-public address."""

    code = "unsafe_url"


@dataclass(frozen=True)
class CheckedURL:
    """A URL that passed the check, with the addresses it resolved to at that moment."""

    scheme: str
    host: str  # lowercase ASCII (IDNA) name, or an IP literal without brackets
    port: int
    path: str  # never empty; non-ASCII percent-encoded
    query: str
    addresses: tuple[str, ...]

    @property
    def target(self) -> str:
        """The request target: path and query."""
        return f"{self.path}?{self.query}" if self.query else self.path

    @property
    def url(self) -> str:
        """The normalised URL, as stored and shown."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if DEFAULT_PORTS.get(self.scheme) == self.port else f":{self.port}"
        return f"{self.scheme}://{host}{port}{self.target}"


@dataclass(frozen=True)
class URLPolicy:
    """The resolver and strictness to check user URLs with, so callers pass one value."""

    resolve: Resolver
    allow_http: bool = False
    allow_loopback: bool = False

    async def check(self, url: str) -> CheckedURL:
        """`validate_public_url` under this policy."""
        return await validate_public_url(
            url,
            resolve=self.resolve,
            allow_http=self.allow_http,
            allow_loopback=self.allow_loopback,
        )


@dataclass(frozen=True)
class SafeResponse:
    """What a user's endpoint answered: enough to judge a delivery, never to show in full."""

    status_code: int
    headers: httpx.Headers
    body_prefix: bytes  # at most the cap, as sent (still content-encoded, never decoded)
    elapsed_s: float
    url: str = ""  # the checked URL that gave this answer (after redirects, for GET)

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300


async def system_resolver(host: str) -> list[str]:
    """The operating system's answer for `host`: its addresses, without duplicates."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def validate_public_url(
    url: str, *, resolve: Resolver, allow_http: bool, allow_loopback: bool = False
) -> CheckedURL:
    """Check that `url` is an https (or, with `allow_http`, http) URL on the default port
    whose host is public and resolves only to public addresses.

    `allow_loopback` (local test servers only) also admits 127.0.0.0/8, ::1 and any port.
    Resolves the name exactly once. Raises UnsafeURL with the reason.
    """
    scheme, host, port, path, query = _parse(url, allow_http=allow_http)
    if not allow_loopback and port != DEFAULT_PORTS[scheme]:
        raise UnsafeURL(f"Only the default {scheme} port ({DEFAULT_PORTS[scheme]}) is allowed")
    literal = _ip_literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        _check_name(host)
        addresses = await _resolve(host, resolve)
    for address in addresses:
        problem = address_problem(address, allow_loopback=allow_loopback)
        if problem is not None:
            # Name the address only when the user typed it: echoing what an internal name
            # resolves to would turn this check into a DNS oracle.
            subject = f"{address} is" if literal is not None else f"{host} resolves to"
            raise UnsafeURL(f"{subject} {problem}; only public addresses are allowed")
    return CheckedURL(
        scheme=scheme,
        host=host,
        port=port,
        path=path,
        query=query,
        addresses=tuple(str(address) for address in addresses),
    )


async def post_json_safely(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    policy: URLPolicy,
    timeout_s: float,
    max_response_bytes: int = MAX_RESPONSE_BYTES,
) -> SafeResponse:
    """POST `body` to a user-supplied URL without ever reaching a non-public address.

    The URL is checked under `policy` now, whatever it resolved to when it was saved
    (UnsafeURL, before any connection). The request goes to the checked addresses, in
    order and the next one only when no connection could be made, with the name as Host
    header and as TLS server name (certificates are verified against the name). A redirect
    comes back as it is. `timeout_s` bounds the whole exchange, connecting alone 5 s; at
    most `max_response_bytes` of the answer are read.

    Raises UnsafeURL, httpx.TimeoutException when time runs out, httpx.TransportError when
    no connection could be made or it broke, and ValueError for a `client` that reads
    proxy settings from the environment (a proxy would resolve and connect on its own).
    """
    if client.trust_env:
        raise ValueError("post_json_safely needs an httpx client built with trust_env=False")
    checked = await policy.check(url)
    exchange = _Exchange(client, timeout_s, max_response_bytes)
    try:
        async with asyncio.timeout(timeout_s):
            return await exchange.send("POST", checked, body, headers)
    except TimeoutError as exc:
        raise httpx.TimeoutException(f"No complete answer within {timeout_s:g} s") from exc


async def get_safely(
    client: httpx.AsyncClient,
    url: str,
    headers: Mapping[str, str],
    *,
    policy: URLPolicy,
    timeout_s: float,
    max_response_bytes: int = MAX_RESPONSE_BYTES,
    max_redirects: int = MAX_REDIRECTS,
) -> SafeResponse:
    """GET a user-supplied URL (a feed) without ever reaching a non-public address.

    Like `post_json_safely`: checked under `policy` now, sent to the checked addresses with
    the name as Host and TLS server name, the answer read up to `max_response_bytes`
    (never decompressed), `timeout_s` for everything including redirects. A redirect is
    followed only after its target passed the same check, at most `max_redirects` times;
    after that the redirect itself comes back. Raises what `post_json_safely` raises.
    """
    if client.trust_env:
        raise ValueError("get_safely needs an httpx client built with trust_env=False")
    checked = await policy.check(url)
    exchange = _Exchange(client, timeout_s, max_response_bytes)
    try:
        async with asyncio.timeout(timeout_s):
            for hop in range(max_redirects + 1):
                response = await exchange.send("GET", checked, None, headers)
                location = response.headers.get("Location")
                if response.status_code not in REDIRECT_STATUSES or not location:
                    return response
                if hop == max_redirects:
                    return response
                # A target the user never typed is checked exactly like one they did.
                try:
                    target = urljoin(checked.url, location)
                except ValueError as exc:
                    raise UnsafeURL("The redirect points to a malformed URL") from exc
                checked = await policy.check(target)
    except TimeoutError as exc:
        raise httpx.TimeoutException(f"No complete answer within {timeout_s:g} s") from exc
    raise AssertionError("unreachable")  # pragma: no cover


class _Exchange:
    """One request to a checked URL: its addresses in order, a capped read of the answer."""

    def __init__(self, client: httpx.AsyncClient, timeout_s: float, max_bytes: int) -> None:
        self.client = client
        self.timeout = httpx.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s))
        self.max_bytes = max_bytes
        self.started = time.monotonic()

    async def send(
        self, method: str, checked: CheckedURL, body: bytes | None, headers: Mapping[str, str]
    ) -> SafeResponse:
        last = len(checked.addresses) - 1
        for index, address in enumerate(checked.addresses):
            request = _pinned_request(
                self.client, method, checked, address, body, headers, self.timeout
            )
            try:
                response = await self.client.send(request, stream=True, follow_redirects=False)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                if index == last:
                    raise
                continue
            try:
                prefix = await _read_prefix(response, self.max_bytes)
            finally:
                await response.aclose()
            return SafeResponse(
                status_code=response.status_code,
                headers=response.headers,
                body_prefix=prefix,
                elapsed_s=time.monotonic() - self.started,
                url=checked.url,
            )
        raise httpx.ConnectError(f"{checked.host} has no address to connect to")


def address_problem(address: IPAddress, *, allow_loopback: bool = False) -> str | None:
    """Why a connection to `address` is not allowed ("a private address", ...), or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if allow_loopback and address.is_loopback:
        return None
    if address.is_loopback:
        return "a loopback address"
    if address.is_unspecified:
        return "an unspecified address"
    if any(address in network for network in _DENIED_NETWORKS):
        return "a translated, tunnelled or special-purpose address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private or getattr(address, "is_site_local", False):
        return "a private or special-purpose address"
    if not address.is_global:
        return "a non-routable address"
    return None


def check_apprise_url(url: str) -> str:
    """Return `url` when it is an Apprise URL of a fixed-host service; raise UnsafeURL if not.

    Only schemes whose host Apprise fixes itself are accepted; ntfy only in its public
    ntfy.sh form (`ntfy://topic`), since `ntfy://host/topic` posts to any server.
    """
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeURL(f"Apprise URLs are limited to {MAX_URL_LENGTH} characters")
    if _AMBIGUOUS_CHARACTERS.search(url):
        raise UnsafeURL("Apprise URLs must not contain spaces, control characters or backslashes")
    scheme, separator, _ = url.partition("://")
    scheme = scheme.lower()
    if not separator or scheme not in APPRISE_FIXED_HOST_SCHEMES:
        allowed = ", ".join(f"{name}://" for name in sorted(APPRISE_FIXED_HOST_SCHEMES))
        shown = f"{scheme}://" if separator and len(scheme) <= 20 else "this URL"
        raise UnsafeURL(f"Apprise scheme {shown} is not allowed; use one of {allowed}")
    parts = _split(url)
    if not parts.netloc:
        raise UnsafeURL(f"{scheme}:// URL has no service tokens")
    if scheme == "ntfy":
        _check_ntfy(parts.netloc, parts.path, parts.query)
    return url


def _check_ntfy(netloc: str, path: str, query: str) -> None:
    if not _NTFY_TOPIC.match(netloc) or path not in ("", "/"):
        raise UnsafeURL(_NTFY_SERVER_REFUSED)
    modes = {value.lower() for key, value in parse_qsl(query) if key.lower() == "mode"}
    if modes - {"cloud"}:
        raise UnsafeURL(_NTFY_SERVER_REFUSED)


def _pinned_request(
    client: httpx.AsyncClient,
    method: str,
    checked: CheckedURL,
    address: str,
    body: bytes | None,
    headers: Mapping[str, str],
    timeout: httpx.Timeout,
) -> httpx.Request:
    """A request to `address` itself that still names the host the user gave."""
    literal = f"[{address}]" if ":" in address else address
    request = client.build_request(
        method,
        f"{checked.scheme}://{literal}:{checked.port}{checked.target}",
        content=body,
        headers={
            **headers,
            "Host": _host_header(checked),
            # Compressed answers could inflate far beyond the cap once decoded.
            "Accept-Encoding": "identity",
            # Pooled connections are keyed by address alone: a connection whose certificate
            # was checked for one name must never carry a request for another name.
            "Connection": "close",
        },
        timeout=timeout,
        extensions={"sni_hostname": checked.host},
    )
    # Cookies one user's endpoint set must never travel to another user's endpoint.
    request.headers.pop("Cookie", None)
    return request


def _host_header(checked: CheckedURL) -> str:
    host = f"[{checked.host}]" if ":" in checked.host else checked.host
    return host if DEFAULT_PORTS[checked.scheme] == checked.port else f"{host}:{checked.port}"


async def _read_prefix(response: httpx.Response, limit: int) -> bytes:
    prefix = bytearray()
    if limit <= 0:
        return bytes(prefix)
    # The caller closes the response, which drops whatever was not read.
    async for chunk in response.aiter_raw():
        prefix += chunk[: limit - len(prefix)]
        if len(prefix) >= limit:
            break
    return bytes(prefix)


def _parse(url: str, *, allow_http: bool) -> tuple[str, str, int, str, str]:
    """(scheme, normalised host, port, path, query) of an http(s) URL, or UnsafeURL."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeURL(f"URLs are limited to {MAX_URL_LENGTH} characters")
    if _AMBIGUOUS_CHARACTERS.search(url):
        raise UnsafeURL("URLs must not contain spaces, control characters or backslashes")
    parts = _split(url)
    scheme = parts.scheme.lower()
    allowed = ("https", "http") if allow_http else ("https",)
    if scheme not in allowed:
        raise UnsafeURL(f"Only {' or '.join(allowed)} URLs are allowed")
    if "@" in parts.netloc:
        raise UnsafeURL("URLs must not contain a user name or password")
    try:
        raw_port = parts.port
    except ValueError as exc:
        raise UnsafeURL("The port is not a number between 0 and 65535") from exc
    host = _normalise_host(parts.hostname or "", bracketed=parts.netloc.startswith("["))
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    query = quote(parts.query, safe="/?%:@!$&'()*+,;=-._~")
    port = DEFAULT_PORTS[scheme] if raw_port is None else raw_port
    return scheme, host, port, path, query


def _split(url: str) -> SplitResult:
    # urlsplit refuses unbalanced or non-IPv6 brackets ("https://[zz]/", "https://a]b/").
    try:
        return urlsplit(url)
    except ValueError as exc:
        raise UnsafeURL(
            "This is not a well-formed URL (check the brackets around the host)"
        ) from exc


def _normalise_host(hostname: str, *, bracketed: bool) -> str:
    """Lowercase, IDNA-encode and strip one trailing dot; IPv6 literals come back bare."""
    if not hostname:
        raise UnsafeURL("The URL has no host")
    if bracketed:
        try:
            return str(ipaddress.IPv6Address(hostname))
        except ValueError as exc:
            raise UnsafeURL("The bracketed host is not an IPv6 address") from exc
    try:
        host = hostname.lower().encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise UnsafeURL("The host name is not a valid internationalised name") from exc
    return host.removesuffix(".")


def _ip_literal(host: str) -> IPAddress | None:
    """The address when `host` is a canonical IP literal; UnsafeURL for other numeric hosts."""
    if ":" in host:
        return ipaddress.IPv6Address(host)  # already validated by _normalise_host
    labels = host.split(".")
    if not _NUMERIC_LABEL.match(labels[-1]):
        return None
    # Decimal (2130706433), hex (0x7f000001), octal (0177.0.0.1) and short (127.1) forms
    # all reach 127.0.0.1 through getaddrinfo; only the dotted-quad form is unambiguous.
    try:
        return ipaddress.IPv4Address(host)
    except ValueError as exc:
        raise UnsafeURL("Numeric hosts must be dotted-quad IPv4 addresses") from exc


def _check_name(host: str) -> None:
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise UnsafeURL("The host name is not a valid DNS name")
    if labels[-1] in _PRIVATE_NAME_SUFFIXES:
        raise UnsafeURL(f"{host} is a local or private name, not allowed")
    if len(labels) < 2:
        raise UnsafeURL("Single-label host names (such as redis) are not allowed")


async def _resolve(host: str, resolve: Resolver) -> list[IPAddress]:
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            answers = await resolve(host)
    except (OSError, TimeoutError) as exc:
        raise UnsafeURL(f"{host} could not be resolved") from exc
    if not answers:
        raise UnsafeURL(f"{host} could not be resolved")
    addresses: list[IPAddress] = []
    for answer in answers:
        try:
            addresses.append(ipaddress.ip_address(answer))
        except ValueError as exc:
            raise UnsafeURL(f"{host} resolves to something that is not an address") from exc
    return addresses
