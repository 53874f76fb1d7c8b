"""The dashboard in a real browser, for what was found wrong with it: sign-in tries without limit, a tool's result shown
twice, a job's event list the keyboard could not reach, and selects that cut off their options (fine-tunes looked
identical)."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from browser import chromium, new_page, shot, signed_in, ui_url
from conftest import serving, wait_until
from sqlalchemy import insert

from tuneloop.store import DialogueStore
from tuneloop.store.files import FileStore
from tuneloop.store.jobs import JobStore
from tuneloop.store.schema import MessageRow
from tuneloop.web._security import SignInThrottle

KEY = "ui-defects-key-7e21"
BASE = "smollm2-135m-instruct"
# Two fine-tunes whose ids differ only at the end: cut off at the same length, they look the same.
TUNED = [f"ft:{BASE}:support-replies-december:ftjob-1a2b3c4d5e6f7a8b",
         f"ft:{BASE}:support-replies-december:ftjob-9f8e7d6c5b4a3f2e"]
PHONE = {"width": 375, "height": 740}
DESKTOP = {"width": 1280, "height": 900}


@dataclass
class Label:
    label: str
    score: float = 0.5
    language: str | None = "en"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Any:
    """A server with a key (no worker) over a thread with a tool call and its result, two fine-tunes with long ids
    (threads of the log use them too), a training file with a long name, and a job with many events."""
    home = tmp_path_factory.mktemp("web-defects-home")
    with serving(home, KEY, settings={"spawn_worker": False}) as server:
        store = DialogueStore(server.store)
        thread = store.create_thread(model=BASE)
        asked = store.append_exchange(thread.id, "What is the weather in Oslo?", "", model=BASE,
                                      user_sentiment=Label("neutral"), reply_sentiment=Label("neutral"))
        call = {"id": "call_oslo", "type": "function",
                "function": {"name": "weather", "arguments": json.dumps({"city": "Oslo"})}}
        with server.store.db.session(write=True) as session:
            session.get(MessageRow, asked.assistant.id).tool_calls = [call]
            base = {"thread_id": thread.id, "sentiment_label": "neutral", "sentiment_score": 0.5}
            session.execute(insert(MessageRow.__table__), [
                {**base, "role": "tool", "tool_call_id": "call_oslo", "content": "sunny-and-18-degrees"},
                {**base, "role": "tool", "tool_call_id": "call_elsewhere", "content": "answer-to-no-call-here"},
                {**base, "role": "assistant", "tool_call_id": None, "content": "It is sunny and 18 degrees in Oslo."}])
        jobs = JobStore(server.store)
        for model in TUNED:
            adapter = home / model.rsplit(":", 1)[1]
            adapter.mkdir()
            (adapter / "adapter_config.json").write_text(json.dumps({"r": 8, "peft_type": "LORA"}))
            (adapter / "adapter_model.safetensors").write_bytes(b"\0" * 4096)
            jobs.create_job(id=model.rsplit(":", 1)[1], backend="local", model=BASE, method="supervised",
                            status="succeeded", training_file="file-x", hyperparameters={}, seed=1,
                            fine_tuned_model=model, model_path=str(adapter))
            used = store.create_thread(model=model)
            store.append_exchange(used.id, "Hello?", "Hello.", model=model, user_sentiment=Label("neutral"),
                                  reply_sentiment=Label("neutral"))
        for i in range(60):
            jobs.add_event(TUNED[0].rsplit(":", 1)[1], f"step {i}: training loss {3 - i / 30:.3f}")
        data = home / "train.jsonl"
        data.write_text("{}\n")
        FileStore(server.store).add(filename="support-conversations-rated-up-2026-12-01-to-2026-12-31.jsonl",
                                    purpose="fine-tune", size=3, path=str(data))
        server.ids = {"thread": thread.id, "reply": asked.assistant.id, "job": TUNED[0].rsplit(":", 1)[1]}
        with chromium() as browser:
            server.browser = browser
            yield server


# Sign-in

def test_wrong_keys_are_throttled_and_the_right_key_signs_in_after_the_wait(site: Any, home: Path) -> None:
    with serving(home, KEY, settings={"spawn_worker": False}) as server:  # its own, so no other test waits
        page = new_page(site.browser)
        page.goto(ui_url(server, "/ui/login"))
        token = page.locator("form[action$='/login'] input[name=csrf_token]").input_value()

        def sign_in(key: str) -> tuple[float, float, Any]:
            sent = time.monotonic()
            answer = page.request.post(ui_url(server, "/ui/login"), max_redirects=0,
                                       form={"csrf_token": token, "key": key, "next": "/ui/jobs"})
            return sent, time.monotonic(), answer

        tries = [sign_in(f"guess-{i}") for i in range(20)]
        statuses = [answer.status for _, _, answer in tries]
        assert statuses[:SignInThrottle.FREE_TRIES] == [401] * SignInThrottle.FREE_TRIES
        assert set(statuses) == {401, 429}, statuses
        # A wrong key read after the free ones makes the next wait FIRST_DELAY at least: what arrives in it is refused.
        fifth_sent = tries[SignInThrottle.FREE_TRIES - 1][0]
        for _, done, answer in tries[SignInThrottle.FREE_TRIES:]:
            if done < fifth_sent + SignInThrottle.FIRST_DELAY:
                assert answer.status == 429
        for _, _, answer in tries:
            if answer.status == 429:
                wait = int(answer.headers["retry-after"])
                assert 1 <= wait <= SignInThrottle.LONGEST_DELAY
                assert re.search(r"Too many wrong keys from this address: try again in \d+ seconds?",
                                 answer.text())
                assert answer.headers["content-security-policy"]

        # The right key is not even read while the wait lasts; once it is over, it signs in.
        read = [sent for sent, _, answer in tries if answer.status == 401]
        last_wait = SignInThrottle.FIRST_DELAY * 2 ** (len(read) - SignInThrottle.FREE_TRIES)
        _, done, answer = sign_in(KEY)
        if done < read[-1] + last_wait:
            assert answer.status == 429

        def read_at_last() -> Any:
            answer = sign_in(KEY)[2]
            return answer if answer.status != 429 else None

        answer = wait_until(read_at_last, every=0.2)
        assert answer.status == 303 and answer.headers["location"] == "/ui/jobs"
        assert "tuneloop_session=" in answer.headers["set-cookie"]
        # Signed in, the address starts afresh: a wrong key is one of the free ones again.
        assert sign_in("guess-again")[2].status == 401


def test_the_throttle_remembers_a_bounded_number_of_addresses() -> None:
    throttle = SignInThrottle(addresses=100)
    for i in range(10_000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(throttle) == 100
    for _ in range(SignInThrottle.FREE_TRIES):
        throttle.failed("192.0.2.1")
    assert throttle.wait("192.0.2.1") > 0 and throttle.wait("192.0.2.2") == 0
    throttle.succeeded("192.0.2.1")
    assert throttle.wait("192.0.2.1") == 0


# A thread with a tool call

def test_a_tool_result_is_shown_once_with_its_call(site: Any) -> None:
    page = signed_in(site.browser, site, KEY, f"/ui/log/{site.ids['thread']}")
    assert page.get_by_text("sunny-and-18-degrees").count() == 1
    call = page.locator(".call").filter(has_text="weather")
    assert "sunny-and-18-degrees" in call.inner_text()  # with the call it answers
    assert page.get_by_text("answer-to-no-call-here").count() == 1  # a result without its call is still shown
    assert page.get_by_role("article").filter(has_text="answer-to-no-call-here").count() == 1
    assert page.locator(".turn .content").filter(has_text="It is sunny and 18 degrees in Oslo.").count() == 1
    assert page.problems == []


# The keyboard

def test_the_job_events_are_reached_and_scrolled_by_keyboard(site: Any) -> None:
    page = signed_in(site.browser, site, KEY, f"/ui/jobs/{site.ids['job']}")
    events = page.get_by_role("list", name="Events")
    assert events.evaluate("e => e.scrollHeight > e.clientHeight")  # it scrolls
    for _ in range(80):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "job-events":
            break
    assert page.evaluate("document.activeElement.id") == "job-events"
    page.keyboard.press("End")  # scrolls it (smoothly, perhaps: wait until it has moved)
    wait_until(lambda: events.evaluate("e => e.scrollTop") > 0, every=0.05)
    assert page.problems == []


# Selects

PAGES = ["/ui/log", "/ui/playground", "/ui/jobs/new", "/ui/models", "/ui/data"]
MEASURE = """() => [...document.querySelectorAll('select')].map(select => {
  // The same select at the width of its widest option, for comparison.
  const probe = select.cloneNode(true);
  probe.removeAttribute('id');
  probe.removeAttribute('name');
  probe.style.position = 'absolute';
  probe.style.width = 'max-content';
  probe.style.maxWidth = 'none';
  probe.style.minWidth = '0';
  select.after(probe);
  const needed = probe.getBoundingClientRect().width;
  probe.remove();
  const box = select.getBoundingClientRect();
  return {id: select.id, width: box.width, right: box.right, needed,
          options: [...select.options].map(o => o.text)};
})"""


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_every_select_shows_its_options_whole(site: Any, viewport: dict[str, int]) -> None:
    page = signed_in(site.browser, site, KEY, viewport=viewport)
    width = viewport["width"]
    for path in PAGES:
        page.goto(ui_url(site, path))
        selects = page.evaluate(MEASURE)
        assert selects, path
        for select in selects:
            assert select["width"] >= select["needed"] - 0.5, (path, width, select)
            assert select["right"] <= width, (path, width, select)
        assert page.evaluate("document.documentElement.scrollWidth") <= width, path
        shot(page, f"selects-{path.rsplit('/', 1)[1]}-{width}")
    # The fine-tunes can be told apart in every select that offers them.
    page.goto(ui_url(site, "/ui/playground"))
    texts = page.get_by_label("Model", exact=True).evaluate("s => [...s.options].map(o => o.text)")
    shown = [t for t in texts if t.startswith("ft:")]
    assert len(shown) == 2 and shown[0] != shown[1]
    assert all(t.endswith(m[-12:]) for t, m in zip(sorted(shown), sorted(TUNED), strict=True))
    assert page.problems == []
