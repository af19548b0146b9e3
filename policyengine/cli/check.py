"""``policyengine check POLICY...``: load, validate and type-check policy files, and show
every error and warning. Exit 0 when every file is valid, 1 otherwise (warnings too under
``--strict``).

It imports the loader and :mod:`policyengine.cli.common`, no other command module.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any, TextIO

from policyengine.errors import Diagnostic
from policyengine.evaluation.engine import Policy
from policyengine.load.loader import check_policy

if TYPE_CHECKING:
    from policyengine.cli.common import Commands


def add_parser(commands: Commands) -> None:
    check = commands.add_parser(
        "check",
        help="validate and type-check policy files",
        description="Load, validate and type-check policy files; print every error and warning "
        "with file:line:col and a caret. Exit status 0 when every file is valid, 1 otherwise.",
    )
    check.set_defaults(run=run)
    check.add_argument("policies", nargs="+", metavar="POLICY")
    check.add_argument(
        "--strict", action="store_true", help="fail on warnings too (exit 1), as CI should"
    )
    check.add_argument("--format", choices=("text", "json"), default="text")


def run(args: argparse.Namespace, out: TextIO) -> int:
    failed = 0
    report: list[dict[str, Any]] = []
    for path in args.policies:
        policy, diagnostics = check_policy(path)
        if policy is None or (args.strict and diagnostics):
            failed += 1
        if args.format == "json":
            report.append(
                {
                    "file": path,
                    "valid": policy is not None,
                    "diagnostics": [d.to_dict() for d in diagnostics],
                }
            )
        else:
            out.write(_render(path, policy, diagnostics, strict=args.strict))
    if args.format == "json":
        out.write(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return 1 if failed else 0


def _render(
    path: str, policy: Policy | None, diagnostics: tuple[Diagnostic, ...], *, strict: bool
) -> str:
    """One file's diagnostics, each with its caret, then its summary line."""
    text = "".join(diagnostic.render() + "\n\n" for diagnostic in diagnostics)
    if policy is not None and strict and diagnostics:
        return text + f"{path}: {len(diagnostics)} warning(s), failed under --strict\n"
    if policy is not None:
        warned = f", {len(diagnostics)} warning(s)" if diagnostics else ""
        count = len(policy.rules)
        return text + f"{path}: ok ({count} rule{'' if count == 1 else 's'}{warned})\n"
    errors = sum(1 for d in diagnostics if d.severity == "error")
    return text + f"{path}: {errors} error(s)\n"
