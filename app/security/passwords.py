"""Argon2id password hashing (pwdlib), run off the event loop because each hash costs ~50 ms."""

from __future__ import annotations

import asyncio

from pwdlib import PasswordHash

_hasher = PasswordHash.recommended()
# Verified against when the email is unknown, so both failures cost the same time.
_DUMMY_HASH = _hasher.hash("not-a-real-password-only-for-timing")


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password: str, password_hash: str | None) -> tuple[bool, str | None]:
    """Return (ok, new_hash); new_hash is set when the stored hash uses outdated parameters."""
    if password_hash is None:
        await asyncio.to_thread(_hasher.verify, password, _DUMMY_HASH)
        return False, None
    return await asyncio.to_thread(_hasher.verify_and_update, password, password_hash)
