"""`tuneloop train`: fine-tune on your data (a CSV, a folder, a JSONL file or the log), then follow the job."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from tuneloop.cli._output import error_console, print_json
from tuneloop.cli.data import (
    MetadataOption,
    ReplyModelOption,
    SinceOption,
    UntilOption,
    collect,
    dialogue_filter,
    render_report,
)
from tuneloop.cli.jobs import JsonOption, fine_tuning, finish, follow
from tuneloop.errors import DatasetInvalidError, InputError
from tuneloop.store.jobs import Job
from tuneloop.training import FineTuning


class Method(StrEnum):
    auto = "auto"
    supervised = "supervised"
    dpo = "dpo"


class Backend(StrEnum):
    local = "local"
    openai = "openai"


def upload_validation(ft: FineTuning, path: Path) -> str:
    """Store a validation file; a CSV of questions and expected answers becomes the same JSONL lines."""
    # Lazy (cold start): only train --validation reads an eval file.
    import json

    from tuneloop.evals import read_eval_file

    if path.suffix.lower() == ".csv":
        items = read_eval_file(path)
        lines = [json.dumps({"messages": list(i.messages), "expected": list(i.expected), "grader": i.grader})
                 for i in items]
        return ft.add_file("\n".join(lines).encode() + b"\n", filename=path.stem + ".jsonl").id
    return ft.add_file(path).id


def train(
    source: Annotated[
        str | None,
        typer.Argument(help="CSV file, directory of CSV files, JSONL file, or '-' (CSV on stdin).",
                       show_default=False),
    ] = None,
    dialogues: Annotated[bool, typer.Option("--from-dialogues", help="Train on well-received replies in the log.")]
    = False,
    negative: Annotated[bool, typer.Option("--negative", help="Rows without a positive column are answers to avoid.")]
    = False,
    method: Annotated[Method, typer.Option(help="supervised, dpo, or auto (dpo when the data has pairs).")]
    = Method.auto,
    base: Annotated[
        str | None,
        typer.Option("--base", help="Model to fine-tune: a local base model (see `tuneloop models`; default "
                                    "smollm2-135m-instruct) or, remote, the platform's (default gpt-4o-mini)."),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option("--device", help="Where a local job trains: auto (cuda, then mps, then cpu), cuda, mps or cpu "
                                      "(default: the config's device)."),
    ] = None,
    quantize: Annotated[
        str | None,
        typer.Option("--quantize", help="4bit: QLoRA (bitsandbytes, CUDA only), for models too large in 16 bits."),
    ] = None,
    backend: Annotated[
        Backend | None,
        typer.Option(help="local (this machine) or openai (the configured compatible platform); default: openai "
                          "when OPENAI_API_KEY/OPENAI_BASE_URL make it the default provider, else local."),
    ] = None,
    suffix: Annotated[str | None, typer.Option(help="Part of the new model's id: ft:BASE:SUFFIX:JOB.")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, max=50, help="Epochs (default: auto).")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, help="Batch size (default: auto).")]
    = None,
    lr_multiplier: Annotated[
        float | None, typer.Option("--learning-rate-multiplier", min=0.0001, help="Default: auto (1.0).")
    ] = None,
    beta: Annotated[float | None, typer.Option("--beta", help="DPO beta (default: auto, 0.1).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed, for repeatable runs.")] = None,
    wait: Annotated[bool, typer.Option("--wait", "-w", help="Stay and show progress until the job ends.")] = False,
    encoding: Annotated[str | None, typer.Option("--encoding", help="Text encoding of a CSV input.")] = None,
    validation_file: Annotated[Path | None, typer.Option(
        "--validation-file", help="Chat examples (JSONL: a validation loss per epoch) and/or questions with expected "
        "answers (JSONL or CSV as for `tuneloop eval`: a score per epoch); the best epoch is registered.",
        show_default=False)] = None,
    json_: JsonOption = False,
    like: Annotated[str | None, typer.Option(
        "--like", help="Re-run this job (one imported with `tuneloop import openai`, or any other) locally: its "
        "training and validation files, method, hyperparameters, seed and suffix; options given here win.",
        show_default=False)] = None,
    model: ReplyModelOption = None,
    metadata: MetadataOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
) -> None:
    """Fine-tune a model on CSV rows, a JSONL file or the dialogue log; the job runs in the background.

    Examples:
      tuneloop train facts.csv --suffix facts --wait
      tuneloop train --from-dialogues --epochs 4
      tuneloop train --from-dialogues --metadata project=support --since 2026-11-01
      tuneloop train --like ftjob-abc123 --base qwen2.5-0.5b
      tuneloop train facts.csv --base qwen2.5-0.5b --device cuda
    """
    ft = fine_tuning()
    requested: dict[str, Any] = {"n_epochs": epochs, "batch_size": batch_size,
                                 "learning_rate_multiplier": lr_multiplier}
    if beta is not None:
        requested["beta"] = beta
    if like is not None:
        if source is not None or dialogues or validation_file is not None or (backend and backend.value != "local"):
            raise InputError("--like re-runs a job's own data locally: drop the data source, --from-dialogues, "
                             "--validation-file and --backend")
        job = ft.create_like(like, model=base, suffix=suffix, seed=seed, device=device,
                             hyperparameters={k: v for k, v in requested.items() if v is not None})
        count, chosen = "its", job.method
    else:
        job, count, chosen = _create(ft, source, dialogues=dialogues, negative=negative, encoding=encoding,
                                     where=dialogue_filter(model, metadata, since, until), method=method, base=base,
                                     suffix=suffix, seed=seed, backend=backend, device=device, quantize=quantize,
                                     requested=requested, validation_file=validation_file)
    if json_ and not wait:
        print_json(job.to_openai())
        return
    h = job.hyperparameters
    error_console.print(
        f"Started [bold]{job.id}[/] ({job.backend}): {count} {chosen} examples, {h.get('n_epochs', 'auto')} epochs, "
        f"batch {h.get('batch_size', 'auto')}, learning rate × {h.get('learning_rate_multiplier', 'auto')} "
        f"on {escape(job.model)}"
    )
    if not wait:
        error_console.print(f"Follow it with [bold]tuneloop jobs wait {job.id}[/] (it goes on if you close this).")
        if job.backend == "local" and not ft.settings.spawn_worker:
            error_console.print("It waits in the queue for a `tuneloop worker` (spawn_worker is off).")
        return
    finish(follow(ft, job.id), json_)


def _create(ft: FineTuning, source: str | None, *, dialogues: bool, negative: bool, encoding: str | None,
            where: Any, method: Method, base: str | None, suffix: str | None, seed: int | None,
            backend: Backend | None, device: str | None, quantize: str | None, requested: dict[str, Any],
            validation_file: Path | None) -> tuple[Job, int, str]:
    dataset = collect(source, dialogues=dialogues, negative=negative, encoding=encoding, runtime=ft.runtime,
                      where=where)
    name = Path(source).stem + ".jsonl" if source not in (None, "-") else "dialogues.jsonl"
    stored, chosen, count = ft.add_dataset(dataset, method=method.value, filename=name)
    validation = upload_validation(ft, validation_file) if validation_file is not None else None
    try:
        job = ft.create(stored.id, model=base, method=chosen, suffix=suffix, seed=seed,
                        backend=backend.value if backend else ft.default_backend, device=device, quantize=quantize,
                        hyperparameters={k: v for k, v in requested.items() if v is not None},
                        validation_file=validation)
    except DatasetInvalidError as exc:
        render_report(exc.report)  # type: ignore[arg-type]
        raise
    return job, count, chosen


