"""The server's key: one comparison for the API's Bearer header and the dashboard's sign-in."""

from __future__ import annotations

import hashlib
import hmac


def key_matches(given: str, key: str) -> bool:
    """Whether ``given`` is the server's ``key``. Digests have one length, so the comparison takes the same time
    whatever was sent."""
    return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), hashlib.sha256(key.encode()).digest())
