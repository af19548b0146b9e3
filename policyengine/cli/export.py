"""``policyengine export POLICY --target T``: the platform settings matching a policy (App
Service as an az command, Bicep or ARM; an nginx snippet; or a whole Envoy, nginx, Caddy or
Traefik configuration wired to ``policyengine serve``). Exit 0, or 2 on a bad policy.

It imports :mod:`policyengine.tooling.export`, :mod:`policyengine.cli.common` and the
identity headers' names of :mod:`policyengine.integrations.headers`, no other command
module.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from policyengine.cli.common import address, load
from policyengine.integrations.headers import IdentityHeaders
from policyengine.tooling.export import TARGETS, ProxyOptions, export
from policyengine.tooling.export_proxies import Address

if TYPE_CHECKING:
    from policyengine.cli.common import Commands


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number")
    return int(text)


def add_parser(commands: Commands) -> None:
    command = commands.add_parser(
        "export",
        help="print the platform settings that match a policy",
        description="Print the platform settings matching the policy: App Service's "
        "client-certificate settings as an az command, Bicep or an ARM template, an "
        "nginx snippet for the server block, or a whole proxy configuration (envoy, "
        "nginx-auth-request, caddy, traefik) that asks policyengine serve about every "
        "request. Exit status 0, or 2 on a bad policy.",
    )
    command.set_defaults(run=run)
    command.add_argument("policy", metavar="POLICY", help="the policy file")
    command.add_argument("--target", choices=TARGETS, required=True)
    command.add_argument("--app", metavar="NAME", help="the App Service app's name")
    command.add_argument("--resource-group", metavar="RG", help="the app's resource group")
    proxy = command.add_argument_group("the proxy targets")
    proxy.add_argument(
        "--authorizer",
        metavar="HOST:PORT",
        type=address,
        help="where policyengine serve listens (default 127.0.0.1:9000, HTTP; "
        "for envoy 127.0.0.1:9001, gRPC)",
    )
    proxy.add_argument(
        "--upstream",
        metavar="HOST:PORT",
        type=address,
        default=Address("127.0.0.1", 8080),
        help="the app (default 127.0.0.1:8080)",
    )
    proxy.add_argument(
        "--listen", metavar="PORT", type=_port, default=8443, help="the TLS port (8443)"
    )
    proxy.add_argument(
        "--ext-authz",
        choices=("grpc", "http"),
        default="grpc",
        help="envoy: ask the server over gRPC (default: the peer certificate in the check) or"
        " HTTP (a header Envoy sets; the HTTP authorizer, default 127.0.0.1:9000)",
    )
    proxy.add_argument("--server-cert", metavar="FILE", help="the proxy's TLS certificate")
    proxy.add_argument("--server-key", metavar="FILE", help="its private key")
    proxy.add_argument(
        "--client-ca",
        metavar="FILE",
        help="the CA file to verify clients against (default: the policy's trust anchors)",
    )


def run(args: argparse.Namespace, out: TextIO) -> int:
    policy = load(args.policy)
    proxy = ProxyOptions(
        identity_headers=IdentityHeaders().names,
        authorizer=args.authorizer,
        upstream=args.upstream,
        listen=args.listen,
        server_cert=args.server_cert,
        server_key=args.server_key,
        client_ca=args.client_ca,
        ext_authz=args.ext_authz,
    )
    out.write(
        export(
            policy,
            args.target,
            app=args.app,
            resource_group=args.resource_group,
            base=Path.cwd(),
            proxy=proxy,
        )
    )
    return 0
