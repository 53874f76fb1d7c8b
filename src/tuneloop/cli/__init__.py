"""The ``tuneloop`` command. Thin: it parses, calls the library, prints."""

from __future__ import annotations

import os
import sys

from rich.markup import escape

# The CLI draws its own progress with Rich; tqdm bars from libraries (the GGUF reader) would garble it.
# tqdm reads this when it is first imported, so it is set before anything imports it.
os.environ.setdefault("TQDM_DISABLE", "1")

# A plain `tuneloop ask` / `chat` on the default model: its fast engine loads beside the imports below.
_PICKS_A_MODEL = {"--model", "-m", "--assistant", "-a", "--continue", "-c", "--thread", "-t", "--help"}
if len(sys.argv) > 1 and sys.argv[1] in ("ask", "chat") and not _PICKS_A_MODEL & {
        a.split("=")[0] for a in sys.argv[2:]}:
    # Lazy: only a plain ask or chat starts loading the model beside the CLI's own imports.
    from tuneloop.engine.preload import preload

    preload()

from tuneloop.cli._output import error_console  # noqa: E402
from tuneloop.cli.app import app  # noqa: E402
from tuneloop.errors import TuneloopError  # noqa: E402

__all__ = ["app", "main"]


def main() -> None:
    """Entry point: every failure a person can act on is one line on stderr, never a traceback."""
    try:
        app(prog_name="tuneloop")
    except TuneloopError as exc:
        said = str(exc) + (f"; {exc.hint}" if exc.hint else "")
        error_console.print(f"[bold red]error:[/] {escape(said)}", highlight=False, markup=True, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        error_console.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("TUNELOOP_DEBUG"):
            raise
        error_console.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))} "
            "(this is a bug; rerun with TUNELOOP_DEBUG=1 for the traceback and report it)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(2)
