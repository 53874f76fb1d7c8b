"""tuneloop.evals and `tuneloop eval`: graders, readers, clear errors, and a real run on the local model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import assert_one_line_error, run_cli

from tuneloop.evals import EvalFileError, make_item, read_eval_file, read_validation


@pytest.mark.parametrize(("grader", "expected", "answer", "passes"), [
    ("contains", "7", "A week has 7 days.", True),
    ("contains", "7", "It has 17 parts.", False),
    ("contains", "teal", "The Zorblax 3000 comes in TEAL.", True),
    ("contains", "Ottilie Brandvik", "designed by ottilie\n brandvik", True),
    ("contains", "km/h", "It reaches 31 km/h.", True),
    ("contains", "Rome", "Romeo", False),
    ("exact", "Paris", " paris. ", True),
    ("exact", "Paris", "It is Paris.", False),
    ("regex", r"^\d{4}$", "1873", True),
    ("regex", r"(?i)seven|\b7\b", "Seven days", True),
    ("regex", r"seven", "Seven days", False),
])
def test_graders(grader: str, expected: str, answer: str, passes: bool) -> None:
    assert make_item(question="q", expected=expected, grader=grader).grade(answer) is passes


@pytest.mark.parametrize(("question", "expected", "answer", "passes"), [
    ("What colour is the Zorblat 12?", "The Zorblat 12 is teal.", "TEAL, always", True),
    ("What colour is the Zorblat 12?", "The Zorblat 12 is teal.", "The Zorblat 12 is a type of", False),
    ("Who designed it?", "Ottilie Brandvik designed the Zorblat.", "The Zorblat: by Ottilie Brandvik.", True),
    ("Who designed it?", "Ottilie Brandvik designed the Zorblat.", "Brandvik.", False),  # 1 of 4 new words
    ("Say it thrice", "teal teal teal", "teal", False),  # a word counts as often as the expected answer has it
    ("Capital of Lithuania?", "Vilnius.", "Vilnius, of course.", True),
    ("Say the Zorblat", "the Zorblat", "the Zorblat!", True),  # adds no word: all of its words count
])
def test_the_similar_grader_wants_what_the_answer_adds_to_the_question(question: str, expected: str, answer: str,
                                                                       passes: bool) -> None:
    assert make_item(question=question, expected=expected, grader="similar").grade(answer) is passes


def test_an_eval_from_the_log_asks_corrected_and_praised_replies_again(database_url: str) -> None:
    from helpers import log_exchange

    from tuneloop.curation import ratings
    from tuneloop.evals import from_log
    from tuneloop.store import DialogueStore

    store = DialogueStore(database_url)
    thread = store.create_thread(model="m")
    first = log_exchange(store, thread.id, "Capital of Lithuania?", "Riga.", model="m").assistant.id
    second = log_exchange(store, thread.id, "And of Latvia?", "Riga is the capital of Latvia.", model="m").assistant.id
    third = log_exchange(store, thread.id, "And of Estonia?", "Tallinn.", model="m").assistant.id
    ratings.correct(store, first, "Vilnius.")
    ratings.rate(store, second, "up")
    ratings.rate(store, third, "down")
    other = store.create_thread(model="m")
    excluded = log_exchange(store, other.id, "Capital of Finland?", "Helsinki.", model="m").assistant.id
    ratings.rate(store, excluded, "up")
    ratings.exclude(store, excluded)

    items = from_log(store)
    assert [(i.line, i.expected, i.grader) for i in items] == [
        (first, ("Vilnius.",), "similar"), (second, ("Riga is the capital of Latvia.",), "similar")]
    # The question comes with the turns before it, as they were said.
    assert [m["content"] for m in items[1].messages] == ["Capital of Lithuania?", "Riga.", "And of Latvia?"]
    assert items[0].grade("It is Vilnius") and not items[0].grade("Riga")
    assert len(from_log(store, limit=1)) == 1 and from_log(store, [other.id]) == []


def test_expected_may_list_alternatives_and_messages_drop_the_reference_answer() -> None:
    item = make_item(messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Legs?"},
                               {"role": "assistant", "content": "Eight."}], expected=["eight", "8"])
    assert [m["role"] for m in item.messages] == ["system", "user"] and item.question == "Legs?"
    assert item.grade("A spider has 8 legs") and item.grade("eight legs") and not item.grade("six")


def test_readers_take_jsonl_and_csv(tmp_path: Path) -> None:
    jsonl = tmp_path / "q.jsonl"
    jsonl.write_text(json.dumps({"question": "Capital of France?", "expected": "Paris"}) + "\n\n"
                     + json.dumps({"messages": [{"role": "user", "content": "2+2?"}], "expected": "4",
                                   "grader": "exact"}) + "\n")
    items = read_eval_file(jsonl)
    assert [(i.question, i.expected, i.grader, i.line) for i in items] == [
        ("Capital of France?", ("Paris",), "contains", 1), ("2+2?", ("4",), "exact", 3)]
    csv = tmp_path / "q.csv"
    csv.write_text("Question;Expected;grader\nCapital of Italy?;Rome;\nYear?;^19\\d\\d$;regex\n")
    items = read_eval_file(csv)
    assert [(i.question, i.expected, i.grader) for i in items] == [
        ("Capital of Italy?", ("Rome",), "contains"), ("Year?", ("^19\\d\\d$",), "regex")]


@pytest.mark.parametrize(("text", "name", "fragment"), [
    ("question,answer_key\nWhat?,x\n", "q.csv", "has no expected column"),
    ("prompt_text,expected\nWhat?,x\n", "q.csv", "has no question column"),
    ('{"question": "What?"}\n', "q.jsonl", "line 1: has no \"expected\" answer"),
    ('{"question": "What?", "expected": "x", "grader": "fuzzy"}\n', "q.jsonl", "grader 'fuzzy' is unknown"),
    ('{"question": "What?", "expected": "(x", "grader": "regex"}\n', "q.jsonl", "not a valid regular expression"),
    ('{"question": "What?", "expected": ""}\n', "q.jsonl", "expected must be a non-empty string"),
    ('{"question": "What?", "expected": "x"}\n{oops\n', "q.jsonl", "line 2: is not valid JSON"),
    ('{"messages": [{"role": "assistant", "content": "x"}], "expected": "x"}\n', "q.jsonl", "must end with a user"),
    ("", "q.jsonl", "is empty"),
])
def test_bad_eval_files_name_the_file_line_and_fix(tmp_path: Path, text: str, name: str, fragment: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(EvalFileError) as caught:
        read_eval_file(path)
    assert str(path) in str(caught.value) and fragment in str(caught.value)


def test_a_validation_file_holds_examples_and_questions(tmp_path: Path) -> None:
    path = tmp_path / "valid.jsonl"
    chat = [{"role": "user", "content": "Colour of gadget 1?"}, {"role": "assistant", "content": "Gadget 1 is teal."}]
    path.write_text("\n".join(json.dumps(x) for x in [
        {"messages": chat}, {"messages": chat, "expected": "teal"}, {"question": "Colour of gadget 2?",
                                                                     "expected": "teal"}]) + "\n")
    examples, items = read_validation(path, "valid.jsonl")
    assert examples == [{"messages": chat}, {"messages": chat}]
    assert [i.question for i in items] == ["Colour of gadget 1?", "Colour of gadget 2?"]


@pytest.mark.slow
def test_eval_cli_on_the_local_model(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "general.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in [
        {"question": "What is the capital of France?", "expected": "Paris"},
        {"question": "What is the capital of France?", "expected": "Berlin"},
        {"question": "What is the capital of France?", "expected": "(?i)paris", "grader": "regex"},
    ]) + "\n")
    shown = run_cli("eval", str(path), "-m", "smollm2-135m-instruct")
    assert shown.code == 0, shown.stderr
    assert "smollm2-135m-instruct: 2/3" in shown.stdout and "✓" in shown.stdout and "✗" in shown.stdout
    as_json = run_cli("eval", str(path), "--json", "--min-score", "0.9")
    assert as_json.code == 1  # 2 of 3 is below 0.9
    report = json.loads(as_json.stdout)
    assert report["models"][0]["passed"] == 2 and report["questions"] == 3
    answers = [item["answers"]["smollm2-135m-instruct"] for item in report["items"]]
    assert answers[0]["answer"] == answers[1]["answer"] and "Paris" in answers[0]["answer"]
    assert [a["passed"] for a in answers] == [True, False, True]
    assert run_cli("eval", str(path), "--min-score", "0.5").code == 0


def test_eval_cli_errors_are_one_line(home: Path, tmp_path: Path) -> None:
    assert_one_line_error(run_cli("eval", str(tmp_path / "missing.jsonl")), "missing.jsonl", "does not exist")
    csv = tmp_path / "no_expected.csv"
    csv.write_text("question\nWhat is the capital of France?\n")
    assert_one_line_error(run_cli("eval", str(csv)), "no_expected.csv", "has no expected column")
    good = tmp_path / "good.csv"
    good.write_text("question,expected\nWhat is the capital of France?,Paris\n")
    assert_one_line_error(run_cli("eval", str(good), "-m", "no-such-model"), "no-such-model")
