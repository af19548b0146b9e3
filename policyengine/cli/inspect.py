"""``policyengine inspect CERT`` (or ``--header VALUE --source S``): every fact a policy can
use about one certificate, and who it names (``--policy``: as that policy's ``identity:``
section says). Exit 0, or 1 when what was given is not a certificate.

It imports the library and :mod:`policyengine.cli.common`, no other command module.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from policyengine.cli.common import InputError, header_value, load, read_input, timestamp
from policyengine.errors import CertificateError, SourceError
from policyengine.evaluation.explain import describe_certificate, describe_identity
from policyengine.evaluation.identity import IdentitySpec
from policyengine.request.certificate import read_certificate
from policyengine.request.sources import SOURCES, decode_header_value

if TYPE_CHECKING:
    from policyengine.cli.common import Commands


def add_parser(commands: Commands) -> None:
    inspect = commands.add_parser(
        "inspect",
        help="print every fact a policy can use about a certificate",
        description="Print every fact a policy can test about one certificate: the page to "
        "keep open while writing rules. Give a certificate file (PEM or DER, '-' for stdin), "
        "or a header value as a proxy sent it with --header VALUE --source S.",
    )
    inspect.set_defaults(run=run)
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
        "--at", type=timestamp, metavar="TIME", help="the moment for valid/expired (default now)"
    )
    inspect.add_argument(
        "--policy",
        metavar="POLICY",
        help="show the principal, groups and roles as this policy's identity: section "
        "makes them (default: the default principal)",
    )
    inspect.add_argument("--format", choices=("text", "json"), default="text")


def run(args: argparse.Namespace, out: TextIO) -> int:
    header = header_value(args)
    if header is not None and args.cert is not None:
        raise InputError("give either CERT or --header, not both")
    if header is None and args.cert is None:
        raise InputError("give a certificate file, or --header VALUE with --source")
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
        read = read_input(args.cert)
        assert read is not None
        data = read
    try:
        facts = read_certificate(data)
    except CertificateError as exc:
        out.write(f"malformed_certificate: {exc}\n")
        return 1
    policy = load(args.policy) if args.policy else None
    rows = describe_certificate(facts, args.at)
    if policy is not None:
        rows += describe_identity(policy.identity, facts, args.at, policy.trust)
    else:
        rows += describe_identity(IdentitySpec.default(), facts, args.at)
    if args.format == "json":
        payload: dict[str, Any] = {name: value for name, value, _ in rows}
        if chain:
            payload["forwarded_chain"] = [_chain_entry(der) for der in chain]
        out.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    else:
        out.write(_render_rows(rows, chain))
    return 0


def _render_rows(rows: Sequence[tuple[str, object, str]], chain: tuple[bytes, ...]) -> str:
    """One aligned line per fact, then one per forwarded intermediate."""
    # name attributes the certificate lacks would bury the rest: text leaves them out
    shown_rows = [
        (name, shown)
        for name, value, shown in rows
        if not (value == [] and name.startswith(("subject.", "issuer.")))
    ]
    width = max(len(name) for name, _ in shown_rows)
    lines = [f"{name:<{width}}  {shown}\n" for name, shown in shown_rows]
    for index, der in enumerate(chain, 1):
        entry = _chain_entry(der)
        lines.append(
            f"forwarded intermediate {index}: {entry['subject']} (sha256 {entry['sha256']})\n"
        )
    return "".join(lines)


def _chain_entry(der: bytes) -> dict[str, str]:
    try:
        summary = read_certificate(der).summary()
    except CertificateError as exc:
        return {"subject": f"<{exc}>", "sha256": hashlib.sha256(der).hexdigest()}
    return {"subject": summary["subject"], "sha256": summary["fingerprint.sha256"]}
