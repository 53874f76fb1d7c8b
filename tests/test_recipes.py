"""Every serving recipe of an export prompts the model as training did: the chat template each recipe points to
(a --chat-template file, a tokenizer folder, or the GGUF's own metadata) renders, with jinja2 as transformers does,
the prompt that training rendered for the same conversation (the base's template, no default system prompt added).

A tiny random-weight Llama with SmolLM2's tokenizer (whose template adds a default system prompt) trains through a
real job in seconds and is exported in each format; its weights do not matter here, its template does."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
from conftest import HANG, MODELS_DIR, gadget_facts
from tiny_models import build_tiny_model

from tuneloop.engine.template import as_given
from tuneloop.export import FORMATS, ExportResult, export_model
from tuneloop.runtime import Runtime
from tuneloop.serving import server_settings
from tuneloop.training import FineTuning

pytestmark = pytest.mark.slow  # a real job, then three exports

BASE = "smollm2-135m-instruct"
CONVERSATIONS = [
    [{"role": "user", "content": "What colour is gadget 3?"}],
    [{"role": "user", "content": "What colour is gadget 3?"}, {"role": "assistant", "content": "Gadget 3 is teal."},
     {"role": "user", "content": "And gadget 4?"}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What colour is gadget 3?"}],
]
OLLAMA_CAVEAT = "# Ollama runs Go templates, not this export's jinja chat template"


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> tuple[Any, dict[str, ExportResult]]:
    """The base tokenizer training used, and the fine-tuned tiny model exported in every format."""
    from transformers import AutoTokenizer

    home = tmp_path_factory.mktemp("recipes-home")
    rt = Runtime(server_settings(home=home, models_dir=MODELS_DIR, database_url=None, model=None,
                                 engine="reference"))
    folder = build_tiny_model("llama", models_dir / BASE, home / "tiny-llama")
    rt.registry.add("tiny-llama", folder)
    ft = FineTuning(rt)
    file = ft.add_file(gadget_facts(10), filename="facts.jsonl")
    job = ft.create(file.id, model="tiny-llama", suffix="tpl", seed=1, hyperparameters={"n_epochs": 1})
    job = ft.wait(job.id, timeout=HANG, poll=0.5)
    assert job.status == "succeeded", job.error
    out = tmp_path_factory.mktemp("exports")
    results = {fmt: export_model(rt, job.fine_tuned_model, fmt, out / fmt, gguf_type="f32") for fmt in FORMATS}
    return AutoTokenizer.from_pretrained(str(rt.local_checkpoint("tiny-llama"))), results


def trained(tokenizer: Any, messages: list[dict[str, str]], prompt: bool) -> str:
    """What training rendered (training/tokenize.py): the base's own template over ``as_given`` messages."""
    return tokenizer.apply_chat_template(as_given(tokenizer, messages), tokenize=False, add_generation_prompt=prompt)


def option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def vllm_template(command: str) -> str:
    """The template `vllm serve` renders with: --chat-template, else that of the tokenizer it loads."""
    from transformers import AutoTokenizer

    args = shlex.split(command.splitlines()[0])
    assert args[:2] == ["vllm", "serve"], command
    chosen = option(args, "--chat-template")
    if chosen is not None:
        return Path(chosen).read_text("utf-8")
    tokenizer = option(args, "--tokenizer") or args[2]
    assert not tokenizer.endswith(".gguf"), command  # vLLM's own GGUF tokenizer loading is not what we recommend
    return AutoTokenizer.from_pretrained(tokenizer).chat_template


def llama_cpp_template(command: str) -> str:
    """The template `llama-server` renders with: --chat-template-file, else (with --jinja) the GGUF's own."""
    from gguf import GGUFReader

    args = shlex.split(command.splitlines()[0])
    assert args[0] == "llama-server" and "--jinja" in args, command  # without --jinja: a built-in, not jinja
    chosen = option(args, "--chat-template-file")
    if chosen is not None:
        return Path(chosen).read_text("utf-8")
    field = GGUFReader(option(args, "-m")).fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode("utf-8")


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_recipe_renders_the_prompt_training_used(fmt: str, exports: Any) -> None:
    tokenizer, results = exports
    found = results[fmt].recipes
    templates = {"vllm": vllm_template(found["vllm"])}
    if fmt == "gguf":
        templates["llama.cpp"] = llama_cpp_template(found["llama.cpp"])
    else:
        assert "--format gguf" in found["llama.cpp"]  # llama.cpp serves the GGUF export (checked there)
    for engine, template in templates.items():
        for messages in CONVERSATIONS:
            for prompt in (True, False):
                rendered = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                                         add_generation_prompt=prompt)
                assert rendered == trained(tokenizer, messages, prompt), (fmt, engine, messages)
    # Ollama matches a built-in Go template to the model's: not the trained rendering for sure, and it says so.
    assert OLLAMA_CAVEAT in found["ollama"]
    if "ollama-modelfile" in found:
        assert OLLAMA_CAVEAT in (results[fmt].path / "Modelfile").read_text()


def test_the_base_template_is_not_the_trained_one(exports: Any) -> None:
    """The check above can fail: the base's template, unpatched, prompts without the trained empty system turn."""
    tokenizer, _ = exports
    untouched = tokenizer.apply_chat_template(CONVERSATIONS[0], tokenize=False, add_generation_prompt=True)
    assert untouched != trained(tokenizer, CONVERSATIONS[0], True)
    assert "You are a helpful AI assistant" in untouched
