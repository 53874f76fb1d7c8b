"""What guards the dashboard: the server's API key (a login form sets a signed session cookie), a CSRF token on
every form that changes something, wrong keys throttled per client address, and headers that forbid inline script
and framing.

Nothing here is stored: a session is ``v1.ISSUED.SIGNATURE`` signed with a digest of the key (a new key ends every
session), and a CSRF token is an HMAC of a random cookie under a secret that lives as long as the process.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
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


@dataclass
class _WrongKeys:
    count: int
    last: float  # time.monotonic() of the last wrong key
    until: float  # no key from the address is read before this


class SignInThrottle:
    """Wrong keys per client address: FREE_TRIES of them are read one after the other; from the FREE_TRIES-th on,
    each wrong key makes the address wait before its next try is read, FIRST_DELAY seconds and twice as long after
    each further wrong key, up to LONGEST_DELAY (tries in the wait are answered without reading the key). A right
    key, or FORGET_AFTER seconds without a wrong key, starts the address afresh. At most ``addresses`` are
    remembered (the one whose last wrong key is oldest is forgotten first), so memory is bounded."""

    FREE_TRIES = 5
    FIRST_DELAY = 1.0
    LONGEST_DELAY = 300.0
    FORGET_AFTER = 3600.0

    def __init__(self, addresses: int = 4096) -> None:
        self.addresses = addresses
        self._wrong: OrderedDict[str, _WrongKeys] = OrderedDict()  # least recent wrong key first
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._wrong)

    def _current(self, address: str, now: float) -> _WrongKeys | None:
        record = self._wrong.get(address)
        if record is not None and now - record.last > self.FORGET_AFTER:
            del self._wrong[address]
            return None
        return record

    def wait(self, address: str) -> int:
        """Whole seconds before a key from ``address`` is read again (0: now)."""
        now = time.monotonic()
        with self._lock:
            record = self._current(address, now)
            return math.ceil(record.until - now) if record is not None and record.until > now else 0

    def failed(self, address: str) -> None:
        """A wrong key from ``address`` (read: its wait was over)."""
        now = time.monotonic()
        with self._lock:
            record = self._current(address, now) or _WrongKeys(0, now, now)
            record.count += 1
            record.last = now
            if record.count >= self.FREE_TRIES:
                record.until = now + min(self.LONGEST_DELAY,
                                         self.FIRST_DELAY * 2 ** min(record.count - self.FREE_TRIES, 32))
            self._wrong[address] = record
            self._wrong.move_to_end(address)
            while len(self._wrong) > self.addresses:
                self._wrong.popitem(last=False)

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._wrong.pop(address, None)


class Guard:
    """Sessions, CSRF tokens and the sign-in throttle for one running server; ``key`` is the server's API key (None:
    no login)."""

    def __init__(self, key: str | None) -> None:
        self.key = key
        self.sign_ins = SignInThrottle()
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
