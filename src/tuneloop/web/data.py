"""The data page: a training set built from the log's filters (and a judge's criterion), previewed as `tuneloop data
build` and `tuneloop data validate` would report it, then downloaded as JSONL or stored as a training file for a
job."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from tuneloop.curation.selection import select
from tuneloop.datasets import Dataset, price_table, token_counter, validate_examples
from tuneloop.datasets.shapes import METHODS
from tuneloop.datasets.validate import ValidationReport
from tuneloop.errors import DataError
from tuneloop.serving import state_of
from tuneloop.training import hyper
from tuneloop.web._pages import PageError, back_to, posted, render
from tuneloop.web.log import FIELDS, parse_filter

router = APIRouter()
ROUTERS = [router]
SHOWN = 5  # examples rendered in the preview
OPTIONS = ("criterion", "max_turns", "redact", "method", "base", "platform")
DEFAULT_PLATFORM = "gpt-4.1-mini-2025-04-14"


@dataclass
class Choice:
    """What the page's query asks for: the log's filter and the training set's options."""

    params: dict[str, str]
    criterion: str | None
    max_turns: int | None
    redact: bool
    method: str
    model: str
    platform: str

    def query(self) -> str:
        """The query that builds this set again (for the download link and the save form)."""
        kept = {k: v for k, v in self.params.items() if k in FIELDS and v}
        kept.update({"criterion": self.criterion or "", "max_turns": self.max_turns or "",
                     "redact": "yes" if self.redact else "", "method": self.method, "base": self.model,
                     "platform": self.platform})
        return urlencode({k: v for k, v in kept.items() if v not in ("", None)})


def choice_of(params: dict[str, str], bases: list[str], judges: list[str]) -> Choice:
    """Read the options of the page's query; a PageError names a value it cannot use."""
    criterion = (params.get("criterion") or "").strip() or None
    if criterion is not None and criterion not in judges:
        raise PageError(f"criterion {criterion!r} is not a judge here; define it on the judges page, or choose none")
    turns = (params.get("max_turns") or "").strip()
    # ASCII digits only ("²".isdigit() is true, and int() refuses it), and few of them (int() refuses thousands).
    if turns and (not (turns.isascii() and turns.isdigit() and len(turns) <= 4) or not 1 <= int(turns) <= 1000):
        raise PageError(f"max context turns {turns!r} is not a number from 1 to 1000 (blank: every turn)")
    method = params.get("method") or "auto"
    if method not in METHODS:
        raise PageError(f"method {method!r} is not one of: {', '.join(METHODS)}")
    # "base", not "model": model is the log's filter (the replies a model wrote), which this page carries along.
    model = params.get("base") or bases[0]
    if model not in bases:
        raise PageError(f"base model {model!r} is not one here: {', '.join(bases)}")
    platform = params.get("platform") or DEFAULT_PLATFORM
    if platform not in price_table().models:
        raise PageError(f"platform model {platform!r} has no price here; choose one of the list")
    return Choice(params, criterion, int(turns) if turns else None, params.get("redact") == "yes", method, model,
                  platform)


def build(request: Request, choice: Choice) -> tuple[Dataset, int]:
    """The training set the choice describes, and how many threads it was built from: the library's one selection
    (``tuneloop data build --from-dialogues`` makes the same of the same filter)."""
    selection = select(state_of(request).runtime.db, parse_filter(choice.params), criterion=choice.criterion,
                       max_context_turns=choice.max_turns, redact=choice.redact)
    return selection.dataset, selection.threads


def _turns(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    shown = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        text = str(content or "")
        if message.get("tool_calls"):
            calls = ", ".join(str(c.get("function", {}).get("name", "?")) for c in message["tool_calls"])
            text = (text + "\n" if text else "") + f"[calls {calls}]"
        shown.append({"role": str(message.get("role", "?")), "text": text})
    return shown


def shown_example(example: dict[str, Any]) -> dict[str, Any]:
    """One example as the page shows it: its turns, and a DPO pair's preferred and avoided answers."""
    if "input" in example:
        return {"turns": _turns(example["input"].get("messages", [])),
                "preferred": _turns(example.get("preferred_output", [])),
                "avoided": _turns(example.get("non_preferred_output", []))}
    return {"turns": _turns(example.get("messages", [])), "preferred": None, "avoided": None}


@dataclass
class Preview:
    threads: int
    dataset: Dataset
    chosen: str
    examples: list[dict[str, Any]]
    left_out: int
    report: ValidationReport | None
    remote: ValidationReport | None
    local_epochs: int = 0


def preview(request: Request, choice: Choice) -> Preview:
    dataset, threads = build(request, choice)
    chosen = dataset.method(choice.method)
    examples, left_out = dataset.examples(chosen)
    report = remote = None
    if examples:
        runtime = state_of(request).runtime
        counter = token_counter(choice.model, models_dir=runtime.settings.resolved_models_dir,
                                checkpoint=runtime.local_checkpoint(choice.model))
        report = validate_examples(examples, counter, source="this training set")
        remote = validate_examples(examples, token_counter(choice.platform), source="this training set")
    epochs = hyper.resolve(chosen, len(examples))["n_epochs"]
    return Preview(threads, dataset, chosen, [shown_example(e) for e in examples[:SHOWN]], left_out, report, remote,
                   epochs)


def _context(request: Request) -> dict[str, Any]:
    runtime = state_of(request).runtime
    return {"bases": runtime.registry.ids(), "judges": [j.name for j in runtime.db.judgments.judges()],
            "platforms": sorted(price_table().models), "price_as_of": price_table().as_of}


@router.get("/data")
def data_page(request: Request) -> Response:
    """The filters, how many threads they keep and the options; the set is built (and its tokens counted) only when
    the Preview button asks (``preview=1``): a plain visit (the nav's link) over a large log stays quick. A ``def``
    route: its store calls run in a worker thread, not on the event loop."""
    context = _context(request)
    params = dict(request.query_params)
    wanted = params.get("preview") == "1"
    shown = None
    try:
        choice = choice_of(params, context["bases"], context["judges"])
        threads = state_of(request).runtime.db.browse.threads(parse_filter(params), limit=1).total
        if wanted:
            shown = preview(request, choice)
    except (PageError, DataError) as exc:
        return render(request, "data.html", status=400, error=str(exc), params=params, choice=None, preview=None,
                      threads=None, filters=_filters(params), **context)
    return render(request, "data.html", error=None, params=params, choice=choice, preview=shown, threads=threads,
                  filters=_filters(params), **context)


def _filters(params: dict[str, str]) -> list[tuple[str, str]]:
    """The log filters in force, as (name, value) for the page to list and carry in hidden fields."""
    return [(k, params[k].strip()) for k in FIELDS if params.get(k, "").strip()]


def _jsonl(request: Request, params: dict[str, str]) -> tuple[Choice, str, int, bytes]:
    context = _context(request)
    choice = choice_of(params, context["bases"], context["judges"])
    dataset, _ = build(request, choice)
    chosen, count, data = dataset.to_jsonl(choice.method)
    return choice, chosen, count, data


def download_name(chosen: str, count: int) -> str:
    """The download's file name: made here from the set's format and size, never from the request."""
    return f"tuneloop-{chosen}-{count}-{datetime.now(UTC):%Y%m%d-%H%M%S}.jsonl"


@router.get("/data/download")
def download(request: Request) -> Response:
    _, chosen, count, data = _jsonl(request, dict(request.query_params))
    return Response(data, media_type="application/jsonl", headers={
        "content-disposition": f'attachment; filename="{download_name(chosen, count)}"',
        "cache-control": "no-store", "x-content-type-options": "nosniff"})


@router.post("/data/save")
async def save(request: Request) -> Response:
    form = await posted(request)
    params = {k: str(v) for k, v in form.items() if isinstance(v, str)}
    state = state_of(request)
    choice, chosen, count, data = await run_in_threadpool(_jsonl, request, params)
    if len(data) > state.max_file_bytes:
        raise PageError(f"the training set is {len(data):,} bytes, more than this server's limit of "
                        f"{state.max_file_bytes:,} bytes; narrow the filters, or start the server with a larger "
                        "--max-file-mb")
    stored = await run_in_threadpool(state.fine_tuning.add_file, data, filename=download_name(chosen, count))
    return back_to("/ui/jobs/new", training_file=stored.id, method=chosen, model=choice.model)
