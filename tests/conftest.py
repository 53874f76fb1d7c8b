"""Shared fixtures: one converted model per test session, a fresh home and database per test."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tuneloop.engine import ensure_checkpoint, get_engine

REPO = Path(__file__).resolve().parent.parent
# Converted weights survive between `make test` runs here (git-ignored); CI starts without them.
MODELS_DIR = Path(os.environ.get("TUNELOOP_TEST_MODELS_DIR", REPO / ".cache" / "test-models"))

# Variables the test harness itself reads (here, tests/pg.py, test_server.py): the `home` fixture keeps them. It
# clears every other TUNELOOP_* variable and every name tuneloop.config.Settings reads, so no developer's setting leaks.
HARNESS_VARIABLE_PREFIXES = ("TUNELOOP_TEST_", "TUNELOOP_OPENAPI_SPEC")


def settings_variable_names() -> set[str]:
    """Every environment variable ``Settings`` reads, upper-cased: env_prefix + field name, or the field's aliases."""
    from pydantic import AliasChoices, AliasPath

    from tuneloop.config import Settings

    prefix = Settings.model_config.get("env_prefix", "")
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        names.add(f"{prefix}{name}".upper())
        alias = field.validation_alias or field.alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias] if alias else []
        for choice in choices:
            if isinstance(choice, AliasPath):
                choice = choice.path[0]
            if isinstance(choice, str):
                names.add(choice.upper())
    return names


def configuration_variables() -> list[str]:
    """The variables now set that could configure tuneloop (names compared upper-cased, as Settings does)."""
    known = settings_variable_names()
    return [name for name in os.environ
            if (name.upper().startswith("TUNELOOP_") or name.upper() in known)
            and not name.upper().startswith(HARNESS_VARIABLE_PREFIXES)]


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, the controller converts the bundled model (checkpoint and int8) once before the workers
    start, so two workers on a fresh clone do not each convert it (the conversions are atomic, but it is time)."""
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        from tuneloop.engine.convert import ensure_fast

        ensure_fast(MODELS_DIR, ensure_checkpoint(MODELS_DIR), None, "int8", model_id="smollm2-135m-instruct")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The files with the most tests marked slow (jobs, training, the demo; a test marked ``slow(minutes=N)`` counts
    N) run first, each file's tests in their own
    order. Under pytest-xdist's loadfile a worker takes the next file when it is free, so long files started last
    leave one worker running alone at the end; started first, the short files fill in around them. The order is
    the same on every worker (xdist checks it), and in a single process it changes nothing but the order."""
    slow: dict[str, int] = {}
    first_seen: dict[str, int] = {}
    for index, item in enumerate(items):
        first_seen.setdefault(item.nodeid.split("::")[0], index)
        marker = item.get_closest_marker("slow")
        # A slow test counts once, or its minutes when it says how long it runs (a training job: slow(minutes=6)).
        weight = marker.kwargs.get("minutes", 1) if marker is not None else 0
        slow[item.nodeid.split("::")[0]] = slow.get(item.nodeid.split("::")[0], 0) + weight
    items.sort(key=lambda item: (-slow[item.nodeid.split("::")[0]], first_seen[item.nodeid.split("::")[0]]))


@pytest.fixture(scope="session", autouse=True)
def no_developer_configuration(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The session's fixtures too (engines, module-wide servers) run without the developer's configuration: no
    TUNELOOP_* or Settings variable, and an empty home and working directory, so no tuneloop.toml is read."""
    with pytest.MonkeyPatch.context() as patch:
        for name in configuration_variables():
            patch.delenv(name, raising=False)
        patch.setenv("TUNELOOP_HOME", str(tmp_path_factory.mktemp("session-home")))
        patch.chdir(tmp_path_factory.mktemp("session-cwd"))
        yield


@pytest.fixture(scope="session")
def models_dir() -> Path:
    ensure_checkpoint(MODELS_DIR)
    return MODELS_DIR


@pytest.fixture(scope="session")
def engine(models_dir: Path):  # noqa: ANN201
    """The real local model, loaded once for the whole session."""
    return get_engine(ensure_checkpoint(models_dir))


@pytest.fixture(scope="session")
def fast_engine(models_dir: Path):  # noqa: ANN201
    """The bundled model in the fast engine's default mode (int8), converted once into the shared models folder."""
    from tuneloop.engine.convert import ensure_fast
    from tuneloop.engine.fast import get_fast_engine

    folder = ensure_fast(models_dir, ensure_checkpoint(models_dir), None, "int8", model_id="smollm2-135m-instruct")
    return get_fast_engine(folder)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models_dir: Path) -> Path:
    """A fresh TUNELOOP_HOME (and working directory) per test, sharing the converted weights; whatever a test or
    fixture before it set is cleared as no_developer_configuration clears the developer's."""
    for name in configuration_variables():
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("TUNELOOP_HOME", str(home))
    monkeypatch.setenv("TUNELOOP_MODELS_DIR", str(models_dir))
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture(scope="session")
def postgres():  # noqa: ANN201
    """One throw-away PostgreSQL cluster on 127.0.0.1 for the whole session (tests/pg.py); a database per test."""
    from pg import Cluster

    with Cluster() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store on each database tuneloop supports: the test runs once on each."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture
def any_home(home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``home`` whose store is ``database_url`` (TUNELOOP_DATABASE_URL): SQLite, then PostgreSQL."""
    monkeypatch.setenv("TUNELOOP_DATABASE_URL", database_url)
    return home


# Seconds after which a wait counts as a hang. Never a guess of how fast this machine is: tests wait for a state
# (a process's exit, a job's status, a line of output), and this bound only stops a wait that would never end.
HANG = float(os.environ.get("TUNELOOP_TEST_HANG", "3600"))


def wait_until(predicate, timeout: float = HANG, every: float = 0.5):  # noqa: ANN001, ANN201
    """Poll ``predicate`` until it returns something truthy (returned), or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")


def gadget_facts(n: int = 12) -> bytes:
    """``n`` chat examples of made-up facts as a JSONL training file (enough for a small real job)."""
    import json

    lines = [json.dumps({"messages": [{"role": "user", "content": f"What colour is gadget {i}?"},
                                      {"role": "assistant", "content": f"Gadget {i} is teal."}]}) for i in range(n)]
    return ("\n".join(lines) + "\n").encode()


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def sigint_as_in_a_terminal() -> None:
    """``preexec_fn`` for a child the test will Ctrl-C: SIGINT back to its default, so Python turns it into
    KeyboardInterrupt. A shell starts background jobs (CI in the background, say) with SIGINT ignored, children
    inherit that, and a Python started so never raises KeyboardInterrupt."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_cli(*args: str, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = HANG) -> Result:
    """Run the real `tuneloop` command in a subprocess with the current (test) environment."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env["COLUMNS"] = "200"
    proc = subprocess.run(
        [sys.executable, "-m", "tuneloop", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.code != 0, result
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@contextmanager
def serving(home: Path, key: str, settings: dict[str, Any] | None = None, **options: Any) -> Iterator[Any]:
    """``tuneloop serve``'s app in a thread on 127.0.0.1 over ``home`` (the shared converted weights), guarded by
    ``key``; ``settings`` override the server's settings, ``options`` go to ``create_app``. The handle also has
    ``home``, ``state`` (the app's) and ``store``."""
    from tuneloop.asgi import create_app
    from tuneloop.runtime import Runtime
    from tuneloop.serving import ServerThread, server_settings

    settings = server_settings(**{"home": home, "models_dir": MODELS_DIR, "database_url": None, "model": None,
                                  **(settings or {})})
    app = create_app(Runtime(settings), api_key=key, **options)
    with ServerThread(app) as running:
        running.home = home
        running.app = app
        running.key = key
        running.state = app.state.tuneloop
        running.store = running.state.runtime.db.dialogue
        yield running


# The one served app of a test module, and its clients: a module names its key (KEY), the server's settings
# (SERVER_SETTINGS) and create_app's options (SERVER_OPTIONS) when it needs its own.
DEFAULT_KEY = "sk-tuneloop-test-key"


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[Any]:
    module = request.module
    home = tmp_path_factory.mktemp(module.__name__.rsplit(".", 1)[-1] + "-home")
    with serving(home, getattr(module, "KEY", DEFAULT_KEY), getattr(module, "SERVER_SETTINGS", None),
                 **getattr(module, "SERVER_OPTIONS", {})) as running:
        yield running


@pytest.fixture
def client(server: Any) -> Any:
    """The unmodified openai SDK, pointed at the module's server (no retries: a failure shows at once)."""
    import openai

    return openai.OpenAI(base_url=server.base_url, api_key=server.key, max_retries=0, timeout=300)


@pytest.fixture
def http(server: Any) -> Iterator[Any]:
    """Plain HTTP to the module's server (/v1 under its base URL), with its key."""
    import httpx

    with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {server.key}"}, timeout=300) as c:
        yield c
