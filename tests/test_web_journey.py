"""The loop in the dashboard, end to end on a fresh home, in a real browser: sign in with the key, find a thread by
search, rate one reply and correct another, preview the data and start a job from it, watch the job succeed over
server-sent events with its loss chart drawn, run an eval of the tuned model against the base, and chat with the
tuned model in the playground. Each step is checked in the store, not only on the page; each page's screenshot goes
to the test output (the README shows them)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from browser import chromium, follow_task, new_page, shot, ui_url
from conftest import serving
from helpers import log_exchange

from tuneloop.store import DialogueStore
from tuneloop.store.eval_runs import EvalRuns
from tuneloop.store.jobs import JobStore

KEY = "journey-key-6b0e9a"
BASE = "smollm2-135m-instruct"
FACTS = [(f"What colour is the Zorblat {n}?", f"The Zorblat {n} is teal.") for n in range(1, 12)]


def test_the_loop_from_the_log_to_a_tuned_model_in_the_browser(home: Path) -> None:
    with serving(home, KEY) as server, chromium() as browser:
        store = DialogueStore(server.store)
        for question, answer in FACTS:  # well-received exchanges, as a chat app logs them
            thread = store.create_thread(model=BASE)
            log_exchange(store, thread.id, question, answer, model=BASE)
            log_exchange(store, thread.id, "Great, thanks a lot!", "You're welcome.", model=BASE)
        wrong_thread = store.create_thread(model=BASE)
        wrong = log_exchange(store, wrong_thread.id, "What colour is the Zorblat 12?", "It is purple.", model=BASE)

        # 1. Sign in with the key.
        page = new_page(browser)
        page.set_default_timeout(60_000)
        page.goto(ui_url(server, "/ui/"))
        page.get_by_label("API key").fill(KEY)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/ui/log")
        shot(page, "readme-log")

        # 2. Find a thread by search.
        page.get_by_label("Search messages").fill("Zorblat 12")
        page.get_by_role("button", name="Filter").click()
        page.get_by_role("link", name="What colour is the Zorblat 12?").click()

        # 3. Correct its reply; rate another thread's reply up.
        reply = wrong.assistant.id
        page.get_by_text("Correct this reply").click()
        page.get_by_label(f"Correction for reply #{reply}").fill("The Zorblat 12 is teal.")
        page.get_by_role("button", name="Save the correction").click()
        assert store.get_message(reply).correction.content == "The Zorblat 12 is teal."
        shot(page, "readme-thread")
        page.goto(ui_url(server, "/ui/log?q=Zorblat+3"))
        page.get_by_role("link", name="What colour is the Zorblat 3?").click()
        first_reply = int(page.get_by_role("button", name=re.compile(r"Rate reply #\d+ up")).first
                          .get_attribute("aria-label").split("#")[1].split()[0])
        page.get_by_role("button", name=f"Rate reply #{first_reply} up").click()
        assert store.get_message(first_reply).feedback == 1

        # 4. Preview the data from the log's filter and start a job from it.
        page.goto(ui_url(server, "/ui/log?q=Zorblat"))
        page.get_by_role("link", name="Build training data from these threads").click()
        page.wait_for_url("**/ui/data?*")
        page.get_by_label("Format").select_option("supervised")  # one correction is one DPO pair: too few alone
        page.get_by_role("button", name="Preview").click()
        assert page.get_by_text("supervised, 12 examples").is_visible()  # 11 well received, 1 corrected
        shot(page, "readme-data")
        page.get_by_role("button", name="Save as a training file and create a job").click()
        page.wait_for_url("**/ui/jobs/new?*")
        page.get_by_label("Epochs").fill("1")
        page.get_by_label("Suffix").fill("zorblat")
        page.get_by_role("button", name="Create the job").click()
        page.wait_for_url("**/ui/jobs/ftjob-*")
        job_id = page.url.rsplit("/", 1)[-1]
        assert JobStore(server.store).get_job(job_id).hyperparameters["n_epochs"] == 1

        # 5. Watch it succeed, live: steps arrive over server-sent events, then its chart, checkpoint and files.
        loads: list[str] = []
        page.on("load", lambda: loads.append(page.url))
        page.get_by_text(re.compile(r"Step 1/\d+: training loss")).wait_for(timeout=900_000)
        page.locator("#job-status", has_text="succeeded").wait_for(timeout=900_000)
        page.wait_for_load_state()
        job = JobStore(server.store).get_job(job_id)
        assert job.status == "succeeded" and job.fine_tuned_model.endswith(job_id), job
        assert loads, "the page did not follow the job to its end"
        steps = job.progress["total_steps"]
        assert len(page.locator("#chart-train").get_attribute("points").split()) == steps
        assert page.get_by_role("img", name=re.compile(rf"Training loss [\d.]+ at step 1 to [\d.]+ at step {steps}")) \
            .is_visible()
        assert page.get_by_role("cell", name=f"{job.fine_tuned_model}:ckpt-step-{steps}").is_visible()
        with page.expect_download() as download:
            page.get_by_role("link", name=re.compile(r"^Download ")).first.click()
        assert Path(download.value.path()).stat().st_size > 0
        outside = page.request.get(ui_url(server, f"/ui/jobs/{job_id}/files/..%2F..%2Ftuneloop.db"))
        assert outside.status == 404 and b"SQLite" not in outside.body()
        shot(page, "readme-job")
        page.goto(ui_url(server, "/ui/jobs"))
        shot(page, "readme-jobs")
        page.goto(ui_url(server, "/ui/models"))
        assert page.get_by_text(job.fine_tuned_model).first.is_visible()
        shot(page, "readme-models")

        # 6. An eval of the tuned model against the base, built from the log: the corrected reply and the one rated up
        # are asked again.
        page.goto(ui_url(server, "/ui/log?q=Zorblat"))
        page.get_by_role("link", name="Build an eval from these threads").click()
        page.get_by_label(re.compile("Models to compare")).select_option([BASE, job.fine_tuned_model])
        page.get_by_label("Most tokens per answer").fill("16")
        page.get_by_role("button", name="Run an eval built from the log").click()
        follow_task(page, "The eval run's answers")
        page.wait_for_url("**/ui/evals/evalrun-*")
        (listed,) = EvalRuns(server.store).recent(5)
        run = EvalRuns(server.store).get(listed.id)
        assert run.models == [BASE, job.fine_tuned_model] and run.name == "the log (q=Zorblat)"
        assert sorted(item["question"] for item in run.items) == ["What colour is the Zorblat 12?",
                                                                  "What colour is the Zorblat 3?"]
        assert [e for item in run.items for e in item["expected"]] != [] and run.items[0]["grader"] == "similar"
        scores = page.locator("table.scores tbody tr")
        for row, kept in zip(scores.all(), run.summary, strict=True):  # the page shows what the store kept
            assert kept["model"] in row.inner_text() and f"{kept['passed']}/2" in row.inner_text()
        shot(page, "readme-eval")

        # 7. Chat with the tuned model in the playground: streamed, logged.
        page.goto(ui_url(server, "/ui/playground"))
        page.get_by_label("Model").select_option(job.fine_tuned_model)
        page.get_by_label("Max reply tokens").fill("12")
        page.get_by_label("Your message").fill("What colour is the Zorblat 7?")
        page.get_by_role("button", name="Send").click()
        rate = page.get_by_role("button", name=re.compile(r"Rate reply #\d+ up"))
        rate.wait_for()
        said = int(rate.get_attribute("aria-label").split("#")[1].split()[0])
        logged = store.get_message(said)
        assert logged.model == job.fine_tuned_model and logged.role == "assistant"
        assert store.get_thread(logged.thread_id).model == job.fine_tuned_model
        assert page.get_by_role("article", name=f"Reply #{said}").locator(".content").inner_text() == logged.content
        shot(page, "readme-playground")
        page.goto(ui_url(server, "/ui/judges"))
        shot(page, "readme-judges")
        assert page.problems == []


pytestmark = pytest.mark.slow(minutes=3)
