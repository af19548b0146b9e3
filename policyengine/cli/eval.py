"""``policyengine eval POLICY --certs DIR|FILE...``: audit a certificate inventory, one line
(or JSON object) per certificate, and flag those expiring soon. Exit 0 when the run
completed, denials and unreadable files included; 2 on a bad policy or option.

It owns the table layout and the progress bar of that command. It imports
:mod:`policyengine.tooling.inventory` and :mod:`policyengine.cli.common`, no other command
module.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TextIO

from policyengine.cli.common import load, timestamp
from policyengine.evaluation.decision import REASONS
from policyengine.evaluation.engine import Policy
from policyengine.tooling.inventory import AuditResult, audit_report, find_certificate_files

if TYPE_CHECKING:
    from policyengine.cli.common import Commands


def add_parser(commands: Commands) -> None:
    command = commands.add_parser(
        "eval",
        help="audit a certificate inventory against a policy",
        description="Decide every certificate file (PEM with one or more certificates, or "
        "DER; directories walked for *.pem, *.crt, *.cer, *.cert, *.der) as a request to "
        "--path, and flag those expiring within the window. Exit status 0 when the run "
        "completed, denials and unreadable files included; 2 on a bad policy or option.",
    )
    command.set_defaults(run=run)
    command.add_argument("policy", metavar="POLICY", help="the policy file")
    command.add_argument(
        "--certs",
        nargs="+",
        required=True,
        metavar="DIR|FILE",
        help="certificate files, and directories to walk",
    )
    command.add_argument(
        "--at", type=timestamp, metavar="TIME", help="decide at this moment (default now)"
    )
    command.add_argument(
        "--expiring",
        type=_window,
        default=("30d", timedelta(days=30)),
        metavar="WINDOW",
        help="flag certificates expiring within this window of --at (default 30d)",
    )
    command.add_argument("--format", choices=("table", "json"), default="table")
    command.add_argument("--path", default="/", help="the request path (default /)")
    command.add_argument("--method", default="GET", help="the request method (default GET)")
    command.add_argument("--host", help="the request Host")
    command.add_argument(
        "--jobs",
        type=_jobs,
        default=cpus(),
        metavar="N",
        help="processes to decide in (default: one per CPU; a few hundred files stay in one)",
    )


def _window(text: str) -> tuple[str, timedelta]:
    """``30d``, ``12h`` or ``2w``: the expiry window, and its text for the summary line."""
    match = re.fullmatch(r"(\d{1,5})([hdw])", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a window; write e.g. 30d, 12h or 2w")
    count, unit = int(match.group(1)), match.group(2)
    hours = {"h": 1, "d": 24, "w": 24 * 7}[unit]
    return f"{count}{unit}", timedelta(hours=count * hours)


def cpus() -> int:
    """The CPUs this process may run on: the default of ``--jobs``."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _jobs(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected a number of processes, 1 or more: {text!r}")
    return count


def run(args: argparse.Namespace, out: TextIO) -> int:
    """The audit, written as it goes; the progress bar goes to a terminal's stderr."""
    # an inventory presents each certificate once: no facts cache, no decision memo
    policy = load(args.policy, facts_cache_size=0)
    at: datetime = args.at if args.at is not None else datetime.now(UTC)
    window_text, window = args.expiring
    files = list(find_certificate_files(args.certs))
    progress = _Progress(sys.stderr, len(files)) if sys.stderr.isatty() else None
    table = _Table(out, files, policy) if args.format == "table" else None
    if table is not None:
        render = table.line
    else:

        def render(result: AuditResult) -> str:
            return result.to_json() + "\n"

    reports = audit_report(
        policy,
        files,
        render,
        at=at,
        window=window,
        path=args.path,
        method=args.method,
        host=args.host,
        jobs=args.jobs,
    )
    allowed = denied = unreadable = expiring = 0
    for report in reports:
        allowed += report.allowed
        denied += report.denied
        unreadable += report.unreadable
        expiring += report.expiring
        if progress is not None:
            progress.clear()
        out.write(report.text)
        if progress is not None:
            progress.update(report.files)
    if progress is not None:
        progress.clear()
    if table is not None:
        out.write(
            f"{allowed} allowed, {denied} denied, {unreadable} unreadable, "
            f"{expiring} expiring within {window_text}\n"
        )
    return 0


class _Table:
    """Aligned columns, written row by row: widths come from what is known beforehand
    (file names, the policy's rule ids, the fixed reason codes), never from the results,
    so nothing has to be held back. A bundle's ``#n`` may push a long name past its column."""

    _HEADER = ("FILE", "DECISION", "RULE", "REASON", "EXPIRES", "FLAG", "WHY")

    def __init__(self, out: TextIO, files: Sequence[str], policy: Policy) -> None:
        rules = [rule.id for rule in policy.rules]
        self._widths = (
            max([len(self._HEADER[0]), *(len(name) for name in files)]),
            len("unreadable"),
            max([len(self._HEADER[2]), *(len(rule) for rule in rules)]),
            max(len(reason) for reason in (*REASONS, "unreadable")),
            len("2099-12-31T00:00:00Z"),
            len("expiring"),
        )
        out.write(self._line(self._HEADER))

    def line(self, result: AuditResult) -> str:
        flag = "expired" if result.expired else "expiring" if result.expiring else ""
        # the one-line why of a denial, as explain gives it; an allow's is its rule
        why = "" if result.decision == "allow" else result.message
        return self._line(
            (
                result.file,
                result.decision,
                result.rule or "-",
                result.reason,
                result.not_after or "-",
                flag,
                why,
            )
        )

    def _line(self, cells: Sequence[str]) -> str:
        padded = [f"{cell:<{width}}" for cell, width in zip(cells, self._widths, strict=False)]
        return ("  ".join([*padded, cells[-1]])).rstrip() + "\n"


class _Progress:
    """A progress bar on a terminal's stderr, redrawn in place with carriage returns at
    most ten times a second, so drawing it costs nothing next to parsing certificates."""

    def __init__(self, stream: TextIO, total: int) -> None:
        self._stream = stream
        self._total = max(total, 1)
        self._drawn = False
        self._next = 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now < self._next and done < self._total:
            return
        self._next = now + 0.1
        filled = 30 * done // self._total
        bar = "#" * filled + "." * (30 - filled)
        self._stream.write(f"\r[{bar}] {done}/{self._total} files")
        self._stream.flush()
        self._drawn = True

    def clear(self) -> None:
        if self._drawn:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._drawn = False
