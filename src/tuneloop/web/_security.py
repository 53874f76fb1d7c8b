"""What guards the dashboard: the server's API key (a login form sets a signed session cookie), a CSRF token on
every form that changes something, and headers that forbid inline script and framing.

Nothing here is stored: a session is ``v1.ISSUED.SIGNATURE`` signed with a digest of the key (a new key ends every
session), and a CSRF token is an HMAC of a random cookie under a secret that lives as long as the process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tuneloop.serving import key_matches

PREFIX = "/ui"
SESSION_COOKIE = "tuneloop_session"
CSRF_COOKIE = "tuneloop_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 7 * 24 * 3600

# No inline script or style, nothing from elsewhere, never in a frame. Charts are inline SVG markup (not script).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityHeaders:
    """Adds the dashboard's headers to every response under /ui (the API's JSON answers keep theirs)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (name, value) for name, value in HEADERS if name not in present]
            await send(message)

        await self.app(scope, receive, with_headers)


class Guard:
    """Sessions and CSRF tokens for one running server; ``key`` is the server's API key (None: no login)."""

    def __init__(self, key: str | None) -> None:
        self.key = key
        self._signing = hashlib.sha256(b"tuneloop-ui-session\x00" + key.encode()).digest() if key else b""
        self._csrf_secret = secrets.token_bytes(32)

    # Sessions

    def key_matches(self, given: str) -> bool:
        return self.key is None or key_matches(given, self.key)

    def new_session(self) -> str:
        issued = str(int(time.time()))
        return f"v1.{issued}.{self._sign(issued)}"

    def _sign(self, issued: str) -> str:
        return hmac.new(self._signing, f"session:{issued}".encode(), hashlib.sha256).hexdigest()

    def signed_in(self, request: Request) -> bool:
        if self.key is None:
            return True
        version, _, rest = request.cookies.get(SESSION_COOKIE, "").partition(".")
        issued, _, signature = rest.partition(".")
        if version != "v1" or not (issued.isascii() and issued.isdigit() and len(issued) <= 12) \
                or not hmac.compare_digest(signature.encode(), self._sign(issued).encode()):
            return False
        return 0 <= time.time() - int(issued) < SESSION_SECONDS

    def set_session(self, response: Response, request: Request) -> None:
        response.set_cookie(SESSION_COOKIE, self.new_session(), max_age=SESSION_SECONDS, path=PREFIX,
                            httponly=True, samesite="strict", secure=request.url.scheme == "https")

    @staticmethod
    def end_session(response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE, path=PREFIX, httponly=True, samesite="strict")

    # CSRF: a random HttpOnly cookie, and in each form an HMAC of it that only this server can make

    def csrf_seed(self, request: Request) -> tuple[str, bool]:
        """The request's CSRF cookie, or a new one (True: it must be set on the response)."""
        seed = request.cookies.get(CSRF_COOKIE, "")
        if len(seed) == 64 and all(c in "0123456789abcdef" for c in seed):
            return seed, False
        return secrets.token_hex(32), True

    def csrf_token(self, seed: str) -> str:
        return hmac.new(self._csrf_secret, seed.encode(), hashlib.sha256).hexdigest()

    def set_csrf(self, response: Response, request: Request, seed: str) -> None:
        response.set_cookie(CSRF_COOKIE, seed, path=PREFIX, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")

    def csrf_valid(self, request: Request, sent: Any) -> bool:
        seed = request.cookies.get(CSRF_COOKIE, "")
        if not seed or not isinstance(sent, str) or not sent:
            return False
        # Bytes: compare_digest refuses a str with characters outside ASCII (a TypeError, not a "no").
        return hmac.compare_digest(sent.encode(), self.csrf_token(seed).encode())
