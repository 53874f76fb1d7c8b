"""The dashboard's playground and judges pages in a real browser (Debian's chromium through Playwright), over a real
server with the bundled model; every step is checked in the store as well as on the page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import chromium, shot, signed_in, ui_url
from conftest import serving, wait_until
from helpers import log_exchange

from tuneloop.curation import judges, ratings
from tuneloop.store import DialogueStore
from tuneloop.store.dialogue import new_thread_id
from tuneloop.store.judgments import Judgments
from tuneloop.store.schema import utcnow

KEY = "sk-playground-judges"
MODEL = "smollm2-135m-instruct"
HOSTILE = ('<img src=x onerror="alert(1)"><script>alert(2)</script><a href="javascript:alert(3)">click</a>'
           '<svg onload="alert(4)"></svg>')
RATE_UP = re.compile(r"^Rate reply #(\d+) up$")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[Any]:
    home = tmp_path_factory.mktemp("ui-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNELOOP_HOME", str(home))
        patch.setenv("TUNELOOP_MODELS_DIR", str(models_dir))
        with serving(home, KEY) as running:
            yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def reply_ids(page: Any) -> list[int]:
    buttons = page.get_by_role("button", name=RATE_UP).all()
    return [int(RATE_UP.match(b.get_attribute("aria-label")).group(1)) for b in buttons]


def logged(server: Any, message_id: int) -> Any:
    return server.store.get_message(message_id)


def test_playground_streams_logs_continues_compares_and_rates(server: Any, browser: Any) -> None:
    page = signed_in(browser, server, KEY, "/ui/playground")
    assert page.get_by_label("Model").input_value() == MODEL
    page.get_by_label("System instruction").fill("You answer in one short sentence.")
    page.get_by_label("Max reply tokens").fill("6")
    page.get_by_label("Your message").fill("Say hello.")
    page.get_by_role("button", name="Send").click()
    first = page.get_by_role("button", name=RATE_UP)
    first.wait_for()
    [reply_id] = reply_ids(page)
    reply = logged(server, reply_id)
    assert reply.role == "assistant" and reply.model == MODEL and reply.tokens_out <= 6
    thread = server.store.get_thread(reply.thread_id)
    assert thread.system_instruction == "You answer in one short sentence."
    assert [m.role for m in server.store.messages(thread.id)] == ["system", "user", "assistant"]
    assert page.get_by_role("article", name=f"Reply #{reply_id}").locator(".content").inner_text() == reply.content
    link = page.get_by_role("link", name=f"Reply #{reply_id} in the log")
    assert link.get_attribute("href") == f"/ui/log/{thread.id}#m{reply_id}"

    # Rated at once, without leaving the page; the rating is in the store.
    up = page.get_by_role("button", name=f"Rate reply #{reply_id} up")
    up.click()
    page.wait_for_selector(f'[aria-label="Rate reply #{reply_id} up"][aria-pressed="true"]')
    wait_until(lambda: logged(server, reply_id).feedback == 1, timeout=10, every=0.1)
    assert page.url.endswith("/ui/playground")

    # The conversation goes on in the same thread; a second model beside it gets its own.
    page.get_by_label("Compare with").select_option(MODEL)
    page.get_by_label("Your message").fill("And goodbye?")
    page.get_by_role("button", name="Send").click()
    wait_until(lambda: len(reply_ids(page)) == 3, timeout=60, every=0.2)
    ids = reply_ids(page)
    assert [m.role for m in server.store.messages(thread.id)] == ["system", "user", "assistant", "user", "assistant"]
    second = logged(server, ids[1])
    assert second.thread_id == thread.id and second.id == ids[1]
    beside = logged(server, ids[2])
    assert beside.thread_id != thread.id
    assert [m.content for m in server.store.messages(beside.thread_id) if m.role == "user"] == ["And goodbye?"]
    assert page.locator("#pg-side-1 h2").inner_text() == MODEL
    shot(page, "playground")
    assert page.problems == []


def test_stop_aborts_the_stream_and_the_server_stops_generating(server: Any, browser: Any) -> None:
    page = signed_in(browser, server, KEY, "/ui/playground")
    before = server.state.queue.finished
    page.get_by_label("Max reply tokens").fill("3000")
    page.get_by_label("Your message").fill("Count from 1 to 2000, one number per line, and say nothing else.")
    page.get_by_role("button", name="Send").click()
    streaming = page.locator("#pg-side-0 .turn.assistant .content").last
    wait_until(lambda: len(streaming.text_content()) > 20, timeout=60, every=0.05)  # pieces arrive as they come
    assert page.get_by_role("button", name="Send").is_disabled()
    page.get_by_role("button", name="Stop").click()
    page.get_by_role("status").filter(has_text="Stopped").wait_for()
    wait_until(lambda: server.state.queue.finished > before, timeout=30, every=0.1)
    result = server.state.queue.last
    assert result is not None and result.tokens_out < 3000
    [stopped] = [m for t in server.store.list_threads() for m in server.store.messages(t.id)
                 if m.role == "user" and m.content.startswith("Count from 1 to 2000")]
    reply = [m for m in server.store.messages(stopped.thread_id) if m.role == "assistant"][-1]
    assert reply.finish_reason == "interrupted" and reply.tokens_out < 3000
    assert page.problems == []


def test_playground_without_javascript_and_one_line_errors(server: Any, browser: Any) -> None:
    page = signed_in(browser, server, KEY, "/ui/playground", java_script_enabled=False)
    page.get_by_label("Max reply tokens").fill("5")
    page.get_by_label("Your message").fill("Hello without a script")
    page.get_by_role("button", name="Send").click()
    page.wait_for_load_state()
    [reply_id] = reply_ids(page)
    reply = logged(server, reply_id)
    assert server.store.messages(reply.thread_id)[0].content == "Hello without a script"
    assert page.locator(f'input[name="thread_a"][value="{reply.thread_id}"]').count() == 1
    page.get_by_role("button", name=f"Rate reply #{reply_id} down").click()
    page.wait_for_url(f"**/ui/log/{reply.thread_id}*")
    assert logged(server, reply_id).feedback == -1

    # A model the server does not serve: one line, no traceback (through the script's stream).
    page = signed_in(browser, server, KEY, "/ui/playground")
    page.locator("#pg-model").evaluate(
        "s => { const o = document.createElement('option'); o.value = o.textContent = 'no-such-model'; s.append(o);"
        " s.value = 'no-such-model'; }")
    page.get_by_label("Your message").fill("Hello?")
    page.get_by_role("button", name="Send").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "no-such-model" in alert.inner_text() and "Traceback" not in page.content()

    # A message longer than the model's context: one line in its column, nothing logged.
    page.reload()
    threads = len(server.store.list_threads(limit=1000))
    page.get_by_label("Max reply tokens").fill("4096")
    page.get_by_label("Your message").fill("xq7 zv9 " * 2300)
    page.get_by_role("button", name="Send").click()
    alert = page.locator("#pg-side-0").get_by_role("alert")
    alert.wait_for()
    assert f"{MODEL}: the message is" in alert.inner_text() and "shorten it" in alert.inner_text()
    assert len(server.store.list_threads(limit=1000)) == threads
    assert page.problems == []

    # A post without the page's CSRF token is refused, and changes nothing.
    refused = page.request.post(ui_url(server, "/ui/playground/send"), form={"model": MODEL, "message": "hi"})
    assert refused.status == 403
    refused = page.request.post(ui_url(server, "/ui/judges"), form={"name": "sneaky", "instruction": "x"})
    assert refused.status == 403 and all(j.name != "sneaky" for j in Judgments(server.store).judges())
    assert len(server.store.list_threads(limit=1000)) == threads


def hostile_reply(server: Any) -> int:
    thread_id = new_thread_id()
    exchange = log_exchange(server.store, thread_id, HOSTILE, HOSTILE, model=MODEL, create=True)
    return exchange.assistant.id


def test_hostile_replies_and_reasons_run_no_script(server: Any, browser: Any) -> None:
    message_id = hostile_reply(server)
    thread_id = logged(server, message_id).thread_id
    Judgments(server.store).save_judge("hostile", HOSTILE, model=None, rule="pass")
    Judgments(server.store).record("hostile", MODEL, [(message_id, False, 1.0, HOSTILE)])
    page = signed_in(browser, server, KEY, f"/ui/playground?model={MODEL}&thread_a={thread_id}")
    assert page.get_by_role("article", name=f"Reply #{message_id}").locator(".content").inner_text() == HOSTILE
    page.goto(ui_url(server, "/ui/judges"))
    assert HOSTILE in page.locator("table.verdicts .reason").first.inner_text()
    assert HOSTILE in page.locator("table.judges .instruction").first.inner_text()
    assert page.locator("main img, main script, main svg[onload], main a[href^='javascript']").count() == 0
    assert page.problems == []


def test_an_apps_threads_are_never_continued_from_the_playground(server: Any, browser: Any) -> None:
    from tuneloop.store.schema import ThreadRow

    thread_id = logged(server, hostile_reply(server)).thread_id
    with server.store.db.session(write=True) as session:  # as the server logs an app's traffic
        session.get(ThreadRow, thread_id).kind = "server"
    page = signed_in(browser, server, KEY, f"/ui/playground?model={MODEL}&thread_a={thread_id}")
    assert page.locator(f'input[name="thread_a"][value="{thread_id}"]').count() == 0
    assert page.locator("article").count() == 0  # a new conversation, not the app's
    assert page.problems == []


def test_judges_define_run_verdicts_and_agreement(server: Any, browser: Any) -> None:
    store = server.store
    rated = []
    for i, rating in enumerate(["up", "up", "down"]):
        thread_id = new_thread_id()
        exchange = log_exchange(store, thread_id, f"What is {i} + {i}?", f"It is {i + i}.", model=MODEL,
                                       create=True)
        ratings.rate(store, exchange.assistant.id, rating)
        rated.append(exchange.assistant.id)
    page = signed_in(browser, server, KEY, "/ui/judges")

    # Define a criterion with the form; it is in the store as written.
    page.get_by_label("Name", exact=True).fill("correct-sums")
    page.get_by_label("Criterion", exact=True).fill("The reply gives the right sum.")
    page.get_by_label("Judge model").select_option(MODEL)
    page.get_by_label("Pass rule").select_option("score>=4")
    page.get_by_role("button", name="Save the criterion").click()
    page.get_by_role("status").filter(has_text="correct-sums saved").wait_for()
    judge = Judgments(store).judge("correct-sums")
    assert (judge.instruction, judge.model, judge.rule) == ("The reply gives the right sum.", MODEL, "score>=4")

    # The same name again: one line, the form kept.
    page.get_by_label("Name", exact=True).fill("correct-sums")
    page.get_by_label("Criterion", exact=True).fill("Another criterion")
    page.get_by_role("button", name="Save the criterion").click()
    assert "exists" in page.get_by_role("alert").inner_text()
    assert page.get_by_label("Criterion", exact=True).input_value() == "Another criterion"

    # Run it over two replies: the page follows the run and shows what was judged; the verdicts are stored.
    page.goto(ui_url(server, "/ui/judges"))
    page.get_by_label("Limit for correct-sums").fill("2")
    page.get_by_role("button", name="Run correct-sums").click()
    page.get_by_role("status").filter(has_text=re.compile(r"correct-sums \(.*\): judged \d+")).wait_for(
        timeout=120_000)
    assert len(Judgments(store).verdicts("correct-sums")) == 2

    # Agreement with people's ratings, from verdicts stored for the rated replies.
    Judgments(store).save_judge("agrees", "The reply is right.", model=None, rule="pass")
    Judgments(store).record("agrees", MODEL, [(rated[0], True, 5.0, "fine"), (rated[1], False, 2.0, "wrong"),
                                              (rated[2], False, 1.0, "wrong")])
    page.goto(ui_url(server, "/ui/judges"))
    row = page.locator("table.agreement tr", has=page.get_by_role("rowheader", name="agrees"))
    cells = [c.inner_text() for c in row.locator("td").all()]
    assert cells == ["3", "1", "0", "1", "1", "1.00", "0.50", "0.67", "0.40"]
    shot(page, "judges")
    assert page.problems == []


def test_judges_page_reads_no_whole_log_refreshes_only_while_running_and_refuses_odd_limits(
        server: Any, browser: Any) -> None:
    Judgments(server.store).save_judge("waits", "The reply waits.", model=None, rule="pass")
    page = signed_in(browser, server, KEY, "/ui/judges")
    tasks = server.state.runtime.db.tasks
    wait_until(lambda: not tasks.unfinished(["judge_run"]), timeout=120, every=0.1)

    # The page counts agreement in the database and asks for the newest verdicts only: the log and a criterion's
    # every verdict are never read.
    def whole(*_: Any, **__: Any) -> Any:
        raise AssertionError("the judges page read the whole log")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DialogueStore, "export", whole)
        patch.setattr(Judgments, "verdicts", whole)
        patch.setattr(judges, "latest_verdicts", whole)
        idle = page.request.get(ui_url(server, "/ui/judges"))
    assert idle.status == 200 and "refresh" not in idle.headers

    # While a run is in progress (and only then) the page follows it, no oftener than every 5 seconds: a run a
    # worker on another machine holds, heartbeating.
    going_task = tasks.create("judge_run", params={"judge": "waits"}, title="judge waits")
    tasks.update(going_task.id, status="running", worker="elsewhere:1", pid=1, heartbeat_at=utcnow(),
                 progress={"done": 1, "total": 3, "message": "1 of 3 replies judged"})
    try:
        going = page.request.get(ui_url(server, "/ui/judges?done=started&name=waits"))
        assert going.headers["refresh"] == "5; url=/ui/judges?done=started&name=waits"
        assert "running… 1 of 3 replies" in going.text() and "reloads itself every 5 seconds" in going.text()
    finally:
        tasks.update(going_task.id, status="cancelled", finished_at=utcnow())
    assert "refresh" not in page.request.get(ui_url(server, "/ui/judges")).headers

    # A limit that is not ASCII digits from 1 to 100,000 (superscript two: isdigit() says yes, int() refuses it):
    # one line and a 400, no run.
    token = page.locator('input[name="csrf_token"]').first.input_value()
    for limit in ["²", "٣", "0", "100001", "9" * 5000, "-1", "1e3"]:
        refused = page.request.post(ui_url(server, "/ui/judges/waits/run"),
                                    form={"csrf_token": token, "limit": limit}, max_redirects=0)
        assert refused.status == 400, (limit, refused.status)
        assert "is not a whole number from 1 to 100,000" in refused.text() and "Traceback" not in refused.text()
    assert Judgments(server.store).verdicts("waits") == [] and not tasks.unfinished(["judge_run"])
    assert page.problems == []
