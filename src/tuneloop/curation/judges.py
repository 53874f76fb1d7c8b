"""Judges: a written criterion ("the reply answers the question asked") checked by a model over logged replies.

A judge has a name, an instruction, a judge model (default: the default model) and a pass rule: ``pass`` (the judge's
verdict is pass) or ``score>=N`` (its score, 1 to 5, is at least N). :func:`run` asks the judge about the selected
replies that it has not judged yet with that model: a local judge answers in batches, a remote one concurrently
under the retry policy. Each verdict is stored with its reason; an answer that is not the JSON asked for leaves the
reply unjudged (a later run retries it) and the others go on. :func:`align` compares the verdicts with the people's
ratings in the log (precision, recall, Cohen's kappa) and lists the disagreements; ``data build --from-dialogues
--criterion NAME`` keeps only the replies that pass (``LogFilter.passed_by``, in the database: the replies
:func:`passing` lists).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tuneloop.errors import InputError, MessageNotFoundError, ProviderAuthError, ProviderError, UnknownModelError
from tuneloop.evals import answer_all
from tuneloop.generation import GenerationOptions
from tuneloop.providers.base import Provider
from tuneloop.runtime import Runtime
from tuneloop.store import DialogueStore, Message
from tuneloop.store.browse import LogBrowser, LogFilter
from tuneloop.store.judgments import Judge, Judgments, Verdict

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
RULE = re.compile(r"^(pass|score>=([1-5]))$")
MAX_INSTRUCTION = 4000
MAX_QUOTED = 6000  # characters of the conversation the judge reads (the end is kept)
ANSWER_TOKENS = 120
SYSTEM = ("You are a careful reviewer of an AI assistant's replies. You check one reply against one criterion and "
          "answer with a JSON object only, no other text.")
ASK = ('Criterion: {instruction}\n\n{conversation}\n\nDoes the assistant\'s last reply meet the criterion? Answer with '
       'JSON only: {{"verdict": "pass" or "fail", "score": 1 to 5 (5: fully meets it), "reason": "one sentence"}}')


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise InputError(f"judge name {name!r}: use letters, digits, '.', '_' or '-' (up to 128, starting with a "
                         "letter or digit)", param="name")
    return name


def check_rule(rule: str) -> str:
    if not RULE.match(rule or ""):
        raise InputError(f"rule {rule!r}: use 'pass' (the judge says pass) or 'score>=N' with N from 1 to 5",
                         param="rule")
    return rule


def judge_model_of(rt: Runtime, model: str | None) -> tuple[Provider, str]:
    """The provider and id of judge model ``model`` (None: the default model); UnknownModelError when it is not on
    offer, a remote one included (its server's model list is read), so that no reply is asked about in vain."""
    provider, model_id = rt.resolve(model)
    if provider.name != "local":
        offered = provider.model_ids()
        if model_id not in offered:
            raise UnknownModelError(model_id, offered, "the remote provider does not list it")
    return provider, model_id


def define(rt: Runtime, name: str, instruction: str, *, model: str | None = None, rule: str = "pass",
           replace: bool = False) -> Judge:
    """Save judge ``name``; its model must exist here (None: the default model, resolved when it runs)."""
    check_name(name)
    if not isinstance(instruction, str) or not instruction.strip():
        raise InputError("a judge needs a criterion: write what a good reply does, e.g. 'The reply answers the "
                         "question asked, with no made-up numbers'", param="instruction")
    if len(instruction) > MAX_INSTRUCTION:
        raise InputError(f"the criterion has {len(instruction):,} characters; keep it under {MAX_INSTRUCTION:,}",
                         param="instruction")
    check_rule(rule)
    if model is not None:
        judge_model_of(rt, model)
    return rt.db.judgments.save_judge(name, instruction.strip(), model=model, rule=rule, replace=replace)


def parse_verdict(text: str, rule: str) -> tuple[bool, float | None, str | None] | None:
    """(passed, score, reason) from a judge's answer: the first JSON object in it (code fences and words around it
    are ignored). None when there is no such object or its verdict/score cannot decide the rule."""
    found = None
    for start in [m.start() for m in re.finditer(r"\{", text or "")]:
        try:
            found, _ = json.JSONDecoder().raw_decode(text[start:])
        except ValueError:
            continue
        if isinstance(found, dict):
            break
        found = None
    if not isinstance(found, dict):
        return None
    verdict = str(found.get("verdict", "")).strip().lower()
    passed = {"pass": True, "passed": True, "yes": True, "fail": False, "failed": False, "no": False}.get(verdict)
    if isinstance(found.get("verdict"), bool):
        passed = found["verdict"]
    score = found.get("score")
    try:
        score = float(score) if score is not None and not isinstance(score, bool) else None
    except (TypeError, ValueError):
        score = None
    if score is not None and not 1 <= score <= 5:
        score = None
    reason = found.get("reason")
    reason = str(reason).strip()[:1000] if reason is not None else None
    if rule.startswith("score>="):
        if score is None:
            return None
        return score >= float(rule.split(">=")[1]), score, reason
    if passed is None:
        return None
    return passed, score, reason


def conversation_of(context: Sequence[Message], reply: Message) -> str:
    """The turns the judge reads: the conversation up to the reply, its end kept when long."""
    lines = [f"{m.role.capitalize()}: {m.content}" for m in context if m.role in ("system", "user", "assistant")]
    text = "\n\n".join(lines)
    if len(text) > MAX_QUOTED:
        text = "…" + text[-MAX_QUOTED:]
    return f"Conversation:\n{text}\n\nThe assistant's last reply:\n{reply.content}"


def judge_messages(judge: Judge, context: Sequence[Message], reply: Message) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": ASK.format(instruction=judge.instruction,
                                                   conversation=conversation_of(context, reply))}]


def candidates(store: DialogueStore, where: LogFilter | None, judged_by: tuple[str, str], limit: int | None
               ) -> list[tuple[Message, list[Message]]]:
    """Logged replies with text that ``where`` selects and judge ``judged_by`` (name, model) has not judged yet,
    oldest first, each with the turns before it: chosen by the database, each thread read once."""
    refs = LogBrowser(store).reply_refs(where or LogFilter(), limit=limit, unjudged_by=judged_by, with_text=True)
    by_thread: dict[str, list[int]] = {}
    for reply, thread in refs:
        by_thread.setdefault(thread, []).append(reply)
    found: dict[int, tuple[Message, list[Message]]] = {}
    for thread, replies in by_thread.items():
        messages = store.messages(thread)
        position = {m.id: i for i, m in enumerate(messages)}
        for reply in replies:
            i = position[reply]
            found[reply] = (messages[i], messages[:i])
    return [found[reply] for reply, _ in refs]


@dataclass
class RunReport:
    judge: str
    judge_model: str
    already: int = 0
    passed: int = 0
    failed: int = 0
    unjudged: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def judged(self) -> int:
        return self.passed + self.failed

    def to_dict(self) -> dict[str, Any]:
        return {"judge": self.judge, "judge_model": self.judge_model, "already_judged": self.already,
                "judged": self.judged, "passed": self.passed, "failed": self.failed,
                "unjudged": self.unjudged, "errors": self.errors[:10]}


def run(rt: Runtime, name: str, *, model: str | None = None, where: LogFilter | None = None,
        limit: int | None = None, concurrency: int = 4, batch: int = 16,
        on_progress: Callable[[int, int], None] | None = None, check: Callable[[], None] | None = None,
        report: RunReport | None = None, on_batch: Callable[[RunReport], None] | None = None) -> RunReport:
    """Judge the selected replies not yet judged by judge ``name`` with ``model`` (default: the judge's own, else
    the default model). Verdicts are stored every ``batch`` replies, so an interrupted run keeps what it did:
    ``check`` is called before each batch (it raises to stop the run), ``on_batch`` after each with the report so
    far; ``report`` (a run taken up again) goes on counting from where it was."""
    judgments = rt.db.judgments
    judge = judgments.judge(name)
    provider, judge_model = judge_model_of(rt, model or judge.model)
    if report is None:
        report = RunReport(name, judge_model)
        report.already = len(judgments.judged(name, judge_model))
    todo = candidates(rt.db.dialogue, where, (name, judge_model), limit)
    total = len(todo)
    if on_progress is not None:
        on_progress(0, total)
    for start in range(0, total, batch):
        if check is not None:
            check()
        chunk = todo[start:start + batch]
        prompts = [judge_messages(judge, context, reply) for reply, context in chunk]
        answers = _answers(rt, provider, judge_model, prompts, concurrency)
        judgments.record(name, judge_model, _verdicts(chunk, answers, judge.rule, report))
        if on_batch is not None:
            on_batch(report)
        if on_progress is not None:
            on_progress(min(start + batch, total), total)
    return report


def _answers(rt: Runtime, provider: Provider, judge_model: str, prompts: list[list[dict[str, str]]],
             concurrency: int) -> list[str | Exception]:
    """The judge's answers: a local model's in one batch, a remote one's concurrently (a failure is that answer)."""
    if provider.name == "local":
        return list(answer_all(rt, judge_model, prompts, max_tokens=ANSWER_TOKENS))

    def ask(messages: list[dict[str, str]]) -> str | Exception:
        try:
            return provider.complete(messages, GenerationOptions(max_tokens=ANSWER_TOKENS), model=judge_model).text
        except (ProviderAuthError, UnknownModelError):
            raise  # every other reply would fail the same way
        except ProviderError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return list(pool.map(ask, prompts))


def _verdicts(chunk: list[tuple[Message, list[Message]]], answers: list[str | Exception], rule: str,
              report: RunReport) -> list[tuple[int, bool | None, float | None, str | None]]:
    """The verdicts to store for a batch (an unreadable answer is kept with why), counted in ``report``."""
    verdicts: list[tuple[int, bool | None, float | None, str | None]] = []
    for (reply, _), answer in zip(chunk, answers, strict=True):
        parsed = None if isinstance(answer, Exception) else parse_verdict(answer, rule)
        if parsed is None:
            report.unjudged.append(reply.id)
            # The answer as written, quoted: never a Python repr (its escapes are not what the model said).
            why = str(answer) if isinstance(answer, Exception) else f"not the JSON asked for: “{answer[:200]}”"
            report.errors.append(f"#{reply.id}: {why}")
            verdicts.append((reply.id, None, None, why[:1000]))
            continue
        passed, score, reason = parsed
        report.passed += passed
        report.failed += not passed
        verdicts.append((reply.id, passed, score, reason))
    return verdicts


def latest_verdicts(store: DialogueStore, name: str, judge_model: str | None = None) -> dict[int, Verdict]:
    """Each reply's newest readable verdict by judge ``name`` (by ``judge_model`` only, when given)."""
    Judgments(store).judge(name)
    found: dict[int, Verdict] = {}
    for verdict in Judgments(store).verdicts(name, judge_model):
        if verdict.passed is None:
            continue
        kept = found.get(verdict.message_id)
        if kept is None or verdict.created_at >= kept.created_at:
            found[verdict.message_id] = verdict
    return found


def passing(store: DialogueStore, name: str) -> frozenset[int]:
    """Ids of the replies judge ``name`` passed (its newest verdict on each)."""
    return frozenset(i for i, v in latest_verdicts(store, name).items() if v.passed)


@dataclass
class Alignment:
    """The judge (pass/fail) against people's ratings (up/down) on the replies that have both."""

    judge: str
    judge_model: str | None
    both_pass: int = 0  # rated up, judged pass
    judge_only: int = 0  # rated down, judged pass
    people_only: int = 0  # rated up, judged fail
    both_fail: int = 0
    disagreements: list[tuple[Message, Verdict]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return self.both_pass + self.judge_only + self.people_only + self.both_fail

    @property
    def precision(self) -> float | None:
        """Of the replies the judge passed, the share people rated up."""
        passed = self.both_pass + self.judge_only
        return self.both_pass / passed if passed else None

    @property
    def recall(self) -> float | None:
        """Of the replies people rated up, the share the judge passed."""
        liked = self.both_pass + self.people_only
        return self.both_pass / liked if liked else None

    @property
    def agreement(self) -> float | None:
        return (self.both_pass + self.both_fail) / self.count if self.count else None

    @property
    def kappa(self) -> float | None:
        """Cohen's kappa: agreement beyond what chance gives with the same rates (1 perfect, 0 chance)."""
        n = self.count
        if not n:
            return None
        judge_pass = (self.both_pass + self.judge_only) / n
        people_up = (self.both_pass + self.people_only) / n
        chance = judge_pass * people_up + (1 - judge_pass) * (1 - people_up)
        observed = (self.both_pass + self.both_fail) / n
        return (observed - chance) / (1 - chance) if chance < 1 else (1.0 if observed == 1 else 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"judge": self.judge, "judge_model": self.judge_model, "replies": self.count,
                "both_pass": self.both_pass, "judge_only_pass": self.judge_only,
                "people_only_up": self.people_only, "both_fail": self.both_fail, "precision": self.precision,
                "recall": self.recall, "agreement": self.agreement, "kappa": self.kappa,
                "disagreements": [{"message_id": m.id, "rating": m.feedback, "rating_note": m.feedback_note,
                                   "passed": v.passed, "reason": v.reason, "reply": m.content[:500]}
                                  for m, v in self.disagreements]}


def align(store: DialogueStore, name: str, judge_model: str | None = None, *, disagreements: int | None = None
          ) -> Alignment:
    """How judge ``name`` agrees with the ratings people gave (``logs rate``, metadata, the dashboard): each rated
    reply's newest readable verdict (by ``judge_model`` only, when given) against its rating, counted in the database;
    the disagreements listed oldest reply first (the first ``disagreements`` of them, when given)."""
    judgments = Judgments(store)
    judgments.judge(name)  # JudgeNotFoundError
    counts = judgments.agreement(name, judge_model)
    report = Alignment(name, judge_model, both_pass=counts.both_pass, judge_only=counts.judge_only,
                       people_only=counts.people_only, both_fail=counts.both_fail)
    if disagreements is None or disagreements > 0:
        for verdict in judgments.disagreements(name, judge_model, limit=disagreements):
            try:
                report.disagreements.append((store.get_message(verdict.message_id), verdict))
            except MessageNotFoundError:  # deleted meanwhile
                continue
    return report
