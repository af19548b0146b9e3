"""What the ``policyengine`` commands share: exit codes, the input error, option types,
reading the files a command names (certificates, header values, policies), and whether to
colour a stream.

It imports the library below ``cli/`` and none of the command modules; it writes nothing
itself (``main`` reports an :class:`InputError`).
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from typing import TYPE_CHECKING, TextIO

from policyengine.errors import PolicyError
from policyengine.evaluation.engine import Policy
from policyengine.load.loader import load_policy
from policyengine.tooling.export_proxies import Address, parse_address
from policyengine.values import parse_timestamp

if TYPE_CHECKING:
    from typing import TypeAlias

    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
    """What each command module's ``add_parser`` adds its subcommand to."""

EXIT_ALLOW = 0
EXIT_DENY = 1
EXIT_INPUT = 2


class InputError(Exception):
    """A problem with what the user gave the command: printed by ``main``, exit 2."""


def timestamp(text: str) -> datetime:
    """The argparse type of ``--at``: a timestamp or a date."""
    value = parse_timestamp(text)
    if value is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a timestamp; write e.g. 2026-11-28T10:00:00Z or 2026-11-28"
        )
    return value


def address(text: str) -> Address:
    """The argparse type of a ``HOST:PORT`` option (``[::1]:9001`` for IPv6)."""
    try:
        return parse_address(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def use_colour(stream: TextIO) -> bool:
    """Colour only a terminal, and only when ``NO_COLOR`` is not set."""
    return stream.isatty() and "NO_COLOR" not in os.environ


def read_input(name: str | None) -> bytes | None:
    """The bytes of the file a command names (``-``: standard input; None: none given)."""
    if name is None:
        return None
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        with open(name, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise InputError(
            f"cannot read certificate file {name}: {exc.strerror or exc}; check the path"
        ) from None


def header_value(args: argparse.Namespace) -> str | None:
    """The certificate header value of ``--header`` or ``--header-file``, if either."""
    if args.header is not None and args.header_file is not None:
        raise InputError("give either --header or --header-file, not both")
    if args.header_file is None:
        return str(args.header) if args.header is not None else None
    data = read_input(args.header_file)
    assert data is not None
    try:
        text = data.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise InputError(f"{args.header_file} is not text") from None
    return text.rstrip("\r\n")


def load(path: str, facts_cache_size: int = 4096) -> Policy:
    """The policy file, or an InputError that shows why it cannot be used."""
    try:
        return load_policy(path, facts_cache_size=facts_cache_size)
    except PolicyError as exc:
        raise InputError(f"{path} cannot be used:\n{exc}") from None
