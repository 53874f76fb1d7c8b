"""What the log teaches: the replies the log's filter selects (and a judge's criterion passes), turned into training
examples by the curation rules (:func:`tuneloop.datasets.from_dialogues`). ``tuneloop data build --from-dialogues``,
the dashboard's data page and ``OpenAIModel.dynamic_train`` all build their data here, so the same filter picks the
same replies everywhere."""

from __future__ import annotations

from dataclasses import dataclass, replace

from tuneloop.datasets import Dataset, from_dialogues
from tuneloop.store import Store
from tuneloop.store.browse import LogFilter
from tuneloop.store.judgments import Judgments


@dataclass(frozen=True)
class Selection:
    """The training set built from the log, and how many threads it was built from."""

    dataset: Dataset
    threads: int


def select(db: Store, where: LogFilter | None = None, *, criterion: str | None = None,
           max_context_turns: int | None = None, redact: bool = False) -> Selection:
    """The examples the curation rules make of the replies ``where`` selects (all, when None) that judge
    ``criterion`` passed (when given); ``redact`` masks personal data."""
    where = where or LogFilter()
    if criterion is not None:
        Judgments(db.dialogue).judge(criterion)  # an unknown judge is named, not an empty set
        where = replace(where, passed_by=criterion)  # in the database: no list of ids, however long the log
    thread_ids = db.browse.thread_ids(where)  # the most recently active first, as the log lists them
    dataset = from_dialogues(db.dialogue, thread_ids=thread_ids, max_context_turns=max_context_turns,
                             where=where if where else None, redact_personal=redact)
    return Selection(dataset, len(thread_ids))
