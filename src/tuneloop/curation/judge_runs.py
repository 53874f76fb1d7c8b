"""Judge runs as tasks (kind ``judge_run``): a run of one criterion over the log, in the background, surviving a
restart (what was judged stays judged, and the run goes on with the rest), with progress and a cancel. The CLI's
``judge run``, the dashboard's judges page and the API start them the same way: :func:`start`."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from tuneloop.curation.judges import RunReport, judge_model_of
from tuneloop.curation.judges import run as judge_replies
from tuneloop.errors import TaskStateError
from tuneloop.runtime import Runtime
from tuneloop.store.browse import LogFilter
from tuneloop.tasks import Task, TaskContext, Tasks

KIND = "judge_run"


def running(rt: Runtime, name: str) -> Task | None:
    """The unfinished run of judge ``name``, if there is one."""
    return next((t for t in rt.db.tasks.unfinished([KIND]) if t.params.get("judge") == name), None)


def start(rt: Runtime, tasks: Tasks, name: str, *, model: str | None = None, where: LogFilter | None = None,
          limit: int | None = None, concurrency: int = 4) -> Task:
    """Queue a run of judge ``name`` over the replies ``where`` selects (at most ``limit``), with ``model`` (default:
    the judge's own); refused while another run of it is unfinished."""
    judge = rt.db.judgments.judge(name)  # JudgeNotFoundError
    _, judge_model = judge_model_of(rt, model or judge.model)  # an unknown model is refused now, not in the run
    current = running(rt, judge.name)
    if current is not None:
        done = (current.progress or {}).get("message") or current.status
        raise TaskStateError(f"{judge.name} is already judging the log ({current.id}: {done}); wait for it to "
                             f"finish, or cancel it: tuneloop tasks cancel {current.id}")
    params = {"judge": judge.name, "model": model, "limit": limit, "concurrency": concurrency,
              "where": (where or LogFilter()).to_params()}
    title = f"judge {judge.name} with {judge_model}" + (f", at most {limit} replies" if limit else "")
    return tasks.submit(KIND, params=params, title=title, model=judge_model,
                        first_event=f"Judging the log with {judge.name} ({judge_model})")


def run_task(context: TaskContext) -> dict[str, Any]:
    """The task's code: judge batch by batch, keeping the counts so far as the task's state."""
    params = context.task.params
    saved = context.state.get("report")
    report = RunReport(**saved) if saved else None
    limit = params.get("limit")
    if limit is not None and report is not None:  # taken up again: what the first start judged counts
        limit = max(0, limit - report.judged - len(report.unjudged))
    before = report.judged + len(report.unjudged) if report is not None else 0

    def progress(done: int, total: int) -> None:
        context.progress(before + done, before + total, f"{before + done} of {before + total} replies judged")

    def keep(so_far: RunReport) -> None:
        context.save_state({"report": asdict(so_far)})

    report = judge_replies(context.runtime, params["judge"], model=params.get("model"),
                           where=LogFilter.from_params(params.get("where")), limit=limit, on_progress=progress,
                           concurrency=params.get("concurrency", 4),
                           check=context.check, report=report, on_batch=keep)
    return report.to_dict()
