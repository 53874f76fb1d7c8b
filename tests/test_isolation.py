"""The `home` fixture leaves none of a developer's configuration in a test: no variable, no tuneloop.toml."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HANG

from tuneloop.config import Settings, load_settings

# What a developer's shell may hold: settings the old hand-kept list missed, one no release knows yet, a name in
# lower case (Settings reads names in any case), the vendor's variables, and the CLI's traceback switch.
LEAKS = {
    "TUNELOOP_DEVICE": "cuda",
    "TUNELOOP_SPAWN_WORKER": "false",
    "TUNELOOP_RETRIES": "7",
    "TUNELOOP_SOMETHING_NEW": "1",
    "tuneloop_max_tokens": "3",
    "TUNELOOP_DEBUG": "1",
    "OPENAI_API_KEY": "sk-developer-key-0000000000",
    "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
}


def test_home_clears_every_setting_a_developer_may_have(request: pytest.FixtureRequest,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    # Every field Settings has now or gets later, set to a value that is either wrong for it or not its default.
    planted = {f"TUNELOOP_{name.upper()}": "999" for name in Settings.model_fields} | LEAKS
    for name, value in planted.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TUNELOOP_TEST_KEPT_FOR_THE_HARNESS", "yes")
    # A tuneloop.toml in the developer's working directory and home.
    developer = tmp_path_factory.mktemp("developer")
    (developer / "tuneloop.toml").write_text('device = "cuda"\nmax_tokens = 3\nprovider = "openai"\n')
    monkeypatch.setenv("TUNELOOP_HOME", str(developer))
    monkeypatch.chdir(developer)

    home: Path = request.getfixturevalue("home")  # the fixture runs only now, after all of the above

    assert sorted(name for name in planted if name in os.environ) == ["TUNELOOP_HOME", "TUNELOOP_MODELS_DIR"]
    assert os.environ["TUNELOOP_TEST_KEPT_FOR_THE_HARNESS"] == "yes"
    settings = load_settings()
    assert settings.home == home and settings.models_dir == request.getfixturevalue("models_dir")
    for name, field in Settings.model_fields.items():
        if name not in ("home", "models_dir"):
            assert getattr(settings, name) == field.get_default(call_default_factory=True), name
    assert settings.default_provider == "local"


INNER = '''
import pytest

from tuneloop.config import Settings, load_settings


@pytest.fixture(scope="module")
def early():
    return load_settings()


def test_a_module_fixture_sees_the_defaults(early):
    for name, field in Settings.model_fields.items():
        if name != "home":
            assert getattr(early, name) == field.get_default(call_default_factory=True), name
'''


def test_session_and_module_fixtures_see_none_of_it_either(tmp_path: Path) -> None:
    """Fixtures wider than a test (engines, module-wide servers) run before any `home`: the session clears it too."""
    developer = tmp_path / "developer"
    developer.mkdir()
    (developer / "tuneloop.toml").write_text('max_batch = 3\nretries = 9\n')
    (developer / "test_inner.py").write_text(INNER)
    env = {**os.environ, **LEAKS, "TUNELOOP_HOME": str(developer), "PYTHONPATH": str(Path(__file__).parent)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider",
                           "test_inner.py"], cwd=developer, env=env, capture_output=True, text=True, timeout=HANG)
    assert proc.returncode == 0, proc.stdout + proc.stderr
