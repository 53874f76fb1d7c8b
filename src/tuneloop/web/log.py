"""The log pages: threads with search and filters (paged by the database), a thread with everything said of each
turn, and the forms that rate, correct or exclude a reply."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from tuneloop.curation import log, ratings
from tuneloop.curation.log import RATINGS, SENTIMENTS, SOURCES, LogFilter
from tuneloop.serving import state_of
from tuneloop.web._pages import PageError, back_to, posted, render, whole_number

router = APIRouter()
ROUTERS = [router]
PER_PAGE = 25
YES_NO = {"yes": True, "no": False}
FIELDS = ("q", "model", "assistant", "metadata", "since", "until", "language", "sentiment", "rating", "corrected",
          "judged", "excluded", "source")


def _day(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise PageError(f"{name} {value!r} is not a date: write it as YYYY-MM-DD") from None


def _choice(value: str, name: str, allowed: Any) -> str:
    if value not in allowed:
        raise PageError(f"{name} {value!r} is not one of: {', '.join(allowed)}")
    return value


def parse_filter(params: dict[str, str]) -> LogFilter:
    """The log's filter from a page's query (the names of FIELDS); a PageError names a value it cannot read."""
    given = {k: v.strip() for k, v in params.items() if k in FIELDS and v and v.strip()}
    metadata: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in given.get("metadata", "").split(","))):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise PageError(f"metadata {pair!r} is not key=value: write pairs such as team=support, separated by "
                            "commas")
        metadata[key.strip()] = value.strip()
    since = _day(given["since"], "since") if "since" in given else None
    until = _day(given["until"], "until") if "until" in given else None

    def flag(name: str) -> bool | None:
        return YES_NO[_choice(given[name], name, YES_NO)] if name in given else None

    return LogFilter(
        query=given.get("q"), model=given.get("model"), assistant=given.get("assistant"), metadata=metadata,
        since=datetime.combine(since, time(), UTC) if since else None,
        until=datetime.combine(until + timedelta(days=1), time(), UTC) if until else None,
        language=given.get("language"),
        sentiment=_choice(given["sentiment"], "sentiment", SENTIMENTS) if "sentiment" in given else None,
        rating=_choice(given["rating"], "rating", [*RATINGS, "any", "none"]) if "rating" in given else None,
        corrected=flag("corrected"), judged=flag("judged"), excluded=flag("excluded"),
        source=_choice(given["source"], "source", SOURCES) if "source" in given else None,
    )


def _page_number(value: str | None) -> int:
    return 1 if value is None or value == "" else whole_number(value, "page", 1, 100_000)


@router.get("/log")
def log_page(request: Request) -> Response:
    params = dict(request.query_params)
    browser = state_of(request).runtime.db.browse
    facets = browser.facets()
    try:
        where = parse_filter(params)
        page = _page_number(params.get("page"))
    except PageError as exc:
        return render(request, "log.html", status=400, error=str(exc), params=params, facets=facets, result=None,
                      chart=[], sentiments=SENTIMENTS, sources=SOURCES, page=1, query_without_page="")
    result = browser.threads(where, offset=(page - 1) * PER_PAGE, limit=PER_PAGE)
    chart = browser.sentiment_by_day(where, days=CHART_DAYS)
    kept = {k: v for k, v in params.items() if k in FIELDS and v}
    return render(request, "log.html", params=params, facets=facets, result=result, chart=_bars(chart),
                  sentiments=SENTIMENTS, sources=SOURCES, page=page, query_without_page=urlencode(kept),
                  error=None)


CHART_DAYS = 60  # the chart's width in days: the newest on the right


def _bars(days: list[tuple[date, dict[str, int]]]) -> list[dict[str, Any]]:
    """The sentiment chart's columns: per day, stacked counts scaled to the busiest day (SVG units: 10 a day across
    the CHART_DAYS up to the newest day with any, 0–100 up; a day without user turns is a gap)."""
    if not days:
        return []
    newest = days[-1][0]
    days = [(day, counts) for day, counts in days if (newest - day).days < CHART_DAYS]
    busiest = max(sum(counts.values()) for _, counts in days) or 1
    columns = []
    for day, counts in days:
        y = 100.0
        parts = []
        for label in ("negative", "neutral", "unknown", "positive"):
            height = 100.0 * counts.get(label, 0) / busiest
            y -= height
            parts.append({"label": label, "y": round(y, 2), "height": round(height, 2), "n": counts.get(label, 0)})
        columns.append({"day": day.isoformat(), "total": sum(counts.values()), "parts": parts,
                        "x": (CHART_DAYS - 1 - (newest - day).days) * 10 + 1})
    return columns


@router.get("/log/{thread_id:path}")
def thread_page(thread_id: str, request: Request) -> Response:
    view = log.thread_view(state_of(request).runtime.db, thread_id)
    return render(request, "thread.html", thread=view.thread, messages=view.messages, verdicts=view.verdicts,
                  results=view.results, notice=request.query_params.get("done"))


def _on_reply(request: Request, message_id: int, change: Callable[[Any], str]) -> Response:
    """Apply ``change`` to reply ``message_id`` (in a worker thread: the store may wait on a lock) and go back to
    its turn in its thread, saying what was done."""
    dialogue = state_of(request).runtime.db.dialogue
    done = change(dialogue)
    thread_id = dialogue.get_message(message_id).thread_id
    return back_to(f"/ui/log/{quote(thread_id, safe='')}", f"m{message_id}", done=done)


def _text(form: Any, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


@router.post("/messages/{message_id}/rate")
async def rate(message_id: int, request: Request) -> Response:
    form = await posted(request)

    def change(dialogue: Any) -> str:
        ratings.rate(dialogue, message_id, _text(form, "rating"), _text(form, "note").strip() or None)
        return "rated"
    return await run_in_threadpool(_on_reply, request, message_id, change)


@router.post("/messages/{message_id}/correct")
async def correct(message_id: int, request: Request) -> Response:
    form = await posted(request)

    def change(dialogue: Any) -> str:
        ratings.correct(dialogue, message_id, _text(form, "correction"), source="ui")
        return "corrected"
    return await run_in_threadpool(_on_reply, request, message_id, change)


@router.post("/messages/{message_id}/exclude")
async def exclude(message_id: int, request: Request) -> Response:
    form = await posted(request)
    excluded = _text(form, "excluded") == "yes"

    def change(dialogue: Any) -> str:
        ratings.exclude(dialogue, message_id, excluded)
        return "excluded" if excluded else "included"
    return await run_in_threadpool(_on_reply, request, message_id, change)
