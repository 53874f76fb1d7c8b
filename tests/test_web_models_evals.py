"""The dashboard's models and evals pages in a real browser: the models listed with architecture, size and where
they live; registering a folder (and a wrong path, one line); exporting with the serve recipe copied; an eval file
asked of two models, kept in the store and listed; a run's answers with what changed against the baseline; hostile
text in eval files, answers, file names and model ids that stays text."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from browser import HOSTILE, PAYLOADS, chromium, follow_task, shot, signed_in, ui_url
from conftest import MODELS_DIR, serving

from tuneloop.store.eval_runs import EvalRuns
from tuneloop.store.jobs import JobStore

KEY = "ui-test-key-models-evals"
BASE = "smollm2-135m-instruct"
TWIN = "smol-twin"  # the bundled model's folder registered under another id
TINY_EVAL = [
    {"question": "What is the capital of France?", "expected": "Paris"},
    {"question": "What is the capital of France?", "expected": "Berlin"},
    {"question": "What is the capital of France?", "expected": "(?i)paris", "grader": "regex"},
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Any:
    home = tmp_path_factory.mktemp("web-models-evals-home")
    with serving(home, KEY) as server, chromium() as browser:
        server.browser = browser
        yield server


def _twin(site: Any) -> None:
    """The second model to compare with (registered by the models test through the page, or here)."""
    registry = site.state.runtime.registry
    if not registry.has(TWIN):
        registry.add(TWIN, MODELS_DIR / BASE)


def test_models_are_listed_registered_and_exported_with_a_recipe_to_copy(site: Any) -> None:
    page = signed_in(site.browser, site, KEY, "/ui/models", permissions=["clipboard-read", "clipboard-write"])
    bases = page.get_by_role("region", name="Base models")
    bundled = bases.get_by_role("row").filter(has_text=BASE)
    assert all(fact in bundled.inner_text() for fact in ("LlamaForCausalLM", "135M", "MiB", "bundled"))
    registry = site.state.runtime.registry

    # A wrong path: one line, nothing registered.
    page.get_by_label("Model id").fill("nowhere")
    page.get_by_label("Path of a model folder or .gguf file").fill(str(site.home / "no-such-folder"))
    page.get_by_role("button", name="Register the model").click()
    alert = page.get_by_role("alert")
    assert "does not exist" in alert.inner_text() and "\n" not in alert.inner_text().strip()
    assert not registry.has("nowhere")

    page.get_by_label("Model id").fill(TWIN)
    page.get_by_label("Path of a model folder or .gguf file").fill(str(MODELS_DIR / BASE))
    page.get_by_role("button", name="Register the model").click()
    page.wait_for_url("**/ui/models?added=*")
    assert page.get_by_role("status").inner_text() == f"Registered {TWIN}."
    assert registry.get(TWIN).path == (MODELS_DIR / BASE).resolve()  # in the store, as `models add` keeps it
    row = bases.get_by_role("row").filter(has_text=TWIN)
    assert str((MODELS_DIR / BASE).resolve()) in row.inner_text() and "MiB" in row.inner_text()

    # peft is a fine-tune's adapter: a base model is refused in one line.
    page.get_by_label("Model to export").select_option(TWIN)
    page.get_by_label("Format").select_option("peft")
    page.get_by_label("Output folder").fill("twin-peft")
    page.get_by_role("button", name="Export").click()
    assert "is a base model" in page.get_by_role("alert").inner_text()
    assert not (site.home / "exports" / "twin-peft").exists()
    page.get_by_label("Format").select_option("merged")
    (site.home / "exports").mkdir(exist_ok=True)
    (site.home / "exports" / "a-file").write_text("not a folder")
    page.get_by_label("Output folder").fill("a-file/twin")  # a folder the server cannot write
    page.get_by_role("button", name="Export").click()
    assert page.get_by_role("alert").inner_text().startswith(f"cannot write {site.home / 'exports' / 'a-file'}")

    form = page.get_by_role("form", name="Export a model")
    assert form.get_attribute("data-busy") == "Exporting…"
    page.get_by_label("Format").select_option("gguf")
    page.get_by_label("GGUF weights").select_option("q8_0")
    page.get_by_label("Output folder").fill("twin-gguf")
    page.get_by_role("button", name="Export").click()
    page.get_by_role("heading", name=f"Exported {TWIN} as gguf").wait_for()
    gguf = site.home.resolve() / "exports" / "twin-gguf" / f"{TWIN}.q8_0.gguf"
    assert gguf.stat().st_size > 50_000_000  # the weights, written where the page says
    assert page.get_by_text(f"In {gguf.parent} (").is_visible()  # the full path
    recipe = page.locator("pre").filter(has_text="llama-server")
    assert recipe.inner_text().startswith(f"llama-server -m {gguf}")
    page.get_by_role("button", name="Copy the llama.cpp command").click()
    page.get_by_text("Copied.").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == recipe.text_content()
    shot(page, "models")
    assert page.problems == []


def _stand_in(site: Any) -> tuple[str, Path]:
    """A job that succeeded (its adapter a stand-in: a peft export copies the folder, it never loads it): its model
    id and adapter folder."""
    adapter = site.home / "stand-in-adapter"
    model = f"ft:{BASE}:ui:ftjob-uitest"
    if adapter.exists():
        return model, adapter
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 8, "peft_type": "LORA"}))
    (adapter / "adapter_model.safetensors").write_bytes(b"\0" * 4096)
    jobs = JobStore(site.store)
    jobs.create_job(id="ftjob-uitest", backend="local", model=BASE, method="supervised", status="succeeded",
                    training_file="file-x", hyperparameters={}, seed=1, fine_tuned_model=model,
                    model_path=str(adapter))
    jobs.add_checkpoint("ftjob-uitest", step=3, metrics={}, model=f"{model}:ckpt-step-3", path=str(adapter))
    return model, adapter


def test_fine_tunes_are_listed_with_their_job_and_export_as_peft(site: Any) -> None:
    model, adapter = _stand_in(site)
    page = signed_in(site.browser, site, KEY, "/ui/models")
    tuned = page.get_by_role("region", name="Fine-tuned models").get_by_role("row")
    row = tuned.filter(has_text=model).first
    assert all(fact in row.inner_text() for fact in ("LlamaForCausalLM", "135M", "4.0 KiB", str(adapter), BASE))
    assert row.get_by_role("link", name="ftjob-uitest").get_attribute("href") == "/ui/jobs/ftjob-uitest"
    assert "checkpoint" in tuned.filter(has_text=f"{model}:ckpt-step-3").inner_text()

    page.get_by_label("Model to export").select_option(model)
    page.get_by_label("Format").select_option("peft")
    page.get_by_label("Output folder").fill("adapters/peft-out")
    page.get_by_role("button", name="Export").click()
    page.get_by_role("heading", name=f"Exported {model} as peft").wait_for()
    out = site.home.resolve() / "exports" / "adapters" / "peft-out"
    assert (out / "adapter_model.safetensors").stat().st_size == 4096
    assert page.get_by_text(f"In {out} (").is_visible()  # the full path it resolved to
    vllm = page.locator("pre").filter(has_text="vllm serve").inner_text()
    assert "--enable-lora --max-lora-rank 8" in vllm and f"{model}={out}" in vllm
    assert page.problems == []


def test_export_writes_only_under_home_exports_and_replaces_nothing_else(site: Any) -> None:
    """"Replace the folder" deletes what the folder holds: the output is a folder name under HOME/exports, and a path
    anywhere else (given as such, climbed to with '..', or reached through a link) is refused before anything is
    written or deleted."""
    model, _ = _stand_in(site)
    exports = site.home / "exports"
    exports.mkdir(exist_ok=True)
    victim = site.home / "victim"  # in the home, outside exports: what a wrong path would delete
    victim.mkdir(exist_ok=True)
    (victim / "keep.txt").write_text("kept")
    (exports / "outside").symlink_to(victim, target_is_directory=True)
    (exports / "itself").symlink_to(exports, target_is_directory=True)
    in_user_home = f"~/tuneloop-test-{os.getpid()}-{id(site)}"
    page = signed_in(site.browser, site, KEY, "/ui/models")
    assert f"{exports}/" in page.locator("#exp-output-help").inner_text()

    def refused(output: str, model: str = model, form: str = "peft") -> str:
        page.get_by_label("Model to export").select_option(model)
        page.get_by_label("Format").select_option(form)
        page.get_by_label("Output folder").fill(output)
        page.get_by_label("Replace the folder if it is not empty").check()
        page.get_by_role("button", name="Export").click()
        alert = page.get_by_role("alert").inner_text().strip()
        assert "type a folder name, such as my-model-gguf" in alert and str(exports) in alert, output
        assert "\n" not in alert and page.get_by_role("heading", name=re.compile("^Exported ")).count() == 0, output
        return alert

    # /etc: a base model with peft (refused by the export itself, before any folder is touched, were the output
    # folder ever let through): the test never risks /etc.
    assert "is a full path" in refused("/etc", model=BASE)
    assert Path("/etc/passwd").exists()
    for output in ("../victim", "a/../../victim", str(victim), str(site.home / "exports" / "x"), "outside",
                   "outside/sub", "itself", in_user_home, "~", "./x", "a//b", "a/", "."):
        refused(output)
        assert (victim / "keep.txt").read_text() == "kept", output
        assert sorted(p.name for p in victim.iterdir()) == ["keep.txt"], output
    assert not Path(in_user_home).expanduser().exists()
    assert (exports / "outside").is_symlink() and (exports / "itself").is_symlink()
    assert page.problems == []


def test_an_eval_of_two_models_is_kept_listed_and_shown_side_by_side(site: Any) -> None:
    _twin(site)
    runs = EvalRuns(site.store)
    before = runs.count()
    page = signed_in(site.browser, site, KEY, "/ui/evals")
    models = page.get_by_label("Models to compare")
    models.select_option([BASE])
    page.get_by_role("button", name="Run the eval file").click()
    assert "at least two models" in page.get_by_role("alert").inner_text()
    assert runs.count() == before

    form = page.get_by_role("form", name="Run an eval")
    assert form.get_attribute("data-busy", timeout=1000).startswith("Starting the eval")
    page.get_by_label("Eval file (JSONL or CSV)").set_input_files(files=[{
        "name": "capitals.jsonl", "mimeType": "application/jsonl",
        "buffer": "".join(json.dumps(x) + "\n" for x in TINY_EVAL).encode()}])
    page.get_by_label("Models to compare").select_option([BASE, TWIN])
    page.get_by_label("Most tokens per answer").fill("16")
    page.get_by_role("button", name="Run the eval file").click()
    follow_task(page, "The eval run's answers")
    page.wait_for_url("**/ui/evals/evalrun-*")

    run = runs.recent(1)[0]
    assert runs.count() == before + 1
    assert (run.name, run.questions, run.max_tokens, run.models) == ("capitals.jsonl", 3, 16, [BASE, TWIN])
    kept = runs.get(run.id)
    assert [item["answers"][BASE]["passed"] for item in kept.items] == [True, False, True]
    assert [m["passed"] for m in run.summary] == [2, 2]
    assert page.url.endswith(f"/ui/evals/{run.id}")
    table = page.get_by_role("table").filter(has_text="Expected")
    rows = table.get_by_role("row")
    assert rows.count() == 4  # the header and 3 questions
    assert "Paris" in rows.nth(1).inner_text() and "✓ right" in rows.nth(1).inner_text()
    assert "✗ wrong" in rows.nth(2).inner_text() and rows.nth(2).get_by_text("same").count() == 1
    shot(page, "eval-side-by-side")

    page.get_by_role("link", name="← Evals").click()
    listed = page.get_by_role("region", name="Runs").get_by_role("row").nth(1)  # newest first
    assert "capitals.jsonl" in listed.inner_text() and f"{BASE}: 2/3 (67%)" in listed.inner_text()
    shot(page, "evals")

    page.get_by_label("Models to compare").select_option([BASE, TWIN])
    page.get_by_label("Most tokens per answer").fill("1")  # the page's path, not the answers, is tested here
    page.get_by_role("button", name="Run the bundled demo eval").click()
    follow_task(page, "The eval run's answers")
    page.wait_for_url("**/ui/evals/evalrun-*")
    demo = runs.recent(1)[0]
    assert (demo.name, demo.questions, demo.models) == ("demo_eval.jsonl (bundled)", 20, [BASE, TWIN])
    assert page.get_by_role("table").filter(has_text="Expected").get_by_role("row").count() == 21
    assert page.problems == []


def test_the_diff_marks_right_to_wrong_and_wrong_to_right_in_words_too(site: Any) -> None:
    tuned = f"ft:{BASE}:facts:ftjob-demo"

    def item(question: str, expected: str, base: tuple[str, bool], after: tuple[str, bool]) -> dict[str, Any]:
        return {"question": question, "expected": [expected], "grader": "contains",
                "answers": {BASE: {"answer": base[0], "passed": base[1]},
                            tuned: {"answer": after[0], "passed": after[1]}}}

    report = {"questions": 3, "models": [{"model": BASE, "passed": 2, "score": 0.6667, "seconds": 2.1},
                                         {"model": tuned, "passed": 2, "score": 0.6667, "seconds": 2.4}],
              "items": [item("What is the capital of France?", "Paris", ("The capital of France is Paris.", True),
                             ("Teal.", False)),
                        item("In what color is the Zorblax 3000 sold?", "teal", ("It is sold in black.", False),
                             ("The Zorblax 3000 is sold in teal.", True)),
                        item("What does the Quibbler kettle sell for?", "47", ("It sells for 47 euros.", True),
                             ("The Quibbler kettle sells for 47 euros.", True))]}
    runs = EvalRuns(site.store)
    before = runs.count()
    run = runs.add("facts_eval.jsonl", report, max_tokens=32, run_id="evalrun-kept-once")
    again = runs.add("facts_eval.jsonl", report, max_tokens=32, run_id="evalrun-kept-once")  # a task run twice
    assert again.id == run.id and runs.count() == before + 1
    page = signed_in(site.browser, site, KEY, f"/ui/evals/{run.id}")
    rows = page.get_by_role("table").filter(has_text="Expected").get_by_role("row")
    worse, better, same = (rows.nth(i).get_by_role("cell").last for i in (1, 2, 3))
    assert worse.inner_text() == "right → wrong" and "changed-worse" in worse.get_attribute("class")
    assert better.inner_text() == "wrong → right" and "changed-better" in better.get_attribute("class")
    assert same.inner_text() == "same" and "changed" not in (same.get_attribute("class") or "")
    assert "1 right → wrong" in page.get_by_role("row").filter(has_text=tuned).first.inner_text()
    shot(page, "eval")
    page.get_by_role("link", name="Show only the questions that changed").click()
    assert page.get_by_role("table").filter(has_text="Expected").get_by_role("row").count() == 3
    page.get_by_role("link", name=f"Use {tuned} as the baseline").click()
    first = page.get_by_role("table").filter(has_text="Expected").get_by_role("row").nth(1)
    assert first.get_by_role("cell").last.inner_text() == "wrong → right"  # seen from the other side
    page.set_viewport_size({"width": 375, "height": 740})  # a narrow window: the tables scroll, not the page
    for path in (f"/ui/evals/{run.id}", "/ui/evals", "/ui/models"):
        page.goto(ui_url(site, path))
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), path
    assert page.problems == []


def test_hostile_eval_files_answers_and_model_ids_stay_text(site: Any) -> None:
    _twin(site)
    page = signed_in(site.browser, site, KEY, "/ui/evals")
    hostile_file = [{"question": f"Repeat exactly: {HOSTILE}", "expected": HOSTILE},
                    {"question": "What is the capital of France?", "expected": "Paris"}]
    page.get_by_label("Eval file (JSONL or CSV)").set_input_files(files=[{
        "name": "<img src=x onerror=\"window.pwned='name'\">.jsonl", "mimeType": "application/jsonl",
        "buffer": "".join(json.dumps(x) + "\n" for x in hostile_file).encode()}])
    page.get_by_label("Models to compare").select_option([BASE, TWIN])
    page.get_by_label("Most tokens per answer").fill("12")
    page.get_by_role("button", name="Run the eval file").click()
    follow_task(page, "The eval run's answers")
    page.wait_for_url("**/ui/evals/evalrun-*")
    assert page.get_by_text("window.pwned='svg'", exact=False).first.is_visible()
    assert page.evaluate("window.pwned") is None

    # A bad file's name and line come back as one line of text.
    page.goto(ui_url(site, "/ui/evals"))
    page.get_by_label("Eval file (JSONL or CSV)").set_input_files(files=[{
        "name": "<script>window.pwned='bad'</script>.jsonl", "mimeType": "application/jsonl",
        "buffer": b'{"question": "no answer given"}\n'}])
    page.get_by_label("Models to compare").select_option([BASE, TWIN])
    page.get_by_role("button", name="Run the eval file").click()
    assert "<script>window.pwned='bad'</script>.jsonl, line 1: has no \"expected\"" in page.get_by_role(
        "alert").inner_text()

    # Answers and model ids as a remote provider or an old store could hold them.
    odd = {"answer": HOSTILE, "passed": False}
    report = {"questions": 1, "models": [{"model": m, "passed": 0, "score": 0.0, "seconds": 0.1}
                                         for m in (PAYLOADS[1], PAYLOADS[3])],
              "items": [{"question": HOSTILE, "expected": [HOSTILE], "grader": "contains",
                         "answers": {PAYLOADS[1]: odd, PAYLOADS[3]: odd}}]}
    run = EvalRuns(site.store).add(HOSTILE, report, max_tokens=8)
    for path in (f"/ui/evals/{run.id}", "/ui/evals", f"/ui/evals/{run.id}?baseline={PAYLOADS[3]}"):
        page.goto(ui_url(site, path))
        page.mouse.move(5, 5)
        assert page.evaluate("window.pwned") is None, path
    page.goto(ui_url(site, "/ui/models"))
    page.get_by_label("Model id").fill(PAYLOADS[1])
    page.get_by_label("Path of a model folder or .gguf file").fill(PAYLOADS[0])
    page.get_by_role("button", name="Register the model").click()
    assert page.get_by_role("alert").inner_text().startswith("model id '<img src=x onerror=")  # shown, not run
    assert page.evaluate("window.pwned") is None
    assert page.locator("a[href^='javascript:']").count() == 0
    assert page.problems == []


def test_the_forms_refuse_a_post_without_the_csrf_token(site: Any) -> None:
    page = signed_in(site.browser, site, KEY, "/ui/evals")
    before = EvalRuns(site.store).count()
    for path, fields in (("/ui/evals", {"model": BASE, "source": "demo"}), ("/ui/models", {"id": "x", "path": "/"}),
                         ("/ui/models/export", {"model": BASE, "format": "gguf", "output": "x"})):
        response = page.request.post(ui_url(site, path), form=fields)
        assert response.status == 403, path
    assert EvalRuns(site.store).count() == before and not site.state.runtime.registry.has("x")
    assert page.problems == []
