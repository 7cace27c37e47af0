"""Standard Webhooks signatures for our outbound webhooks: secrets, signing and headers.

Signed content is `"{webhook-id}.{webhook-timestamp}.{body}"` over the exact body bytes,
keyed with the base64-decoded part of a `whsec_...` secret; the `webhook-signature` header
carries one `v1,<base64 HMAC-SHA256>` entry per secret, space-separated, so that during a
rotation receivers holding either the old or the new secret can verify.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from secrets import token_bytes

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
SIGNATURE_VERSION = "v1"


def generate_secret() -> str:
    """A new signing secret: `whsec_` and base64 of 32 random bytes (shown to its owner once)."""
    return SECRET_PREFIX + base64.b64encode(token_bytes(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_...` secret (the prefix is optional, as the reference library
    accepts bare base64 too). Raises ValueError when it is not base64 or decodes to nothing."""
    encoded = secret.removeprefix(SECRET_PREFIX).strip()
    # Unpadded base64 is common in hand-copied secrets; padding it changes nothing else.
    encoded += "=" * (-len(encoded) % 4)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("The webhook secret is not valid base64") from exc
    if not key:
        raise ValueError("The webhook secret is empty")
    return key


def sign(secrets: str | Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value: `v1,<base64>` for each secret (in order, without
    duplicates), space-separated.

    `timestamp` is the attempt's unix time in seconds. Raises ValueError for no secrets, a
    malformed secret, or an id or timestamp that would make the signed content ambiguous.
    """
    keys = [secret_key(secret) for secret in _secret_list(secrets)]
    if not keys:
        raise ValueError("At least one webhook secret is needed to sign")
    content = _signed_content(msg_id, timestamp, body)
    signatures = (
        f"{SIGNATURE_VERSION},"
        + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode("ascii")
        for key in keys
    )
    return " ".join(dict.fromkeys(signatures))


def headers(
    secrets: str | Sequence[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """`webhook-id`, `webhook-timestamp` and `webhook-signature` for one delivery attempt."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secrets, msg_id, timestamp, body),
    }


def _secret_list(secrets: str | Sequence[str]) -> list[str]:
    # A lone string is a Sequence[str] too; signing with each of its characters would be a bug.
    return [secrets] if isinstance(secrets, str) else list(secrets)


def _signed_content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    if not msg_id or "." in msg_id or any(ord(char) < 0x21 for char in msg_id):
        raise ValueError("A webhook id must be non-empty, without dots, spaces or controls")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise ValueError("A webhook timestamp is a non-negative number of unix seconds")
    return f"{msg_id}.{timestamp}.".encode() + body
