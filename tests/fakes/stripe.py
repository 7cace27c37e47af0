"""A fake Stripe on 127.0.0.1: customers, Checkout Sessions, Billing Portal sessions and
subscription retrieval, plus a webhook sender that signs events as Stripe does.

Speaks the wire format of `external-apis.md` section 5: form-encoded bodies with bracket
keys (lists by numeric index), `Authorization: Bearer sk_test_...`, Stripe-shaped objects
and errors (`{"error": {"type", "code", "message", "param"}}`). It is stricter than Stripe
in one way: a POST without an `Idempotency-Key` is refused, because ours always send one.
A repeated key with the same parameters replays the first answer; with other parameters
it is an `idempotency_error`, as at Stripe.

Built on `tests.fakes.server.FakeHTTPServer` (threaded, on 127.0.0.1, no event loop):

    with StripeFake() as fake:
        settings = make_settings(..., stripe_api_base=fake.base_url,
                                 stripe_secret_key=fake.api_key, ...)
        subscription = fake.set_subscription(customer="cus_1", price=fake.price("pro"))
        payload = stripe_event("customer.subscription.updated", subscription)
        header = sign(payload, WEBHOOK_SECRET)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from tests.fakes.server import FakeHTTPServer, Reply, json_reply

API_KEY = "sk_test_fake_0123456789"
WEBHOOK_SECRET = "whsec_test_fake_secret"
# The endpoint API version of the events we send (the shape after 2025-03-31.basil).
EVENT_API_VERSION = "2026-06-24.dahlia"
PRICES = {
    "starter": "price_test_starter",
    "pro": "price_test_pro",
    "business": "price_test_business",
}
PERIOD_S = 30 * 24 * 3600
Shape = Literal["basil", "legacy"]


@dataclass(frozen=True)
class StripeRequest:
    """One request as received; header names are lower case, `form` is decoded."""

    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, Any]

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")


# --- objects and events -----------------------------------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def subscription_object(
    subscription_id: str,
    *,
    customer: str,
    price: str,
    status: str = "active",
    period_end: int | None = None,
    shape: Shape = "basil",
    metadata: Mapping[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A subscription as Stripe sends it. `basil` puts the period on the items (API
    version 2025-03-31.basil and later); `legacy` puts it at the top level."""
    end = period_end if period_end is not None else int(time.time()) + PERIOD_S
    start = end - PERIOD_S
    item: dict[str, Any] = {
        "id": new_id("si"),
        "object": "subscription_item",
        "price": {
            "id": price,
            "object": "price",
            "active": True,
            "currency": "gbp",
            "recurring": {"interval": "month", "interval_count": 1},
            "type": "recurring",
        },
        "quantity": 1,
        "subscription": subscription_id,
    }
    subscription: dict[str, Any] = {
        "id": subscription_id,
        "object": "subscription",
        "customer": customer,
        "status": status,
        "cancel_at_period_end": False,
        "cancel_at": None,
        "canceled_at": None,
        "ended_at": None,
        "trial_end": None,
        "created": start,
        "livemode": False,
        "metadata": dict(metadata or {}),
        "items": {
            "object": "list",
            "data": [item],
            "has_more": False,
            "url": f"/v1/subscription_items?subscription={subscription_id}",
        },
    }
    if shape == "basil":
        item["current_period_start"] = start
        item["current_period_end"] = end
    else:
        subscription["current_period_start"] = start
        subscription["current_period_end"] = end
        subscription["plan"] = {"id": price, "object": "plan"}
    subscription.update(extra)
    return subscription


def invoice_object(
    *,
    customer: str,
    subscription: str | None,
    status: str = "paid",
    shape: Shape = "basil",
    price: str = PRICES["pro"],
) -> dict[str, Any]:
    """An invoice; `basil` names its subscription under parent.subscription_details."""
    invoice: dict[str, Any] = {
        "id": new_id("in"),
        "object": "invoice",
        "customer": customer,
        "status": status,
        "billing_reason": "subscription_cycle",
        "amount_due": 1500,
        "amount_paid": 1500 if status == "paid" else 0,
        "currency": "gbp",
        "hosted_invoice_url": "https://invoice.stripe.com/i/acct_test/test",
    }
    if shape == "basil":
        invoice["parent"] = {
            "type": "subscription_details",
            "subscription_details": {"subscription": subscription, "metadata": {}},
        }
        invoice["lines"] = {
            "object": "list",
            "data": [{"pricing": {"price_details": {"price": price, "product": "prod_test"}}}],
        }
    else:
        invoice["subscription"] = subscription
        invoice["lines"] = {"object": "list", "data": [{"price": {"id": price}}]}
    return invoice


def stripe_event(
    event_type: str,
    obj: Mapping[str, Any],
    *,
    event_id: str | None = None,
    created: int | None = None,
    api_version: str = EVENT_API_VERSION,
) -> bytes:
    """The raw body of a webhook delivery (an Event envelope)."""
    event = {
        "id": event_id or new_id("evt"),
        "object": "event",
        "api_version": api_version,
        "created": created if created is not None else int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
        "data": {"object": dict(obj), "previous_attributes": {}},
    }
    return json.dumps(event).encode()


def signature(payload: bytes, secret: str, timestamp: int) -> str:
    """Stripe's v1 signature: HMAC-SHA256 hex of "{t}.{body}", keyed with the whole
    `whsec_...` string as UTF-8."""
    signed = f"{timestamp}.".encode() + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(
    payload: bytes,
    secret: str = WEBHOOK_SECRET,
    *,
    timestamp: int | None = None,
    extra_secrets: tuple[str, ...] = (),
    with_v0: bool = False,
) -> str:
    """A `Stripe-Signature` header: `t=...,v1=...`, one more `v1` per extra secret (as
    during a secret rotation) and a fake `v0` as test events carry."""
    t = timestamp if timestamp is not None else int(time.time())
    parts = [f"t={t}"]
    parts.extend(f"v1={signature(payload, key, t)}" for key in (secret, *extra_secrets))
    if with_v0:
        parts.append(f"v0={secrets.token_hex(32)}")
    return ",".join(parts)


def stripe_error(
    status: int,
    message: str,
    *,
    error_type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> Reply:
    error: dict[str, Any] = {"type": error_type, "message": message}
    if code is not None:
        error["code"] = code
    if param is not None:
        error["param"] = param
    headers = {"Request-Id": new_id("req")}
    return _json(status, {"error": error}, headers)


def resource_missing(kind: str, object_id: str, param: str) -> Reply:
    status = 404 if param == "id" else 400
    return stripe_error(
        status,
        f"No such {kind}: '{object_id}'",
        code="resource_missing",
        param=param,
    )


def decode_form(body: str) -> dict[str, Any]:
    """`a[b][0][c]=1` -> {"a": {"b": [{"c": "1"}]}}: Stripe's bracket keys, lists by index."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        names = re.findall(r"[^\[\]]+", key)
        if not names:
            continue
        node = root
        for name in names[:-1]:
            node = node.setdefault(name, {})
        node[names[-1]] = value
    decoded: dict[str, Any] = _lists(root)
    return decoded


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {key: _lists(value) for key, value in node.items()}
    if converted and all(key.isdigit() for key in converted):
        return [converted[key] for key in sorted(converted, key=int)]
    return converted


# --- the server -------------------------------------------------------------------------


class StripeFake(FakeHTTPServer):
    """The fake Stripe API. Configure subscriptions and failures from the test; read what
    it received. Thread-safe."""

    def __init__(self, *, api_key: str = API_KEY, prices: Mapping[str, str] = PRICES) -> None:
        super().__init__()
        self.api_key = api_key
        self.prices = dict(prices)
        self._post_lock = threading.Lock()
        self.customers: dict[str, dict[str, Any]] = {}
        self.checkout_sessions: dict[str, dict[str, Any]] = {}
        self.portal_sessions: dict[str, dict[str, Any]] = {}
        self._subscriptions: dict[str, dict[str, Any]] = {}
        self._idempotent: dict[str, tuple[str, Reply]] = {}
        self._script: deque[tuple[str | None, Reply]] = deque()
        self.requests: list[StripeRequest] = []

    def crash_reply(self, exc: Exception) -> Reply:
        return stripe_error(599, f"fake crashed: {exc!r}", error_type="api_error")

    # --- configuring ------------------------------------------------------------------

    def price(self, plan: str) -> str:
        return self.prices[plan]

    def add_customer(self, email: str = "someone@example.com") -> str:
        customer_id = new_id("cus")
        with self._lock:
            self.customers[customer_id] = _customer(customer_id, {"email": email})
        return customer_id

    def delete_customer(self, customer_id: str) -> None:
        """As if deleted in the dashboard: later requests naming it get resource_missing."""
        with self._lock:
            self.customers.pop(customer_id, None)

    def set_subscription(
        self,
        subscription_id: str | None = None,
        *,
        customer: str,
        price: str,
        status: str = "active",
        period_end: int | None = None,
        shape: Shape = "basil",
        **extra: Any,
    ) -> dict[str, Any]:
        """Create or replace a subscription's current state (what retrieve answers)."""
        sub_id = subscription_id or new_id("sub")
        subscription = subscription_object(
            sub_id,
            customer=customer,
            price=price,
            status=status,
            period_end=period_end,
            shape=shape,
            **extra,
        )
        with self._lock:
            self._subscriptions[sub_id] = subscription
        return _copy(subscription)

    def subscription(self, subscription_id: str) -> dict[str, Any]:
        with self._lock:
            return _copy(self._subscriptions[subscription_id])

    def complete_checkout(
        self, session_id: str, *, status: str = "active", shape: Shape = "basil"
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The customer paid: the session is complete and has a subscription.
        Returns (checkout session, subscription) as the webhook would carry them."""
        with self._lock:
            checkout = self.checkout_sessions[session_id]
        price = checkout["line_items"][0]["price"]
        metadata = (checkout.get("subscription_data") or {}).get("metadata") or {}
        subscription = self.set_subscription(
            customer=checkout["customer"],
            price=price,
            status=status,
            shape=shape,
            metadata=metadata,
        )
        with self._lock:
            checkout.update(
                status="complete",
                payment_status="paid",
                subscription=subscription["id"],
                url=None,
            )
            public = {k: v for k, v in checkout.items() if k not in {"line_items"}}
        return _copy(public), subscription

    def fail(
        self,
        status: int,
        message: str = "fake failure",
        *,
        code: str | None = None,
        error_type: str = "invalid_request_error",
        path: str | None = None,
        times: int = 1,
    ) -> None:
        """The next `times` requests (whose path starts with `path`, if given) get this
        Stripe error instead of an answer."""
        reply = stripe_error(status, message, error_type=error_type, code=code)
        with self._lock:
            self._script.extend([(path, reply)] * times)

    def fail_rate_limited(self, *, path: str | None = None, times: int = 1) -> None:
        self.fail(
            429,
            "Request rate limit exceeded. Learn more about rate limits here "
            "https://stripe.com/docs/rate-limits.",
            code="rate_limit",
            path=path,
            times=times,
        )

    # --- what was received ------------------------------------------------------------

    def calls(self, method: str, path_prefix: str) -> list[StripeRequest]:
        with self._lock:
            return [
                r for r in self.requests if r.method == method and r.path.startswith(path_prefix)
            ]

    # --- serving ----------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        path = urlsplit(target).path
        form = decode_form(body.decode("utf-8", "replace")) if method == "POST" else {}
        request = StripeRequest(method, path, headers, form)
        with self._lock:
            self.requests.append(request)
            scripted = self._scripted(path)
        if scripted is not None:
            return scripted
        problem = self._auth_problem(headers)
        if problem is not None:
            return problem
        if method == "POST":
            content_type = headers.get("content-type", "").split(";")[0].strip()
            if content_type != "application/x-www-form-urlencoded":
                return stripe_error(400, "fake Stripe: POST bodies must be form-encoded")
            key = request.idempotency_key
            if not key:
                return stripe_error(400, "fake Stripe: POST without an Idempotency-Key header")
            # One POST at a time, so two requests with one key cannot both create.
            with self._post_lock:
                return self._idempotent_post(key, path, form)
        return self._route(method, path, form)

    def _idempotent_post(self, key: str, path: str, form: dict[str, Any]) -> Reply:
        fingerprint = json.dumps([path, form], sort_keys=True)
        with self._lock:
            seen = self._idempotent.get(key)
        if seen is not None:
            if seen[0] != fingerprint:
                return stripe_error(
                    400,
                    "Keys for idempotent requests can only be used with the same "
                    "parameters they were first used with.",
                    error_type="idempotency_error",
                )
            replayed = {**seen[1].headers, "Idempotent-Replayed": "true"}
            return Reply(seen[1].status, seen[1].body, replayed)
        reply = self._route("POST", path, form)
        if 200 <= reply.status < 300:
            with self._lock:
                self._idempotent[key] = (fingerprint, reply)
        return reply

    def _scripted(self, path: str) -> Reply | None:
        for index, (prefix, reply) in enumerate(self._script):
            if prefix is None or path.startswith(prefix):
                del self._script[index]
                return reply
        return None

    def _auth_problem(self, headers: dict[str, str]) -> Reply | None:
        authorization = headers.get("authorization", "")
        if not authorization:
            return stripe_error(
                401,
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth.",
            )
        key = authorization.removeprefix("Bearer ")
        if not authorization.startswith("Bearer sk_test_") or key != self.api_key:
            return stripe_error(401, f"Invalid API Key provided: {key[:8]}****{key[-4:]}")
        return None

    def _route(self, method: str, path: str, form: dict[str, Any]) -> Reply:
        if path == "/v1/customers" and method == "POST":
            return self._create_customer(form)
        if path == "/v1/checkout/sessions" and method == "POST":
            return self._create_checkout(form)
        if path == "/v1/billing_portal/sessions" and method == "POST":
            return self._create_portal(form)
        match = re.fullmatch(r"/v1/subscriptions/([^/]+)", path)
        if match and method == "GET":
            with self._lock:
                found = self._subscriptions.get(match.group(1))
            if found is None:
                return resource_missing("subscription", match.group(1), "id")
            return _json(200, found)
        return stripe_error(404, f"Unrecognized request URL ({method}: {path}).")

    def _create_customer(self, form: dict[str, Any]) -> Reply:
        customer_id = new_id("cus")
        customer = _customer(customer_id, form)
        with self._lock:
            self.customers[customer_id] = customer
        return _json(200, customer)

    def _create_checkout(self, form: dict[str, Any]) -> Reply:
        if form.get("mode") != "subscription":
            return stripe_error(
                400, "fake Stripe: only mode=subscription is expected", param="mode"
            )
        line_items = form.get("line_items")
        if not isinstance(line_items, list) or not line_items:
            return stripe_error(
                400, "Missing required param: line_items.", code="parameter_missing"
            )
        for index, item in enumerate(line_items):
            price = item.get("price") if isinstance(item, dict) else None
            if price not in self.prices.values():
                return resource_missing("price", str(price), f"line_items[{index}][price]")
            if not str(item.get("quantity", "")).isdigit() or int(item["quantity"]) < 1:
                return stripe_error(
                    400,
                    "Invalid quantity",
                    code="parameter_invalid_integer",
                    param=f"line_items[{index}][quantity]",
                )
        for url_param in ("success_url", "cancel_url"):
            if not str(form.get(url_param, "")).startswith(("http://", "https://")):
                return stripe_error(
                    400,
                    f"Missing required param: {url_param}.",
                    code="parameter_missing",
                    param=url_param,
                )
        customer = form.get("customer")
        with self._lock:
            known = customer in self.customers
        if customer is not None and not known:
            return resource_missing("customer", str(customer), "customer")
        session_id = new_id("cs_test")
        checkout: dict[str, Any] = {
            "id": session_id,
            "object": "checkout.session",
            "mode": "subscription",
            "status": "open",
            "payment_status": "unpaid",
            "customer": customer,
            "customer_email": form.get("customer_email"),
            "client_reference_id": form.get("client_reference_id"),
            "metadata": form.get("metadata") or {},
            "subscription": None,
            "success_url": form["success_url"],
            "cancel_url": form["cancel_url"],
            "url": f"https://checkout.stripe.com/c/pay/{session_id}",
            "livemode": False,
        }
        with self._lock:
            self.checkout_sessions[session_id] = {
                **checkout,
                "line_items": line_items,
                "subscription_data": form.get("subscription_data") or {},
            }
        return _json(200, checkout)

    def _create_portal(self, form: dict[str, Any]) -> Reply:
        customer = form.get("customer")
        if not customer:
            return stripe_error(
                400,
                "Missing required param: customer.",
                code="parameter_missing",
                param="customer",
            )
        with self._lock:
            known = customer in self.customers
        if not known:
            return resource_missing("customer", str(customer), "customer")
        portal_id = new_id("bps")
        portal = {
            "id": portal_id,
            "object": "billing_portal.session",
            "customer": customer,
            "livemode": False,
            "return_url": form.get("return_url"),
            "url": f"https://billing.stripe.com/p/session/test_{secrets.token_hex(16)}",
        }
        with self._lock:
            self.portal_sessions[portal_id] = portal
        return _json(200, portal)


def _copy(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy, as a client would see it (no shared state with the fake)."""
    copied: dict[str, Any] = json.loads(json.dumps(obj))
    return copied


def _customer(customer_id: str, form: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": customer_id,
        "object": "customer",
        "email": form.get("email"),
        "name": form.get("name"),
        "metadata": form.get("metadata") or {},
        "created": int(time.time()),
        "livemode": False,
    }


def _json(status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> Reply:
    return json_reply(status, body, {"Request-Id": new_id("req"), **(headers or {})})
