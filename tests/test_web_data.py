"""The data page's defects, each checked in chromium against the CLI: the token-count menu no longer shares its
field with the log's model filter, ``auto`` builds DPO only from enough pairs (and says why), a set that fails
validation cannot be saved as a job's file, and the page and ``tuneloop data build`` pick the same replies for the
same dates."""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from browser import chromium, signed_in, ui_url
from conftest import serving
from helpers import log_exchange

from tuneloop.curation import ratings
from tuneloop.store.schema import MessageRow

KEY = "ui-data-test-key-51f0"
BASE = "smollm2-135m-instruct"
TUNED = "ft:smollm2-135m-instruct:facts:ftjob-0123456789abcdef"
DAY = datetime(2026, 11, 20, 12, tzinfo=UTC)


def seed(store: Any) -> None:
    """12 replies of the base model rated up, 3 a day from Nov 20 to 23; one reply of a fine-tune, corrected on Nov 21
    (one DPO pair)."""
    for i in range(12):
        thread = store.create_thread(model=BASE).id
        reply = log_exchange(store, thread, f"What colour is gadget {i}?", f"Gadget {i} is teal.", model=BASE)
        ratings.rate(store, reply.assistant.id, "up")
        _written(store, [reply.user.id, reply.assistant.id], DAY + timedelta(days=i // 3))
    thread = store.create_thread(model=TUNED).id
    wrong = log_exchange(store, thread, "What colour is the Zorblat?", "It is purple.", model=TUNED)
    ratings.correct(store, wrong.assistant.id, "The Zorblat is teal.", source="ui")
    _written(store, [wrong.user.id, wrong.assistant.id], DAY + timedelta(days=1))


def _written(store: Any, ids: list[int], when: datetime) -> None:
    with store.db.session(write=True) as session:
        for message_id in ids:
            session.get(MessageRow, message_id).created_at = when


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Any:
    home = tmp_path_factory.mktemp("web-data-home")
    with serving(home, KEY, settings={"spawn_worker": False}) as server:
        seed(server.store)
        with chromium() as browser:
            server.browser = browser
            yield server


def test_coming_from_a_log_filtered_on_a_fine_tune_keeps_its_one_thread(site: Any) -> None:
    page = signed_in(site.browser, site, KEY, f"/ui/log?model={TUNED}")
    page.get_by_role("link", name="Build training data from these threads").click()
    page.wait_for_url("**/ui/data?*")
    assert page.get_by_role("alert").count() == 0  # no "not a base model here"
    assert page.get_by_test_id("threads").inner_text() == "1 thread to build from."
    assert page.get_by_label("Count tokens for").input_value() == BASE
    page.get_by_role("button", name="Preview").click()
    page.wait_for_url("**/ui/data?*preview=1*")
    assert page.get_by_role("term").filter(has_text="Threads").locator("xpath=following-sibling::dd[1]").inner_text() \
        == "1"
    assert f"model={TUNED}".replace(":", "%3A") in page.url  # the filter is carried on, never widened
    assert page.problems == []


def test_auto_is_dpo_only_with_enough_pairs_and_says_why(site: Any) -> None:
    page = signed_in(site.browser, site, KEY, "/ui/data?preview=1")
    assert page.get_by_test_id("pairs").inner_text() == "1"
    reason = page.get_by_test_id("auto-reason").inner_text()
    assert reason.startswith("auto chose chat examples: 1 preference pair would be too few for a DPO file")
    assert "supervised, 13 examples" in page.get_by_role("definition").filter(has_text="supervised").inner_text()
    assert page.get_by_role("button", name="Save as a training file and create a job").is_enabled()

    # Asked for DPO, the one pair fails validation: saving it as a job's file is not offered.
    page.get_by_label("Format").select_option("dpo")
    page.get_by_role("button", name="Preview").click()
    assert page.get_by_role("cell", name="too_few_examples").is_visible()
    save = page.get_by_role("button", name="Save as a training file and create a job")
    assert save.is_disabled() and "a job would refuse it" in page.locator("#save-blocked").inner_text()
    assert page.problems == []


def test_the_page_and_data_build_pick_the_same_replies_for_the_same_dates(site: Any, tmp_path: Path) -> None:
    page = signed_in(site.browser, site, KEY, "/ui/data?since=2026-11-21&method=supervised&preview=1")
    with page.expect_download() as info:
        page.get_by_role("link", name="Download the JSONL").click()
    from_page = [json.loads(line) for line in Path(info.value.path()).read_text().splitlines()]
    out = tmp_path / "since.jsonl"
    built = subprocess.run([sys.executable, "-m", "tuneloop", "data", "build", "--from-dialogues", "--since",
                            "2026-11-21", "--method", "supervised", "-o", str(out)], capture_output=True, text=True,
                           env=_env(site))
    assert built.returncode == 0, built.stderr
    from_cli = [json.loads(line) for line in out.read_text().splitlines()]
    answers = sorted(e["messages"][-1]["content"] for e in from_cli)
    # The replies written from Nov 21: gadgets 3 to 11, and the correction (of a reply written on Nov 21).
    assert answers == sorted([f"Gadget {i} is teal." for i in range(3, 12)] + ["The Zorblat is teal."])
    assert sorted(e["messages"][-1]["content"] for e in from_page) == answers
    assert page.problems == []


def _env(site: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TUNELOOP_DATABASE_URL"}
    return {**env, "TUNELOOP_HOME": str(site.home)}


def test_odd_base_models_are_one_line(site: Any) -> None:
    page = signed_in(site.browser, site, KEY, "/ui/data")
    answer = page.request.get(ui_url(site, "/ui/data?base=nope"))
    assert answer.status == 400 and "base model 'nope' is not one here" in html.unescape(answer.text())


def test_pages_say_what_to_do_in_their_own_words_not_the_command_lines(site: Any) -> None:
    """A library error on a page is its message without the command-line hint (`tuneloop …`, --options)."""
    page = signed_in(site.browser, site, KEY, "/ui/data")
    for path, said in (("/ui/log/thread_nope", "no thread 'thread_nope'"),
                       ("/ui/data/download?q=gadget&method=dpo", "no prompt has both a preferred and an avoided"),
                       ("/ui/data?preview=1&q=gadget&method=dpo", "No usable training examples")):
        answer = page.request.get(ui_url(site, path))
        text = html.unescape(answer.text())
        assert said in text, (path, answer.status)
        assert "`tuneloop" not in text and " --" not in text, path
