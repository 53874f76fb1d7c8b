"""Does fine-tuning teach? Real tuneloop jobs with default settings vs a plain TRL script, same rows, same run.

For each fact set (the bundled demo facts about made-up products, and ``bench/facts/people.csv`` about made-up
people, places, dates and numbers) and each seed, it measures:

* held-out: questions about the trained facts phrased in ways no training row uses (graded ``contains``);
* general kept: of the fixed general questions (``tuneloop/data/general_eval.jsonl``, none of them trained or
  replayed) the base model answers right, how many the tuned model still answers right;
* job wall time: tuneloop from ``create`` to ``succeeded`` (worker start, claim, training process, saving,
  registration); the baseline from its process start to its end.

The baseline is the script people write from TRL's docs: SFTTrainer on prompt/completion rows, LoRA r=16 on
all linear layers, lr 1e-3, batch 4, 6 epochs, with TRL's CPU-hostile defaults turned off (bf16 autocast,
gradient checkpointing). Its adapter is asked the questions the way it was trained (the chat template as is);
tuneloop's models through tuneloop's engine, as users get them. Answers are greedy, batched.

Targets (issue 12): held-out at least 19 of 20 on every seed, no general answer lost, job wall time at most
half the baseline's.

Run: ``.venv/bin/python bench/learning.py [--seeds 1 2 3] [--sets demo people] [--baseline-seeds 1]``
(about 40 minutes for everything on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASELINE = r"""
import csv, sys
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

checkpoint, data, seed, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
rows = [{"prompt": [{"role": "user", "content": r["question"]}],
         "completion": [{"role": "assistant", "content": r["answer"]}]} for r in csv.DictReader(open(data))]
tokenizer = AutoTokenizer.from_pretrained(checkpoint)
model = AutoModelForCausalLM.from_pretrained(checkpoint)
config = SFTConfig(output_dir=out, num_train_epochs=6, per_device_train_batch_size=4, learning_rate=1e-3,
                   logging_steps=10, save_strategy="no", report_to="none", use_cpu=True, seed=seed, bf16=False,
                   activation_checkpointing=False, disable_tqdm=True, max_length=1024)
lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
                  target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                     peft_config=lora)
trainer.train()
trainer.model.save_pretrained(out + "/adapter")
"""


def fact_sets() -> dict[str, tuple[Path, Path]]:
    data = resources.files("tuneloop.data")
    return {"demo": (Path(str(data.joinpath("demo_facts.csv"))), Path(str(data.joinpath("demo_eval.jsonl")))),
            "people": (HERE / "facts" / "people.csv", HERE / "facts" / "people_eval.jsonl")}


def template_answers(checkpoint: Path, adapter: Path, items: list, max_tokens: int) -> list[str]:
    """Greedy answers of base + adapter with the chat template as is (the baseline's training format)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(checkpoint)), str(adapter))
    model = model.merge_and_unload().eval()
    pad = tokenizer.pad_token_id
    answers = []
    with torch.inference_mode():
        for start in range(0, len(items), 16):
            chunk = items[start:start + 16]
            prompts = [tokenizer.apply_chat_template(list(i.messages), add_generation_prompt=True, tokenize=True,
                                                     return_dict=True)["input_ids"] for i in chunk]
            width = max(len(p) for p in prompts)
            ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts])
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_tokens, do_sample=False,
                                 temperature=None, top_p=None, top_k=None, pad_token_id=pad)
            answers += [tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in out]
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--sets", nargs="+", default=["demo", "people"], choices=sorted(fact_sets()))
    parser.add_argument("--baseline-seeds", type=int, nargs="*", default=None,
                        help="Seeds the TRL baseline runs with (default: the same as --seeds; none to skip it).")
    parser.add_argument("--max-tokens", type=int, default=40)
    args = parser.parse_args()
    baseline_seeds = args.seeds if args.baseline_seeds is None else args.baseline_seeds

    from tuneloop.config import load_settings
    from tuneloop.datasets import build_dataset, read_csv
    from tuneloop.engine import ensure_checkpoint
    from tuneloop.engine.weights import BASE_MODEL_ID
    from tuneloop.evals import read_eval_file, run_eval
    from tuneloop.runtime import Runtime
    from tuneloop.training import FineTuning

    general = read_eval_file(Path(str(resources.files("tuneloop.data").joinpath("general_eval.jsonl"))))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base_settings = load_settings()
        settings = load_settings(home=Path(tmp) / "home", models_dir=base_settings.resolved_models_dir)
        checkpoint = ensure_checkpoint(settings.resolved_models_dir)
        rt = Runtime(settings)
        ft = FineTuning(rt)
        base_general = run_eval(rt, general, [BASE_MODEL_ID], max_tokens=args.max_tokens)
        base_right = [i for i, ok in enumerate(base_general.passed[BASE_MODEL_ID]) if ok]
        print(f"base model: {len(base_right)}/{len(general)} general questions right", flush=True)
        for name in args.sets:
            csv_path, eval_path = fact_sets()[name]
            held_out = read_eval_file(eval_path)
            dataset = build_dataset(read_csv(csv_path))
            stored, _method, count = ft.add_dataset(dataset, method="supervised", filename=f"{name}.jsonl")
            for seed in args.seeds:
                started = time.monotonic()
                job = ft.wait(ft.create(stored.id, seed=seed, suffix=name).id, timeout=3600)
                seconds = time.monotonic() - started
                assert job.status == "succeeded", job.error
                model = job.fine_tuned_model
                held = run_eval(rt, held_out, [model], max_tokens=args.max_tokens)
                kept = run_eval(rt, general, [model], max_tokens=args.max_tokens)
                row = {"set": name, "seed": seed, "who": "tuneloop", "examples": count,
                       "held": held.score(model), "kept": sum(kept.passed[model][i] for i in base_right),
                       "seconds": round(seconds, 1), "epochs": job.hyperparameters["n_epochs"]}
                rows.append(row)
                print(json.dumps(row), flush=True)
            for seed in baseline_seeds:
                out = Path(tmp) / f"trl-{name}-{seed}"
                started = time.monotonic()
                subprocess.run([sys.executable, "-c", BASELINE, str(checkpoint), str(csv_path), str(seed), str(out)],
                               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                seconds = time.monotonic() - started
                held_answers = template_answers(checkpoint, out / "adapter", held_out, args.max_tokens)
                general_answers = template_answers(checkpoint, out / "adapter", general, args.max_tokens)
                row = {"set": name, "seed": seed, "who": "plain TRL", "examples": count,
                       "held": sum(i.grade(a) for i, a in zip(held_out, held_answers, strict=True)),
                       "kept": sum(general[i].grade(general_answers[i]) for i in base_right),
                       "seconds": round(seconds, 1), "epochs": 6}
                rows.append(row)
                print(json.dumps(row), flush=True)

    print(f"\n{'set':<8}{'who':<11}{'seed':>5}{'held-out':>10}{'general kept':>14}{'job s':>8}")
    for r in rows:
        print(f"{r['set']:<8}{r['who']:<11}{r['seed']:>5}{r['held']:>7}/20{r['kept']:>10}/{len(base_right):<3}"
              f"{r['seconds']:>8.1f}")
    print()
    for name in args.sets:
        ours = [r for r in rows if r["set"] == name and r["who"] == "tuneloop"]
        trl = [r for r in rows if r["set"] == name and r["who"] == "plain TRL"]
        line = (f"{name}: tuneloop held-out min {min(r['held'] for r in ours)}/20, general lost "
                f"{sum(len(base_right) - r['kept'] for r in ours)} over {len(ours)} seeds, median job "
                f"{statistics.median(r['seconds'] for r in ours):.0f} s")
        if trl:
            ours_s = statistics.median(r["seconds"] for r in ours)
            trl_s = statistics.median(r["seconds"] for r in trl)
            line += (f"; plain TRL held-out min {min(r['held'] for r in trl)}/20, general lost "
                     f"{sum(len(base_right) - r['kept'] for r in trl)}, median {trl_s:.0f} s; "
                     f"time ratio tuneloop/TRL {ours_s / trl_s:.2f}")
        print(line)


if __name__ == "__main__":
    main()
