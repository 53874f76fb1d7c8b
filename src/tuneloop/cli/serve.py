"""``tuneloop serve``: the OpenAI-compatible server in the foreground."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer

from tuneloop.cli._output import console, conversion_progress
from tuneloop.errors import ConfigError

HOST_HELP = "Address to listen on. Anything but loopback needs --api-key."
KEY_HELP = ("Require the key: 'Authorization: Bearer KEY' on the API, a sign-in on the dashboard (or "
            "server_api_key in tuneloop.toml).")


def serve(
    host: Annotated[str, typer.Option(help=HOST_HELP)] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: a free one).")] = 8000,
    api_key: Annotated[str | None, typer.Option(
        "--api-key", envvar="TUNELOOP_SERVER_API_KEY", show_envvar=True, help=KEY_HELP)] = None,
    max_file_mb: Annotated[float | None, typer.Option(
        min=0.001, help="Largest upload accepted, in MB (default: server_max_file_mb, 512).")] = None,
    vision_model: Annotated[Path | None, typer.Option(
        help="Folder of a Hugging Face image-text-to-text model to serve too (under the folder's name); it accepts "
             "image_url parts (data: URLs).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level: critical, error, warning, info, debug.")] = (
        "info"),
    max_batch: Annotated[int | None, typer.Option(
        min=1, max=256, help="Most replies generated at once (default: TUNELOOP_MAX_BATCH, 8); 1: one at a "
                             "time.")] = None,
) -> None:
    """Serve the local models and fine-tuning jobs over OpenAI's HTTP API, and the dashboard at /ui/.

    Routes: GET /v1/models and /v1/models/{id}, POST /v1/chat/completions (stream too), /v1/responses,
    /v1/conversations, /v1/files (upload with purpose fine-tune, list, get, content, delete) and
    /v1/fine_tuning/jobs (create, list, get, cancel, events, checkpoints). Jobs are the same as `tuneloop jobs`;
    a fine-tuned model is served as soon as its job succeeds. Up to --max-batch replies are generated at once (the
    fast engine decodes them together, one token each per step); later requests wait in the order they arrived.
    The dashboard (log, ratings, corrections, data, jobs, models, evals, playground, judges) is at /ui/, behind the
    same key.
    """
    _run("serve", host, port, api_key, max_file_mb=max_file_mb, vision_model=vision_model, log_level=log_level,
         max_batch=max_batch, open_browser=False)


def ui(
    host: Annotated[str, typer.Option(help=HOST_HELP)] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: a free one).")] = 8001,
    api_key: Annotated[str | None, typer.Option(
        "--api-key", envvar="TUNELOOP_SERVER_API_KEY", show_envvar=True, help=KEY_HELP)] = None,
    browser: Annotated[bool, typer.Option(
        "--browser/--no-browser", help="Open the dashboard in this machine's web browser, where there is one.")] = True,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level: critical, error, warning, info, debug.")] = (
        "warning"),
) -> None:
    """The dashboard in your browser: the log with ratings and corrections, training data, jobs with live loss,
    models, evals side by side, a playground and judges.

    It is `tuneloop serve` (same store, same models, the API at /v1/ too) on 127.0.0.1:8001, printing the dashboard's
    address and opening it in a browser where there is one. Ctrl-C stops it.
    """
    _run("ui", host, port, api_key, max_file_mb=None, vision_model=None, log_level=log_level, max_batch=None,
         open_browser=browser)


def _open(url: str) -> bool:
    import webbrowser

    try:
        return webbrowser.get().open(url)
    except webbrowser.Error:  # no browser on this machine (a server, a container)
        return False


def _run(command: str, host: str, port: int, api_key: str | None, *, max_file_mb: float | None,
         vision_model: Path | None, log_level: str, max_batch: int | None, open_browser: bool) -> None:
    # Lazy (cold start): the server's modules (FastAPI, uvicorn) load only for serve.
    from tuneloop.asgi import create_app
    from tuneloop.engine import BASE_MODEL_ID
    from tuneloop.runtime import Runtime
    from tuneloop.serving import base_url, bind, is_loopback, server_settings, uvicorn_server

    settings = server_settings()
    if max_batch is not None:
        settings = settings.model_copy(update={"max_batch": max_batch})
    key = api_key or (settings.server_api_key.get_secret_value() if settings.server_api_key else None)
    if not key and not is_loopback(host):
        raise ConfigError(f"refusing to listen on {host} without an API key: anyone who can reach it could use "
                          "it; pass --api-key KEY (or set TUNELOOP_SERVER_API_KEY), or listen on 127.0.0.1")
    log_levels = ("critical", "error", "warning", "info", "debug")
    if log_level not in log_levels:
        raise ConfigError(f"--log-level {log_level!r}: use one of {', '.join(log_levels)}")
    runtime = Runtime(settings, progress=conversion_progress())
    # Load the base model now, so the first request does not wait for it (and a broken install fails here).
    with console.status("Loading smollm2-135m-instruct…"):
        runtime.local.engine(BASE_MODEL_ID)
    vision = None
    if vision_model is not None:
        # Lazy: the local vision model (transformers) loads only when one is asked for.
        from tuneloop.providers.vision import VisionProvider

        with console.status(f"Loading the vision model in {vision_model}…"):
            vision = VisionProvider(vision_model)
    app = create_app(runtime, api_key=key, max_file_mb=max_file_mb, vision_model=vision)
    sock = bind(host, port)
    url = base_url(sock)
    dashboard = url.removesuffix("/v1") + "/ui/"
    if command == "ui":
        console.print(f"tuneloop ui: the dashboard is at [bold]{dashboard}[/] (store: {runtime.db.location})",
                      highlight=False)
        console.print("Sign in with the server's API key." if key else "No sign-in: only this machine can reach it.")
        if open_browser and not _open(dashboard):
            console.print("No web browser found here: open the address above in one.")
        console.print(f"The OpenAI-compatible API is at {url}. Press Ctrl-C to stop.", highlight=False)
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn_server(app, log_level=log_level).run(sockets=[sock])
        console.print("tuneloop ui: stopped")
        return
    console.print(f"tuneloop serve: listening on [bold]{url}[/] (store: {runtime.db.location})", highlight=False)
    if vision is not None:
        console.print(f"Vision model: {vision.model_id} (mark it in the client's tuneloop.toml: "
                      f'[models."{vision.model_id}"] vision = true)', highlight=False, markup=False)
    console.print("Authentication: " + ("required (Authorization: Bearer KEY)" if key else "none (loopback only)"))
    console.print(f"Dashboard: {dashboard}", highlight=False)
    shown_key = '"YOUR-KEY"' if key else '"unused"'
    console.print("Point the openai SDK at it:", highlight=False)
    console.print(f'    client = openai.OpenAI(base_url="{url}", api_key={shown_key})', highlight=False,
                  markup=False)
    console.print("or tuneloop itself:", highlight=False)
    console.print(f"    OPENAI_BASE_URL={url} OPENAI_API_KEY={'YOUR-KEY' if key else 'unused'} "
                  "TUNELOOP_PROVIDER=openai TUNELOOP_MODEL=smollm2-135m-instruct tuneloop ask 'Hello'",
                  highlight=False, markup=False)
    console.print("Press Ctrl-C to stop (long work keeps running in its workers; `tuneloop tasks list` shows it).")
    # uvicorn shuts down cleanly on Ctrl-C, then re-raises the signal: stopping is the normal end here.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn_server(app, log_level=log_level).run(sockets=[sock])
    console.print("tuneloop serve: stopped")
