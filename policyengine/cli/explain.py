"""``policyengine explain POLICY``: decide one request and show why. Exit 0 allow, 1 deny,
2 an error in the input.

It imports the library and :mod:`policyengine.cli.common`, no other command module.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, TextIO

from policyengine.cli.common import (
    EXIT_ALLOW,
    EXIT_DENY,
    InputError,
    header_value,
    load,
    read_input,
    timestamp,
    use_colour,
)
from policyengine.evaluation.decision import Decision
from policyengine.evaluation.engine import Policy
from policyengine.evaluation.trace import render_text
from policyengine.request.sources import SOURCES

if TYPE_CHECKING:
    from policyengine.cli.common import Commands


def add_parser(commands: Commands) -> None:
    explain = commands.add_parser(
        "explain",
        help="decide one request and show why",
        description="Decide one request against a policy and show every predicate, the value "
        "it saw, and why the request was allowed or denied. Exit status: 0 allow, 1 deny, "
        "2 an error in the input.",
    )
    explain.set_defaults(run=run)
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
        type=timestamp,
        metavar="TIME",
        help="evaluate at this moment instead of now, e.g. 2027-01-01T00:00:00Z",
    )
    explain.add_argument("--format", choices=("text", "json"), default="text")


def run(args: argparse.Namespace, out: TextIO) -> int:
    policy = load(args.policy)
    header = header_value(args)
    request = {"path": args.path, "method": args.method, "host": args.host, "now": args.at}
    if header is not None:
        if args.cert is not None:
            raise InputError("give either --cert or --header, not both")
        decision = policy.evaluate_header(
            header, source=args.source, peer=args.peer, explain=True, **request
        )
    else:
        if args.source or args.peer:
            raise InputError("--source and --peer go with --header or --header-file")
        decision = policy.evaluate(read_input(args.cert), explain=True, **request)
    if args.format == "json":
        payload = decision.to_dict()
        payload["certificate"] = policy.certificate_facts(decision.certificate, args.at)
        payload["trace"] = decision.trace.to_dict() if decision.trace else None
        out.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    else:
        out.write(_render_decision(policy, decision, colour=use_colour(out)) + "\n")
    return EXIT_ALLOW if decision.allowed else EXIT_DENY


def _render_decision(policy: Policy, decision: Decision, *, colour: bool) -> str:
    """The text explanation: the verdict line, the message, the policy, then the trace."""
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
