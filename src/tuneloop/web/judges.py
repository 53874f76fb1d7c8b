"""The judges page: the criteria (instruction, judge model, pass rule), a form to define one (``tuneloop judge add``'s
checks), a run of a criterion over the log in the background with its progress, the recent verdicts, and how each
criterion agrees with people's ratings (``judges.align``)."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from tuneloop.curation import judge_runs, judges, log
from tuneloop.errors import TuneloopError
from tuneloop.runtime import Runtime
from tuneloop.serving import ServerState, served_models, state_of
from tuneloop.tasks import Task
from tuneloop.web._pages import back_to, posted, render, whole_number

logger = logging.getLogger("tuneloop.web")
router = APIRouter()
ROUTERS = [router]
RECENT = 20
RUNS_READ = 200  # the newest judge runs read for the page (each criterion's newest is among them)
REFRESH_S = 5  # while a run is in progress, the page reloads itself this often (never oftener: each is a full page)
MAX_LIMIT = 100_000
RULES = ["pass", *(f"score>={n}" for n in range(1, 6))]
NOTICES = {"defined": "Criterion {name} saved: run it over the log below.",
           "started": "Judging with {name} has started; this page follows it."}


def run_views(state: ServerState, names: set[str]) -> list[dict[str, Any]]:
    """The newest run of each criterion (a task of kind judge_run), for the page."""
    newest: dict[str, Task] = {}
    for task in state.tasks.list(kinds=[judge_runs.KIND], limit=RUNS_READ):
        name = task.params.get("judge")
        if name in names and name not in newest:
            newest[name] = task
    views = []
    for name in sorted(newest):
        task = newest[name]
        progress = task.progress or {}
        views.append({"name": name, "task": task, "running": task.active, "done": progress.get("done") or 0,
                      "total": progress.get("total"), "error": (task.error or {}).get("message"),
                      "report": task.result if task.status == "succeeded" else None,
                      "cancelled": task.status == "cancelled", "limit": task.params.get("limit")})
    return views


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _recent(db: Any, names: set[str]) -> list[dict[str, Any]]:
    """The RECENT newest verdicts (one query, newest first, bounded), with the reply each is about."""
    return [{"verdict": r.verdict, "message": r.message, "excerpt": r.message.content[:240],
             "href": f"/ui/log/{quote(r.message.thread_id, safe='')}#m{r.message.id}"}
            for r in log.recent_verdicts(db, names, RECENT)]


def _agreement(db: Any, name: str) -> dict[str, Any]:
    """How criterion ``name`` agrees with people's ratings, counted in the database (the log is never read whole)."""
    report = judges.align(db.dialogue, name, disagreements=0)
    return {"count": report.count, "both_pass": report.both_pass, "judge_only": report.judge_only,
            "people_only": report.people_only, "both_fail": report.both_fail, "precision": _share(report.precision),
            "recall": _share(report.recall), "agreement": _share(report.agreement), "kappa": _share(report.kappa)}


def _page(request: Request, *, error: str | None = None, status: int = 200, form: dict[str, str] | None = None
          ) -> Response:
    """The page; synchronous (store calls): run it in a worker thread (a ``def`` route, or run_in_threadpool)."""
    state = state_of(request)
    db = state.runtime.db
    criteria = db.judgments.judges()
    agreement = {judge.name: _agreement(db, judge.name) for judge in criteria}
    names = {j.name for j in criteria}
    shown = run_views(state, names)
    following = any(run["running"] for run in shown)
    notice = request.query_params.get("done")
    name = request.query_params.get("name", "")
    response = render(
        request, "judges.html", status=status, criteria=criteria, agreement=agreement, rules=RULES,
        models=[m["id"] for m in served_models(state.runtime)], recent=_recent(db, names),
        runs=shown, error=error, form=form or {}, refresh=REFRESH_S if following else None,
        notice=NOTICES[notice].format(name=name) if notice in NOTICES and name in names else None)
    if following:
        # Follows a run in progress without a script, no oftener than every REFRESH_S seconds, and only while one
        # is (the address given: a refresh of one with a #fragment would only scroll).
        query = f"?{request.url.query}" if request.url.query else ""
        response.headers["refresh"] = f"{REFRESH_S}; url={request.url.path}{query}"
    return response


@router.get("/judges")
def judges_page(request: Request) -> Response:
    return _page(request)


def _define(runtime: Runtime, fields: dict[str, str]) -> judges.Judge:
    return judges.define(runtime, fields["name"], fields["instruction"], model=fields["model"] or None,
                         rule=fields["rule"] or "pass", replace=fields["replace"] == "yes")


@router.post("/judges")
async def define(request: Request) -> Response:
    form = await posted(request)
    fields = {k: str(form.get(k) or "").strip() for k in ("name", "instruction", "model", "rule", "replace")}
    runtime = state_of(request).runtime
    try:
        judge = await run_in_threadpool(_define, runtime, fields)
    except TuneloopError as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return await run_in_threadpool(_page, request, error=message, status=400, form=fields)
    return back_to("/ui/judges", "criteria", done="defined", name=judge.name)


def _limit(value: str) -> int | None:
    """The run's limit from the form: empty for all replies, else ASCII digits from 1 to MAX_LIMIT."""
    return whole_number(value, "limit", 1, MAX_LIMIT) if value.strip() else None


def _start(state: ServerState, name: str, limit: int | None) -> str:
    return judge_runs.start(state.runtime, state.tasks, name, limit=limit).params["judge"]


@router.post("/judges/{name}/run")
async def run_judge(name: str, request: Request) -> Response:
    form = await posted(request)
    limit = _limit(str(form.get("limit") or ""))
    started = await run_in_threadpool(_start, state_of(request), name, limit)
    return back_to("/ui/judges", done="started", name=started)
