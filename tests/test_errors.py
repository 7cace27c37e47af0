"""Cross-cutting HTTP behaviour: JSON errors, body limits, request ids, CORS, the docs."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.main import create_app
from tests.conftest import make_settings
from tests.factories import DEFAULT_PASSWORD

AUTH = "/api/v1/auth"
MIB = 1024 * 1024
JSON_HEADERS = {"content-type": "application/json"}

ClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def bare_client(tmp_path: Path) -> ClientFactory:
    """Clients for apps whose requests never reach a database (the file is never created)."""

    @asynccontextmanager
    async def open_client(
        *, raise_app_exceptions: bool = True, routes: dict[str, Any] | None = None, **overrides: Any
    ) -> AsyncIterator[httpx.AsyncClient]:
        settings = make_settings(
            f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}",
            load_templates_on_startup=False,
            **overrides,
        )
        app = create_app(settings)
        for path, endpoint in (routes or {}).items():
            app.add_api_route(path, endpoint, methods=["GET"])
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                yield http
        finally:
            await app.state.engine.dispose()

    return open_client


async def _chunks(total: int, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        chunk = min(size, total - sent)
        yield b" " * chunk
        sent += chunk


def _padded_login(total: int) -> bytes:
    """A valid login body padded with JSON whitespace to exactly `total` bytes."""
    body = b'{"email": "nobody@example.com", "password": "whatever-1"}'
    return body[:-1] + b" " * (total - len(body)) + b"}"


# --- JSON error bodies ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/nope", "/api/v1/nope", "/api/v1/auth/nope"])
async def test_an_unknown_route_is_a_json_404(bare_client: ClientFactory, path: str) -> None:
    async with bare_client() as http:
        response = await http.get(path)

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": "Not Found", "code": "not_found"}


@pytest.mark.parametrize(("method", "path"), [("TRACE", "/health"), ("DELETE", f"{AUTH}/login")])
async def test_an_unsupported_method_is_a_json_405(
    bare_client: ClientFactory, method: str, path: str
) -> None:
    async with bare_client() as http:
        response = await http.request(method, path)

    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed", "code": "method_not_allowed"}
    assert "allow" in response.headers


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("OPTIONS", "/api/v1/users/me", "DELETE, GET, PATCH, PUT"),
        ("DELETE", "/api/v1/searches/", "GET, POST"),
        ("POST", f"/api/v1/searches/{uuid.uuid4()}", "DELETE, GET, PATCH, PUT"),
    ],
)
async def test_a_405_names_every_method_of_the_path(
    bare_client: ClientFactory, method: str, path: str, allowed: str
) -> None:
    # Starlette named only the methods of the first route on the path ("Allow: GET").
    async with bare_client() as http:
        response = await http.request(method, path)

    assert response.status_code == 405
    assert response.headers["allow"] == allowed


async def test_a_body_that_is_not_utf8_is_a_documented_400(bare_client: ClientFactory) -> None:
    async with bare_client() as http:
        response = await http.post(f"{AUTH}/login", content=b"\xff\xfe{", headers=JSON_HEADERS)
        documented = (await http.get("/api/v1/openapi.json")).json()

    assert response.status_code == 400
    assert response.json()["code"] == "bad_request"
    assert "400" in documented["paths"][f"{AUTH}/login"]["post"]["responses"]


@pytest.mark.parametrize(
    "body", [b'{"email": ', b"{'email': 'x'}", b"not json at all", b'{"email": "a"}}']
)
async def test_malformed_json_is_a_422(bare_client: ClientFactory, body: bytes) -> None:
    async with bare_client() as http:
        response = await http.post(f"{AUTH}/login", content=body, headers=JSON_HEADERS)

    assert response.status_code == 422
    payload = response.json()
    assert payload["code"] == "validation_error"
    assert all(set(error) == {"loc", "msg", "type"} for error in payload["detail"])


@pytest.mark.parametrize("body", [b"[]", b'"a string"', b"42", b"null"])
async def test_a_body_that_is_not_an_object_is_a_422(
    bare_client: ClientFactory, body: bytes
) -> None:
    async with bare_client() as http:
        response = await http.post(f"{AUTH}/login", content=body, headers=JSON_HEADERS)

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("register", {"email": "x@example.com", "password": "SECRET-" + "9" * 130}),
        ("register", {"email": "x@example.com", "password": "SECRET-1", "admin": "SECRET-2"}),
        ("register", {"email": "SECRET-not-an-email", "password": "SECRET-long-enough"}),
        ("register", {"email": "x@example.com", "password": ["SECRET-in-a-list"]}),
        ("login", {"email": "x@example.com", "password": "SECRET-" + "9" * 1100}),
        ("login", {"email": "x@example.com", "password": "SECRET-\u0000-nul"}),
        ("login", {"email": "x@example.com", "password": "SECRET-1", "otp": "SECRET-2"}),
    ],
)
async def test_validation_errors_never_echo_the_submitted_values(
    bare_client: ClientFactory, path: str, body: dict[str, Any]
) -> None:
    async with bare_client() as http:
        response = await http.post(f"{AUTH}/{path}", json=body)

    assert response.status_code == 422
    assert "SECRET" not in response.text
    assert all(set(error) == {"loc", "msg", "type"} for error in response.json()["detail"])


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("register", {"email": "x@example.com", "password": "long-enough", "full_name": "A\x00B"}),
        ("register", {"email": "x\x00@example.com", "password": "long-enough"}),
        ("register", {"email": "x@example.com", "password": "long-enough\x00"}),
        ("login", {"email": "owner@example.com\x00", "password": DEFAULT_PASSWORD}),
        ("login", {"email": "owner@example.com", "password": "\x00"}),
        ("refresh", {"refresh_token": "abc\x00def"}),
        ("logout", {"refresh_token": "\x00"}),
        ("login", {"email\x00": "owner@example.com", "password": DEFAULT_PASSWORD}),
    ],
)
async def test_a_nul_byte_in_any_json_string_is_a_422_not_a_500(
    client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    response = await client.post(f"{AUTH}/{path}", json=body)

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"


async def test_a_nul_byte_in_the_form_login_username_is_a_plain_failed_login(
    client: httpx.AsyncClient,
) -> None:
    """The OAuth2 form is not an InputModel; PostgreSQL would refuse to compare the text."""
    response = await client.post(
        f"{AUTH}/token", data={"username": "owner\x00@example.com", "password": "x"}
    )

    assert response.status_code == 401, response.text


@pytest.mark.parametrize("field", ["email", "password"])
async def test_a_lone_surrogate_in_a_json_string_is_a_422(
    bare_client: ClientFactory, field: str
) -> None:
    values = {"email": '"x@example.com"', "password": '"long-enough"'}
    values[field] = '"\\ud800"'
    body = f'{{"email": {values["email"]}, "password": {values["password"]}}}'.encode()

    async with bare_client() as http:
        response = await http.post(f"{AUTH}/register", content=body, headers=JSON_HEADERS)

    assert response.status_code == 422


# --- body size -----------------------------------------------------------------------------


async def test_a_body_over_1_mib_is_refused_by_its_content_length(
    bare_client: ClientFactory,
) -> None:
    async with bare_client() as http:
        response = await http.post(
            f"{AUTH}/login", content=_padded_login(MIB + 1), headers=JSON_HEADERS
        )

    assert response.status_code == 413
    assert response.json()["code"] == "body_too_large"


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("login", "application/json"), ("token", "application/x-www-form-urlencoded")],
)
async def test_a_streamed_body_over_1_mib_without_content_length_is_refused(
    bare_client: ClientFactory, path: str, content_type: str
) -> None:
    async with bare_client() as http:
        request = http.build_request(
            "POST",
            f"{AUTH}/{path}",
            content=_chunks(MIB + 1),
            headers={"content-type": content_type},
        )
        assert "content-length" not in request.headers
        response = await http.send(request)

    assert response.status_code == 413, response.text
    assert response.json()["code"] == "body_too_large"


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_body_of_exactly_1_mib_is_accepted(
    client: httpx.AsyncClient, streamed: bool
) -> None:
    body = _padded_login(MIB)

    async def stream() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 100_000):
            yield body[start : start + 100_000]

    response = await client.post(
        f"{AUTH}/login", content=stream() if streamed else body, headers=JSON_HEADERS
    )

    assert response.status_code == 401, response.text  # read in full, then an unknown user


@pytest.mark.parametrize("declared", ["abc", "-1", "1e3", " 12", "0x10", "١٢"])
async def test_an_invalid_content_length_is_a_400(
    bare_client: ClientFactory, declared: str
) -> None:
    async with bare_client() as http:
        request = http.build_request("POST", f"{AUTH}/login", content=b"{}", headers=JSON_HEADERS)
        request.headers["content-length"] = declared.encode("utf-8").decode("latin-1")
        response = await http.send(request)

    assert response.status_code == 400
    assert response.json() == {"detail": "Invalid Content-Length header", "code": "bad_request"}


# --- unexpected errors ---------------------------------------------------------------------


async def test_an_unexpected_exception_is_a_bare_json_500(bare_client: ClientFactory) -> None:
    async def explode() -> None:
        raise RuntimeError("password=hunter2 at /srv/app/secret.py line 7")

    async with bare_client(raise_app_exceptions=False, routes={"/boom": explode}) as http:
        response = await http.get("/boom", headers={"X-Request-ID": "trace-me-42"})

    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error", "code": "internal_error"}
    for leak in ("Traceback", "RuntimeError", "hunter2", "secret.py"):
        assert leak not in response.text
    assert response.headers["x-request-id"] == "trace-me-42"


# --- request ids ---------------------------------------------------------------------------


@pytest.mark.parametrize("incoming", ["abc-123", "0f8fad5b.d9cb_469f", "A" * 64])
async def test_a_well_formed_request_id_is_echoed(
    bare_client: ClientFactory, incoming: str
) -> None:
    async with bare_client() as http:
        response = await http.get("/health", headers={"X-Request-ID": incoming})

    assert response.headers["x-request-id"] == incoming


@pytest.mark.parametrize(
    "incoming",
    ["abc\ndef", "abc\r\nSet-Cookie: session=1", "A" * 200, "a b", "<script>", "", "id;drop"],
)
async def test_a_malformed_request_id_is_replaced(
    bare_client: ClientFactory, incoming: str
) -> None:
    async with bare_client() as http:
        response = await http.get("/health", headers={"X-Request-ID": incoming})

    replaced = response.headers["x-request-id"]
    assert replaced != incoming
    assert re.fullmatch(r"[0-9a-f]{32}", replaced)
    assert "set-cookie" not in response.headers


async def test_every_response_carries_a_fresh_request_id(bare_client: ClientFactory) -> None:
    async with bare_client() as http:
        responses = [
            await http.get("/health"),
            await http.get("/nope"),
            await http.request("TRACE", "/health"),
            await http.post(f"{AUTH}/login", content=b"{", headers=JSON_HEADERS),
            await http.post(f"{AUTH}/login", content=_padded_login(MIB + 1), headers=JSON_HEADERS),
            await http.post(f"{AUTH}/login", content=_chunks(MIB + 1), headers=JSON_HEADERS),
            await http.post(f"{AUTH}/login", content=b"{}", headers={"content-length": "x"}),
            await http.get("/api/v1/openapi.json"),
        ]

    ids = [r.headers.get("x-request-id") for r in responses]
    assert all(ids), ids
    assert len(set(ids)) == len(ids)


# --- CORS ----------------------------------------------------------------------------------


def _preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }


async def test_cors_preflight_is_answered_for_an_allowed_origin_only(
    bare_client: ClientFactory,
) -> None:
    async with bare_client(cors_origins=["https://app.example.com"]) as http:
        allowed = await http.options(f"{AUTH}/login", headers=_preflight("https://app.example.com"))
        refused = await http.options(f"{AUTH}/login", headers=_preflight("https://evil.example"))
        lookalike = await http.options(
            f"{AUTH}/login", headers=_preflight("https://app.example.com.evil.example")
        )

    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "POST" in allowed.headers["access-control-allow-methods"]
    for response in (refused, lookalike):
        assert "access-control-allow-origin" not in response.headers


async def test_cors_headers_reach_only_the_allowed_origin_on_simple_requests(
    bare_client: ClientFactory,
) -> None:
    async with bare_client(cors_origins=["https://app.example.com"]) as http:
        allowed = await http.get("/health", headers={"Origin": "https://app.example.com"})
        refused = await http.get("/health", headers={"Origin": "https://evil.example"})

    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "x-request-id" in allowed.headers["access-control-expose-headers"].lower()
    assert "access-control-allow-origin" not in refused.headers


async def test_no_cors_headers_without_configured_origins(bare_client: ClientFactory) -> None:
    async with bare_client() as http:
        preflight = await http.options(
            f"{AUTH}/login", headers=_preflight("https://app.example.com")
        )
        simple = await http.get("/health", headers={"Origin": "https://app.example.com"})

    for response in (preflight, simple):
        assert not [h for h in response.headers if h.startswith("access-control-")]


# --- docs ----------------------------------------------------------------------------------


async def test_the_interactive_docs_and_the_schema_are_served(bare_client: ClientFactory) -> None:
    async with bare_client() as http:
        docs = await http.get("/api/v1/docs")
        schema = await http.get("/api/v1/openapi.json")

    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for route in ("register", "login", "token", "refresh", "logout"):
        assert f"{AUTH}/{route}" in paths
    assert "401" in paths[f"{AUTH}/login"]["post"]["responses"]
    assert "429" in paths[f"{AUTH}/login"]["post"]["responses"]
