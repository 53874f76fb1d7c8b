"""A local fine-tuning job vs a plain TRL script, same data and hyperparameters, same run.

Both train a LoRA adapter (r=16, all linear layers) on the bundled demo facts on the CPU. tuneloop's job
is measured end to end (create → succeeded: the one-job worker's start, its claim, the training process,
saving, registration); the baseline is a subprocess running SFTTrainer directly. It prints trained tokens/s
(tokens in the examples × epochs, over the wall time) and peak memory (the largest resident memory of the
process and its children, sampled every 0.2 s) for both, and the ratios.

The baseline turns off TRL's CPU-hostile defaults (bf16 autocast, gradient checkpointing) as tuneloop
does; with TRL's defaults a step here takes about 20 times longer.

Run: ``make bench`` or ``.venv/bin/python bench/training.py [--rows 60] [--epochs 3]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

BASELINE = r"""
import json, sys, time
from pathlib import Path
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

checkpoint, data, epochs, batch, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
rows = []
for line in Path(data).read_text().splitlines():
    messages = json.loads(line)["messages"]
    rows.append({"prompt": messages[:-1], "completion": messages[-1:]})
tokenizer = AutoTokenizer.from_pretrained(checkpoint)
model = AutoModelForCausalLM.from_pretrained(checkpoint)
config = SFTConfig(output_dir=out, num_train_epochs=epochs, per_device_train_batch_size=batch, learning_rate=1e-3,
                   logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, seed=42, bf16=False,
                   activation_checkpointing=False, disable_tqdm=True, max_length=1024)
lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
                  target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                     peft_config=lora)
trainer.train()
trainer.model.save_pretrained(out + "/adapter")
"""


def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants now (tuneloop's worker trains in a child process)."""
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return total / 2**20


def watch(pid: int, done) -> tuple[float, float]:  # noqa: ANN001
    """Wall seconds until ``done()`` and the highest resident memory seen for ``pid`` and its children."""
    started, peak = time.monotonic(), 0.0
    while not done():
        peak = max(peak, tree_rss_mb(pid))
        time.sleep(0.2)
    return time.monotonic() - started, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    from tuneloop.config import load_settings
    from tuneloop.datasets import build_dataset, read_csv_text, token_counter, validate_examples
    from tuneloop.engine import ensure_checkpoint
    from tuneloop.runtime import Runtime
    from tuneloop.training import FineTuning

    with tempfile.TemporaryDirectory() as tmp:
        base = load_settings()
        settings = load_settings(home=Path(tmp) / "home", models_dir=base.resolved_models_dir)
        checkpoint = ensure_checkpoint(settings.resolved_models_dir)
        facts = resources.files("tuneloop.data").joinpath("demo_facts.csv").read_text()
        examples = build_dataset(read_csv_text(facts)).supervised[: args.rows]
        data = Path(tmp) / "train.jsonl"
        data.write_text("\n".join(json.dumps(e) for e in examples) + "\n")
        counter = token_counter("smollm2-135m-instruct", models_dir=settings.resolved_models_dir)
        tokens = validate_examples(examples, counter).tokens["total"] * args.epochs
        batch = 4

        baseline = subprocess.Popen([sys.executable, "-c", BASELINE, str(checkpoint), str(data), str(args.epochs),
                                     str(batch), str(Path(tmp) / "baseline")],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base_seconds, base_peak = watch(baseline.pid, lambda: baseline.poll() is not None)
        assert baseline.returncode == 0, "the baseline script failed"

        ft = FineTuning(Runtime(settings))
        stored = ft.add_file(data)
        job = ft.create(stored.id, hyperparameters={"n_epochs": args.epochs, "batch_size": batch}, seed=42)
        ours_seconds, ours_peak = watch(job.pid, lambda: not ft.get(job.id).active)
        job = ft.get(job.id)
        assert job.status == "succeeded", job.error
        assert job.trained_tokens == tokens, (job.trained_tokens, tokens)

    print(f"{len(examples)} examples × {args.epochs} epochs = {tokens:,} trained tokens, batch {batch}")
    print(f"{'':<22}{'wall s':>9}{'tokens/s':>10}{'peak MB':>9}")
    print(f"{'plain TRL script':<22}{base_seconds:>9.1f}{tokens / base_seconds:>10.1f}{base_peak:>9.0f}")
    print(f"{'tuneloop job':<22}{ours_seconds:>9.1f}{tokens / ours_seconds:>10.1f}{ours_peak:>9.0f}")
    print(f"ratio tuneloop / baseline: tokens/s {base_seconds / ours_seconds:.2f}x, "
          f"peak memory {ours_peak / base_peak:.2f}x")


if __name__ == "__main__":
    main()
