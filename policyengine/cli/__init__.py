"""The ``policyengine`` command: the only package that prints or chooses exit codes.

One module per command, each adding its own subcommand (``add_parser``) and running it
(``run(args, out) -> exit status``):

- :mod:`~policyengine.cli.explain`: ``policyengine explain POLICY [--cert FILE] [--path P]
  [--method M] [--host H] [--at TIME] [--format text|json]``: decide one request and show
  why. Exit 0 allow, 1 deny, 2 an error in the input.
- :mod:`~policyengine.cli.inspect`: ``policyengine inspect CERT`` (or ``--header VALUE
  --source S``): every fact a policy can use about one certificate.
- :mod:`~policyengine.cli.test`: ``policyengine test [PATH...]``: run policy test files.
- :mod:`~policyengine.cli.check`: ``policyengine check POLICY...``: load, validate and
  type-check. Exit 0 when every file is valid, 1 otherwise.
- :mod:`~policyengine.cli.eval`: ``policyengine eval POLICY --certs DIR|FILE...``: audit a
  certificate inventory, one line per certificate. Exit 0 when the run completed (denials
  included), 2 on bad input.
- :mod:`~policyengine.cli.export`: ``policyengine export POLICY --target T``: the platform
  settings matching the policy.
- :mod:`~policyengine.cli.serve`: ``policyengine serve POLICY... [--http HOST:PORT]
  [--grpc HOST:PORT]``: the decision server a proxy asks (``policyengine.server``).

What they share (exit codes, the input error, reading files) is in
:mod:`~policyengine.cli.common`. Nothing below ``cli/`` imports it.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from cryptography.utils import CryptographyDeprecationWarning

from policyengine import __version__
from policyengine.cli import check, explain, export, inspect, serve, test
from policyengine.cli import eval as audit  # as `eval` it would shadow the builtin
from policyengine.cli.common import EXIT_INPUT, InputError

__all__ = ["build_parser", "main"]

_COMMANDS = (explain, inspect, test, check, audit, export, serve)
"""In the order ``policyengine --help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    """The ``policyengine`` parser: each command's arguments, and ``run`` to call."""
    parser = argparse.ArgumentParser(
        prog="policyengine",
        description="Authorize HTTP requests by their TLS client certificate.",
    )
    parser.add_argument("--version", action="version", version=f"policyengine {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in _COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command line; the exit status is returned (``python -m policyengine``
    exits with it)."""
    args = build_parser().parse_args(argv)
    # A DSA key is reported as `key_type dsa`; cryptography's warning that DSA is deprecated
    # is meant for the code that uses the key, not for someone inspecting a certificate.
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    try:
        status: int = args.run(args, sys.stdout)
    except InputError as exc:
        print(f"policyengine: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except BrokenPipeError:
        return EXIT_INPUT
    return status
