"""Eval runs as tasks (kind ``eval_run``): an eval's questions asked of two or more models and graded in the
background, with progress and a cancel, kept in the store once done (an ``EvalRun``: what the dashboard's evals page
lists). A run taken up after a crash keeps the models already asked and asks the others."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from tuneloop.evals import DEFAULT_MAX_TOKENS, EvalItem, EvalReport, answers_of, check_models
from tuneloop.runtime import Runtime
from tuneloop.store.eval_runs import EvalRun
from tuneloop.tasks import Task, TaskContext, Tasks

KIND = "eval_run"
__all__ = ["KIND", "EvalRun", "item_of", "item_params", "run_task", "start"]


def item_params(item: EvalItem) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(item).items()}


def item_of(params: dict[str, Any]) -> EvalItem:
    return EvalItem(messages=tuple(params["messages"]), expected=tuple(params["expected"]), grader=params["grader"],
                    source=params.get("source", ""), line=params.get("line", 0), tools=tuple(params.get("tools", ())))


def start(rt: Runtime, tasks: Tasks, name: str, items: Sequence[EvalItem], models: Sequence[str], *,
          max_tokens: int = DEFAULT_MAX_TOKENS) -> Task:
    """Queue the eval ``name`` (its ``items``) on ``models``; unknown models are refused now, before anything runs."""
    models = list(dict.fromkeys(models))
    check_models(rt, models)
    params = {"name": name, "models": models, "max_tokens": max_tokens, "items": [item_params(i) for i in items]}
    title = f"eval {name} ({len(items)} questions) on {', '.join(models)}"
    return tasks.submit(KIND, params=params, title=title, first_event=f"Evaluating {len(items)} questions of {name} "
                        f"on {len(models)} models")


def run_task(context: TaskContext) -> dict[str, Any]:
    """The task's code: each model in turn (kept as the task's state once asked), then the run stored."""
    params = context.task.params
    items = [item_of(p) for p in params["items"]]
    models: list[str] = params["models"]
    done: dict[str, Any] = context.state.get("models", {})
    total = len(items) * len(models)
    answered = [len(items) * len(done)]

    def on_answer(count: int) -> None:
        answered[0] += count
        context.progress(answered[0], total, f"{answered[0]} of {total} answers")

    context.progress(answered[0], total, f"{answered[0]} of {total} answers")
    for model in models:
        if model in done:
            continue
        context.check()
        started = time.monotonic()
        answers = answers_of(context.runtime, model, items, params["max_tokens"], on_answer)
        done[model] = {"answers": answers, "seconds": time.monotonic() - started}
        context.save_state({"models": done})
    report = EvalReport(items, models)
    for model in models:
        report.answers[model] = done[model]["answers"]
        report.seconds[model] = done[model]["seconds"]
        report.passed[model] = [item.grade(a) for item, a in zip(items, report.answers[model], strict=True)]
    run = context.store.eval_runs.add(params["name"], report.to_json(), max_tokens=params["max_tokens"],
                                      run_id=f"evalrun-{context.task.id.removeprefix('task-')}")  # kept once
    return {"eval_run": run.id, "scores": {m: report.score(m) for m in models}, "questions": len(items)}
