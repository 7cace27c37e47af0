"""One-click unsubscribe links (RFC 8058): a search id and an HMAC of it under the server's
secret key. They never expire, as a mail's unsubscribe link must keep working, and stop
working when the secret key changes or the search is deleted."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid

_PURPOSE = b"unsubscribe-email:"
_SIGNATURE_CHARS = 32


def unsubscribe_token(secret_key: str, search_id: uuid.UUID) -> str:
    return f"{search_id.hex}.{_signature(secret_key, search_id)}"


def search_id_from_token(secret_key: str, token: str) -> uuid.UUID | None:
    """The search a token was made for, or None when it is malformed or badly signed."""
    hex_id, _, signature = token.partition(".")
    try:
        search_id = uuid.UUID(hex=hex_id)
    except ValueError:
        return None
    if len(hex_id) != 32 or not hmac.compare_digest(
        signature.encode(), _signature(secret_key, search_id).encode()
    ):
        return None
    return search_id


def _signature(secret_key: str, search_id: uuid.UUID) -> str:
    digest = hmac.new(secret_key.encode(), _PURPOSE + search_id.bytes, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:_SIGNATURE_CHARS]
