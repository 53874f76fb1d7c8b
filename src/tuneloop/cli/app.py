"""Top-level commands: ask, chat, models, demo; and the assistants and logs groups."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from tuneloop.cli._output import (
    console,
    conversion_progress,
    error_console,
    print_json,
    sentiment_text,
)
from tuneloop.cli.assistants import assistants_app
from tuneloop.cli.data import data_app
from tuneloop.cli.evals import eval_command
from tuneloop.cli.export import export as export_command
from tuneloop.cli.importers import import_app
from tuneloop.cli.jobs import jobs_app
from tuneloop.cli.judges import judge_app
from tuneloop.cli.logs import logs_app
from tuneloop.cli.models import models_app
from tuneloop.cli.serve import serve as serve_command
from tuneloop.cli.serve import ui as ui_command
from tuneloop.cli.tasks import tasks_app
from tuneloop.cli.train import train as train_command
from tuneloop.cli.worker import worker as worker_command
from tuneloop.config import load_settings
from tuneloop.conversation.chat import ChatSession, ReplyStream
from tuneloop.engine.weights import BASE_MODEL_ID
from tuneloop.errors import InputError
from tuneloop.runtime import Runtime

if TYPE_CHECKING:
    from tuneloop.evals import EvalReport

app = typer.Typer(
    name="tuneloop",
    help=(
        "Chat with a model, log every exchange with its sentiment, fine-tune on what worked.\n\n"
        "Runs offline on the bundled smollm2-135m-instruct model; set OPENAI_API_KEY (and "
        "OPENAI_BASE_URL for any OpenAI-compatible server) to use a remote provider."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(assistants_app, name="assistants")
app.add_typer(logs_app, name="logs")
app.add_typer(data_app, name="data")
app.add_typer(jobs_app, name="jobs")
app.add_typer(models_app, name="models")
app.add_typer(import_app, name="import")
app.add_typer(judge_app, name="judge")
app.add_typer(tasks_app, name="tasks")
app.command("train")(train_command)
app.command("serve")(serve_command)
app.command("ui")(ui_command)
app.command("worker")(worker_command)
app.command("export")(export_command)
app.command("eval")(eval_command)

AssistantOption = Annotated[
    str | None, typer.Option("--assistant", "-a", help="Assistant id from the assistants file.")
]
ModelOption = Annotated[str | None, typer.Option("--model", "-m", help="Model id (see `tuneloop models`).")]
SystemOption = Annotated[
    str | None, typer.Option("--system", "-s", help="System instruction (overrides the assistant's).")
]
ContinueOption = Annotated[
    bool, typer.Option("--continue", "-c", help="Continue the most recent thread.")
]
ThreadOption = Annotated[str | None, typer.Option("--thread", "-t", help="Continue the thread with this id.")]
MaxTokensOption = Annotated[
    int | None, typer.Option("--max-tokens", min=1, help="Most tokens to generate (default: config max_tokens).")
]
TemperatureOption = Annotated[
    float | None,
    typer.Option("--temperature", min=0.0, max=2.0, help="0 is greedy; default: the assistant's temperature."),
]


def runtime() -> Runtime:
    return Runtime(load_settings(), progress=conversion_progress())


def open_session(
    rt: Runtime,
    *,
    assistant: str | None,
    model: str | None,
    system: str | None,
    continue_: bool,
    thread: str | None,
) -> ChatSession:
    if continue_ and thread:
        raise InputError("use either --continue or --thread, not both")
    if continue_:
        latest = rt.db.dialogue.latest_thread()
        if latest is None:
            raise InputError(f"no thread to continue in {rt.db.location}; ask something without --continue first")
        thread = latest.id
    return ChatSession(rt, assistant_id=assistant, model=model, system_instruction=system, thread_id=thread)


def stream_to_stdout(stream: ReplyStream) -> None:
    for piece in stream:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()


@app.command()
def ask(
    text: Annotated[str, typer.Argument(help="What to ask; '-' reads it from standard input.")],
    assistant: AssistantOption = None,
    model: ModelOption = None,
    system: SystemOption = None,
    continue_: ContinueOption = False,
    thread: ThreadOption = None,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object with the reply and its log.")] = False,
    max_tokens: MaxTokensOption = None,
    temperature: TemperatureOption = None,
) -> None:
    """Ask one question and print the reply as it is generated; the exchange is logged.

    Examples:
      tuneloop ask "What is the capital of France?"
      tuneloop ask --continue "And of Italy?"
    """
    if text == "-":
        text = sys.stdin.read()
    rt = runtime()
    session = open_session(rt, assistant=assistant, model=model, system=system, continue_=continue_, thread=thread)
    if json_:
        reply = session.send(text, max_tokens=max_tokens, temperature=temperature)
        print_json(reply.to_dict())
        return
    stream = session.stream(text, max_tokens=max_tokens, temperature=temperature)
    try:
        stream_to_stdout(stream)
    except KeyboardInterrupt:
        sys.stdout.write("\n")
        error_console.print("[yellow]stopped[/]" + ("; the partial reply is logged" if stream.reply else ""))
        raise typer.Exit(130) from None
    if stream.reply is not None and error_console.is_terminal:
        reply = stream.reply
        error_console.print(
            f"[dim]{reply.thread_id} · {escape(reply.model)} · reply {sentiment_text(reply.sentiment)}[/]"
        )


CHAT_HELP = "Commands: /new starts a new thread, /exit (or Ctrl-D) leaves, Ctrl-C stops a reply."


@app.command()
def chat(
    assistant: AssistantOption = None,
    model: ModelOption = None,
    system: SystemOption = None,
    continue_: ContinueOption = False,
    thread: ThreadOption = None,
    max_tokens: MaxTokensOption = None,
    temperature: TemperatureOption = None,
) -> None:
    """Talk with an assistant; replies stream as they are generated and every exchange is logged.

    Ctrl-C stops the current reply (the session goes on); /exit or Ctrl-D leaves.
    """
    rt = runtime()
    session = open_session(rt, assistant=assistant, model=model, system=system, continue_=continue_, thread=thread)
    error_console.print(
        f"[bold]{escape(session.assistant.name)}[/] on [bold]{escape(session.model)}[/] ({session.provider.name}). "
        + CHAT_HELP,
        highlight=False,
    )
    while True:
        try:
            text = console.input("[bold cyan]you>[/] ")
        except EOFError:
            console.print()
            break
        except KeyboardInterrupt:
            console.print()
            error_console.print("[dim](/exit or Ctrl-D to leave)[/]")
            continue
        command = text.strip()
        if not command:
            continue
        if command in ("/exit", "/quit"):
            break
        if command == "/help":
            error_console.print(CHAT_HELP)
            continue
        if command == "/new":
            session.new_thread()
            error_console.print("[dim]new thread[/]")
            continue
        console.print("[bold magenta]assistant>[/] ", end="")
        stream = session.stream(text, max_tokens=max_tokens, temperature=temperature)
        try:
            stream_to_stdout(stream)
        except KeyboardInterrupt:
            sys.stdout.write("\n")
            error_console.print("[yellow]stopped[/]" + (" (the partial reply is logged)" if stream.reply else ""))
            continue
        if stream.reply is not None:
            reply = stream.reply
            error_console.print(
                f"[dim]you {sentiment_text(reply.exchange.user.sentiment)} · "
                f"reply {sentiment_text(reply.sentiment)}[/]"
            )
    if session.thread_id:
        error_console.print(f"[dim]logged in thread {session.thread_id}[/]")


@app.command()
def describe(
    image: Annotated[str, typer.Argument(help="Image file (JPEG, PNG, GIF, WebP, BMP, TIFF…); the format is read "
                                              "from the bytes.")],
    prompt: Annotated[str | None, typer.Option("--prompt", "-p", help="What to ask about the image.")] = None,
    model: ModelOption = None,
    system: SystemOption = None,
    json_: Annotated[bool, typer.Option("--json", help="Ask for a JSON object and print it (exit 1 if the reply "
                                                       "is not one).")] = False,
    detail: Annotated[str, typer.Option(help="auto, low (at most 512 px) or high.")] = "auto",
    max_tokens: MaxTokensOption = None,
) -> None:
    """Ask a vision model about an image. The exchange is logged with a reference to the image (not its bytes).

    The image is checked (size, pixel count, damage), turned upright, converted and scaled to at most
    2048 x 768 px before it is sent. The bundled local model reads text only: use an OpenAI vision model
    (gpt-4o-mini…) or any OpenAI-compatible vision server, and mark its models with
    \\[models."ID"] vision = true in tuneloop.toml.
    """
    # Lazy (cold start): describe alone needs the seed's class and its vision helpers.
    from tuneloop.openai_model import OpenAIModel

    if detail not in ("auto", "low", "high"):
        raise InputError(f"--detail {detail!r}: use auto, low or high")
    session = OpenAIModel(model_name=model, settings=load_settings())
    answer = session.describe_image(image, prompt, system, detail=detail, json_reply=True if json_ else None,
                                    max_tokens=max_tokens)
    if isinstance(answer, dict):
        print_json(answer)
    else:
        console.print(answer, markup=False, highlight=False)


DEMO_TURNS = [
    "What is the capital of France?",
    "Thanks, that's exactly right! What is a famous landmark there?",
    "That is wrong and useless. Name one famous tower in that city.",
]


@app.command()
def demo(
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="Most tokens per reply.")] = 96,
    train: Annotated[
        bool, typer.Option("--train/--no-train",
                           help="Fine-tune on the bundled facts, then ask before/after (about 3 minutes).")
    ] = True,
) -> None:
    """The whole loop, offline: chat (logged with sentiment), fine-tune on made-up product facts, compare.

    The bundled model has never heard of the products in tuneloop's demo data; after a few minutes of
    LoRA training on this machine it answers questions about them that it was not trained on, and still
    knows the capital of France.
    """
    settings = load_settings(provider="local", model=BASE_MODEL_ID)
    rt = Runtime(settings, progress=conversion_progress())
    session = ChatSession(rt)
    console.print(f"[bold]tuneloop demo[/]: chat with {BASE_MODEL_ID}, on this machine, offline.\n")
    for text in DEMO_TURNS:
        console.print(f"[bold cyan]you>[/] {escape(text)}")
        console.print("[bold magenta]assistant>[/] ", end="")
        stream = session.stream(text, max_tokens=max_tokens)
        stream_to_stdout(stream)
        reply = stream.reply
        assert reply is not None
        console.print(
            f"  [dim]your turn:[/] {sentiment_text(reply.exchange.user.sentiment, reply.exchange.user.sentiment_score)}"
            f"   [dim]reply:[/] {sentiment_text(reply.sentiment, reply.exchange.assistant.sentiment_score)}"
            f"   [dim]{reply.result.tokens_out} tokens in {reply.result.seconds:.1f}s[/]\n"
        )
    messages = session.messages()
    reactions = [m for m in messages if m.role == "assistant" and m.reaction]
    console.print("[bold]How each reply was received[/] (the sentiment of the next user turn):")
    for message in reactions:
        reaction = sentiment_text(message.reaction, message.reaction_score)
        console.print(f"  {escape(message.content[:60])!s:62} → {reaction}")
    console.print(
        f"\nLogged as thread [bold]{session.thread_id}[/] in {escape(rt.db.location)}\n"
        f"See it with: tuneloop logs show {session.thread_id}\n"
    )
    if train:
        demo_training(rt, max_tokens)


def demo_training(rt: Runtime, max_tokens: int) -> None:
    # Lazy (cold start): only the demo trains and evaluates.
    import time
    from importlib import resources

    from tuneloop.cli.evals import show
    from tuneloop.cli.jobs import follow
    from tuneloop.datasets import build_dataset, read_csv_text
    from tuneloop.evals import read_eval_file, run_eval
    from tuneloop.training import FineTuning

    data = resources.files("tuneloop.data")
    facts = data.joinpath("demo_facts.csv").read_text("utf-8")
    with resources.as_file(data.joinpath("demo_eval.jsonl")) as path:
        held_out = read_eval_file(path)
    with resources.as_file(data.joinpath("general_eval.jsonl")) as path:
        general = read_eval_file(path)
    dataset = build_dataset(read_csv_text(facts, source="demo_facts.csv"))
    console.print(
        f"[bold]Fine-tuning[/] on {len(dataset.supervised)} made-up product facts (20 products, 3 phrasings each); "
        "the questions below are phrased differently from the training rows."
    )
    ft = FineTuning(rt)
    stored, _method, _count = ft.add_dataset(dataset, method="supervised", filename="demo_facts.jsonl")
    started = time.monotonic()
    job = ft.create(stored.id, suffix="demo", seed=42)
    job = follow(ft, job.id)
    if job.status != "succeeded":
        raise typer.Exit(1)
    assert job.fine_tuned_model is not None
    trained = time.monotonic() - started
    console.print(f"Trained in {trained:.0f} s: [bold]{escape(job.fine_tuned_model)}[/]\n")

    models = [BASE_MODEL_ID, job.fine_tuned_model]
    console.print(f"Asking both models {len(held_out)} held-out and {len(general)} general questions (greedy)…")
    asked = time.monotonic()
    reports = [run_eval(rt, items, models, max_tokens=min(max_tokens, 40)) for items in (held_out, general)]
    for title, report in zip(("Held-out phrasings of the trained facts", "General questions"), reports,
                             strict=True):
        console.print(f"\n[bold]{title}[/] (before: {BASE_MODEL_ID}, after: the fine-tuned model)")
        show(report)
    held, kept = reports
    console.print(
        "\n" + demo_summary(held, kept, BASE_MODEL_ID, job.fine_tuned_model) + "\n"
        f"Time: fine-tuning job {trained:.0f} s, questions {time.monotonic() - asked:.0f} s."
    )
    console.print(
        f"\nUse it: tuneloop ask -m {escape(job.fine_tuned_model)} \"What does the Quibbler kettle cost?\"\n"
        f"Measure it: tuneloop eval YOUR_QUESTIONS.jsonl -m {escape(job.fine_tuned_model)} -m {BASE_MODEL_ID}\n"
        f"Loss curve: {escape(str(ft.results_dir(job.id) / 'loss_curve.png'))}\n"
        "See it all in your browser (the log, this job's chart, an eval, a playground): tuneloop ui"
    )


def demo_summary(held: EvalReport, kept: EvalReport, before: str, after: str) -> str:
    """The demo's closing lines: held-out and general scores before and after, and which general answers were
    lost (the same marks as the table above it)."""
    lost, gained = kept.lost(before, after), kept.gained(before, after)
    text = (
        f"[bold]Held-out facts[/]: before {held.score(before)}/{len(held.items)}, "
        f"after {held.score(after)}/{len(held.items)}.  "
        f"[bold]General questions[/]: before {kept.score(before)}/{len(kept.items)}, "
        f"after {kept.score(after)}/{len(kept.items)} ({len(lost)} the base model knew now lost, "
        f"{len(gained)} gained)."
    )
    if lost:
        text += "\nLost: " + "; ".join(escape(kept.items[i].question) for i in lost)
    return text
