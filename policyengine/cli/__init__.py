"""The ``policyengine`` command. The only module that prints or chooses exit codes.

- ``policyengine explain POLICY [--cert FILE] [--path P] [--method M] [--host H] [--at TIME]
  [--format text|json]``: decide one request and show why. Exit 0 allow, 1 deny, 2 an
  error in the input.
- ``policyengine inspect CERT`` (or ``--header VALUE --source S``): every fact a policy can
  use about one certificate.
- ``policyengine check POLICY...``: load, validate and type-check. Exit 0 when every file
  is valid, 1 otherwise.
- ``policyengine eval POLICY --certs DIR|FILE...``: audit a certificate inventory, one line
  per certificate. Exit 0 when the run completed (denials included), 2 on bad input.
- ``policyengine export POLICY --target T``: the platform settings matching the policy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from cryptography.utils import CryptographyDeprecationWarning

from policyengine import __version__
from policyengine.errors import CertificateError, PolicyError, SourceError
from policyengine.evaluation.decision import REASONS, Decision
from policyengine.evaluation.engine import Policy
from policyengine.evaluation.explain import describe_certificate
from policyengine.evaluation.trace import render_text
from policyengine.load.loader import check_policy, load_policy
from policyengine.request.certificate import read_certificate
from policyengine.request.sources import SOURCES, decode_header_value
from policyengine.tooling.export import TARGETS, export
from policyengine.tooling.inventory import AuditResult, audit_report, find_certificate_files
from policyengine.tooling.policy_tests import discover, junit_xml, render_results, run_files
from policyengine.values import parse_timestamp

EXIT_ALLOW = 0
EXIT_DENY = 1
EXIT_INPUT = 2


class _InputError(Exception):
    """A problem with what the user gave the command: printed, exit 2."""


def _timestamp(text: str) -> datetime:
    value = parse_timestamp(text)
    if value is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a timestamp; write e.g. 2026-11-28T10:00:00Z or 2026-11-28"
        )
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="policyengine",
        description="Authorize HTTP requests by their TLS client certificate.",
    )
    parser.add_argument("--version", action="version", version=f"policyengine {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    explain = commands.add_parser(
        "explain",
        help="decide one request and show why",
        description="Decide one request against a policy and show every predicate, the value "
        "it saw, and why the request was allowed or denied. Exit status: 0 allow, 1 deny, "
        "2 an error in the input.",
    )
    explain.add_argument("policy", metavar="POLICY", help="the policy file")
    explain.add_argument(
        "--cert",
        metavar="FILE",
        help="the client certificate, PEM or DER ('-' reads standard input); "
        "without it no certificate is presented",
    )
    explain.add_argument(
        "--header",
        metavar="VALUE",
        help="a certificate header value as the proxy sent it (write --header=VALUE when "
        "the value begins with '-', as an escaped PEM does)",
    )
    explain.add_argument(
        "--header-file", metavar="FILE", help="read the header value from a file ('-': stdin)"
    )
    explain.add_argument(
        "--source",
        choices=SOURCES,
        metavar="SOURCE",
        help="how the header is encoded, if not as the policy's certificate.source says",
    )
    explain.add_argument(
        "--peer",
        metavar="ADDR",
        help="the address the header came from, checked against trusted_proxies "
        "(without it the header counts as sent by a trusted proxy)",
    )
    explain.add_argument("--path", default="/", help="the request path (default /)")
    explain.add_argument("--method", default="GET", help="the request method (default GET)")
    explain.add_argument("--host", help="the request Host")
    explain.add_argument(
        "--at",
        type=_timestamp,
        metavar="TIME",
        help="evaluate at this moment instead of now, e.g. 2027-01-01T00:00:00Z",
    )
    explain.add_argument("--format", choices=("text", "json"), default="text")

    inspect = commands.add_parser(
        "inspect",
        help="print every fact a policy can use about a certificate",
        description="Print every fact a policy can test about one certificate: the page to "
        "keep open while writing rules. Give a certificate file (PEM or DER, '-' for stdin), "
        "or a header value as a proxy sent it with --header VALUE --source S.",
    )
    inspect.add_argument("cert", nargs="?", metavar="CERT", help="the certificate file")
    inspect.add_argument("--header", metavar="VALUE", help="a certificate header value")
    inspect.add_argument("--header-file", metavar="FILE", help="read the header value from a file")
    inspect.add_argument(
        "--source",
        choices=SOURCES,
        default="auto",
        metavar="SOURCE",
        help="how the header is encoded (default auto: detected)",
    )
    inspect.add_argument(
        "--at", type=_timestamp, metavar="TIME", help="the moment for valid/expired (default now)"
    )
    inspect.add_argument("--format", choices=("text", "json"), default="text")

    test = commands.add_parser(
        "test",
        help="run policy test files (*.test.yaml)",
        description="Run the cases in policy test files (*.test.yaml) at or under each PATH "
        "(default: the current folder). Exit status 0 when every case passes, 1 otherwise.",
    )
    test.add_argument("paths", nargs="*", metavar="PATH", default=["."])
    test.add_argument("--format", choices=("text", "junit"), default="text")
    test.add_argument(
        "--coverage",
        action="store_true",
        help="report rules and predicates no case evaluated, or evaluated only one way",
    )

    check = commands.add_parser(
        "check",
        help="validate and type-check policy files",
        description="Load, validate and type-check policy files; print every error and warning "
        "with file:line:col and a caret. Exit status 0 when every file is valid, 1 otherwise.",
    )
    check.add_argument("policies", nargs="+", metavar="POLICY")
    check.add_argument(
        "--strict", action="store_true", help="fail on warnings too (exit 1), as CI should"
    )
    check.add_argument("--format", choices=("text", "json"), default="text")
    _add_eval_parser(commands)
    _add_export_parser(commands)
    return parser


def _window(text: str) -> tuple[str, timedelta]:
    """``30d``, ``12h`` or ``2w``: the expiry window, and its text for the summary line."""
    match = re.fullmatch(r"(\d{1,5})([hdw])", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a window; write e.g. 30d, 12h or 2w")
    count, unit = int(match.group(1)), match.group(2)
    hours = {"h": 1, "d": 24, "w": 24 * 7}[unit]
    return f"{count}{unit}", timedelta(hours=count * hours)


def _add_eval_parser(commands: Any) -> None:
    command = commands.add_parser(
        "eval",
        help="audit a certificate inventory against a policy",
        description="Decide every certificate file (PEM with one or more certificates, or "
        "DER; directories walked for *.pem, *.crt, *.cer, *.cert, *.der) as a request to "
        "--path, and flag those expiring within the window. Exit status 0 when the run "
        "completed, denials and unreadable files included; 2 on a bad policy or option.",
    )
    command.add_argument("policy", metavar="POLICY", help="the policy file")
    command.add_argument(
        "--certs",
        nargs="+",
        required=True,
        metavar="DIR|FILE",
        help="certificate files, and directories to walk",
    )
    command.add_argument(
        "--at", type=_timestamp, metavar="TIME", help="decide at this moment (default now)"
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
        default=_cpus(),
        metavar="N",
        help="processes to decide in (default: one per CPU; a few hundred files stay in one)",
    )


def _cpus() -> int:
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


def _add_export_parser(commands: Any) -> None:
    command = commands.add_parser(
        "export",
        help="print the platform settings that match a policy",
        description="Print the platform settings matching the policy: App Service's "
        "client-certificate settings as an az command, Bicep or an ARM template, or an "
        "nginx snippet for the server block. Exit status 0, or 2 on a bad policy.",
    )
    command.add_argument("policy", metavar="POLICY", help="the policy file")
    command.add_argument("--target", choices=TARGETS, required=True)
    command.add_argument("--app", metavar="NAME", help="the App Service app's name")
    command.add_argument("--resource-group", metavar="RG", help="the app's resource group")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # A DSA key is reported as `key_type dsa`; cryptography's warning that DSA is deprecated
    # is meant for the code that uses the key, not for someone inspecting a certificate.
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    try:
        if args.command == "explain":
            return _explain(args, sys.stdout)
        if args.command == "inspect":
            return _inspect(args, sys.stdout)
        if args.command == "test":
            return _test(args, sys.stdout)
        if args.command == "eval":
            return _eval(args, sys.stdout, sys.stderr)
        if args.command == "export":
            return _export(args, sys.stdout)
        return _check(args, sys.stdout)
    except _InputError as exc:
        print(f"policyengine: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except BrokenPipeError:
        return EXIT_INPUT


def _colour(stream: TextIO) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ


def _read_cert(name: str | None) -> bytes | None:
    if name is None:
        return None
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        with open(name, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise _InputError(
            f"cannot read certificate file {name}: {exc.strerror or exc}; check the path"
        ) from None


def _explain(args: argparse.Namespace, out: TextIO) -> int:
    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        raise _InputError(f"{args.policy} cannot be used:\n{exc}") from None
    header = _header_value(args)
    request = {"path": args.path, "method": args.method, "host": args.host, "now": args.at}
    if header is not None:
        if args.cert is not None:
            raise _InputError("give either --cert or --header, not both")
        decision = policy.evaluate_header(
            header, source=args.source, peer=args.peer, explain=True, **request
        )
    else:
        if args.source or args.peer:
            raise _InputError("--source and --peer go with --header or --header-file")
        decision = policy.evaluate(_read_cert(args.cert), explain=True, **request)
    if args.format == "json":
        payload = decision.to_dict()
        payload["certificate"] = policy.certificate_facts(decision.certificate, args.at)
        payload["trace"] = decision.trace.to_dict() if decision.trace else None
        out.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    else:
        out.write(_render_decision(policy, decision, colour=_colour(out)) + "\n")
    return EXIT_ALLOW if decision.allowed else EXIT_DENY


def _header_value(args: argparse.Namespace) -> str | None:
    if args.header is not None and args.header_file is not None:
        raise _InputError("give either --header or --header-file, not both")
    if args.header_file is None:
        return str(args.header) if args.header is not None else None
    data = _read_cert(args.header_file)
    assert data is not None
    try:
        text = data.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise _InputError(f"{args.header_file} is not text") from None
    return text.rstrip("\r\n")


def _inspect(args: argparse.Namespace, out: TextIO) -> int:
    header = _header_value(args)
    if header is not None and args.cert is not None:
        raise _InputError("give either CERT or --header, not both")
    if header is None and args.cert is None:
        raise _InputError("give a certificate file, or --header VALUE with --source")
    chain: tuple[bytes, ...] = ()
    if header is not None:
        try:
            leaf, chain = decode_header_value(args.source, header)
        except SourceError as exc:
            out.write(f"{exc.reason}: {exc.message}\n")
            return 1
        if leaf is None:
            out.write("the header holds no certificate\n")
            return 1
        data: bytes = leaf
    else:
        read = _read_cert(args.cert)
        assert read is not None
        data = read
    try:
        facts = read_certificate(data)
    except CertificateError as exc:
        out.write(f"malformed_certificate: {exc}\n")
        return 1
    rows = describe_certificate(facts, args.at)
    if args.format == "json":
        payload: dict[str, Any] = {name: value for name, value, _ in rows}
        if chain:
            payload["forwarded_chain"] = [_chain_entry(der) for der in chain]
        out.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
        return 0
    # name attributes the certificate lacks would bury the rest: text leaves them out
    shown_rows = [
        (name, shown)
        for name, value, shown in rows
        if not (value == [] and name.startswith(("subject.", "issuer.")))
    ]
    width = max(len(name) for name, _ in shown_rows)
    for name, shown in shown_rows:
        out.write(f"{name:<{width}}  {shown}\n")
    for index, der in enumerate(chain, 1):
        entry = _chain_entry(der)
        out.write(
            f"forwarded intermediate {index}: {entry['subject']} (sha256 {entry['sha256']})\n"
        )
    return 0


def _chain_entry(der: bytes) -> dict[str, str]:
    try:
        summary = read_certificate(der).summary()
    except CertificateError as exc:
        return {"subject": f"<{exc}>", "sha256": hashlib.sha256(der).hexdigest()}
    return {"subject": summary["subject"], "sha256": summary["fingerprint.sha256"]}


def _render_decision(policy: Policy, decision: Decision, *, colour: bool) -> str:
    word = decision.effect.upper()
    if colour:
        word = f"\x1b[1;{'32' if decision.allowed else '31'}m{word}\x1b[0m"
    lines = [
        f"{word}  {decision.reason}  (status {decision.status})",
        decision.message,
        "",
        f"policy {policy.name} ({policy.file}), mode {policy.mode}",
    ]
    if decision.trace is not None:
        lines.append(render_text(decision.trace, colour=colour))
    for error in decision.errors:
        lines.append(f"error: {error}")
    return "\n".join(lines)


def _test(args: argparse.Namespace, out: TextIO) -> int:
    try:
        files = discover(args.paths)
    except FileNotFoundError as exc:
        raise _InputError(str(exc)) from None
    if not files:
        raise _InputError(f"no *.test.yaml files under {', '.join(args.paths)}")
    results = run_files(files)
    if args.format == "junit":
        out.write(junit_xml(results))
    else:
        out.write(render_results(results, coverage=args.coverage) + "\n")
    return 1 if any(r.failed for r in results) else 0


def _check(args: argparse.Namespace, out: TextIO) -> int:
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
            continue
        for diagnostic in diagnostics:
            out.write(diagnostic.render() + "\n\n")
        if policy is not None and args.strict and diagnostics:
            out.write(f"{path}: {len(diagnostics)} warning(s), failed under --strict\n")
        elif policy is not None:
            warned = f", {len(diagnostics)} warning(s)" if diagnostics else ""
            count = len(policy.rules)
            out.write(f"{path}: ok ({count} rule{'' if count == 1 else 's'}{warned})\n")
        else:
            errors = sum(1 for d in diagnostics if d.severity == "error")
            out.write(f"{path}: {errors} error(s)\n")
    if args.format == "json":
        out.write(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return 1 if failed else 0


def _load(path: str) -> Policy:
    try:
        return load_policy(path)
    except PolicyError as exc:
        raise _InputError(f"{path} cannot be used:\n{exc}") from None


def _eval(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    policy = _load(args.policy)
    at: datetime = args.at if args.at is not None else datetime.now(UTC)
    window_text, window = args.expiring
    files = list(find_certificate_files(args.certs))
    progress = _Progress(err, len(files)) if err.isatty() else None
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


def _export(args: argparse.Namespace, out: TextIO) -> int:
    policy = _load(args.policy)
    out.write(
        export(
            policy,
            args.target,
            app=args.app,
            resource_group=args.resource_group,
            base=Path.cwd(),
        )
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
