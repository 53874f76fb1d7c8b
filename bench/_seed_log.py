"""A log of realistic size for bench/pages.py: 10,000 threads and 100,000 messages, seeded in seconds.

Rows go into the real schema (``Database(url)`` migrates it first) by bulk inserts through SQLAlchemy core; on SQLite
the FTS5 triggers of migration 0004 keep ``messages_fts`` in step, as they do for the server's own inserts. The
log is made of (deterministic, from ``SEED``):
- threads of several models, assistants (or none) and kinds (tuneloop's chat, conversation, response chain, stored
  completion), a third with metadata, active over the last 90 days;
- 2 to 18 turns each (a system turn in some), user and assistant alternating, in one of several languages (or
  undetermined), 20 to 80 words each drawn from a Zipf-like vocabulary of 4,000 words, so a common word matches
  most threads and a rare one a few;
- user turns' sentiment; ~5 % of threads with a rated reply, ~1 % corrected, ~3 % judged, a few replies excluded.
"""

from __future__ import annotations

import itertools
import random
import string
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, text

from tuneloop.store.database import Database
from tuneloop.store.schema import (
    AssistantRow,
    CorrectionRow,
    JudgeRow,
    MessageRow,
    ThreadRow,
    VerdictRow,
)

SEED = 27
THREADS = 10_000
MESSAGES = 100_000
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
MODELS = ["smollm2-135m-instruct", "gpt-4o-mini", "ft:smollm2-135m-instruct:support:abc123", "qwen2.5-0.5b"]
ASSISTANTS = ["support", "sales", "tutor"]
KINDS = [(None, 40), ("conversation", 25), ("response", 20), ("chat.completion", 15)]
LANGUAGES = [("en", 55), ("fr", 12), ("de", 10), ("es", 10), ("ja", 5), ("it", 3), ("pt", 3), (None, 2)]
SENTIMENTS = [("neutral", 50), ("positive", 25), ("negative", 15), ("unknown", 10)]
TEAMS = ["billing", "support", "growth", "research", "ops"]
# Real words first (the most frequent: "order" is everywhere, "password" fairly common), then made-up ones; the
# word of rank r is drawn with weight 1/r.
REAL = (  # noqa: SIM905 - a word list reads best as prose
    "the order account please thanks help refund password invoice delivery shipping model question answer "
        "problem error login reset email price discount warranty return exchange size colour battery screen "
        "update install download subscription cancel upgrade payment card bank transfer address phone support "
        "ticket manager weekend morning evening travel hotel flight booking luggage").split()


def vocabulary(rng: random.Random, size: int = 4000) -> list[str]:
    made: set[str] = set(REAL)
    words = list(REAL)
    while len(words) < size:
        word = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(4, 9)))
        if word not in made:
            made.add(word)
            words.append(word)
    return words


def _pick(rng: random.Random, weighted: list[tuple[Any, int]]) -> Any:
    return rng.choices([v for v, _ in weighted], weights=[w for _, w in weighted])[0]


def rare_word() -> str:
    """A word of rank ~3,000: in a few dozen messages."""
    return vocabulary(random.Random(SEED))[3000]


def seed(url: str, *, threads: int = THREADS, messages: int = MESSAGES) -> Database:
    """Fill the (new, empty) store at ``url`` and return it, migrated."""
    db = Database(url)
    rng = random.Random(SEED)
    words = vocabulary(rng)
    cumulative = list(itertools.accumulate(1.0 / (r + 1) for r in range(len(words))))
    sizes = [2] * threads  # every thread has a user turn and a reply; the rest spread at random, capped at 18
    for _ in range(messages - 2 * threads):
        while sizes[i := rng.randrange(threads)] >= 18:
            pass
        sizes[i] += 1
    assistants = [{"id": a, "name": a.title(), "model": MODELS[0], "instructions": f"You are the {a} assistant.",
                   "temperature": 0.0, "updated_at": NOW} for a in ASSISTANTS]
    thread_rows: list[dict[str, Any]] = []
    message_rows: list[dict[str, Any]] = []
    corrections: list[dict[str, Any]] = []
    verdicts: list[dict[str, Any]] = []
    message_id = 0
    for t in range(threads):
        created = NOW - timedelta(days=90 * rng.random())
        language = _pick(rng, LANGUAGES)
        model = rng.choice(MODELS)
        kind = _pick(rng, KINDS)
        metadata = ({"team": rng.choice(TEAMS), "env": rng.choice(["prod", "staging"])}
                    if rng.random() < 0.3 else None)
        rated, corrected, judged = rng.random() < 0.05, rng.random() < 0.01, rng.random() < 0.03
        when = created
        replies: list[int] = []
        first_id = message_id + 1
        has_system = rng.random() < 0.2 and sizes[t] > 2
        for turn in range(sizes[t]):
            message_id += 1
            when += timedelta(seconds=rng.randint(5, 600))
            role = "system" if has_system and turn == 0 else (
                "user" if (turn - has_system) % 2 == 0 else "assistant")
            content = " ".join(rng.choices(words, cum_weights=cumulative, k=rng.randint(20, 80)))
            row = {"id": message_id, "thread_id": f"thread_{t:05d}", "role": role,
                   "content": content[0].upper() + content[1:] + ".", "attachments": None,
                   "model": model if role == "assistant" else None, "tokens_in": None, "tokens_out": None,
                   "latency_ms": rng.randint(50, 4000) if role == "assistant" else None,
                   "finish_reason": "stop" if role == "assistant" else None,
                   "sentiment_label": _pick(rng, SENTIMENTS) if role == "user" else "unknown",
                   "sentiment_score": round(rng.random(), 3), "language": language,
                   "reaction_label": None, "reaction_score": None, "feedback": None, "feedback_note": None,
                   "item_id": f"msg_{message_id:08x}" if kind in ("conversation", "response") else None,
                   "metadata": None, "tool_calls": None, "tool_call_id": None, "output_spec": None,
                   "excluded": role == "assistant" and rng.random() < 0.003, "created_at": when}
            if role == "assistant":
                replies.append(message_id)
            message_rows.append(row)
        if rated:
            message_rows[rng.choice(replies) - 1]["feedback"] = rng.choice([1, 1, -1])
        if corrected:
            reply = rng.choice(replies)
            message_rows[reply - 1]["feedback"] = -1
            corrections.append({"message_id": reply, "content": "The right answer is this one.", "source": "ui",
                                "created_at": when})
        if judged:
            for reply in replies[:2]:
                verdicts.append({"message_id": reply, "judge": rng.choice(["polite", "correct"]),
                                 "judge_model": MODELS[1], "passed": rng.random() < 0.7,
                                 "score": round(rng.random(), 2), "reason": "Because.", "created_at": when})
        first_user = message_rows[first_id - 1 + has_system]["content"]
        thread_rows.append({"id": f"thread_{t:05d}", "assistant_id": rng.choice([*ASSISTANTS, None, None]),
                            "model": model, "title": first_user[:60], "system_instruction": None, "kind": kind,
                            "metadata": metadata, "end_user": f"user-{rng.randrange(500)}" if kind else None,
                            "created_at": created, "updated_at": when})
    judges = [{"name": n, "instruction": f"Is the reply {n}?", "model": None, "rule": "pass", "created_at": NOW,
               "updated_at": NOW} for n in ("polite", "correct")]
    with db.engine.begin() as conn:
        conn.execute(insert(AssistantRow.__table__), assistants)
        conn.execute(insert(JudgeRow.__table__), judges)
        for start in range(0, len(thread_rows), 5000):
            conn.execute(insert(ThreadRow.__table__), thread_rows[start:start + 5000])
        for start in range(0, len(message_rows), 5000):
            conn.execute(insert(MessageRow.__table__), message_rows[start:start + 5000])
        conn.execute(insert(CorrectionRow.__table__), corrections)
        conn.execute(insert(VerdictRow.__table__), verdicts)
        if db.dialect == "postgresql":  # ids were given: move the sequences past them
            for table in ("messages", "corrections", "verdicts"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                  f"(SELECT max(id) FROM {table}))"))
    if db.dialect == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))  # what autovacuum does to a store of this size on its own
    return db
