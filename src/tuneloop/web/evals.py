"""The evals page: an eval file (uploaded, or the bundled demo) asked of two or more models side by side, as
`tuneloop eval FILE -m A -m B` does; each run is kept in the store and listed newest first, and a run's page shows
every question with each model's answer graded and what changed against the baseline (right to wrong, wrong to
right)."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, quote

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.responses import Response

from tuneloop.errors import TuneloopError
from tuneloop.evals import DEFAULT_MAX_TOKENS, EvalItem, from_log_filter, read_eval_bytes, read_eval_jsonl
from tuneloop.evals import runs as eval_runs
from tuneloop.serving import served_models, state_of
from tuneloop.web._pages import PageError, back_to, posted, render, whole_number
from tuneloop.web.log import parse_filter

router = APIRouter()
ROUTERS = [router]
DEMO = "demo_eval.jsonl"
MAX_TOKENS = 1024
LISTED = 50
LOG_THREADS = 2000  # an eval from the log reads the newest threads its filter keeps, up to this many
LOG_QUESTIONS = 100


def demo_items() -> list[EvalItem]:
    """The bundled demo eval (questions on made-up products that the demo fine-tune learns)."""
    text = resources.files("tuneloop.data").joinpath(DEMO).read_text("utf-8")
    return read_eval_jsonl(text, f"{DEMO} (bundled)")


def _max_tokens(value: str) -> int:
    if not value:
        return DEFAULT_MAX_TOKENS
    return whole_number(value, "most tokens per answer", 1, MAX_TOKENS)


def _page(request: Request, *, status: int = 200, **context: Any) -> Response:
    rt = state_of(request).runtime
    runs = rt.db.eval_runs
    given = {"error": None, "chosen": [], "max_tokens": DEFAULT_MAX_TOKENS, "log_query": "", **context}
    going = rt.db.tasks.unfinished([eval_runs.KIND])
    return render(request, "evals.html", status=status, models=[m["id"] for m in served_models(rt)],
                  runs=runs.recent(LISTED), total=runs.count(), max_tokens_limit=MAX_TOKENS, going=going, **given)


@router.get("/evals")
def evals_page(request: Request) -> Response:
    return _page(request, log_query=request.query_params.get("log", ""))


def log_items(db: Any, log_query: str) -> tuple[str, list[EvalItem]]:
    """The eval built from the log's threads that ``log_query`` (the log page's query string) keeps."""
    items = from_log_filter(db, parse_filter(dict(parse_qsl(log_query))), threads=LOG_THREADS, limit=LOG_QUESTIONS)
    if not items:
        raise PageError("these threads have no corrected reply and no reply rated up to ask again: rate or correct "
                        "replies on the log page first")
    return "the log" + (f" ({log_query})" if log_query else ""), items


async def _eval_file(request: Request, form: Any, source: str) -> tuple[str, list[EvalItem]]:
    if source == "demo":
        return f"{DEMO} (bundled)", demo_items()
    if source == "log":
        query = form.get("log_query")
        return await run_in_threadpool(log_items, state_of(request).runtime.db,
                                       query if isinstance(query, str) else "")
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise PageError("choose a JSONL or CSV eval file first, or run the bundled demo eval")
    limit = state_of(request).max_file_bytes
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise PageError(f"{upload.filename} is larger than this server's limit of {limit:,} bytes; split it")
    return upload.filename, read_eval_bytes(data, upload.filename)


@router.post("/evals")
async def run_eval(request: Request) -> Response:
    form = await posted(request)
    chosen = list(dict.fromkeys(str(m) for m in form.getlist("model") if str(m).strip()))
    source = str(form.get("source") or "upload")
    max_tokens_given = str(form.get("max_tokens") or "").strip()
    rt = state_of(request).runtime
    try:
        if source not in ("demo", "upload", "log"):
            raise PageError(f"eval file {source!r}: use the bundled demo eval or upload a file")
        max_tokens = _max_tokens(max_tokens_given)
        if len(chosen) < 2:
            raise PageError("choose at least two models to compare (hold Ctrl or ⌘ to choose more than one)")
        name, items = await _eval_file(request, form, source)
        state = state_of(request)
        task = await run_in_threadpool(lambda: eval_runs.start(rt, state.tasks, name, items, chosen,
                                                               max_tokens=max_tokens))
    except (PageError, TuneloopError) as exc:
        message = str(exc)
        log_query = form.get("log_query") if isinstance(form.get("log_query"), str) else ""
        return await run_in_threadpool(lambda: _page(request, status=400, error=message, chosen=chosen,
                                                     max_tokens=max_tokens_given or DEFAULT_MAX_TOKENS,
                                                     log_query=log_query))
    return back_to(f"/ui/tasks/{quote(task.id, safe='')}")


def _shown(expected: Any) -> str:
    return expected if isinstance(expected, str) else json.dumps(expected, ensure_ascii=False)


def compare(run: eval_runs.EvalRun, baseline: str) -> dict[str, Any]:
    """The run's rows with each other model's change against ``baseline`` ("worse": right to wrong, "better":
    wrong to right, "same"), and per model how many went each way."""
    others = [m for m in run.models if m != baseline]
    counts = {m: {"worse": 0, "better": 0} for m in others}
    rows = []
    for number, item in enumerate(run.items or [], start=1):
        answers = item["answers"]
        changes = {}
        for model in others:
            was, now = answers[baseline]["passed"], answers[model]["passed"]
            change = "worse" if was and not now else "better" if now and not was else "same"
            changes[model] = change
            if change != "same":
                counts[model][change] += 1
        rows.append({"number": number, "question": item["question"], "grader": item["grader"],
                     "expected": [_shown(e) for e in item["expected"]], "answers": answers, "changes": changes,
                     "changed": any(c != "same" for c in changes.values())})
    return {"others": others, "counts": counts, "rows": rows}


@router.get("/evals/{run_id}")
def eval_run_page(run_id: str, request: Request) -> Response:
    run = state_of(request).runtime.db.eval_runs.get(run_id)
    baseline = request.query_params.get("baseline") or run.models[0]
    if baseline not in run.models:
        raise PageError(f"baseline {baseline!r} was not asked in this run (asked: {', '.join(run.models)})")
    only_changed = request.query_params.get("show") == "changed"
    compared = compare(run, baseline)
    rows = [r for r in compared["rows"] if r["changed"]] if only_changed else compared["rows"]
    return render(request, "evals_run.html", run=run, baseline=baseline, others=compared["others"],
                  counts=compared["counts"], rows=rows, only_changed=only_changed,
                  scores={m["model"]: m for m in run.summary})
