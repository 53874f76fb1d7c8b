"""A streamed reply that may call tools, shown as it can be: its text as it comes, nothing once a call starts."""

from __future__ import annotations

from collections.abc import Iterator

from tuneloop.structured.call_formats import HERMES, ToolCallFormat
from tuneloop.structured.spec import OutputSpec


def hold_back(pieces: Iterator[str], spec: OutputSpec | None, *,
              call_format: ToolCallFormat = HERMES) -> Iterator[str]:
    """The text pieces of a reply that may call tools, as they can be shown: text streams as it comes, but once the
    reply starts (or may start) with a call, nothing more is shown; ``parse_reply`` reads the calls at the end."""
    if spec is None or not spec.calls_tools:
        yield from pieces
        return
    shown = ""
    held = ""
    for piece in pieces:
        held += piece
        text = shown + held
        if call_format.may_call(text):
            continue  # a call (or what may become one): kept for parse_reply
        # Text: show it, up to an end that may open a call.
        safe = call_format.shown_part(text)
        if len(safe) > len(shown):
            yield safe[len(shown):]
            held = text[len(safe):]
            shown = safe
