"""`tuneloop train`: fine-tune on your data (a CSV, a folder, a JSONL file or the log), then follow the job."""

from __future__ import annotations

from dataclasses import dataclass
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
    Wanted,
    collect,
    dialogue_filter,
    render_report,
)
from tuneloop.cli.jobs import JsonOption, fine_tuning, finish, follow
from tuneloop.curation.log import LogFilter
from tuneloop.errors import DatasetInvalidError, InputError
from tuneloop.training import FineTuning, Job


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


SourceArgument = Annotated[
    str | None,
    typer.Argument(help="CSV file, directory of CSV files, JSONL file, or '-' (CSV on stdin).", show_default=False),
]
DialoguesOption = Annotated[bool, typer.Option("--from-dialogues", help="Train on well-received replies in the log.")]
NegativeOption = Annotated[
    bool, typer.Option("--negative", help="Rows without a positive column are answers to avoid.")
]
MethodOption = Annotated[Method, typer.Option(help="supervised, dpo, or auto (dpo when the data has pairs).")]
BaseOption = Annotated[
    str | None,
    typer.Option("--base", help="Model to fine-tune: a local base model (see `tuneloop models`; default "
                                "smollm2-135m-instruct) or, remote, the platform's (default gpt-4o-mini)."),
]
DeviceOption = Annotated[
    str | None,
    typer.Option("--device", help="Where a local job trains: auto (cuda, then mps, then cpu), cuda, mps or cpu "
                                  "(default: the config's device)."),
]
QuantizeOption = Annotated[
    str | None,
    typer.Option("--quantize", help="4bit: QLoRA (bitsandbytes, CUDA only), for models too large in 16 bits."),
]
BackendOption = Annotated[
    Backend | None,
    typer.Option(help="local (this machine) or openai (the configured compatible platform); default: openai "
                      "when OPENAI_API_KEY/OPENAI_BASE_URL make it the default provider, else local."),
]
SuffixOption = Annotated[str | None, typer.Option(help="Part of the new model's id: ft:BASE:SUFFIX:JOB.")]
EpochsOption = Annotated[int | None, typer.Option("--epochs", min=1, max=50, help="Epochs (default: auto).")]
BatchSizeOption = Annotated[int | None, typer.Option("--batch-size", min=1, help="Batch size (default: auto).")]
MultiplierOption = Annotated[
    float | None, typer.Option("--learning-rate-multiplier", min=0.0001, help="Default: auto (1.0).")
]
BetaOption = Annotated[float | None, typer.Option("--beta", help="DPO beta (default: auto, 0.1).")]
SeedOption = Annotated[int | None, typer.Option("--seed", help="Random seed, for repeatable runs.")]
WaitOption = Annotated[bool, typer.Option("--wait", "-w", help="Stay and show progress until the job ends.")]
CsvEncodingOption = Annotated[str | None, typer.Option("--encoding", help="Text encoding of a CSV input.")]
ValidationOption = Annotated[Path | None, typer.Option(
    "--validation-file", help="Chat examples (JSONL: a validation loss per epoch) and/or questions with expected "
    "answers (JSONL or CSV as for `tuneloop eval`: a score per epoch); the best epoch is registered.",
    show_default=False)]
LikeOption = Annotated[str | None, typer.Option(
    "--like", help="Re-run this job (one imported with `tuneloop import openai`, or any other) locally: its "
    "training and validation files, method, hyperparameters, seed and suffix; options given here win.",
    show_default=False)]


def train(
    source: SourceArgument = None,
    dialogues: DialoguesOption = False,
    negative: NegativeOption = False,
    method: MethodOption = Method.auto,
    base: BaseOption = None,
    device: DeviceOption = None,
    quantize: QuantizeOption = None,
    backend: BackendOption = None,
    suffix: SuffixOption = None,
    epochs: EpochsOption = None,
    batch_size: BatchSizeOption = None,
    lr_multiplier: MultiplierOption = None,
    beta: BetaOption = None,
    seed: SeedOption = None,
    wait: WaitOption = False,
    encoding: CsvEncodingOption = None,
    validation_file: ValidationOption = None,
    json_: JsonOption = False,
    like: LikeOption = None,
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
    request = TrainRequest(
        source=source, dialogues=dialogues, negative=negative, encoding=encoding, method=method, base=base,
        suffix=suffix, seed=seed, backend=backend, device=device, quantize=quantize,
        validation_file=validation_file, like=like,
        hyperparameters=given_hyperparameters(epochs, batch_size, lr_multiplier, beta),
        where=dialogue_filter(model, metadata, since, until) if like is None else None)
    started = request.create(ft)
    if json_ and not wait:
        print_json(started.job.to_openai())
        return
    announce(ft, started, wait=wait)
    if wait:
        finish(follow(ft, started.job.id), json_)


def given_hyperparameters(epochs: int | None, batch_size: int | None, lr_multiplier: float | None,
                          beta: float | None) -> dict[str, Any]:
    """The hyperparameters given on the command line; the others are left to "auto"."""
    given = {"n_epochs": epochs, "batch_size": batch_size, "learning_rate_multiplier": lr_multiplier, "beta": beta}
    return {k: v for k, v in given.items() if v is not None}


@dataclass
class Started:
    """A job just created, with what to say about its data."""

    job: Job
    count: int | str  # the number of training examples ("its" for a re-run job)
    method: str


@dataclass
class TrainRequest:
    """What `tuneloop train` was asked: a job to re-run (``like``) or data to train on, and the job's options."""

    source: str | None
    dialogues: bool
    negative: bool
    encoding: str | None
    method: Method
    base: str | None
    suffix: str | None
    seed: int | None
    backend: Backend | None
    device: str | None
    quantize: str | None
    validation_file: Path | None
    like: str | None
    hyperparameters: dict[str, Any]
    where: Any  # the log filter of --from-dialogues (None with --like, which reads no log)

    def create(self, ft: FineTuning) -> Started:
        """Create the job: a local re-run of ``like``, or one on the collected data."""
        if self.like is None:
            return self._create_from_data(ft)
        if (self.source is not None or self.dialogues or self.validation_file is not None
                or (self.backend and self.backend.value != "local")):
            raise InputError("--like re-runs a job's own data locally: drop the data source, --from-dialogues, "
                             "--validation-file and --backend")
        job = ft.create_like(self.like, model=self.base, suffix=self.suffix, seed=self.seed, device=self.device,
                             hyperparameters=self.hyperparameters)
        return Started(job, "its", job.method)

    def _create_from_data(self, ft: FineTuning) -> Started:
        dataset = collect(Wanted(self.source, self.dialogues, self.negative, self.encoding,
                                 where=self.where or LogFilter()), runtime=ft.runtime)
        name = Path(self.source).stem + ".jsonl" if self.source not in (None, "-") else "dialogues.jsonl"
        stored, chosen, count = ft.add_dataset(dataset, method=self.method.value, filename=name)
        validation = upload_validation(ft, self.validation_file) if self.validation_file is not None else None
        try:
            job = ft.create(stored.id, model=self.base, method=chosen, suffix=self.suffix, seed=self.seed,
                            backend=self.backend.value if self.backend else ft.default_backend, device=self.device,
                            quantize=self.quantize, hyperparameters=self.hyperparameters, validation_file=validation)
        except DatasetInvalidError as exc:
            render_report(exc.report)  # type: ignore[arg-type]
            raise
        return Started(job, count, chosen)


def announce(ft: FineTuning, started: Started, *, wait: bool) -> None:
    """One line about the job started; without --wait, how to follow it."""
    job, h = started.job, started.job.hyperparameters
    error_console.print(
        f"Started [bold]{job.id}[/] ({job.backend}): {started.count} {started.method} examples, "
        f"{h.get('n_epochs', 'auto')} epochs, batch {h.get('batch_size', 'auto')}, learning rate × "
        f"{h.get('learning_rate_multiplier', 'auto')} on {escape(job.model)}"
    )
    if not wait:
        error_console.print(f"Follow it with [bold]tuneloop jobs wait {job.id}[/] (it goes on if you close this).")
        if job.backend == "local" and not ft.settings.spawn_worker:
            error_console.print("It waits in the queue for a `tuneloop worker` (spawn_worker is off).")
