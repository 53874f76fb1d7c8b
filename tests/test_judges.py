"""Judges: a criterion checked by a model over logged replies, verdicts stored per reply and judge model, re-runs
that skip what is judged, agreement with people's ratings, and data built from the replies that pass. The remote
judge is the stand-in vendor (validating every request with the SDK's types); the local one the bundled model."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import assert_one_line_error, run_cli
from helpers import log_exchange
from sqlalchemy import update
from standin import StandIn

from tuneloop.curation import judges, labels, ratings
from tuneloop.errors import InputError, JudgeNotFoundError, UnknownModelError
from tuneloop.runtime import Runtime
from tuneloop.store import DialogueStore
from tuneloop.store.browse import LogBrowser, LogFilter
from tuneloop.store.corrections import Corrections
from tuneloop.store.judgments import Agreement, Judgments
from tuneloop.store.schema import MessageRow, VerdictRow

KEY = "sk-standin-judges-0123456789"
CRITERION = "The reply gives the capital city asked for; 'I do not know' fails."
COUNTRIES = ["France", "Italy", "Spain", "Japan", "Kenya", "Peru", "Chile", "Egypt", "Norway", "Canada"]


@pytest.fixture
def vendor(any_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    with StandIn(api_key=KEY) as server:
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        yield server


def log_forty(store: DialogueStore) -> list[int]:
    """40 replies: every other one does not know; people rated the first 20 (one of them against the rule)."""
    ids = []
    for i in range(40):
        thread = store.create_thread(model="smollm2-135m-instruct")
        country = COUNTRIES[i % len(COUNTRIES)]
        reply = f"The capital of {country} is its largest city, case {i}." if i % 2 == 0 else \
            f"I do not know the capital of {country}, case {i}."
        ids.append(log_exchange(store, thread.id, f"What is the capital of {country}?", reply,
                                model="smollm2-135m-instruct").assistant.id)
    for n, message_id in enumerate(ids[:20]):
        up = n % 2 == 0
        if n == 4:
            up = False  # a person disagrees with the rule here
        ratings.rate(store, message_id, "up" if up else "down", note=None if up else "no capital given")
    return ids


def standin_judge(body: dict[str, Any]) -> str:
    """The remote judge: passes a reply unless it does not know; case 7 answers prose, not JSON."""
    asked = body["messages"][-1]["content"]
    reply = asked.split("The assistant's last reply:")[-1]
    if "case 7." in reply:
        return "I think this reply is fine."
    passed = "do not know" not in reply
    reason = "names a capital" if passed else "says it does not know"
    return "```json\n" + json.dumps({"verdict": "pass" if passed else "fail", "score": 5 if passed else 1,
                                     "reason": reason}) + "\n```"


def test_a_remote_judge_over_forty_replies(vendor: StandIn, any_home: Path, tmp_path: Path) -> None:
    rt = Runtime()
    ids = log_forty(rt.db.dialogue)
    vendor.reply_for = standin_judge
    judges.define(rt, "capital", CRITERION, model="standin-model")
    progress: list[tuple[int, int]] = []
    report = judges.run(rt, "capital", concurrency=4, batch=16, on_progress=lambda d, t: progress.append((d, t)))
    assert (report.passed, report.failed, report.unjudged) == (20, 19, [ids[7]])
    assert progress[0] == (0, 40) and progress[-1] == (40, 40)
    assert len(vendor.requests) == 40
    first = vendor.requests[0]
    assert first["model"] == "standin-model" and first["temperature"] == 0.0
    assert CRITERION in first["messages"][-1]["content"]

    stored = {v.message_id: v for v in rt.db.judgments.verdicts("capital")}
    assert stored[ids[0]].passed is True and stored[ids[0]].reason == "names a capital"
    assert stored[ids[1]].passed is False and stored[ids[1]].judge_model == "standin-model"
    assert stored[ids[7]].passed is None and "not the JSON asked for" in stored[ids[7]].reason

    # Again: only the unjudged reply is asked again; it still cannot be read.
    again = judges.run(rt, "capital")
    assert (again.already, again.judged, again.unjudged) == (39, 0, [ids[7]]) and len(vendor.requests) == 41

    # Against people: 20 rated, 9 up (all pass), 11 down (#4 passes; #7 is unjudged, so not compared).
    aligned = judges.align(rt.db.dialogue, "capital")
    assert (aligned.both_pass, aligned.judge_only, aligned.people_only, aligned.both_fail) == (9, 1, 0, 9)
    assert aligned.precision == pytest.approx(0.9) and aligned.recall == 1.0
    chance = (10 / 19) * (9 / 19) + (9 / 19) * (10 / 19)
    assert aligned.kappa == pytest.approx((18 / 19 - chance) / (1 - chance))
    assert [m.id for m, _ in aligned.disagreements] == [ids[4]]
    shown = run_cli("judge", "align", "capital")
    assert shown.code == 0, shown.stderr
    assert re.search(r"people: up\s*│\s*9\s*│\s*0", shown.stdout), shown.stdout
    assert "precision 0.90 · recall 1.00" in shown.stdout and "kappa 0.90" in shown.stdout, shown.stdout
    assert f"#{ids[4]}" in shown.stdout and "no capital given" in shown.stdout

    # Data from the replies that pass only.
    out = tmp_path / "passing.jsonl"
    built = run_cli("data", "build", "--from-dialogues", "--criterion", "capital", "--method", "supervised",
                    "-o", str(out))
    assert built.code == 0, built.stderr
    taught = [json.loads(line)["messages"][-1]["content"] for line in out.read_text().splitlines()]
    assert taught and all("do not know" not in t for t in taught)
    assert all(i in judges.passing(rt.db.dialogue, "capital") for i in ids[0:20:2])


def aligned_by_reading_the_log(store: DialogueStore, name: str, judge_model: str | None) -> tuple[int, ...]:
    """What align counted before it asked the database: every thread read, each rated reply's newest verdict."""
    verdicts = judges.latest_verdicts(store, name, judge_model)
    counts = [0, 0, 0, 0]
    for _, messages in store.export():
        for m in messages:
            if m.id in verdicts and m.feedback:
                up, passed = m.feedback > 0, bool(verdicts[m.id].passed)
                counts[0 if up and passed else 1 if passed else 2 if up else 3] += 1
    return tuple(counts)


def test_align_counts_in_the_database_the_same_on_both(database_url: str) -> None:
    """A small log by hand: verdicts by three judge models on one reply, a re-judged reply, unreadable verdicts,
    unrated, cleared and corrected replies, another judge's verdicts; align's counts are the same on SQLite and
    PostgreSQL, and what reading the whole log gave."""
    store = DialogueStore(database_url)
    r = []
    for i in range(11):
        thread = store.create_thread(model="m")
        r.append(log_exchange(store, thread.id, f"Question {i}?", f"Answer {i}.", model="m").assistant.id)
    for i, rating in [(0, "up"), (1, "up"), (2, "down"), (3, "down"), (4, "up"), (6, "down"), (7, "up"),
                      (8, "up"), (9, "down"), (10, "up")]:
        ratings.rate(store, r[i], rating, note=f"note {i}")
    ratings.rate(store, r[7], "none")  # rated, then cleared
    Corrections(store).add(r[8], "A better answer.")
    with store.db.session(write=True) as session:  # a zero rating, as an older store may hold
        session.execute(update(MessageRow).where(MessageRow.id == r[9]).values(feedback=0))
    judgments = Judgments(store)
    judgments.save_judge("helpful", "Helpful?", model=None, rule="pass")
    judgments.save_judge("other", "Other?", model=None, rule="pass")
    start = datetime(2026, 1, 1, tzinfo=UTC)

    def verdict(i: int, model: str, passed: bool | None, minute: int, name: str = "helpful") -> None:
        judgments.record(name, model, [(r[i], passed, None, f"{model} at {minute}")])
        with store.db.session(write=True) as session:
            session.execute(update(VerdictRow).where(
                VerdictRow.message_id == r[i], VerdictRow.judge == name, VerdictRow.judge_model == model
            ).values(created_at=start + timedelta(minutes=minute)))

    verdict(0, "a-model", True, 1)
    verdict(0, "b-model", False, 2)  # newest: fail, rated up
    verdict(1, "a-model", False, 1)
    verdict(1, "c-model", False, 2)
    verdict(1, "b-model", True, 3)  # newest: pass, rated up
    verdict(2, "a-model", True, 1)
    verdict(2, "b-model", True, 2)
    verdict(2, "a-model", False, 4)  # re-judged by a-model: fail, the newest, rated down
    verdict(3, "a-model", True, 1)  # the newest readable one: pass, rated down
    verdict(3, "b-model", None, 5)  # unreadable, newer
    verdict(4, "a-model", None, 1)  # only unreadable: not compared
    verdict(5, "a-model", True, 1)  # unrated
    verdict(6, "c-model", True, 1)  # pass, rated down
    verdict(7, "a-model", True, 1)  # its rating cleared
    verdict(8, "a-model", True, 1)  # pass, rated up, corrected
    verdict(9, "a-model", False, 1)  # rated 0
    verdict(10, "a-model", True, 1, name="other")  # another judge's only
    verdict(0, "a-model", True, 9, name="other")

    expected = {None: (2, 2, 1, 1), "a-model": (2, 1, 1, 1), "b-model": (1, 1, 1, 0), "c-model": (0, 1, 1, 0),
                "no-model": (0, 0, 0, 0)}
    for model, counts in expected.items():
        aligned = judges.align(store, "helpful", model)
        assert (aligned.both_pass, aligned.judge_only, aligned.people_only, aligned.both_fail) == counts, model
        assert aligned_by_reading_the_log(store, "helpful", model) == counts, model
        assert Judgments(store).agreement("helpful", model) == Agreement(*counts)
    aligned = judges.align(store, "helpful")
    assert [(m.id, v.judge_model, v.passed) for m, v in aligned.disagreements] == [
        (r[0], "b-model", False), (r[3], "a-model", True), (r[6], "c-model", True)]
    assert aligned.disagreements[0][0].feedback_note == "note 0" and aligned.count == 6
    assert aligned.kappa == pytest.approx((3 / 6 - 0.5) / 0.5)
    assert [m.id for m, _ in judges.align(store, "helpful", disagreements=1).disagreements] == [r[0]]
    assert judges.align(store, "helpful", disagreements=0).disagreements == []
    assert judges.align(store, "helpful", "a-model").disagreements[0][0].id == r[1]
    assert judges.align(store, "other").both_pass == 2  # its own verdicts only: r[0] and r[10], rated up
    for name in ("helpful", "other"):  # the filter data is built with: the same replies, chosen in the database
        assert set(LogBrowser(store).reply_ids(LogFilter(passed_by=name))) == judges.passing(store, name), name
        assert judges.passing(store, name)
    with pytest.raises(JudgeNotFoundError):
        judges.align(store, "nobody")

    # The newest verdicts, across judges, newest first, as many as asked for.
    newest = judgments.recent(["helpful", "other"], 3)
    assert [(v.message_id, v.judge, v.judge_model) for v in newest] == [
        (r[0], "other", "a-model"), (r[3], "helpful", "b-model"), (r[2], "helpful", "a-model")]
    assert newest[1].passed is None
    assert [v.judge for v in judgments.recent(["other"], 10)] == ["other", "other"]
    assert judgments.recent([], 10) == [] and len(judgments.recent(None, 100)) == 17
    store.close()


def test_judge_input_errors_are_clear_and_store_nothing(vendor: StandIn, any_home: Path) -> None:
    rt = Runtime()
    for name, instruction, rule, param in (("ok", "", "pass", "instruction"), ("ok", "   ", "pass", "instruction"),
                                           ("bad name!", CRITERION, "pass", "name"),
                                           ("ok", CRITERION, "score>=9", "rule"), ("ok", CRITERION, "most", "rule")):
        with pytest.raises(InputError) as caught:
            judges.define(rt, name, instruction, rule=rule)
        assert caught.value.param == param
    with pytest.raises(UnknownModelError):
        judges.define(rt, "ok", CRITERION, model="no-such-judge-model")
    assert rt.db.judgments.judges() == []
    with pytest.raises(JudgeNotFoundError):
        judges.run(rt, "nobody")
    judges.define(rt, "ok", CRITERION)
    with pytest.raises(InputError, match="exists"):
        judges.define(rt, "ok", CRITERION)
    assert judges.define(rt, "ok", "Replaced.", rule="score>=4", replace=True).rule == "score>=4"

    assert_one_line_error(run_cli("judge", "add", "empty", ""), "needs a criterion")
    assert_one_line_error(run_cli("judge", "add", "x", CRITERION, "--model", "no-such-judge-model"),
                          "no-such-judge-model")
    assert_one_line_error(run_cli("judge", "run", "nobody"), "no judge named 'nobody'")
    assert_one_line_error(run_cli("data", "build", "--from-dialogues", "--criterion", "nobody", "-o", "x.jsonl"),
                          "no judge named 'nobody'")
    assert not Path("x.jsonl").exists()


def test_verdicts_are_read_from_what_judges_really_write() -> None:
    parse = judges.parse_verdict
    assert parse('{"verdict": "pass", "score": 4, "reason": "ok"}', "pass") == (True, 4.0, "ok")
    assert parse('Sure! ```json\n{"verdict": "FAIL", "reason": "made up"}\n``` Hope that helps', "pass") == (
        False, None, "made up")
    assert parse('{"verdict": true}', "pass") == (True, None, None)
    assert parse('{"verdict": "pass", "score": 2}', "score>=3") == (False, 2.0, None)
    assert parse('{"verdict": "pass", "score": 9}', "score>=3") is None  # off the scale: cannot decide
    for unreadable in ("pass", "", "{not json}", '{"verdict": "maybe"}', "[1, 2]", '{"reason": "no verdict"}'):
        assert parse(unreadable, "pass") is None, unreadable


@pytest.mark.slow
def test_the_bundled_model_judges_locally(home: Path, engine: Any) -> None:
    """The local judge answers in batches; whatever it answers, every reply ends judged or unjudged, and a re-run
    asks only about the unjudged ones."""
    rt = Runtime()
    ids = log_forty(rt.db.dialogue)
    judges.define(rt, "local", CRITERION)
    report = judges.run(rt, "local")
    assert report.judge_model == "smollm2-135m-instruct"
    assert report.judged + len(report.unjudged) == 40
    stored = rt.db.judgments.verdicts("local")
    assert sorted(v.message_id for v in stored) == sorted(ids)
    again = judges.run(rt, "local", limit=3)
    assert again.already == report.judged and again.judged + len(again.unjudged) == min(3, len(report.unjudged))
    shown = run_cli("judge", "align", "local", env={"TUNELOOP_HOME": str(home)})
    assert shown.code == 0, shown.stderr
    assert ("Cohen's kappa" in shown.stdout) or ("no reply is both rated" in shown.stdout)
    print(f"local judge: {report.passed} pass, {report.failed} fail, {len(report.unjudged)} unjudged of 40 "
          f"({os.environ.get('TUNELOOP_ENGINE', 'auto')} engine)")


def sentiment_judge(body: dict[str, Any]) -> str:
    """The remote sentiment judge: thanks are positive, "wrong" negative, anything else neutral; a message that
    says "riddle" gets prose, not the JSON asked for."""
    text = body["messages"][-1]["content"].lower()
    if "riddle" in text:
        return "What a lovely message!"
    label = "positive" if ("asante" in text or "kiitos" in text) else "negative" if "wrong" in text else "neutral"
    return json.dumps({"label": label, "language": "sw"})


def test_the_judge_sentiment_analyzer_labels_what_is_logged_and_rescored(
        vendor: StandIn, any_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sentiment_analyzer = judge, wired as a user sets it: every logged message is labelled by the judge model (here
    the stand-in vendor), even in a language the offline analyzer does not cover; an answer that is not the JSON
    asked for is unknown; `logs rescore --analyzer judge` relabels an existing log and recomputes its reactions."""
    vendor.reply_for = sentiment_judge
    store = Runtime().db.dialogue
    thread = store.create_thread(model="smollm2-135m-instruct")
    first = log_exchange(store, thread.id, "Nipe jibu, tafadhali.", "Hili ndilo jibu.", model="smollm2-135m-instruct")
    log_exchange(store, thread.id, "Asante kwa msaada wako, rafiki.", "Karibu.", model="smollm2-135m-instruct")
    assert store.get_message(first.assistant.id).reaction == "unknown"  # the offline analyzer has no Swahili

    monkeypatch.setenv("TUNELOOP_SENTIMENT_ANALYZER", "judge")
    monkeypatch.setenv("TUNELOOP_SENTIMENT_JUDGE_MODEL", "standin-model")
    rescored = run_cli("logs", "rescore")
    assert rescored.code == 0, rescored.stderr
    assert "relabelled 4 messages with judge" in rescored.stdout
    assert [m.sentiment for m in store.messages(thread.id)] == ["neutral", "neutral", "positive", "neutral"]
    assert store.get_message(first.assistant.id).reaction == "positive"
    assert {r["model"] for r in vendor.requests} == {"standin-model"}

    rt = Runtime()
    later = log_exchange(store, thread.id, "That is wrong.", "A riddle for you.", model="smollm2-135m-instruct",
                         labeller=labels.labeller_for(rt))
    assert (later.user.sentiment, later.assistant.sentiment) == ("negative", "unknown")
    assert store.messages(thread.id)[3].reaction == "negative"
    sent = len(vendor.requests)
    again = run_cli("logs", "rescore", "--analyzer", "judge")
    assert again.code == 0 and ": 0 changed" in again.stdout, again.stdout
    assert len(vendor.requests) == sent + 6
