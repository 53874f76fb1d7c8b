"""The loop for tools, for real: 40 function-calling examples (OpenAI's fine-tuning format) teach the bundled model
to call a function with the right arguments; on 20 held-out requests `tuneloop eval` counts the right calls of the
tuned model against the base model's."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from conftest import HANG, run_cli

from tuneloop.training import FineTuning

pytestmark = pytest.mark.slow(minutes=6)  # a real training job and two evals on 2 cores

BASE = "smollm2-135m-instruct"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "The city"}},
                   "required": ["city"], "additionalProperties": False}}}
CITIES = ["Paris", "Oslo", "Lima", "Cairo", "Tokyo", "Berlin", "Madrid", "Rome", "Vienna", "Prague", "Dublin",
          "Lisbon", "Warsaw", "Athens", "Helsinki", "Stockholm", "Toronto", "Chicago", "Boston", "Denver",
          "Seattle", "Austin", "Miami", "Havana", "Bogota", "Quito", "Santiago", "Nairobi", "Lagos", "Accra",
          "Dakar", "Tunis", "Beirut", "Amman", "Doha", "Dubai", "Mumbai", "Delhi", "Dhaka", "Hanoi",
          "Manila", "Jakarta", "Seoul", "Osaka", "Sydney", "Perth", "Auckland", "Zurich", "Geneva", "Munich",
          "Hamburg", "Milan", "Naples", "Porto", "Seville", "Krakow", "Riga", "Tallinn", "Vilnius", "Minsk"]
ASKS = ["What's the weather in {c}?", "Is it raining in {c} today?", "How hot is it in {c} right now?",
        "Tell me the forecast for {c}.", "Should I bring an umbrella in {c}?", "What is the temperature in {c}?",
        "Weather for {c}, please.", "Is it sunny in {c}?"]


def split() -> tuple[list[str], list[str]]:
    cities = CITIES[:]
    random.Random(5).shuffle(cities)
    return cities[:40], cities[40:]


def training_file(cities: list[str]) -> bytes:
    lines = []
    for i, city in enumerate(cities):
        call = {"id": f"call_{i}", "type": "function",
                "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}
        lines.append(json.dumps({"messages": [{"role": "user", "content": ASKS[i % len(ASKS)].format(c=city)},
                                              {"role": "assistant", "tool_calls": [call]}], "tools": [WEATHER]}))
    return ("\n".join(lines) + "\n").encode()


def eval_file(cities: list[str], path: Path) -> Path:
    path.write_text("".join(json.dumps({
        "question": ASKS[(i + 3) % len(ASKS)].format(c=city), "tools": [WEATHER],
        "expected": {"name": "get_weather", "arguments": {"city": city}}}) + "\n" for i, city in enumerate(cities)))
    return path


def test_forty_examples_teach_the_right_call(home: Path, tmp_path: Path) -> None:
    train, held = split()
    assert not set(train) & set(held)
    ft = FineTuning()
    file = ft.add_file(training_file(train), filename="weather-calls.jsonl")
    # Three epochs: copying an argument generalises better than after the auto choice's eight, which learn the 40
    # cities by heart (measured with these files: 3 epochs 19/20, 4 epochs 18/20, 8 epochs 17/20; the base model 0/20).
    job = ft.wait(ft.create(file.id, suffix="calls", seed=3, hyperparameters={"n_epochs": 3}).id, timeout=HANG)
    assert job.status == "succeeded", (job.error, ft.log_path(job.id).read_text()[-3000:])

    result = run_cli("eval", str(eval_file(held, tmp_path / "held.jsonl")), "-m", job.fine_tuned_model, "-m", BASE,
                     "--json")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    passed = {m["model"]: m["passed"] for m in report["models"]}
    wrong = [(item["question"], item["answers"][job.fine_tuned_model]["answer"]) for item in report["items"]
             if not item["answers"][job.fine_tuned_model]["passed"]]
    assert passed[job.fine_tuned_model] >= 18, (passed, wrong)
    assert passed[BASE] < passed[job.fine_tuned_model], passed
