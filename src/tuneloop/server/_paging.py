"""OpenAI's cursor paging (``after`` = the last id seen, ``limit``) over a list already in order, and its list
envelope."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from tuneloop.serving import APIError


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


def item_list(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """OpenAI's list envelope with ``first_id`` and ``last_id`` (strings in its document, even for an empty page)."""
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else "",
            "last_id": data[-1]["id"] if data else "", "has_more": has_more}


def page(items: list[dict[str, Any]], after: str | None, limit: int, order: str) -> dict[str, Any]:
    """``items`` (oldest first) as one page: ``order`` asc or desc, the ``limit`` after the one whose id is
    ``after``."""
    ordered = items if order == "asc" else list(reversed(items))
    if after is not None:
        ids = [i["id"] for i in ordered]
        if after not in ids:
            raise APIError(400, f"after {after!r} is not an item of this list", param="after")
        ordered = ordered[ids.index(after) + 1:]
    return item_list(ordered[:limit], len(ordered) > limit)
