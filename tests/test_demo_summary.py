"""The demo's closing summary counts what the side-by-side table above it shows (no training run here)."""

from __future__ import annotations

import io
import re
from importlib import resources

import pytest
from rich.console import Console

import tuneloop.cli.evals as cli_evals
from tuneloop.cli.app import demo_summary
from tuneloop.errors import InputError
from tuneloop.evals import EvalReport, read_eval_file

BASE, TUNED = "smollm2-135m-instruct", "ft:smollm2-135m-instruct:demo:ftjob-x"
# As in the review's run: the base misses three, the tuned model loses these three and gains two of the misses.
BASE_WRONG = ("capital of Spain", "How many continents", "language is spoken in Brazil")
TUNED_WRONG = ("What gas do plants absorb", "boiling point of water", "theory of relativity", "How many continents")


def graded_report(items_file: str, wrong: dict[str, tuple[str, ...]]) -> EvalReport:
    """Each model answers each question with its expected text, or a wrong answer where listed; graded for real."""
    with resources.as_file(resources.files("tuneloop.data").joinpath(items_file)) as path:
        items = read_eval_file(path)
    report = EvalReport(items, [BASE, TUNED])
    for model in report.models:
        answers = [("I am not sure." if any(w in item.question for w in wrong.get(model, ()))
                    else f"It is {item.expected[0]}.") for item in items]
        report.answers[model] = answers
        report.passed[model] = [item.grade(a) for item, a in zip(items, answers, strict=True)]
    return report


def table_marks(report: EvalReport, monkeypatch: pytest.MonkeyPatch) -> list[tuple[bool, bool]]:
    """(before passed, after passed) per row, read from the table `tuneloop eval` and the demo print."""
    out = io.StringIO()
    monkeypatch.setattr(cli_evals, "console", Console(file=out, width=400, highlight=False))
    cli_evals.show(report)
    rows = [line.split("│") for line in out.getvalue().splitlines() if re.match(r"│\s*\d+\s*│", line)]
    assert len(rows) == len(report.items)
    return [(row[4].strip().startswith("✓"), row[5].strip().startswith("✓")) for row in rows]


def test_summary_counts_what_the_table_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    held = graded_report("demo_eval.jsonl", {BASE: ("Quibbler",)})
    kept = graded_report("general_eval.jsonl", {BASE: BASE_WRONG, TUNED: TUNED_WRONG})
    marks = table_marks(kept, monkeypatch)
    lost = sum(before and not after for before, after in marks)
    gained = sum(after and not before for before, after in marks)
    assert (lost, gained) == (3, 2)  # the answers above grade as intended

    summary = Console(file=io.StringIO(), width=400).render_str(demo_summary(held, kept, BASE, TUNED)).plain
    assert f"before 15/18, after 14/18 ({lost} the base model knew now lost, {gained} gained)" in summary
    for i in kept.lost(BASE, TUNED):
        assert kept.items[i].question in summary  # named, so the reader can find them in the table
    assert [kept.items[i].question for i in kept.lost(BASE, TUNED)] == [
        q.question for q, (b, a) in zip(kept.items, marks, strict=True) if b and not a]
    assert [kept.items[i].question for i in kept.gained(BASE, TUNED)] == [
        q.question for q, (b, a) in zip(kept.items, marks, strict=True) if a and not b]


def test_lost_between_models_not_in_the_report() -> None:
    kept = graded_report("general_eval.jsonl", {})
    with pytest.raises(InputError, match="gpt-4o-mini"):
        kept.lost(BASE, "gpt-4o-mini")
