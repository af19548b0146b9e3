"""Nothing below ``cli/`` prints or chooses an exit code: the library returns text or raises,
and logs through ``logging``; ``policyengine.cli`` (and ``python -m policyengine``) writes.
Nor does anything below ``cli/`` import it."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "policyengine"
FACE = (PACKAGE / "cli", PACKAGE / "__main__.py")
STREAMS = {"stdout", "stderr", "stdin", "__stdout__", "__stderr__", "exit"}


def _library_modules() -> list[Path]:
    return [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if not any(path == face or face in path.parents for face in FACE)
    ]


def _writes(tree: ast.AST) -> list[str]:
    """Calls of print(), and every use of sys.stdout, sys.stderr, sys.stdin or sys.exit."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "print":
                found.append(f"line {node.lineno}: print()")
        elif isinstance(node, ast.Attribute) and node.attr in STREAMS:
            if isinstance(node.value, ast.Name) and node.value.id == "sys":
                found.append(f"line {node.lineno}: sys.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module == "sys":
            names = {alias.name for alias in node.names} & STREAMS
            if names:
                found.append(f"line {node.lineno}: from sys import {', '.join(sorted(names))}")
    return found


def test_only_the_cli_prints() -> None:
    modules = _library_modules()
    assert len(modules) > 20  # the walk found the package
    offending = {
        str(path.relative_to(ROOT)): found
        for path in modules
        if (found := _writes(ast.parse(path.read_text(), str(path))))
    }
    assert offending == {}


def _imports_cli(tree: ast.AST) -> bool:
    """Whether the module imports policyengine.cli, or anything in it, in any spelling."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        if any(f"{name}.".startswith("policyengine.cli.") for name in names):
            return True
    return False


def test_nothing_below_the_cli_imports_it() -> None:
    importing = [
        str(path.relative_to(ROOT))
        for path in _library_modules()
        if _imports_cli(ast.parse(path.read_text(), str(path)))
    ]
    assert importing == []


def test_the_checks_see_what_they_look_for() -> None:
    assert _writes(ast.parse("import sys\nprint('x')\nsys.stderr.write('y')\n")) == [
        "line 2: print()",
        "line 3: sys.stderr",
    ]
    assert _imports_cli(ast.parse("from policyengine import cli\n"))
    assert _imports_cli(ast.parse("import policyengine.cli.common\n"))
    assert not _imports_cli(ast.parse("from policyengine import client\n"))
