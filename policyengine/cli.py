"""The ``policyengine`` command. The only module that prints or chooses exit codes.

- ``policyengine explain POLICY [--cert FILE] [--path P] [--method M] [--host H] [--at TIME]
  [--format text|json]``: decide one request and show why. Exit 0 allow, 1 deny, 2 an
  error in the input.
- ``policyengine inspect CERT`` (or ``--header VALUE --source S``): every fact a policy can
  use about one certificate.
- ``policyengine check POLICY...``: load, validate and type-check. Exit 0 when every file
  is valid, 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TextIO

from policyengine import __version__
from policyengine.certificate import CertificateError, read_certificate
from policyengine.decision import Decision
from policyengine.engine import Policy, check_policy, describe_certificate, load_policy
from policyengine.errors import PolicyError
from policyengine.sources import SOURCES, SourceError, decode_header_value
from policyengine.trace import render_text
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

    check = commands.add_parser(
        "check",
        help="validate and type-check policy files",
        description="Load, validate and type-check policy files; print every error and warning "
        "with file:line:col and a caret. Exit status 0 when every file is valid, 1 otherwise.",
    )
    check.add_argument("policies", nargs="+", metavar="POLICY")
    check.add_argument("--format", choices=("text", "json"), default="text")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "explain":
            return _explain(args, sys.stdout)
        if args.command == "inspect":
            return _inspect(args, sys.stdout)
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


def _check(args: argparse.Namespace, out: TextIO) -> int:
    failed = 0
    report: list[dict[str, Any]] = []
    for path in args.policies:
        policy, diagnostics = check_policy(path)
        if policy is None:
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
        if policy is not None:
            warned = f", {len(diagnostics)} warning(s)" if diagnostics else ""
            count = len(policy.rules)
            out.write(f"{path}: ok ({count} rule{'' if count == 1 else 's'}{warned})\n")
        else:
            errors = sum(1 for d in diagnostics if d.severity == "error")
            out.write(f"{path}: {errors} error(s)\n")
    if args.format == "json":
        out.write(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
