"""OpenAI's cursor paging (``after`` = the last id seen, ``limit``) over a list already in order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from tuneloop.server._errors import APIError


class HasId(Protocol):
    id: str


T = TypeVar("T", bound=HasId)


def page_after(items: Sequence[T], after: str | None, limit: int, missing: str) -> tuple[list[T], bool]:
    """The ``limit`` items after the one whose id is ``after``, and whether more follow; ``missing`` is the
    400 message when no item has that id."""
    rest = list(items)
    if after is not None:
        ids = [item.id for item in rest]
        if after not in ids:
            raise APIError(400, missing, param="after")
        rest = rest[ids.index(after) + 1 :]
    return rest[:limit], len(rest) > limit
