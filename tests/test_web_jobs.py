"""The dashboard's data and jobs pages in a real browser: a training set previewed from the log's filters (and a
judge's criterion), downloaded and saved as a training file; a job created from it with the form, listed, paged and
cancelled; result files served only when the job names them. A real job watched to the end over server-sent events,
its loss chart drawn, is test_web_journey.py's. Each step is checked in the store."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from browser import chromium, shot, ui_url
from conftest import serving

from tuneloop.curation import ratings
from tuneloop.datasets import from_dialogues
from tuneloop.store import DialogueStore
from tuneloop.store.files import FileStore
from tuneloop.store.jobs import JobStore
from tuneloop.store.judgments import Judgments
from tuneloop.web import data as data_pages
from tuneloop.web import jobs as jobs_pages

KEY = "ui-jobs-test-key-93d2"
BASE = "smollm2-135m-instruct"
HOSTILE = "<script>window.pwned='script'</script><img src=x onerror=\"window.pwned='img'\">"
SUFFIX = "<img src=x onerror=window.pwned=1>"


@dataclass
class Label:
    label: str
    score: float = 0.5
    language: str | None = "en"


def seed(store: DialogueStore, n: int = 12) -> list[int]:
    """``n`` threads asking about gadgets, each reply rated up (one with hostile text); the replies' ids."""
    replies = []
    for i in range(n):
        thread = store.create_thread(model=BASE)
        question = f"What colour is gadget {i}?" + (f" {HOSTILE}" if i == n - 1 else "")
        exchange = store.append_exchange(thread.id, question, f"Gadget {i} is teal.", model=BASE,
                                         user_sentiment=Label("neutral"), reply_sentiment=Label("neutral"))
        ratings.rate(store, exchange.assistant.id, "up", None)
        replies.append(exchange.assistant.id)
    return replies


def open_page(browser: Any, server: Any, path: str) -> Any:
    """A signed-in page that fails the test on any script error or CSP report; a confirm() that asks to cancel a
    job is accepted (the Cancel button's), any other dialog is a problem."""
    context = browser.new_context()
    context.set_default_timeout(60_000)
    page = context.new_page()
    page.problems = []
    page.on("pageerror", lambda error: page.problems.append(f"script error: {error}"))
    page.on("console", lambda message: message.type == "error" and page.problems.append(message.text))

    def dialog(d: Any) -> None:
        if d.type == "confirm" and d.message.startswith("Cancel job "):
            d.accept()
        else:
            page.problems.append(f"dialog: {d.message}")
            d.dismiss()

    page.on("dialog", dialog)
    page.goto(ui_url(server, path))
    page.get_by_label("API key").fill(KEY)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{path.split('?')[0]}*")
    return page


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Any:
    """A server that queues jobs without training them (no worker), over 12 rated replies, 3 passed by a judge."""
    with serving(tmp_path_factory.mktemp("web-jobs-home"), KEY, settings={"spawn_worker": False}) as server:
        server.dialogue = DialogueStore(server.store)
        server.replies = seed(server.dialogue)
        Judgments(server.store).save_judge("concise", "Is the reply short?", model=None, rule="pass")
        Judgments(server.store).record("concise", BASE, [(r, i < 3, None, "ok") for i, r in enumerate(server.replies)])
        with chromium() as browser:
            server.browser = browser
            yield server


def no_script_ran(page: Any) -> None:
    assert page.evaluate("window.pwned") is None
    assert page.locator("script:not([src])").count() == 0
    assert page.locator("img[src=x]").count() == 0
    assert page.problems == []


def test_preview_download_and_save_a_training_set(site: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []
    build = data_pages.build
    monkeypatch.setattr(data_pages, "build", lambda request, choice: built.append(request.url.path) or build(
        request, choice))
    page = open_page(site.browser, site, "/ui/log?q=gadget")
    page.get_by_role("link", name="Build training data from these threads").click()
    page.wait_for_url("**/ui/data?q=gadget*")
    # A plain visit counts the threads and shows the options; it builds nothing (a large log would take long).
    assert page.get_by_test_id("threads").inner_text() == "12 threads to build from."
    assert page.get_by_test_id("supervised").count() == 0 and built == []
    form = page.get_by_role("form", name="Build the training set")
    assert form.get_attribute("data-busy") == "Building the preview…"
    page.get_by_role("button", name="Preview").click()
    page.wait_for_url("**/ui/data?*preview=1*")
    assert built == ["/ui/data"]
    assert page.get_by_test_id("supervised").inner_text() == "12"
    assert page.get_by_test_id("pairs").inner_text() == "0"
    assert page.get_by_text("No errors: this set can train as it is.").is_visible()
    assert page.get_by_text(re.compile(r"Cost on gpt-4\.1-mini")).is_visible()
    assert page.get_by_text(HOSTILE).first.is_visible()  # shown as the text it is
    no_script_ran(page)

    # A criterion: only the replies the judge passed; too few to train on, and the page says so.
    page.get_by_label("Criterion").select_option("concise")
    page.get_by_label("Redact personal data").check()
    page.get_by_role("button", name="Preview").click()
    assert page.get_by_test_id("supervised").inner_text() == "3"
    assert page.get_by_role("cell", name="too_few_examples").is_visible()
    assert page.get_by_label("Redact personal data").is_checked()

    page.get_by_label("Criterion").select_option("")
    page.get_by_label("Max context turns").fill("2")
    page.get_by_role("button", name="Preview").click()
    assert page.get_by_test_id("supervised").inner_text() == "12"
    shot(page, "data")

    with page.expect_download() as info:
        page.get_by_role("link", name="Download the JSONL").click()
    download = info.value
    assert re.fullmatch(r"tuneloop-supervised-12-\d{8}-\d{6}\.jsonl", download.suggested_filename)
    lines = Path(download.path()).read_text().splitlines()
    assert len(lines) == 12 and all(json.loads(line)["messages"][-1]["role"] == "assistant" for line in lines)

    page.get_by_role("button", name="Save as a training file and create a job").click()
    page.wait_for_url("**/ui/jobs/new?training_file=*")
    file_id = re.search(r"training_file=([\w-]+)", page.url).group(1)
    stored = FileStore(site.store).get(file_id)
    assert stored.purpose == "fine-tune" and Path(stored.path).read_bytes().count(b"\n") == 12
    assert page.get_by_label("Training file").input_value() == file_id
    no_script_ran(page)


def test_a_bad_value_is_one_line_on_the_data_page(site: Any) -> None:
    page = open_page(site.browser, site, "/ui/data?since=someday")
    assert "since 'someday' is not a date" in page.get_by_role("alert").inner_text()
    page.goto(ui_url(site, "/ui/data?criterion=nobody"))
    assert "criterion 'nobody' is not a judge here" in page.get_by_role("alert").inner_text()
    for turns in ("²", "0", "1001", "1" * 5000, "-3", "2.5"):  # '²'.isdigit() is true; int() refuses it
        page.goto(ui_url(site, f"/ui/data?preview=1&max_turns={quote(turns)}"))
        alert = page.get_by_role("alert").inner_text()
        assert "is not a number from 1 to 1000" in alert and "\n" not in alert.strip(), turns
        assert page.request.get(ui_url(site, f"/ui/data/download?max_turns={quote(turns)}")).status == 400, turns
    page.goto(ui_url(site, "/ui/data?q=nothing-matches-this"))
    assert page.get_by_test_id("threads").inner_text().startswith("No thread matches these filters")
    page.get_by_role("button", name="Preview").click()
    assert page.get_by_text("No usable training examples").is_visible()
    assert page.get_by_role("link", name="Download the JSONL").count() == 0
    assert [p for p in page.problems if "status of 400" not in p] == []  # the pages' own status: no script ran


def test_create_list_page_and_cancel_jobs(site: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    file_id = site.state.fine_tuning.add_dataset(from_dialogues(site.dialogue))[0].id
    page = open_page(site.browser, site, "/ui/jobs")
    page.get_by_role("link", name="Create a job").click()
    page.get_by_label("Base model").select_option(BASE)
    page.get_by_label("Training file").select_option(file_id)
    page.get_by_label("Epochs").fill("many")
    page.get_by_role("button", name="Create the job").click()
    assert "n_epochs 'many' is not a whole number" in page.get_by_role("alert").inner_text()
    assert page.get_by_label("Epochs").input_value() == "many"  # the form keeps what was typed
    page.problems.clear()  # the page's status, 400

    page.get_by_label("Epochs").fill("1")
    page.get_by_label("Batch size").fill("")
    page.get_by_label("Suffix").fill(SUFFIX)
    page.get_by_label("Device").select_option("cpu")
    page.get_by_role("button", name="Create the job").click()
    page.wait_for_url("**/ui/jobs/ftjob-*")
    job_id = page.url.rsplit("/", 1)[-1]
    job = JobStore(site.store).get_job(job_id)
    assert (job.status, job.training_file, job.suffix, job.device) == ("queued", file_id, SUFFIX, "cpu")
    assert job.hyperparameters["n_epochs"] == 1 and job.hyperparameters["batch_size"] == 2  # auto for 12
    assert page.locator("#job-status").inner_text() == "queued"
    assert page.get_by_text("Files validated (12 examples").is_visible()
    assert page.get_by_role("img", name=re.compile("No training step")).is_visible()
    no_script_ran(page)
    shot(page, "job-queued")

    page.get_by_role("button", name="Cancel the job").click()
    page.wait_for_url("**done=cancelled")
    assert JobStore(site.store).get_job(job_id).status == "cancelled"
    assert page.locator("#job-status").inner_text() == "cancelled"
    assert page.get_by_role("button", name="Cancel the job").count() == 0

    # A second job, then the list: newest first, paged.
    second = site.state.fine_tuning.create(file_id, model=BASE, hyperparameters={"n_epochs": 2}, suffix="second")
    page.goto(ui_url(site, "/ui/jobs"))
    rows = page.locator("table.jobs tbody tr")
    assert rows.nth(0).get_by_role("link").inner_text() == second.id
    assert rows.nth(1).get_by_role("cell", name="cancelled").is_visible()
    shot(page, "jobs")
    monkeypatch.setattr(jobs_pages, "PER_PAGE", 1)
    page.reload()
    assert page.locator("table.jobs tbody tr").count() == 1
    page.get_by_role("link", name="Older jobs").click()
    assert page.get_by_role("link", name=job_id).is_visible()
    no_script_ran(page)


def test_job_pages_refuse_what_they_do_not_name(site: Any) -> None:
    file_id = site.state.fine_tuning.add_dataset(from_dialogues(site.dialogue))[0].id
    job = site.state.fine_tuning.create(file_id, model=BASE, hyperparameters={"n_epochs": 1})
    page = open_page(site.browser, site, "/ui/jobs")
    for path in (f"/ui/jobs/{job.id}/files/{file_id}", f"/ui/jobs/{job.id}/files/..%2F..%2Fetc%2Fpasswd",
                 f"/ui/jobs/{job.id}/files/%2Fetc%2Fpasswd", "/ui/jobs/ftjob-nope"):
        response = page.request.get(ui_url(site, path))
        assert response.status == 404, path
        assert "root:" not in response.text() and "Traceback" not in response.text()
    # A form posted without its CSRF token changes nothing.
    refused = page.request.post(ui_url(site, f"/ui/jobs/{job.id}/cancel"), form={"x": "1"})
    assert refused.status == 403
    assert JobStore(site.store).get_job(job.id).status == "queued"
    # The stream of a finished job ends at once; of a live one it starts with its events.
    site.state.fine_tuning.cancel(job.id)
    body = page.request.get(ui_url(site, f"/ui/jobs/{job.id}/events/stream")).text()
    assert body.index("event: job-event") < body.index("event: status") < body.index("event: end")
    assert '"status": "cancelled"' in body
    assert page.request.get(ui_url(site, f"/ui/jobs/{job.id}/events/stream?after=x")).status == 400


def test_the_chart_draws_training_and_validation_from_metric_events() -> None:
    from datetime import UTC, datetime

    from tuneloop.store.jobs import JobEvent

    def event(i: int, data: dict[str, Any], kind: str = "metrics") -> JobEvent:
        return JobEvent(i, "ftjob-x", "info", "m", kind, data, datetime.now(UTC))

    events = [event(0, {"device": "cpu"}, "message")]
    events += [event(s, {"step": s, "total_steps": 4, "train_loss": 2.0 / s, "epoch": s / 2}) for s in range(1, 5)]
    events += [event(10 + e, {"step": 2 * e, "epoch": e, "train_loss": 1.0, "valid_loss": 1.5 / e,
                              "valid_score": 0.25 * e}) for e in (1, 2)]
    drawn = jobs_pages.chart(jobs_pages.metric_points(events))
    assert len(drawn["train"]) == 4 and len(drawn["valid"]) == 2 and len(drawn["score"]) == 2
    assert drawn["has_valid"] and drawn["has_score"] and drawn["x_max"] == "step 4" and drawn["y_max"] == "2.2"
    left, right, top, bottom = jobs_pages.LEFT, jobs_pages.WIDTH - jobs_pages.RIGHT, jobs_pages.TOP, \
        jobs_pages.HEIGHT - jobs_pages.BOTTOM
    assert all(left <= x <= right and top <= y <= bottom for x, y in drawn["train"] + drawn["valid"] + drawn["score"])
    assert drawn["train"][-1][0] == right and drawn["score"][-1][1] == round(top + (bottom - top) * 0.5, 1)
    assert drawn["summary"] == ("Training loss 2 at step 1 to 0.5 at step 4; validation loss 1.5, 0.75; "
                                "validation score 25%, 50%.")
    assert jobs_pages.chart([])["summary"] == "No training step has been measured yet."
