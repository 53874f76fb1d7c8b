"""Corrections and rating notes: kept beside the reply (never over it), shown by `logs show`, turned into a
supervised example and a DPO pair (correction over original); bad input is one clear error and stores nothing.
On SQLite and PostgreSQL, through the library and the real CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import assert_one_line_error, run_cli
from helpers import log_exchange

from tuneloop.curation import ratings
from tuneloop.datasets import DialogueFilter, from_dialogues
from tuneloop.errors import InputError, MessageNotFoundError, NotAReplyError
from tuneloop.store import DialogueStore

QUESTION = "What is the capital of Australia?"
WRONG = "The capital of Australia is Sydney."
RIGHT = "The capital of Australia is Canberra."


def logged(store: DialogueStore, *turns: tuple[str, str]) -> list[int]:
    """A new thread holding the exchanges ``turns``; the reply ids."""
    thread = store.create_thread(model="m")
    return [log_exchange(store, thread.id, user, reply, model="m").assistant.id for user, reply in turns]


def test_a_correction_is_kept_beside_the_reply_and_teaches_both_ways(database_url: str) -> None:
    store = DialogueStore(database_url)
    (reply,) = logged(store, (QUESTION, WRONG))
    made = ratings.correct(store, reply, RIGHT, source="cli")
    assert (made.message_id, made.content, made.source) == (reply, RIGHT, "cli")

    message = store.get_message(reply)
    assert message.content == WRONG  # the original is untouched
    assert message.correction is not None and message.correction.content == RIGHT
    assert message.to_dict()["correction"]["source"] == "cli"

    dataset = from_dialogues(store)
    question = [{"role": "user", "content": QUESTION}]
    assert dataset.supervised == [{"messages": [*question, {"role": "assistant", "content": RIGHT}]}]
    assert dataset.preference == [{
        "input": {"messages": question},
        "preferred_output": [{"role": "assistant", "content": RIGHT}],
        "non_preferred_output": [{"role": "assistant", "content": WRONG}],
    }]

    # A second correction is kept too; the newest is in force.
    better = "Canberra is the capital of Australia."
    ratings.correct(store, reply, better)
    assert [c.content for c in ratings.corrections(store, reply)] == [RIGHT, better]
    assert store.messages(store.get_message(reply).thread_id)[-1].correction.content == better


def test_a_corrected_reply_is_not_taught_as_it_was_even_when_praised(database_url: str) -> None:
    store = DialogueStore(database_url)
    first, _ = logged(store, (QUESTION, WRONG), ("Great, thank you so much!", "You're welcome."))
    assert store.get_message(first).reaction == "positive"
    assert from_dialogues(store).supervised[0]["messages"][-1]["content"] == WRONG
    ratings.correct(store, first, RIGHT)
    dataset = from_dialogues(store)
    taught = [e["messages"][-1]["content"] for e in dataset.supervised]
    assert taught == [RIGHT]
    assert [p["non_preferred_output"][0]["content"] for p in dataset.preference] == [WRONG]


def test_an_excluded_reply_is_never_taught_nor_a_side_of_a_pair(database_url: str) -> None:
    store = DialogueStore(database_url)
    first, second = logged(store, (QUESTION, WRONG), ("No, that is wrong.", RIGHT))
    store.set_feedback(first, -1)
    store.set_feedback(second, 1)
    assert len(from_dialogues(store).preference) == 1  # RIGHT over WRONG
    assert ratings.exclude(store, second).excluded
    dataset = from_dialogues(store)
    assert (dataset.supervised, dataset.preference) == ([], [])  # neither taught, nor the better side of a pair
    ratings.correct(store, first, RIGHT)
    ratings.exclude(store, first)
    assert len(from_dialogues(store)) == 0  # excluded wins over a correction too
    assert not ratings.exclude(store, first, False).excluded
    assert from_dialogues(store).supervised[0]["messages"][-1]["content"] == RIGHT
    with pytest.raises(NotAReplyError):
        ratings.exclude(store, first - 1)
    with pytest.raises(MessageNotFoundError):
        ratings.exclude(store, 10**6)


def test_bad_corrections_and_ratings_are_refused_and_store_nothing(database_url: str) -> None:
    store = DialogueStore(database_url)
    (reply,) = logged(store, (QUESTION, WRONG))
    user_turn = reply - 1
    with pytest.raises(MessageNotFoundError) as missing:
        ratings.correct(store, 987654, RIGHT)
    assert missing.value.param == "message_id" and "987654" in str(missing.value)
    for out_of_range in (0, -1, 2**63, 2**128):  # no key can be these; the driver must never see them
        with pytest.raises(MessageNotFoundError):
            ratings.correct(store, out_of_range, RIGHT)
        with pytest.raises(MessageNotFoundError):
            store.get_message(out_of_range)
    with pytest.raises(NotAReplyError) as wrong_role:
        ratings.correct(store, user_turn, RIGHT)
    assert wrong_role.value.param == "message_id" and "user turn" in str(wrong_role.value)
    for empty in ("", "   \n"):
        with pytest.raises(InputError) as blank:
            ratings.correct(store, reply, empty)
        assert blank.value.param == "content"
    assert ratings.corrections(store, reply) == []
    assert store.get_message(reply).correction is None

    with pytest.raises(InputError) as bad_rating:
        ratings.rate(store, reply, "great")
    assert bad_rating.value.param == "rating"
    with pytest.raises(InputError):
        ratings.rate(store, reply, "none", note="why not")
    with pytest.raises(InputError):
        ratings.rate(store, reply, "up", note="x" * (ratings.NOTE_LENGTH + 1))
    with pytest.raises(NotAReplyError):
        ratings.rate(store, user_turn, "up")
    assert store.get_message(reply).feedback is None and store.get_message(reply).feedback_note is None


def test_a_rating_keeps_its_note_until_cleared(database_url: str) -> None:
    store = DialogueStore(database_url)
    (reply,) = logged(store, (QUESTION, WRONG))
    rated = ratings.rate(store, reply, "down", note="  made-up capital  ")
    assert (rated.feedback, rated.feedback_note) == (-1, "made-up capital")
    assert ratings.rate(store, reply, "up").feedback_note is None  # a new rating says its own why
    cleared = ratings.rate(store, reply, 0)
    assert (cleared.feedback, cleared.feedback_note) == (None, None)


def test_the_cli_corrects_shows_and_builds_data(any_home: Path, tmp_path: Path) -> None:
    store = DialogueStore(_url(any_home))
    (reply,) = logged(store, (QUESTION, WRONG))
    made = run_cli("logs", "correct", str(reply), RIGHT)
    assert made.code == 0, made.stderr
    assert f"reply #{reply}" in made.stdout
    noted = run_cli("logs", "rate", str(reply), "down", "--note", "Sydney is not the capital")
    assert noted.code == 0, noted.stderr

    shown = run_cli("logs", "show")
    assert shown.code == 0, shown.stderr
    assert WRONG in shown.stdout and RIGHT in shown.stdout and "corrected" in shown.stdout
    assert "via cli" in shown.stdout and "Sydney is not the capital" in shown.stdout
    as_json = json.loads(run_cli("logs", "show", "--json").stdout)
    assert as_json["messages"][-1]["correction"]["content"] == RIGHT
    assert as_json["messages"][-1]["feedback_note"] == "Sydney is not the capital"

    for method, key in (("supervised", "messages"), ("dpo", "preferred_output")):
        out = tmp_path / f"{method}.jsonl"
        built = run_cli("data", "build", "--from-dialogues", "--method", method, "-o", str(out))
        assert built.code == 0, built.stderr
        (example,) = [json.loads(line) for line in out.read_text().splitlines()]
        assert example[key][-1]["content"] == RIGHT


def test_the_cli_refuses_bad_corrections_in_one_line(home: Path) -> None:
    store = DialogueStore(_url(home))
    (reply,) = logged(store, (QUESTION, WRONG))
    assert_one_line_error(run_cli("logs", "correct", "987654", RIGHT), "no message #987654")
    assert_one_line_error(run_cli("logs", "correct", str(reply - 1), RIGHT), "user turn", "assistant reply")
    assert_one_line_error(run_cli("logs", "correct", str(reply), "  "), "needs text")
    assert_one_line_error(run_cli("logs", "correct", str(reply)), "TEXT", "--editor")
    assert_one_line_error(run_cli("logs", "rate", str(reply), "clear", "--note", "n"), "note goes with a rating")
    from_stdin = run_cli("logs", "correct", str(reply), "-", stdin=RIGHT + "\n")
    assert from_stdin.code == 0, from_stdin.stderr
    assert [c.content.strip() for c in ratings.corrections(store, reply)] == [RIGHT]


def test_the_editor_starts_from_the_reply(home: Path, tmp_path: Path) -> None:
    """--editor opens $EDITOR on the reply; what the editor leaves above the hint line is the correction."""
    store = DialogueStore(_url(home))
    (reply,) = logged(store, (QUESTION, WRONG))
    editor = tmp_path / "editor.py"
    editor.write_text("import sys\np = sys.argv[1]\ntext = open(p).read()\n"
                      "open(p, 'w').write(text.replace('Sydney', 'Canberra'))\n")
    command = f"{sys.executable} {editor}"
    edited = run_cli("logs", "correct", str(reply), "--editor", env={"EDITOR": command, "VISUAL": command})
    assert edited.code == 0, edited.stderr
    assert store.get_message(reply).correction.content == RIGHT
    unchanged = tmp_path / "noop.py"
    unchanged.write_text("pass\n")
    noop = f"{sys.executable} {unchanged}"
    assert_one_line_error(run_cli("logs", "correct", str(reply), "--editor", env={"EDITOR": noop, "VISUAL": noop}),
                          "unchanged")


def test_the_filter_keeps_corrections_of_the_chosen_replies(database_url: str) -> None:
    store = DialogueStore(database_url)
    (reply,) = logged(store, (QUESTION, WRONG))
    ratings.correct(store, reply, RIGHT)
    assert len(from_dialogues(store, where=DialogueFilter(model="m"))) == 2
    assert len(from_dialogues(store, where=DialogueFilter(model="other"))) == 0


def _url(home: Path) -> str:
    import os

    return os.environ.get("TUNELOOP_DATABASE_URL") or f"sqlite:///{home / 'tuneloop.db'}"


@pytest.mark.slow
def test_corrections_from_the_cli_and_over_http_reach_a_real_jobs_training_file(
        any_home: Path, database_url: str, engine: object) -> None:
    """Ten replies logged through the server (the unmodified SDK), one corrected with `tuneloop logs correct`, the
    others over HTTP; `tuneloop train --from-dialogues` makes a supervised job and a DPO job, and each job's own
    training file (read back through the server's Files API, as a worker reads it) teaches both corrections."""
    import openai
    from conftest import serving

    key = "sk-curation-job-test-0123456789"
    questions = {"What is the capital of Australia?": "Canberra is the capital of Australia.",
                 "How many legs does a spider have?": "A spider has eight legs.",
                 **{f"What is {n} times {n}?": f"{n} times {n} is {n * n}." for n in range(3, 11)}}  # a job needs 10
    # spawn_worker off in the server too: reading a queued job back would otherwise start its worker.
    with serving(any_home, key, settings={"database_url": database_url, "spawn_worker": False}) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=300)
        replies = {}
        for question in questions:
            client.chat.completions.create(model="smollm2-135m-instruct", max_tokens=8,
                                           messages=[{"role": "user", "content": question}])
        for thread in server.store.list_threads(limit=100):
            user, reply = server.store.messages(thread.id)
            replies[user.content] = reply
        assert set(replies) == set(questions)
        by_cli, *by_http = list(questions)
        made = run_cli("logs", "correct", str(replies[by_cli].id), questions[by_cli])
        assert made.code == 0, made.stderr
        for question in by_http:
            client.post(f"/logs/messages/{replies[question].id}/correction", body={"content": questions[question]},
                        cast_to=dict)
        assert ratings.corrections(server.store, replies[by_cli].id)[0].source == "cli"

        taught = {}
        for method in ("supervised", "dpo"):
            started = run_cli("train", "--from-dialogues", "--method", method, "--json",
                              env={"TUNELOOP_SPAWN_WORKER": "0"})
            assert started.code == 0, started.stderr
            job = client.fine_tuning.jobs.retrieve(json.loads(started.stdout)["id"])
            assert job.method.type == method and job.status in ("validating_files", "queued")
            lines = client.files.content(job.training_file).text.splitlines()
            taught[method] = [json.loads(line) for line in lines if line.strip()]

    supervised = {ex["messages"][-2]["content"]: ex["messages"][-1]["content"] for ex in taught["supervised"]}
    assert supervised == questions
    pairs = {ex["input"]["messages"][-1]["content"]: (ex["preferred_output"][-1]["content"],
                                                       ex["non_preferred_output"][-1]["content"])
             for ex in taught["dpo"]}
    assert pairs == {q: (right, replies[q].content) for q, right in questions.items()}
