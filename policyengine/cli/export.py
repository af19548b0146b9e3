"""``policyengine export POLICY --target T``: the platform settings matching a policy (App
Service as an az command, Bicep or ARM; an nginx snippet). Exit 0, or 2 on a bad policy.

It imports :mod:`policyengine.tooling.export` and :mod:`policyengine.cli.common`, no other
command module.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from policyengine.cli.common import load
from policyengine.tooling.export import TARGETS, export

if TYPE_CHECKING:
    from policyengine.cli.common import Commands


def add_parser(commands: Commands) -> None:
    command = commands.add_parser(
        "export",
        help="print the platform settings that match a policy",
        description="Print the platform settings matching the policy: App Service's "
        "client-certificate settings as an az command, Bicep or an ARM template, or an "
        "nginx snippet for the server block. Exit status 0, or 2 on a bad policy.",
    )
    command.set_defaults(run=run)
    command.add_argument("policy", metavar="POLICY", help="the policy file")
    command.add_argument("--target", choices=TARGETS, required=True)
    command.add_argument("--app", metavar="NAME", help="the App Service app's name")
    command.add_argument("--resource-group", metavar="RG", help="the app's resource group")


def run(args: argparse.Namespace, out: TextIO) -> int:
    policy = load(args.policy)
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
