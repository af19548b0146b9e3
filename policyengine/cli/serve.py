"""``policyengine serve POLICY... [--http HOST:PORT] [--grpc HOST:PORT] [--workers N]``: the
decision server that Envoy, nginx, Caddy and Traefik ask about every request.

The server itself is :mod:`policyengine.server` (the ``server`` extra: uvicorn, grpcio,
xds-protos, prometheus-client); this module parses the options and reports a policy that
does not load (exit 2, with file, line and column) before anything listens. It imports
``policyengine.server`` only when the command runs, so ``policyengine --help`` works
without the extra.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from typing import TYPE_CHECKING, TextIO

from policyengine.cli.common import InputError, address
from policyengine.errors import PolicyError
from policyengine.integrations.runtime import DECISION_LOGGER, LOG_FIELDS

if TYPE_CHECKING:
    from policyengine.cli.common import Commands

_EXTRA = ("uvicorn", "grpc", "envoy.service.auth.v3", "prometheus_client")


def add_parser(commands: Commands) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the decision server for Envoy, nginx, Caddy and Traefik",
        description="Decide the requests a proxy asks about: over HTTP (nginx auth_request, "
        "Caddy forward_auth, Traefik forwardAuth, Envoy's HTTP ext_authz) at "
        "/authorize/<policy>, and over gRPC (Envoy ext_authz). Policy files are reloaded "
        "when they change and on SIGHUP; SIGTERM drains and exits. "
        "Needs pip install 'policyengine[server]'.",
    )
    serve.set_defaults(run=run)
    serve.add_argument("policies", nargs="+", metavar="POLICY")
    serve.add_argument(
        "--http",
        type=address,
        default="127.0.0.1:9000",
        metavar="HOST:PORT",
        help="where the HTTP authorizer listens (default 127.0.0.1:9000)",
    )
    serve.add_argument("--no-http", action="store_true", help="serve gRPC only")
    serve.add_argument(
        "--grpc",
        type=address,
        metavar="HOST:PORT",
        help="where Envoy's ext_authz gRPC service listens (default: off)",
    )
    _add_running_options(serve)


def _add_running_options(serve: argparse.ArgumentParser) -> None:
    """How the server runs: workers, reloads, draining, metrics and the decision log."""
    serve.add_argument("--workers", type=_positive, default=1, help="worker processes (default 1)")
    serve.add_argument(
        "--reload-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="seconds between two looks at the policy files (default 1)",
    )
    serve.add_argument(
        "--drain",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="on SIGTERM, how long requests in flight may take (default 10)",
    )
    serve.add_argument(
        "--drain-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="on SIGTERM, how long to keep answering with /readyz at 503 before the listeners"
        " close, so that a load balancer stops sending first (default 0)",
    )
    serve.add_argument("--no-metrics", action="store_true", help="no /metrics endpoint")
    serve.add_argument(
        "--log-field",
        action="append",
        choices=LOG_FIELDS,
        dest="log_fields",
        help="a certificate field for the decision log (repeat; default: "
        "fingerprint_sha256 and subject)",
    )
    serve.add_argument(
        "--log-trace", action="store_true", help="every decision log record carries its trace"
    )
    serve.add_argument(
        "--no-decision-log",
        action="store_true",
        help="write no decision records (the metrics still count every verdict)",
    )


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return int(text)


def run(args: argparse.Namespace, out: TextIO) -> int:
    missing = [name for name in _EXTRA if not _importable(name)]
    if missing:
        raise InputError(f"serve needs {', '.join(missing)}: pip install 'policyengine[server]'")
    if args.no_http and args.grpc is None:
        raise InputError("--no-http needs --grpc: the server would listen nowhere")
    from policyengine.server.run import ServeOptions, serve

    http = None if args.no_http else args.http
    options = ServeOptions(
        policies=tuple(args.policies),
        http=(http.host, http.port) if http is not None else None,
        grpc=(args.grpc.host, args.grpc.port) if args.grpc is not None else None,
        workers=args.workers,
        interval=args.reload_interval,
        drain=args.drain,
        drain_delay=args.drain_delay,
        metrics=not args.no_metrics,
        log_fields=tuple(args.log_fields or ()),
        log_trace=args.log_trace,
        decision_log=not args.no_decision_log,
        setup=configure_logging,
    )
    try:
        return serve(options)
    except PolicyError as exc:
        raise InputError(f"the server did not start:\n{exc}") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"the server did not start: {exc}") from None


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def configure_logging() -> None:
    """In each worker: decision records to stdout as JSON lines, the rest to stderr."""
    from policyengine.server.run import JsonLines, Lines

    decisions = logging.getLogger(DECISION_LOGGER)
    handler = Lines(sys.stdout)
    handler.setFormatter(JsonLines())
    decisions.handlers[:] = [handler]
    decisions.setLevel(logging.INFO)
    decisions.propagate = False
    logging.basicConfig(
        level=logging.INFO,
        handlers=[Lines(sys.stderr)],
        format="%(asctime)s %(name)s: %(message)s",
    )
