"""The loop in languages other than English: reactions in Russian and Hebrew select exactly the expected examples and
DPO pairs; a language the analyzer does not cover is `unknown` and selects nothing; `logs rescore` relabels an old log
(batched, idempotent, safe to interrupt). On SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli
from helpers import LABELLER, log_exchange

from tuneloop.curation.labels import Labeller, rescore
from tuneloop.curation.sentiment import COVERED_LANGUAGES
from tuneloop.datasets import from_dialogues
from tuneloop.store import DialogueStore

# (question, reply, reaction, better reply or None): the reaction is clearly positive or negative.
RUSSIAN = [
    ("Какая столица Франции?", "Столица Франции — Париж.", "Спасибо, отлично!", None),
    ("Сколько будет 2+2?", "2+2 будет 5.", "Это неправильно, ответ неверный.", "2+2 будет 4."),
    ("Кто написал «Войну и мир»?", "Лев Толстой.", "Супер, именно то, что нужно, спасибо!", None),
]
HEBREW = [
    ("מה בירת צרפת?", "בירת צרפת היא פריז.", "תודה רבה, מעולה!", None),
    ("כמה זה 2+2?", "2+2 זה 5.", "זה לא נכון, טעות.", "2+2 זה 4."),
]
# Reactions in languages tuneloop does not cover, several of which fastText half-places in one it does (Spanish for
# "Asante sana, hiyo ni nzuri!", English for "Asante, jibu hili limenisaidia.", German for "Huono vastaus.").
UNCOVERED = [("Mji mkuu wa Ufaransa ni upi?", "Ni Paris.", "Asante sana, hiyo ni nzuri!", None),
             ("Mji mkuu wa Kenya ni upi?", "Ni Nairobi.", "Asante, jibu hili limenisaidia.", None),
             ("Mikä on Suomen pääkaupunki?", "Tukholma.", "Huono vastaus.", None),
             ("Jaké je hlavní město Česka?", "Praha.", "Děkuji, moc mi to pomohlo!", None),
             ("Care este capitala României?", "Sofia.", "Răspunsul e greșit.", None),
             ("Apa ibu kota Indonesia?", "Jakarta.", "Masih error, tidak jalan", None)]


THANKS = {"ru": "Да, теперь верно, спасибо большое!", "he": "כן, עכשיו זה נכון, תודה רבה!",
          "sw": "Asante sana!"}


def log(store: DialogueStore, threads: list[tuple[str, str, str, str | None]], labeller: Labeller = LABELLER
        ) -> None:
    thanks = THANKS["ru" if threads is RUSSIAN else "he" if threads is HEBREW else "sw"]
    for question, reply, reaction, better in threads:
        thread = store.create_thread(model="m").id
        log_exchange(store, thread, question, reply, labeller, model="m")
        log_exchange(store, thread, reaction, better or "Glad to help!", labeller, model="m")
        if better:
            log_exchange(store, thread, thanks, "You are welcome!", labeller, model="m")


def expected(threads: list[tuple[str, str, str, str | None]]) -> tuple[list[str], list[tuple[str, str]]]:
    """(replies taught as they are, (preferred, avoided) pairs)."""
    taught = [reply for _, reply, _, better in threads if better is None]
    taught += [better for _, _, _, better in threads if better is not None]
    pairs = [(better, reply) for _, reply, _, better in threads if better is not None]
    return taught, pairs


@pytest.mark.parametrize("threads", [RUSSIAN, HEBREW], ids=["ru", "he"])
def test_reactions_in_another_language_select_the_examples(threads: list, database_url: str) -> None:
    store = DialogueStore(database_url)
    log(store, threads)
    dataset = from_dialogues(store)
    taught, pairs = expected(threads)
    assert sorted(e["messages"][-1]["content"] for e in dataset.supervised) == sorted(taught)
    assert sorted((p["preferred_output"][0]["content"], p["non_preferred_output"][0]["content"])
                  for p in dataset.preference) == sorted(pairs)
    first_reaction = store.messages(store.list_threads(limit=100)[-1].id)[2]
    assert first_reaction.language in ("ru", "he") and first_reaction.sentiment == "positive"


def test_an_uncovered_language_is_unknown_and_selects_nothing(database_url: str) -> None:
    store = DialogueStore(database_url)
    log(store, UNCOVERED)
    threads = store.list_threads()
    assert len(threads) == len(UNCOVERED)
    for thread in threads:
        messages = store.messages(thread.id)
        assert messages[2].sentiment == "unknown", messages[2]
        assert messages[2].language not in COVERED_LANGUAGES and messages[1].reaction == "unknown"
    dataset = from_dialogues(store)
    assert dataset.supervised == [] and dataset.preference == []


def test_rescore_relabels_an_english_only_log(database_url: str) -> None:
    store = DialogueStore(database_url)
    log(store, RUSSIAN, Labeller("vader"))  # as an English-only analyzer heard them
    assert {m.reaction for _, ms in store.export() for m in ms if m.role == "assistant"} <= {"unknown", None}
    assert len(from_dialogues(store)) == 0

    seen: list[tuple[int, int]] = []

    def stop_after_first_batch(done: int, total: int) -> None:
        seen.append((done, total))
        if done == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rescore(store, Labeller("multilingual"), batch=4, on_progress=stop_after_first_batch)
    first_batch = store.messages(store.list_threads(limit=100)[-1].id)
    assert first_batch[2].sentiment == "positive"  # the batch before Ctrl-C is kept

    total = store.count_messages()
    done, changed = rescore(store, Labeller("multilingual"), batch=4)
    assert done == total and changed > 0
    taught, pairs = expected(RUSSIAN)
    dataset = from_dialogues(store)
    assert sorted(e["messages"][-1]["content"] for e in dataset.supervised) == sorted(taught)
    assert len(dataset.preference) == len(pairs)
    assert rescore(store, Labeller("multilingual"), batch=4) == (total, 0)  # idempotent


def test_the_cli_rescores(home: Path) -> None:
    store = DialogueStore(f"sqlite:///{home / 'tuneloop.db'}")
    log(store, HEBREW, Labeller("vader"))
    done = run_cli("logs", "rescore", "--analyzer", "multilingual")
    assert done.code == 0, done.stderr
    assert f"relabelled {store.count_messages()} messages with multilingual" in done.stdout
    assert len(from_dialogues(store)) > 0
    again = run_cli("logs", "rescore")
    assert again.code == 0 and ": 0 changed" in again.stdout
    wrong = run_cli("logs", "rescore", "--analyzer", "psychic")
    assert wrong.code != 0 and "psychic" in wrong.stderr and "Traceback" not in wrong.stderr
