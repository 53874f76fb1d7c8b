"""Any base model, end to end: tiny random-weight Llama, Qwen2, Qwen3, Gemma 2, Mistral and Phi-3 models (and the
real SmolLM2) are registered, chat, train a few steps through a real job, are served over /v1, exported in each
format, and every export loads back and gives the served fine-tuned model's greedy tokens."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import openai
import pytest
from conftest import HANG, MODELS_DIR, assert_one_line_error, gadget_facts, run_cli
from tiny_models import build_tiny_model

from tuneloop import OpenAIModel
from tuneloop.asgi import create_app
from tuneloop.export import export_model
from tuneloop.generation import GenerationOptions
from tuneloop.models import ModelTooLargeError, ModelUnusableError
from tuneloop.runtime import Runtime
from tuneloop.serving import ServerThread, server_settings
from tuneloop.training import FineTuning

pytestmark = pytest.mark.slow  # every kind of model trains a real job, is served and exported

BASE = "smollm2-135m-instruct"
KINDS = ["llama", "qwen2", "qwen3", "gemma2", "mistral", "phi3", "smollm2"]
QUESTION = [{"role": "user", "content": "What colour is the Zorblax?"}]
TOKENS = 10


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, engine: Any) -> Any:
    """One home and store for the module, with a server on loopback; the tiny models are built in it."""
    home = tmp_path_factory.mktemp("arch-home")
    # The reference engine serves: every export is compared token for token with the served model, and exports are
    # fp32 (the fast engine's default, int8, is not; tests/test_fast_engine.py covers it).
    runtime = Runtime(server_settings(home=home, models_dir=MODELS_DIR, database_url=None, model=None,
                                      engine="reference"))
    folders = {kind: build_tiny_model(kind, MODELS_DIR / BASE, home / "tiny" / kind) for kind in KINDS if
               kind != "smollm2"}
    with ServerThread(create_app(runtime)) as server:
        server.runtime = runtime
        server.folders = folders
        server.client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=HANG)
        yield server


def greedy(model: Any, tokenizer: Any, prompt: list[int], eos: set[int]) -> str:
    import torch

    with torch.inference_mode():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=TOKENS, do_sample=False, eos_token_id=sorted(eos),
                             pad_token_id=sorted(eos)[0])
    new = out[0, len(prompt):].tolist()
    if new and new[-1] in eos:
        new = new[:-1]
    return tokenizer.decode(new, skip_special_tokens=True)


@pytest.mark.parametrize("kind", KINDS)
def test_any_architecture_registers_chats_trains_serves_and_exports(kind: str, world: Any, tmp_path: Path) -> None:
    rt: Runtime = world.runtime
    model_id = BASE if kind == "smollm2" else f"tiny-{kind}"
    if kind != "smollm2":
        entry = rt.registry.add(model_id, world.folders[kind])
        assert entry.format == "hf" and rt.registry.has(model_id)
    listed = {m.id: m for m in rt.local.models()}
    expected_arch = {"llama": "LlamaForCausalLM", "smollm2": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
                     "qwen3": "Qwen3ForCausalLM", "gemma2": "Gemma2ForCausalLM", "mistral": "MistralForCausalLM",
                     "phi3": "Phi3ForCausalLM"}[kind]
    assert listed[model_id].architecture == expected_arch and listed[model_id].parameters > 1_000_000

    # Chats through the library (the same path as `tuneloop ask -m`).
    settings = rt.settings
    reply = OpenAIModel(model_name=model_id, settings=settings).ask("Hello")
    assert isinstance(reply, str)

    # Trains a few steps through a real job; the loss falls.
    ft = FineTuning(rt)
    file = ft.add_file(gadget_facts(), filename=f"{kind}.jsonl")
    job = ft.create(file.id, model=model_id, suffix=kind, seed=3,
                    hyperparameters={"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 4})
    job = ft.wait(job.id, timeout=HANG, poll=0.5)
    assert job.status == "succeeded", (job.error, ft.log_path(job.id).read_text()[-3000:])
    assert job.fine_tuned_model == f"ft:{model_id}:{kind}:{job.id}"
    losses = [e.data["train_loss"] for e in ft.events(job.id) if e.type == "metrics"]
    # 12 examples and 8 replayed answers of the base model per epoch, batch 4, 2 epochs: 10 steps. Steps differ
    # in how many replayed rows they hold; epoch by epoch the loss falls.
    assert len(losses) == ft.get(job.id).progress["total_steps"] == 10
    assert sum(losses[5:]) < sum(losses[:5]), losses
    done = [e for e in ft.events(job.id) if e.message.startswith("The job has successfully completed")][0]
    assert done.data["device"].startswith("CPU") and done.data["tokens_per_second"] > 0
    assert done.data["peak_memory_mb"] > 0
    assert "lm_head" not in done.data["lora_targets"] and "embed_tokens" not in done.data["lora_targets"]

    # Served over /v1 with the unmodified SDK.
    tuned = job.fine_tuned_model
    client: openai.OpenAI = world.client
    assert {model_id, tuned} <= {m.id for m in client.models.list()}
    served = client.chat.completions.create(model=tuned, messages=QUESTION, max_tokens=TOKENS, temperature=0)
    text = served.choices[0].message.content

    # Exported in each format; each loads back and gives the same greedy tokens.
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    engine = rt.local.engine(tuned)
    prompt = engine.encode_chat(QUESTION)
    eos = engine.eos_token_ids
    results = {fmt: export_model(rt, tuned, fmt, tmp_path / fmt, gguf_type="f32") for fmt in ("peft", "merged")}
    results["gguf"] = export_model(rt, tuned, "gguf", tmp_path / "gguf", gguf_type="f32")
    peft_dir = results["peft"].path
    assert (peft_dir / "adapter_config.json").is_file() and (peft_dir / "adapter_model.safetensors").is_file()
    assert f"--lora-modules {tuned}=" in results["peft"].recipes["vllm"].replace("'", "")
    base_path = rt.local_checkpoint(model_id)
    tokenizer = AutoTokenizer.from_pretrained(str(base_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base_path)), str(peft_dir)).eval()
    assert greedy(adapted, tokenizer, prompt, eos) == text

    merged_dir = results["merged"].path
    assert list(merged_dir.glob("*.safetensors")) and not list(merged_dir.glob("adapter_*"))
    merged = AutoModelForCausalLM.from_pretrained(str(merged_dir)).eval()
    assert greedy(merged, AutoTokenizer.from_pretrained(str(merged_dir)), prompt, eos) == text

    gguf_file = next(p for p in results["gguf"].files if p.suffix == ".gguf")
    assert "llama-server -m" in results["gguf"].recipes["llama.cpp"]
    assert (results["gguf"].path / "Modelfile").read_text().startswith("FROM ")
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name).eval()
    gguf_tokenizer = AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
    assert gguf_tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=True,
                                              return_dict=False) == prompt
    assert greedy(loaded, gguf_tokenizer, prompt, eos) == text


def test_smollm2_gguf_in_f16_and_q8_0_keeps_its_answers(world: Any, tmp_path: Path) -> None:
    """The formats llama.cpp users take: half and a quarter of the size, the same answer to a general question."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rt: Runtime = world.runtime
    engine = rt.local.engine(BASE)
    question = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = engine.encode_chat(question)
    reference = engine.stream(question, GenerationOptions(max_tokens=TOKENS)).read().text
    assert "Paris" in reference
    for qtype in ("f16", "q8_0"):
        result = export_model(rt, BASE, "gguf", tmp_path / qtype, gguf_type=qtype)
        gguf_file = next(p for p in result.files if p.suffix == ".gguf")
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name).eval()
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
        answer = greedy(loaded, tokenizer, prompt, engine.eos_token_ids)
        assert "Paris" in answer, (qtype, answer)
        size = gguf_file.stat().st_size
        assert size < (300e6 if qtype == "f16" else 160e6), size


def test_cli_registers_lists_exports_and_refuses(home: Path, tmp_path: Path) -> None:
    folder = build_tiny_model("qwen2", MODELS_DIR / BASE, tmp_path / "qwen")
    added = run_cli("models", "add", "my-qwen", str(folder))
    assert added.code == 0 and "Qwen2ForCausalLM" in added.stdout, added.stderr
    listed = json.loads(run_cli("models", "--json").stdout)
    mine = next(m for m in listed["models"] if m["id"] == "my-qwen")
    assert mine["architecture"] == "Qwen2ForCausalLM" and mine["path"] == str(folder.resolve())
    assert mine["parameters"] > 1_000_000 and mine["kind"] == "base"
    answer = run_cli("ask", "-m", "my-qwen", "--max-tokens", "4", "Hi")
    assert answer.code == 0 and answer.stdout.strip()
    exported = run_cli("export", "my-qwen", "--format", "gguf", "-o", str(tmp_path / "out"), "--gguf-type", "q8_0")
    assert exported.code == 0 and "llama-server -m" in exported.stdout, exported.stderr
    assert_one_line_error(run_cli("export", "my-qwen", "--format", "gguf", "-o", str(tmp_path / "out")),
                          "not empty")
    # A GGUF file registers too: converted to safetensors once, again when the file changes.
    gguf_file = next((tmp_path / "out").glob("*.gguf"))
    assert run_cli("models", "add", "qwen-gguf", str(gguf_file)).code == 0
    first = run_cli("ask", "-m", "qwen-gguf", "--max-tokens", "4", "Hi")
    assert first.code == 0 and first.stdout.strip(), first.stderr
    marker = MODELS_DIR / "registered" / "qwen-gguf" / "tuneloop-source.json"
    converted = json.loads(marker.read_text())
    assert converted["source"] == str(gguf_file.resolve())
    os.utime(gguf_file, ns=(converted["source_mtime_ns"] + 10**9, converted["source_mtime_ns"] + 10**9))
    assert run_cli("ask", "-m", "qwen-gguf", "--max-tokens", "4", "Hi").code == 0
    assert json.loads(marker.read_text())["source_mtime_ns"] == converted["source_mtime_ns"] + 10**9
    assert_one_line_error(run_cli("export", "my-qwen", "--format", "peft", "-o", str(tmp_path / "p")),
                          "base model", "merged or gguf")
    assert_one_line_error(run_cli("models", "add", "my-qwen:2", str(folder)), "no ':'")
    assert_one_line_error(run_cli("models", "remove", BASE), "bundled")
    removed = run_cli("models", "remove", "my-qwen")
    assert removed.code == 0
    assert_one_line_error(run_cli("ask", "-m", "my-qwen", "Hi"), "unknown model 'my-qwen'")

    # In tuneloop.toml too.
    (tmp_path / "tuneloop.toml").write_text(f'[models."toml-qwen"]\npath = "{folder}"\n')
    listed = json.loads(run_cli("models", "--json").stdout)
    assert "toml-qwen" in [m["id"] for m in listed["models"]]


def test_unusable_models_are_refused_before_any_job(home: Path, tmp_path: Path) -> None:
    import shutil

    folder = build_tiny_model("llama", MODELS_DIR / BASE, tmp_path / "no-template")
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    assert_one_line_error(run_cli("models", "add", "plain", str(folder)), "'plain'", "no chat template",
                          "instruct")

    strange = tmp_path / "strange"
    shutil.copytree(MODELS_DIR / BASE, strange)
    config = json.loads((strange / "config.json").read_text())
    config["model_type"] = "nosuchmodel"
    (strange / "config.json").write_text(json.dumps(config))
    assert_one_line_error(run_cli("models", "add", "strange", str(strange)), "'nosuchmodel'", "transformers")
    assert_one_line_error(run_cli("models", "add", "missing", str(tmp_path / "nowhere")), "does not exist")

    # A 70B-parameter Llama (its config, and no real weights): refused with the estimate and what is available.
    import transformers

    huge = tmp_path / "huge"
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(MODELS_DIR / BASE))
    transformers.LlamaConfig(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
                             num_key_value_heads=8, vocab_size=len(tokenizer)).save_pretrained(str(huge))
    tokenizer.save_pretrained(str(huge))
    (huge / "pytorch_model.bin").write_bytes(b"")
    assert run_cli("models", "add", "huge", str(huge)).code == 0
    ft = FineTuning()
    file = ft.add_file(gadget_facts(), filename="f.jsonl")
    with pytest.raises(ModelTooLargeError, match=r"'huge' \(6\d\.\d+B parameters\) needs about \d+\.\d GiB"):
        ft.create(file.id, model="huge")
    assert ft.list() == []
    (tmp_path / "f.csv").write_text("question,answer\n" + "\n".join(f"Q{i}?,A{i}." for i in range(12)) + "\n")
    assert_one_line_error(run_cli("train", str(tmp_path / "f.csv"), "--base", "huge"), "'huge'", "GiB",
                          "available")
    assert_one_line_error(run_cli("ask", "-m", "huge", "Hi"), "'huge'", "GiB")
    assert_one_line_error(run_cli("train", str(tmp_path / "f.csv"), "--quantize", "4bit"), "CUDA")
    assert_one_line_error(run_cli("train", str(tmp_path / "f.csv"), "--device", "tpu"), "device 'tpu'")
    with pytest.raises(ModelUnusableError):
        Runtime().registry.add("plain", folder)
