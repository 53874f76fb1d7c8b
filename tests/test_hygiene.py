"""Examples from a production log: repeats collapsed, personal data and secrets masked on request, and the build
report says what was dropped and masked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import assert_one_line_error, run_cli
from helpers import log_exchange

from tuneloop.datasets import from_dialogues
from tuneloop.datasets.hygiene import collapse_duplicates, redact_text
from tuneloop.store import DialogueStore


def example(question: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def test_repeats_are_collapsed_and_the_first_kept() -> None:
    examples = [
        example("What is 2+2?", "It is 4."),
        example("What is 2+2?", "It is 4."),  # exact
        example("what is 2 + 2", "it is 4"),  # case, spaces and punctuation
        example("What is 2+2?", "It is 4, of course."),  # a similar answer?  no: too different
        example("What is 2+2?", "It is 4 !"),  # near
        example("What is 3+3?", "It is 6."),
        example("Summarise the report.", "The report finds that revenue grew by twelve percent in the third "
                                          "quarter, mostly from new customers."),
        example("Summarise the report.", "The report finds that revenue grew by twelve per cent in the third "
                                          "quarter, mostly from new customers."),  # one word spelled apart
    ]
    kept, dropped = collapse_duplicates(examples)
    assert kept == [examples[0], examples[3], examples[5], examples[6]]
    assert dropped == {"duplicate": 1, "near-duplicate": 2, "similar answer": 1}
    pair = {"input": {"messages": [{"role": "user", "content": "Hi"}]},
            "preferred_output": [{"role": "assistant", "content": "Hello!"}],
            "non_preferred_output": [{"role": "assistant", "content": "Go away."}]}
    other = json.loads(json.dumps(pair))
    other["non_preferred_output"][0]["content"] = "Leave me alone."
    assert collapse_duplicates([pair, json.loads(json.dumps(pair)), other])[0] == [pair, other]


@pytest.mark.parametrize(("text", "masked"), [
    ("write to anna.petrova+work@mail.example.ru today", "write to [EMAIL] today"),
    ("my card is 4111 1111 1111 1111, exp 12/29", "my card is [CARD], exp 12/29"),
    ("card 5500-0000-0000-0004 please", "card [CARD] please"),
    ("IBAN DE89 3704 0044 0532 0130 00 for the refund", "IBAN [IBAN] for the refund"),
    ("pay GB82WEST12345698765432", "pay [IBAN]"),
    ("call me at +49 30 1234567 or (555) 123-4567", "call me at [PHONE] or [PHONE]"),
    ("мой номер +7 912 345-67-89", "мой номер [PHONE]"),
    ("key sk-proj-AbCdEf0123456789AbCdEf0123 leaked", "key [SECRET] leaked"),
    ("aws AKIAIOSFODNN7EXAMPLE and ghp_abcdefghijklmnopqrstuvwxyz0123456789", "aws [SECRET] and [SECRET]"),
])
def test_personal_data_and_secrets_are_masked(text: str, masked: str) -> None:
    assert redact_text(text) == masked


@pytest.mark.parametrize("text", [
    "The meeting is on 2026-12-03 at 14:30.",
    "Version 1.2.3 fixed bug #4521.",
    "Order 4111 1111 1111 1112 is not a valid card number.",  # fails the Luhn check
    "It costs 1 299,00 € and weighs 12.5 kg.",
    "DE00 1234 5678 9012 3456 78 is not a valid IBAN.",  # fails the checksum
    "Use a key like sk-... from your dashboard.",
    "We were 3 to 5 people.",
])
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact_text(text) == text


def test_the_build_report_counts_what_the_log_lost(home: Path, tmp_path: Path) -> None:
    store = DialogueStore(f"sqlite:///{home / 'tuneloop.db'}")
    for _ in range(3):  # the same praised exchange, three times
        thread = store.create_thread(model="m")
        log_exchange(store, thread.id, "Where do I send the invoice?", "Send it to billing@example.com.", model="m")
        log_exchange(store, thread.id, "Thanks, that is perfect!", "Glad to help.", model="m")
    assert len(from_dialogues(store).supervised) == 1
    out = tmp_path / "train.jsonl"
    built = run_cli("data", "build", "--from-dialogues", "--redact", "-o", str(out), "--json")
    assert built.code == 0, built.stderr
    summary = json.loads(built.stdout)
    assert summary["examples"] == 1 and summary["dropped"] == {"duplicate (chat example)": 2}
    assert summary["redacted"] == {"EMAIL": 3}
    assert "[EMAIL]" in out.read_text() and "billing@" not in out.read_text()
    shown = run_cli("data", "build", "--from-dialogues", "-o", str(out))
    assert "left out 2 from the log: duplicate (chat example)" in shown.stdout
    assert "billing@example.com" in out.read_text()  # masking is opt-in
    assert_one_line_error(run_cli("data", "build", "x.csv", "--redact", "-o", str(out)), "--from-dialogues")
