"""The layout's promises, checked: which parts of the package load which, and its limits.

docs/architecture.md draws the layers; these tests keep the code to the drawing. Most read
the source with :mod:`ast` (nothing is imported), so a failure names the file and line.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    "module",
    ["policyengine.language", "policyengine.language.parser", "policyengine.language.checker"],
)
def test_the_language_loads_neither_cryptography_nor_the_request_side(module: str) -> None:
    """Parsing and checking a policy needs no certificate code: importing the language, in
    a fresh interpreter, loads no ``cryptography`` and nothing of ``policyengine.request``
    or ``policyengine.evaluation``."""
    probe = f"import json, sys, {module}\nprint(json.dumps(sorted(sys.modules)))\n"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = json.loads(result.stdout)
    assert module in loaded
    forbidden = ("cryptography", "policyengine.request", "policyengine.evaluation")
    assert [m for m in loaded if any(m == f or m.startswith(f + ".") for f in forbidden)] == []


PACKAGE = Path(__file__).resolve().parent.parent / "policyengine"
MODULES = sorted(PACKAGE.rglob("*.py"))

# folder -> the policyengine folders and modules it must never import
FORBIDDEN = {
    "language": ("evaluation", "request", "load", "integrations", "tooling", "cli", "server"),
    "request": ("language", "evaluation", "load", "integrations", "tooling", "cli", "server"),
    "evaluation": ("load", "integrations", "tooling", "cli", "server"),
    "load": ("integrations", "tooling", "cli", "server"),
    "integrations": ("cli", "tooling", "server"),
    "tooling": ("cli", "integrations", "server"),
    "server": ("cli", "tooling"),
}
_EVERY_FOLDER = ("language", "evaluation", "request", "load", "integrations", "tooling", "cli")
for _leaf in ("errors.py", "span.py", "values.py", "oids.py", "caches.py", "testing.py"):
    FORBIDDEN[_leaf] = (*_EVERY_FOLDER, "server", "testing")
# a third-party package -> where it may be imported
ROOMS = {
    "lark": ("language/parser.py",),
    "yaml": ("load/",),
    "jsonschema": ("load/",),
    "cryptography": ("request/", "testing.py", "cli/"),
    "uvicorn": ("server/run.py",),
    "uvloop": ("server/run.py",),
    "grpc": ("server/grpc.py",),
    "envoy": ("server/grpc.py",),
    "google": ("server/grpc.py",),
    "prometheus_client": ("server/metrics.py",),
    "urllib3": ("request/fetch.py",),
}


def _relative(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """Every module ``path`` imports, absolute, with the line of the import."""
    tree = ast.parse(path.read_text(), str(path))
    package = ["policyengine", *_relative(path).split("/")[:-1]]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:  # `from policyengine import load` names a module too
                yield node.lineno, f"{module}.{alias.name}"


def test_every_module_is_seen() -> None:
    assert len(MODULES) > 30
    assert {_relative(m).split("/")[0] for m in MODULES} >= set(FORBIDDEN)


@pytest.mark.parametrize("path", MODULES, ids=_relative)
def test_imports_point_down(path: Path) -> None:
    folder = _relative(path).split("/")[0]
    forbidden = tuple(f"policyengine.{name}" for name in FORBIDDEN.get(folder, ()))
    wrong = [
        f"{_relative(path)}:{line} imports {module}"
        for line, module in _imports(path)
        if module.startswith(forbidden)
        and module.split(".")[:2] != ["policyengine", folder]
        and any(module == f or module.startswith(f + ".") for f in forbidden)
    ]
    assert not wrong


@pytest.mark.parametrize("path", MODULES, ids=_relative)
def test_third_party_packages_stay_in_their_room(path: Path) -> None:
    where = _relative(path)
    wrong = [
        f"{where}:{line} imports {module}"
        for line, module in _imports(path)
        for package, rooms in ROOMS.items()
        if module.split(".")[0] == package and not where.startswith(rooms)
    ]
    assert not wrong


@pytest.mark.parametrize("path", MODULES, ids=_relative)
def test_no_module_over_600_lines_nor_function_over_60(path: Path) -> None:
    text = path.read_text()
    assert len(text.splitlines()) <= 600
    long = [
        f"{node.name} at line {node.lineno}: {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > 60
    ]
    assert not long


@pytest.mark.parametrize("path", MODULES, ids=_relative)
def test_each_module_says_what_it_owns_and_must_not_import(path: Path) -> None:
    docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert docstring, "opens with a docstring: what it owns"
    assert "import" in docstring.lower(), "and what it must not import"
