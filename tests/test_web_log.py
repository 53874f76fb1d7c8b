"""The dashboard's log in a real browser: sign-in with the server's key, search and filters, rating, correcting and
excluding a reply (each checked in the store), hostile text that must stay text, forms without their CSRF token,
a narrow window and the keyboard."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from browser import HOSTILE, PAYLOADS, chromium, new_page, shot, signed_in, ui_url
from conftest import HANG, serving, wait_until

from tuneloop.store import DialogueStore
from tuneloop.store.judgments import Judgments

KEY = "ui-test-key-4f1c"


@dataclass
class Label:
    label: str
    score: float = 0.5
    language: str | None = "en"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Any:
    """A server with a key over a log of a few threads: a plain one, one with hostile text everywhere, one with a
    tool call and its result."""
    home = tmp_path_factory.mktemp("web-log-home")
    with serving(home, KEY) as server:
        store = DialogueStore(server.store)
        plain = store.create_thread(model="smollm2-135m-instruct")
        first = store.append_exchange(plain.id, "What is the capital of Lithuania?", "Riga is the capital.",
                                      model="smollm2-135m-instruct", user_sentiment=Label("neutral"),
                                      reply_sentiment=Label("neutral"))
        second = store.append_exchange(plain.id, "Wrong, try again", "Vilnius is the capital of Lithuania.",
                                       model="smollm2-135m-instruct", user_sentiment=Label("negative"),
                                       reply_sentiment=Label("neutral"))
        hostile = store.create_thread(model="smollm2-135m-instruct")
        bad = store.append_exchange(hostile.id, f"zanzibar {HOSTILE}", f"reply {HOSTILE}",
                                    model="smollm2-135m-instruct", user_sentiment=Label("positive", language="fr"),
                                    reply_sentiment=Label("neutral"))
        with server.store.db.session(write=True) as session:  # metadata and a title as an API client could set them
            from tuneloop.store.schema import ThreadRow

            row = session.get(ThreadRow, hostile.id)
            row.metadata_ = {"team": HOSTILE, "href": "javascript:alert(1)"}
            row.title = f"title {PAYLOADS[1]}"
        Judgments(server.store).save_judge("polite", "Is the reply polite?", model=None, rule="pass")
        Judgments(server.store).record("polite", "smollm2-135m-instruct", [(bad.assistant.id, False, None, HOSTILE)])
        server.ids = {"plain": plain.id, "hostile": hostile.id, "riga": first.assistant.id,
                      "vilnius": second.assistant.id, "bad": bad.assistant.id}
        server.dialogue = store
        with chromium() as browser:
            server.browser = browser
            yield server


def test_a_page_without_the_session_sends_to_the_sign_in_and_back(site: Any) -> None:
    page = new_page(site.browser)
    page.goto(ui_url(site, f"/ui/log/{site.ids['plain']}"))
    assert "/ui/login" in page.url
    page.get_by_label("API key").fill("not the key")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text() == "That is not the server's API key."
    page.get_by_label("API key").fill(KEY)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**/ui/log/{site.ids['plain']}")  # back where it was going
    cookie = next(c for c in page.context.cookies() if c["name"] == "tuneloop_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert KEY not in cookie["value"]
    page.get_by_role("button", name="Sign out").click()
    page.goto(ui_url(site, "/ui/log"))
    assert "/ui/login" in page.url
    assert page.problems == []


def test_find_a_thread_rate_correct_and_exclude_its_replies(site: Any) -> None:
    page = signed_in(site.browser, site, KEY)
    page.get_by_label("Search messages").fill("Lithuania")
    page.get_by_role("button", name="Filter").click()
    assert page.get_by_role("heading", name="1 thread").is_visible()
    page.get_by_role("link", name="What is the capital of Lithuania?").click()
    riga, vilnius = site.ids["riga"], site.ids["vilnius"]

    page.get_by_role("button", name=f"Rate reply #{riga} down").click()
    assert page.get_by_role("status").inner_text() == "Rating saved."
    assert site.dialogue.get_message(riga).feedback == -1
    assert page.get_by_role("button", name=f"Rate reply #{riga} down").get_attribute("aria-pressed") == "true"

    page.get_by_text("Correct this reply").first.click()
    page.get_by_label(f"Correction for reply #{riga}").fill("Vilnius is the capital of Lithuania.")
    page.get_by_role("button", name="Save the correction").first.click()
    assert site.dialogue.get_message(riga).correction.content == "Vilnius is the capital of Lithuania."
    assert page.get_by_text("Edit the correction").is_visible()

    # From the keyboard: focus the button and press Enter.
    page.get_by_role("button", name=f"Exclude reply #{vilnius} from training").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(f"**done=excluded#m{vilnius}")
    assert site.dialogue.get_message(vilnius).excluded
    page.get_by_role("button", name=f"Use reply #{vilnius} for training again").click()
    assert not site.dialogue.get_message(vilnius).excluded
    shot(page, "thread")

    page.goto(ui_url(site, "/ui/log?corrected=yes"))
    assert page.get_by_role("heading", name="1 thread").is_visible()
    page.goto(ui_url(site, "/ui/log?rating=down&language=en"))
    assert page.get_by_role("link", name="What is the capital of Lithuania?").is_visible()
    page.goto(ui_url(site, "/ui/log?since=yesterday"))
    assert "since 'yesterday' is not a date" in page.get_by_role("alert").inner_text()
    assert page.problems == []


def test_hostile_text_stays_text_on_every_page(site: Any) -> None:
    page = signed_in(site.browser, site, KEY)
    hostile = site.ids["hostile"]
    for path in ("/ui/log", "/ui/log?q=zanzibar", "/ui/log?language=fr", f"/ui/log/{hostile}"):
        page.goto(ui_url(site, path))
        assert page.evaluate("window.pwned") is None, path
        assert page.locator("script:not([src])").count() == 0, path
        assert page.locator("img[src=x], svg[onload], a[href^='javascript:']").count() == 0, path
    # It is shown, as the text it is (the thread's page).
    assert page.get_by_text("window.pwned='svg'", exact=False).first.is_visible()
    assert page.get_by_text("javascript:alert(1)").is_visible()
    assert "onerror" in page.locator(".verdict").inner_text()
    assert page.problems == []
    shot(page, "hostile")


def test_forms_without_their_token_or_session_change_nothing(site: Any) -> None:
    page = signed_in(site.browser, site, KEY)
    riga = site.ids["riga"]
    before = site.dialogue.get_message(riga)
    for form in ({"rating": "up"}, {"rating": "up", "csrf_token": "0" * 64}):
        answer = page.request.post(ui_url(site, f"/ui/messages/{riga}/rate"), form=form, max_redirects=0)
        assert answer.status == 403
        assert "security token" in answer.text()
    stranger = new_page(site.browser)  # no session: a cross-site form would arrive like this
    answer = stranger.request.post(ui_url(site, f"/ui/messages/{riga}/exclude"), form={"excluded": "yes"},
                                   max_redirects=0)
    assert answer.status in (401, 403)
    assert site.dialogue.get_message(riga) == before
    headers = page.request.get(ui_url(site, "/ui/log")).headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]


def test_a_narrow_window_and_the_keyboard(site: Any) -> None:
    page = signed_in(site.browser, site, KEY, viewport={"width": 375, "height": 740})
    assert page.evaluate("document.documentElement.scrollWidth") <= 380
    page.keyboard.press("Tab")  # the first stop is the skip link
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    names = set()
    for _ in range(40):
        page.keyboard.press("Tab")
        names.add(page.evaluate("document.activeElement.getAttribute('aria-label') || document.activeElement"
                                ".labels?.[0]?.textContent || document.activeElement.textContent"))
    assert {"Log", "Jobs", "Search messages", "Filter"} <= {re.sub(r"\s+", " ", n or "").strip() for n in names}
    shot(page, "log-narrow")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(ui_url(site, "/ui/log"))
    shot(page, "log")
    assert page.problems == []


@pytest.mark.slow
def test_tuneloop_ui_prints_the_address_and_opens_a_browser(home: Path, tmp_path: Path) -> None:
    opened = tmp_path / "opened.txt"
    fake_browser = tmp_path / "browser.sh"  # what $BROWSER names, Python's webbrowser runs with the address
    fake_browser.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    fake_browser.chmod(0o755)
    env = dict(os.environ, COLUMNS="200", BROWSER=str(fake_browser))
    env.pop("TUNELOOP_SERVER_API_KEY", None)
    proc = subprocess.Popen([sys.executable, "-m", "tuneloop", "ui", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines: list[str] = []
        while not any("dashboard is at" in line for line in lines):
            line = proc.stdout.readline()
            assert line, (lines, proc.stderr.read())
            lines.append(line)
        address = re.search(r"(http://127\.0\.0\.1:\d+/ui/)", lines[-1]).group(1)
        with urllib.request.urlopen(address + "log", timeout=HANG) as answer:  # loopback, no key: no sign-in
            assert answer.status == 200 and b"<h1>Log</h1>" in answer.read()
        wait_until(lambda: opened.exists() and opened.read_text().strip() == address)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert "tuneloop ui: stopped" in out


def test_odd_values_are_one_line_never_a_500(site: Any) -> None:
    import httpx

    page = signed_in(site.browser, site, KEY)
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    with httpx.Client(base_url=ui_url(site, ""), cookies=cookies, timeout=HANG) as client:
        for path in ("/ui/log?page=²", "/ui/log?page=99999999999999999999", "/ui/log?rating=sideways",
                     "/ui/log/no%2Fsuch%2Fthread", "/ui/jobs/ftjob-x/events/stream?after=1e99"):
            answer = client.get(path)
            assert answer.status_code in (400, 404), (path, answer.status_code)
            assert "text/html" in answer.headers["content-type"] and "Traceback" not in answer.text
            assert len(re.findall(r'role="alert"', answer.text)) == 1
        for form in ({"rating": "up", "csrf_token": "é"}, {"rating": "up", "csrf_token": token, "note": "x" * 5000}):
            answer = client.post(f"/ui/messages/{site.ids['riga']}/rate", data=form)
            assert answer.status_code in (400, 403), answer.text
        answer = client.post("/ui/messages/99999999999999999999/rate", data={"rating": "up", "csrf_token": token})
        assert answer.status_code == 404
        stranger = httpx.get(ui_url(site, "/ui/log"), headers={"cookie": b"tuneloop_session=v1.1.\xc3\xa9"},
                             timeout=HANG)
        assert stranger.status_code == 303 and stranger.headers["location"].startswith("/ui/login")  # sign in
