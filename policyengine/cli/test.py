"""``policyengine test [PATH...]``: run the cases of policy test files (``*.test.yaml``).
Exit 0 when every case passes, 1 otherwise, 2 when no test file is found.

It imports :mod:`policyengine.tooling.policy_tests` and :mod:`policyengine.cli.common`, no
other command module.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, TextIO

from policyengine.cli.common import InputError
from policyengine.tooling.policy_tests import discover, junit_xml, render_results, run_files

if TYPE_CHECKING:
    from policyengine.cli.common import Commands


def add_parser(commands: Commands) -> None:
    test = commands.add_parser(
        "test",
        help="run policy test files (*.test.yaml)",
        description="Run the cases in policy test files (*.test.yaml) at or under each PATH "
        "(default: the current folder). Exit status 0 when every case passes, 1 otherwise.",
    )
    test.set_defaults(run=run)
    test.add_argument("paths", nargs="*", metavar="PATH", default=["."])
    test.add_argument("--format", choices=("text", "junit"), default="text")
    test.add_argument(
        "--coverage",
        action="store_true",
        help="report rules and predicates no case evaluated, or evaluated only one way",
    )


def run(args: argparse.Namespace, out: TextIO) -> int:
    try:
        files = discover(args.paths)
    except FileNotFoundError as exc:
        raise InputError(str(exc)) from None
    if not files:
        raise InputError(f"no *.test.yaml files under {', '.join(args.paths)}")
    results = run_files(files)
    if args.format == "junit":
        out.write(junit_xml(results))
    else:
        out.write(render_results(results, coverage=args.coverage) + "\n")
    return 1 if any(r.failed for r in results) else 0
