"""The code's shape, checked: layers go one way (import-linter, lazy imports included), no module reaches into
another's private names, and every import of tuneloop's own inside a function says why it is there."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "src" / "tuneloop"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
# Documented functions of the standard library that happen to start with an underscore.
ALLOWED_PRIVATE = {"os._exit"}


def modules() -> list[tuple[str, Path, ast.Module]]:
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        name = ".".join(path.relative_to(SOURCE.parent).with_suffix("").parts).removesuffix(".__init__")
        found.append((name, path, ast.parse(path.read_text(), str(path))))
    return found


def lint_imports(source_root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(source_root)}
    return subprocess.run([str(LINT_IMPORTS), str(REPO / "pyproject.toml"), "--no-cache"],
                          capture_output=True, text=True, env=env, cwd=source_root)


def test_the_layers_contract_is_kept() -> None:
    result = lint_imports(SOURCE.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("module, upward", [
    ("store/dialogue.py", "tuneloop.conversation.chat"),  # the store reaching up into a service
    ("engine/fast.py", "tuneloop.models.registry"),  # an engine reaching up into the registry (the old circle)
    ("web/log.py", "tuneloop.store.browse"),  # a page reaching past the services into the store
    ("cli/logs.py", "tuneloop.store.dialogue"),  # a command doing the same
    ("web/jobs.py", "tuneloop.server.jobs"),  # the dashboard built on the API server instead of the serving layer
])
def test_an_upward_import_breaks_the_contract_even_inside_a_function(tmp_path: Path, module: str,
                                                                     upward: str) -> None:
    copy = tmp_path / "src"
    shutil.copytree(SOURCE, copy / "tuneloop", ignore=shutil.ignore_patterns("__pycache__"))
    importer = copy / "tuneloop" / module
    importer.write_text(importer.read_text() + f"\n\ndef _upward() -> None:\n    import {upward}  # noqa\n")
    result = lint_imports(copy)
    assert result.returncode != 0, result.stdout
    importer_name = "tuneloop." + module.removesuffix(".py").replace("/", ".")
    assert "BROKEN" in result.stdout and f"{importer_name} -> {upward}" in result.stdout, result.stdout


def defined_private_names(tree: ast.Module) -> set[str]:
    """Private names a module defines itself (functions, classes, attributes it assigns): its own to use."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return {n for n in names if n.startswith("_")}


def private_uses(name: str, tree: ast.Module) -> list[str]:
    own = defined_private_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            if node.attr in own or ast.unparse(node) in ALLOWED_PRIVATE:
                continue
            found.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tuneloop"):
            for alias in node.names:
                parts = [*node.module.split("."), alias.name]
                private = next((i for i, p in enumerate(parts) if p.startswith("_") and not p.startswith("__")), None)
                # A private name belongs to the module or package that holds it: only that one may use it.
                if private is not None and name.split(".")[:private] != parts[:private]:
                    found.append(f"{name}:{node.lineno}: from {node.module} import {alias.name}")
    return found


def test_no_module_reaches_into_another_modules_private_names() -> None:
    found = [use for name, _, tree in modules() for use in private_uses(name, tree)]
    assert found == []


def test_the_private_name_check_finds_what_the_review_found() -> None:
    caught = ast.parse("from tuneloop.datasets.readers import _read_bytes\n"
                       "def f(store):\n    with store._session() as s:\n        return s\n")
    assert private_uses("tuneloop.evals", caught) == [
        "tuneloop.evals:1: from tuneloop.datasets.readers import _read_bytes", "tuneloop.evals:3: store._session"]
    allowed = ast.parse("from tuneloop.server._errors import APIError\n")
    assert private_uses("tuneloop.server.chat", allowed) == []
    assert private_uses("tuneloop.cli.serve", allowed) == ["tuneloop.cli.serve:1: from tuneloop.server._errors "
                                                           "import APIError"]


def unexplained_lazy_imports(name: str, source: str, tree: ast.Module) -> list[str]:
    """Imports of tuneloop's own modules inside a function with no comment on the line or the line above their
    group (``if TYPE_CHECKING:`` blocks are not imports at run time)."""
    lines = source.splitlines()
    checking = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(
        node.test) for n in ast.walk(node)}
    top = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom | ast.Import) or id(node) in top or id(node) in checking:
            continue
        targets = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
        if not any(t == "tuneloop" or t.startswith("tuneloop.") for t in targets):
            continue
        first = node.lineno
        while first > 1 and (lines[first - 2].strip().startswith(("import ", "from "))
                             or (not lines[first - 2].strip() and first > 2
                                 and lines[first - 3].strip().startswith(("import ", "from ")))):
            first -= 1
        group = lines[first - 1:node.end_lineno]
        if not (lines[first - 2].strip().startswith("#") or any("#" in line for line in group)):
            found.append(f"{name}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    return found


def test_every_import_inside_a_function_says_why() -> None:
    found = [use for name, path, tree in modules()
             for use in unexplained_lazy_imports(name, path.read_text(), tree)]
    assert found == []
    bare = "def f():\n    import json\n\n    from tuneloop.config import Settings\n    return Settings\n"
    assert unexplained_lazy_imports("m", bare, ast.parse(bare)) == ["m:4: from tuneloop.config import Settings"]
    said = "def f():\n    # Lazy: cold start.\n    import json\n\n    from tuneloop.config import Settings\n"
    assert unexplained_lazy_imports("m", said, ast.parse(said)) == []


def test_no_module_is_much_over_five_hundred_lines() -> None:
    long = {name: n for name, path, _ in modules() if (n := len(path.read_text().splitlines())) > 520}
    assert long == {}


LONGEST_FUNCTION = 80  # lines, decorators and docstring included


def test_no_function_is_longer_than_80_lines() -> None:
    """Functions that grow past a screen are split into named steps (STYLE.md): this lists those that did not."""
    long = []
    for name, _, tree in modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                length = node.end_lineno - start + 1
                if length > LONGEST_FUNCTION:
                    long.append(f"{name}.{node.name}: {length} lines")
    assert long == []


def test_every_library_error_class_is_in_errors_py() -> None:
    """One exception tree in one module: a TuneloopError subclass defined anywhere else is listed here (its old name
    may be imported from elsewhere, never defined there)."""
    from tuneloop import errors

    tree_names = {name for name, value in vars(errors).items() if isinstance(value, type)
                  and issubclass(value, errors.TuneloopError)}
    elsewhere = []
    for name, _, tree in modules():
        if name == "tuneloop.errors":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = {b.id if isinstance(b, ast.Name) else b.attr if isinstance(b, ast.Attribute) else ""
                         for b in node.bases}
                if bases & tree_names or node.name.endswith("Error") and "Exception" not in bases:
                    elsewhere.append(f"{name}.{node.name}")
    assert elsewhere == []


# The threads that are not long work: the engine's batching loop, its preload, the vision model's streamer, the
# server's thread (tests, benches) and the token counter beside a training; long work runs as a task.
THREADS_ALLOWED = {"tuneloop.engine.batching", "tuneloop.engine.preload", "tuneloop.providers.vision",
                   "tuneloop.serving.run", "tuneloop.training.run", "tuneloop.tasks.runner"}


def test_long_work_starts_no_thread_of_its_own() -> None:
    starting = {name for name, _, tree in modules() for node in ast.walk(tree)
                if isinstance(node, ast.Call) and ast.unparse(node.func) in ("threading.Thread", "Thread")}
    assert starting - THREADS_ALLOWED == set()
