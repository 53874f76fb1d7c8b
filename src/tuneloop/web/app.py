"""The dashboard mounted on the server's app: /ui/ beside /v1/, one process, one store, one key."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import RedirectResponse, Response

from tuneloop.errors import TuneloopError
from tuneloop.serving import ServerState, http_status
from tuneloop.web import data as data_pages
from tuneloop.web import evals as evals_pages
from tuneloop.web import jobs as jobs_pages
from tuneloop.web import judges as judges_pages
from tuneloop.web import log as log_pages
from tuneloop.web import models as models_pages
from tuneloop.web import playground as playground_pages
from tuneloop.web import tasks as tasks_pages
from tuneloop.web._pages import (
    BadForm,
    LoginRequired,
    PageError,
    error_page,
    guard_of,
    local_path,
    login_redirect,
    posted,
    render,
    signed_in,
    wants_page,
)
from tuneloop.web._security import PREFIX, Guard, SecurityHeaders

log = logging.getLogger("tuneloop.web")
STATIC = Path(__file__).parent / "static"

public = APIRouter(prefix=PREFIX)


@public.get("")
@public.get("/")
def home() -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/log", status_code=303)


@public.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:  # noqa: A002 - the query's name
    if guard_of(request).key is None or guard_of(request).signed_in(request):
        return RedirectResponse(local_path(next), status_code=303)
    return render(request, "login.html", next=local_path(next), failed=False)


@public.post("/login")
async def login(request: Request) -> Response:
    form = await posted(request)
    guard = guard_of(request)
    target = local_path(str(form.get("next") or ""))
    address = request.client.host if request.client else ""
    if wait := guard.sign_ins.wait(address):
        response = error_page(request, f"Too many wrong keys from this address: try again in {wait} second"
                                       f"{'' if wait == 1 else 's'}.", 429)
        response.headers["retry-after"] = str(wait)
        return response
    if not guard.key_matches(str(form.get("key") or "")):
        guard.sign_ins.failed(address)
        return render(request, "login.html", status=401, next=target, failed=True)
    guard.sign_ins.succeeded(address)
    response = RedirectResponse(target, status_code=303)
    guard.set_session(response, request)
    return response


@public.post("/logout")
async def logout(request: Request) -> Response:
    await posted(request)
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    guard_of(request).end_session(response)
    return response


def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_page(request, "Something unexpected went wrong on the server; its log has the details. Reload the "
                               "page to try again.", 500)


def mount(app: FastAPI) -> FastAPI:
    """Serve the dashboard from ``app`` (one of :func:`tuneloop.serving.new_app`, the API's error answers installed
    first) under /ui/, guarded by the server's key."""
    state: ServerState = app.state.tuneloop
    app.state.tuneloop_ui = Guard(state.api_key)
    app.add_middleware(SecurityHeaders)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="ui-static")
    app.include_router(public)
    guarded = [Depends(signed_in)]
    for router in [*log_pages.ROUTERS, *playground_pages.ROUTERS, *judges_pages.ROUTERS, *models_pages.ROUTERS,
                   *evals_pages.ROUTERS, *data_pages.ROUTERS, *jobs_pages.ROUTERS, *tasks_pages.ROUTERS]:
        app.include_router(router, prefix=PREFIX, dependencies=guarded)
    _install_errors(app)
    return app


def _install_errors(app: FastAPI) -> None:
    """Pages get one line of HTML for what goes wrong; the API keeps its JSON answers."""
    api = dict(app.exception_handlers)

    def dispatch(kind: type[BaseException], page: Any) -> None:
        async def handler(request: Request, exc: Any) -> Response:
            if wants_page(request):
                return page(request, exc)
            return await api[kind](request, exc)
        app.add_exception_handler(kind, handler)

    app.add_exception_handler(LoginRequired, lambda request, exc: login_redirect(request))
    app.add_exception_handler(BadForm, lambda request, exc: error_page(
        request, "This form was not sent by this dashboard (its security token is missing or stale): reload the "
                 "page and send it again.", 403))
    app.add_exception_handler(PageError, lambda request, exc: error_page(request, str(exc), exc.status))
    dispatch(TuneloopError, lambda request, exc: error_page(request, str(exc), http_status(exc)))
    dispatch(RequestValidationError, lambda request, exc: error_page(
        request, "That address has a value this page cannot read: "
                 + "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors()), 400))
    dispatch(Exception, _unexpected)
    dispatch(StarletteHTTPException, lambda request, exc: error_page(
        request, f"There is no page at {request.url.path}." if exc.status_code == 404
        else f"{request.method} is not allowed here." if exc.status_code == 405 else str(exc.detail),
        exc.status_code))
