"""Rendering the dashboard's pages: the Jinja2 environment (every value escaped), the session and CSRF checks each
route depends on, and one-line error pages (never a traceback)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from tuneloop.web._security import CSRF_FIELD, CSRF_HEADER, HEADERS, PREFIX, Guard

NAV = [("log", "Log"), ("data", "Data"), ("jobs", "Jobs"), ("models", "Models"), ("evals", "Evals"),
       ("playground", "Playground"), ("judges", "Judges"), ("tasks", "Tasks")]

env = Environment(loader=PackageLoader("tuneloop.web", "templates"), autoescape=select_autoescape(default=True),
                  trim_blocks=True, lstrip_blocks=True)


def _when(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def _pretty(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)


env.filters["when"] = _when
env.filters["pretty"] = _pretty
env.filters["zip_self"] = lambda values: [(v, v) for v in values]
env.filters["urlpart"] = lambda value: quote(str(value), safe="")
env.globals["NAV"] = NAV
env.globals["PREFIX"] = PREFIX


class LoginRequired(Exception):
    """A dashboard page was asked for without a session while the server has a key."""


class BadForm(Exception):
    """A form that changes something came without this dashboard's CSRF token."""


class PageError(Exception):
    """One line for the page, and the status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def whole_number(value: str, name: str, low: int, high: int) -> int:
    """``value`` as a whole number from ``low`` to ``high``, or a PageError naming ``name`` (ASCII digits only:
    ``"²".isdigit()`` is true, and int() refuses it)."""
    text = value.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 12) or not low <= int(text) <= high:
        raise PageError(f"{name} {value!r} is not a whole number from {low:,} to {high:,}")
    return int(text)


def guard_of(request: Request) -> Guard:
    return request.app.state.tuneloop_ui


def signed_in(request: Request) -> None:
    """The dependency of every page but the login form's."""
    if not guard_of(request).signed_in(request):
        raise LoginRequired


async def posted(request: Request) -> FormData:
    """The request's form, once its CSRF token is checked (the form field, or the X-CSRF-Token header of a script's
    request)."""
    form = await request.form()
    sent = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    if not guard_of(request).csrf_valid(request, sent):
        raise BadForm
    return form


def render(request: Request, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    guard = guard_of(request)
    seed, new = guard.csrf_seed(request)
    html = env.get_template(template).render(
        request=request, csrf_token=guard.csrf_token(seed), keyed=guard.key is not None,
        section=template.split(".")[0].split("_")[0], **context)
    response = HTMLResponse(html, status_code=status, headers={"cache-control": "no-store"})
    if new:
        guard.set_csrf(response, request, seed)
    return response


def error_page(request: Request, message: str, status: int) -> HTMLResponse:
    response = render(request, "error.html", status=status, message=message, status_code=status)
    # Also where the security middleware does not reach (an unexpected error is answered outside it).
    for name, value in HEADERS:
        response.headers[name.decode()] = value.decode()
    return response


def back_to(path: str, anchor: str | None = None, **query: Any) -> RedirectResponse:
    """303 to a dashboard page (after a form: reloading it does not post again)."""
    given = {k: v for k, v in query.items() if v not in (None, "")}
    url = path + (f"?{urlencode(given)}" if given else "") + (f"#{anchor}" if anchor else "")
    return RedirectResponse(url, status_code=303)


def local_path(value: str | None, default: str = f"{PREFIX}/") -> str:
    """``value`` if it is a path of this dashboard (where a login may send the browser back to), else ``default``."""
    if value and value.startswith(f"{PREFIX}/") and not value.startswith("//") and "\\" not in value \
            and all(32 < ord(c) < 127 for c in value):
        return value
    return default


def wants_page(request: Request) -> bool:
    return request.url.path == PREFIX or request.url.path.startswith(f"{PREFIX}/")


def login_redirect(request: Request) -> Response:
    if request.method == "GET":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{PREFIX}/login?{urlencode({'next': local_path(target)})}", status_code=303)
    return error_page(request, "Your session has ended: sign in again with the server's API key.", 401)
