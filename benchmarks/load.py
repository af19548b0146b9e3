"""Requests/s of a hello world with and without policyengine's middleware: Flask under
gunicorn (WSGI) and FastAPI under uvicorn (ASGI), each with warm and first-sight traffic.

    python benchmarks/load.py [--duration 10] [--rounds 5] [--connections 8] [--workers 2]
                              [--stack wsgi|asgi|both] [--traffic warm|first|both] [--quick]
    python benchmarks/load.py --profile 20000   # in-process cProfile of the WSGI pair

Needs ``wrk`` (Debian/Ubuntu: ``apt-get install wrk``) and gunicorn, Flask, uvicorn and
FastAPI (the test extras); exits with status 2 and says what is missing otherwise.

Two stacks, two variants each, every variant served by its own server on loopback:

- WSGI  plain: a Flask hello world under gunicorn (sync workers); guarded: the same app
        wrapped in ``policyengine.integrations.wsgi.PolicyMiddleware``;
- ASGI  plain: a FastAPI hello world under uvicorn (uvloop and httptools, as the test
        extras install them); guarded: the same app with
        ``app.add_middleware(PolicyMiddleware, policy=...)`` from
        ``policyengine.integrations.fastapi``, as docs/integrations.md shows.

The policy is the four-predicate one of ``decision.py`` (validity, subject CN, issuer O,
SHA-1 fingerprint in a set) with the ``azure`` source, given as a file path, so the reload
check runs too; its set holds every certificate wrk sends. Two kinds of traffic:

- warm         every request sends the same ``X-ARR-ClientCert`` header: a returning client;
- first sight  each request sends the next of ``--certificates`` distinct certificates (a
               wrk Lua script), 20,000 by default: each worker sees a certificate again only
               after thousands of others, so every cache has forgotten it (they hold 4,096,
               and admit on a second sighting): decode, parse, hash and decide every time.

Before measuring, one real request per variant checks the answer: 200 and the body with
the certificate, and 403 without it behind the middleware; a run in which wrk counts any
non-2xx/3xx response fails the benchmark. Decision logging is at its default
(``DecisionLog()``): the ``policyengine.decisions`` logger is not enabled in these
workers, as in an app that does not configure it, so no record is written.

After a short warm-up of each server, the runs go in turn (for each round, each traffic,
each stack: plain, then guarded) for ``--rounds`` rounds of ``--duration`` seconds, so that
a drift of the machine falls on both of a pair. The table shows, per stack and traffic,
requests/s: the median over the rounds, the spread (min..max), the median of the paired
ratios (each guarded run over the plain run just before it) and their range; then the
servers' CPU time per request (user + system time of their processes during the run, from
/proc, so Linux only) and its ratio: the cost of the middleware in work, which other
processes sharing the machine disturb less than they disturb requests/s.

Workers: ``--workers 2`` by default, one per core of a 2-core machine, for both servers.
The apps are CPU-bound (no I/O to wait on); gunicorn's usual ``2 * cores + 1`` is meant for
workers that wait on a database or an upstream, and here wrk runs on the same cores (3 and
5 sync workers did no better than 2). gunicorn's sync workers close the connection after
each response, so wrk reconnects for every request; uvicorn keeps connections alive.

``--profile N`` runs N requests through the WSGI pair in-process (a WSGI call on a
prepared environ, no server and no sockets), prints the time per request of both, and
where the guarded variant spends its time under cProfile: policyengine's functions by
cumulative time, and the whole request by each function's own time.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import cProfile
import dataclasses
import importlib.util
import io
import os
import pstats
import re
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from common import format_table, four_predicates
from cryptography.hazmat.primitives.asymmetric import ec
from harness import (
    PROC,
    BenchmarkError,
    Missing,
    Process,
    WrkResult,
    exit_on_signals,
    exit_status,
    free_port,
    get,
    run_wrk,
    wait_for,
    wrk_version,
)

HEADER = "X-ARR-ClientCert"
BODY = b"Hello, World!"
STACKS = {
    "WSGI": ("bench_app:plain", "bench_app:guarded"),
    "ASGI": ("bench_app:asgi_plain", "bench_app:asgi_guarded"),
}
"""Each stack's plain and guarded app, as its server names them."""
TRAFFIC = ("warm", "first sight")

APP_SOURCE = '''\
"""The benchmarked apps: hello worlds, bare and behind policyengine's middleware."""

import os

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from flask import Flask

from policyengine.integrations import fastapi as guard
from policyengine.integrations.wsgi import PolicyMiddleware

POLICY = os.environ["BENCH_POLICY"]
app = Flask(__name__)


@app.get("/")
def hello() -> str:
    return "Hello, World!"


plain = app
guarded = PolicyMiddleware(app, POLICY)


def fastapi_app() -> FastAPI:
    api = FastAPI()

    @api.get("/", response_class=PlainTextResponse)
    async def hello() -> str:
        return "Hello, World!"

    return api


asgi_plain = fastapi_app()
asgi_guarded = fastapi_app()
asgi_guarded.add_middleware(guard.PolicyMiddleware, policy=POLICY)
'''

ROTATE_SCRIPT = """\
-- each request sends the next certificate of the file, one base64 DER a line
local values = {}
for line in io.lines("%s") do values[#values + 1] = line end
local turn = 0
request = function()
  turn = turn %% #values + 1
  return wrk.format("GET", "/", { ["%s"] = values[turn] })
end
"""


@dataclass
class Workspace:
    """The temporary directory with the apps and the policy, and what wrk sends."""

    directory: Path
    header_value: str
    """The warm traffic's one certificate."""
    script: Path
    """The first-sight traffic's wrk script."""

    def traffic(self, kind: str) -> list[str]:
        """wrk's options for ``kind`` of traffic."""
        if kind == "warm":
            return ["-H", f"{HEADER}: {self.header_value}"]
        return ["-s", str(self.script)]


def check_tools(stacks: Sequence[str]) -> str:
    """The path of wrk; raises Missing when wrk or a stack's server or framework is not
    installed."""
    missing = []
    wrk = shutil.which("wrk")
    if wrk is None:
        missing.append("wrk (Debian/Ubuntu: apt-get install wrk)")
    needed = {"WSGI": ("gunicorn", "flask"), "ASGI": ("uvicorn", "fastapi")}
    # the app module imports both frameworks
    for module in dict.fromkeys(("flask", "fastapi", *(m for s in stacks for m in needed[s]))):
        if importlib.util.find_spec(module) is None:
            missing.append(f"{module} (pip install {module}, or the test extras)")
    if missing:
        raise Missing("this benchmark needs " + " and ".join(missing))
    assert wrk is not None
    return wrk


def prepare(directory: Path, certificates: int) -> Workspace:
    """Write the apps, the policy and the first-sight script into ``directory``; check
    that the policy allows every certificate wrk will send."""
    from policyengine import load_policy
    from policyengine.testing import make_certificate

    subject = {"CN": "api-client", "O": "Contoso Ltd"}
    cert = make_certificate(subject)
    key = ec.generate_private_key(ec.SECP256R1())  # one key: the certificates differ by serial
    rotated = [make_certificate(subject, key=key) for _ in range(certificates)]
    pins = [cert.sha1, *(c.sha1 for c in rotated)]
    policy_path = directory / "bench-load.yaml"
    policy_path.write_text(four_predicates(pins, "bench-load"))
    (directory / "bench_app.py").write_text(APP_SOURCE)
    values = directory / "first-sight.txt"
    values.write_text("".join(base64.b64encode(c.der).decode() + "\n" for c in rotated))
    script = directory / "first-sight.lua"
    script.write_text(ROTATE_SCRIPT % (values, HEADER))
    header_value = base64.b64encode(cert.der).decode()
    policy = load_policy(policy_path)
    for value in (header_value, base64.b64encode(rotated[-1].der).decode()):
        decision = policy.evaluate_request(
            headers=[(HEADER, value)], remote_addr="127.0.0.1", path="/"
        )
        if not decision.allowed:
            raise BenchmarkError(f"the policy does not allow a benchmark certificate: {decision}")
    os.environ["BENCH_POLICY"] = str(policy_path)
    return Workspace(directory, header_value, script)


class Server(Process):
    """One gunicorn or uvicorn serving ``target``, in its own process group, on loopback."""

    def __init__(self, stack: str, target: str, workspace: Workspace, workers: int) -> None:
        self.listener: socket.socket | None = None
        if stack == "WSGI":  # on a socket this process made
            self.listener = socket.create_server(("127.0.0.1", 0), backlog=2048)
            self.port: int = self.listener.getsockname()[1]
            fd = self.listener.fileno()
            command = [sys.executable, "-m", "gunicorn", "--worker-class", "sync"]
            command += ["--bind", f"fd://{fd}", "--log-level", "warning"]
            fds: tuple[int, ...] = (fd,)
        else:  # uvicorn takes only a Unix socket's descriptor
            self.port = free_port()
            command = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1"]
            command += ["--port", str(self.port), "--log-level", "warning", "--no-access-log"]
            command += ["--backlog", "2048"]
            fds = ()
        command += ["--workers", str(workers), target]
        super().__init__(
            f"{stack} {target.split(':')[1]}",
            command,
            workspace.directory,
            pass_fds=fds,
            # `python -m` puts the working directory first on sys.path: the temporary
            # one, so that policyengine is imported as this process imports it
            cwd=workspace.directory,
            env=os.environ.copy(),
        )

    def stop(self) -> None:
        super().stop()  # the arbiter or supervisor stops its workers
        if self.listener is not None:
            self.listener.close()


def check_responses(pair: Sequence[Server], header_value: str) -> None:
    """One real request per variant: 200 and the body with the certificate; 403 without
    it behind the middleware (so the middleware is there and decides)."""
    for server in pair:
        status, body = get(server.port, headers={HEADER: header_value})
        if status != 200 or body != BODY:
            raise BenchmarkError(
                f"{server.name}: expected 200 {BODY!r}, got {status} {body[:200]!r}"
            )
    status, body = get(pair[1].port)
    if status != 403:
        raise BenchmarkError(
            f"{pair[1].name}: a request without a certificate got {status}, not 403: {body[:200]!r}"
        )


Results = dict[tuple[str, str, str], list[WrkResult]]
"""wrk's results by (stack, traffic, variant)."""


def measure(args: argparse.Namespace) -> int:
    wrk = check_tools(args.stacks)
    threads = max(1, min(args.wrk_threads, args.connections))
    print(
        f"{wrk_version(wrk)}; {args.workers} workers per server, wrk -t {threads} "
        f"-c {args.connections} -d {args.duration:g}s, {args.rounds} rounds, "
        f"{args.certificates:,} certificates for first sight, {os.cpu_count()} CPUs"
    )
    results: Results = {}
    with contextlib.ExitStack() as stack:
        stack.enter_context(exit_on_signals())
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pe-load-")))
        workspace = prepare(directory, args.certificates)
        pairs: dict[str, tuple[Server, Server]] = {}
        for name in args.stacks:
            pair = tuple(Server(name, t, workspace, args.workers) for t in STACKS[name])
            for server in pair:
                stack.callback(server.stop)
                server.start()
            pairs[name] = pair  # type: ignore[assignment]
        for pair in pairs.values():
            for server in pair:
                wait_for(server.name, [server], lambda s=server: bool(get(s.port)[0]))
            check_responses(pair, workspace.header_value)
            for server in pair:  # warm-up: every worker has seen the certificate
                for kind in args.traffic:
                    warm = run_wrk(
                        wrk, server.port, 2, args.connections, threads, workspace.traffic(kind)
                    )
                    if warm.non_2xx:
                        raise BenchmarkError(f"{server.name}: {warm.non_2xx} refused in warm-up")
        for round_number in range(1, args.rounds + 1):
            for kind in args.traffic:
                for name, pair in pairs.items():
                    for variant, server in zip(("plain", "guarded"), pair, strict=True):
                        result = one_run(wrk, server, workspace.traffic(kind), args, threads)
                        results.setdefault((name, kind, variant), []).append(result)
                        cpu = result.cpu_per_request
                        print(
                            f"  round {round_number} {name} {kind:<11} {variant:<8} "
                            f"{result.requests_per_second:>9,.0f} req/s  "
                            f"latency {result.latency:>8}  "
                            + (f"server CPU {cpu * 1e6:6.0f} µs/req  " if cpu else "")
                            + f"socket errors {result.socket_errors}",
                            flush=True,
                        )
    print_table(results)
    return 0


def one_run(
    wrk: str, server: Server, traffic: list[str], args: argparse.Namespace, threads: int
) -> WrkResult:
    """One measured wrk run on ``server``, with its servers' CPU time; every response 2xx."""
    cpu_before = server.cpu_seconds()
    result = run_wrk(wrk, server.port, args.duration, args.connections, threads, traffic)
    if PROC:
        result = dataclasses.replace(result, server_cpu=server.cpu_seconds() - cpu_before)
    if result.non_2xx:
        raise BenchmarkError(
            f"{server.name}: wrk counted {result.non_2xx} non-2xx responses: requests were "
            "refused, the measurement is not of allowed requests"
        )
    return result


def print_table(results: Results) -> None:
    body = []
    for name, kind in dict.fromkeys((n, k) for n, k, _ in results):
        plain, guarded = results[(name, kind, "plain")], results[(name, kind, "guarded")]
        paired = [
            g.requests_per_second / p.requests_per_second
            for p, g in zip(plain, guarded, strict=True)
        ]
        cpu_plain = [c for r in plain if (c := r.cpu_per_request) is not None]
        cpu_guarded = [c for r in guarded if (c := r.cpu_per_request) is not None]
        cpu_paired = [g / p for p, g in zip(cpu_plain, cpu_guarded, strict=False)]
        for variant, runs in (("plain", plain), ("guarded", guarded)):
            rates = [r.requests_per_second for r in runs]
            cpu = cpu_plain if variant == "plain" else cpu_guarded
            ratio = variant == "guarded"
            body.append(
                (
                    f"{name} {kind} {variant}",
                    f"{statistics.median(rates):,.0f}",
                    f"{min(rates):,.0f}..{max(rates):,.0f}",
                    f"{statistics.median(paired):.3f}" if ratio else "",
                    f"{min(paired):.3f}..{max(paired):.3f}" if ratio else "",
                    f"{statistics.median(cpu) * 1e6:.0f} µs" if cpu else "-",
                    f"{statistics.median(cpu_paired):.3f}" if ratio and cpu_paired else "",
                    str(sum(r.requests for r in runs)),
                    str(sum(r.socket_errors for r in runs)),
                )
            )
    header = (
        "stack, traffic, variant",
        "req/s",
        "spread",
        "x plain",
        "paired range",
        "CPU/req",
        "x plain",
        "requests",
        "sock err",
    )
    print(format_table(header, body))


# -- in-process profile -------------------------------------------------------------------


def load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
    return None


def wsgi_loop(
    app: Callable[[dict[str, Any], Any], Iterable[bytes]], environ: dict[str, Any], number: int
) -> Callable[[], None]:
    def loop() -> None:
        for _ in range(number):
            result = app(dict(environ), _start_response)
            for _chunk in result:
                pass
            close = getattr(result, "close", None)
            if close is not None:
                close()

    return loop


def profile(number: int) -> int:
    if importlib.util.find_spec("flask") is None:
        print("the profile needs flask (pip install flask, or the test extras)", file=sys.stderr)
        return 2
    from werkzeug.test import create_environ

    with tempfile.TemporaryDirectory(prefix="pe-load-") as name:
        workspace = prepare(Path(name), 1)
        module = load_module(workspace.directory / "bench_app.py")
        environ = create_environ(
            "/",
            "http://127.0.0.1:8000/",
            headers=[(HEADER, workspace.header_value)],
            environ_overrides={"REMOTE_ADDR": "127.0.0.1"},
        )
        apps = {"plain": module.plain, "middleware": module.guarded}
        statuses: list[str] = []

        def record(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            statuses.append(status)

        for app_name, app in apps.items():
            body = b"".join(app(dict(environ), record))
            if not statuses[-1].startswith("200") or body != BODY:
                raise BenchmarkError(f"{app_name}: {statuses[-1]} {body[:200]!r}")
        timings: dict[str, list[float]] = {n: [] for n in apps}
        for _ in range(5):  # alternate, median of 5
            for app_name, app in apps.items():
                loop = wsgi_loop(app, environ, number // 5)
                started = time.perf_counter()
                loop()
                timings[app_name].append((time.perf_counter() - started) / (number // 5))
        per_request = {n: statistics.median(t) for n, t in timings.items()}
        for app_name, seconds in per_request.items():
            print(f"{app_name:<11} {seconds * 1e6:8.1f} µs per request (in-process WSGI call)")
        extra = per_request["middleware"] - per_request["plain"]
        print(f"middleware  {extra * 1e6:+8.1f} µs per request")
        profiler = cProfile.Profile()
        profiler.runcall(wsgi_loop(module.guarded, environ, number))
    out = io.StringIO()
    print(f"\nmiddleware variant under cProfile, {number} requests; policyengine's functions:")
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats("policyengine", 20)
    print(_stats_table(out.getvalue()))
    out = io.StringIO()
    print("\nthe whole request, by own time:")
    pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("tottime").print_stats(20)
    print(_stats_table(out.getvalue()))
    return 0


def _stats_table(text: str) -> str:
    """pstats' table without its preamble, file paths shortened to the last two parts."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
    return "\n".join(
        re.sub(r"\S*/([^/\s]+/[^/\s]+:\d+\()", r"\1", line) for line in lines[start:] if line
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=5, help="wrk runs per variant")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    parser.add_argument("--workers", type=int, default=2, help="workers per server")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--stack", choices=("wsgi", "asgi", "both"), default="both")
    parser.add_argument("--traffic", choices=("warm", "first", "both"), default="both")
    parser.add_argument(
        "--certificates",
        type=int,
        default=20_000,
        help="distinct certificates of the first-sight traffic",
    )
    parser.add_argument(
        "--profile", type=int, metavar="N", help="profile N in-process requests instead"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: one wrk run of a second per variant"
    )
    args = parser.parse_args(argv)
    if args.quick:  # a smoke run: first sight then repeats after 2,000, which is no matter
        args.duration, args.rounds = 1.0, 1
        args.certificates = min(args.certificates, 2_000)
    if min(args.duration, args.rounds, args.connections, args.workers, args.certificates) <= 0:
        parser.error(
            "--duration, --rounds, --connections, --workers and --certificates must be positive"
        )
    args.stacks = [s for s in STACKS if args.stack in (s.lower(), "both")]
    args.traffic = [k for k in TRAFFIC if args.traffic in (k.split()[0], "both")]
    if args.profile:
        return exit_status("load.py", lambda: profile(args.profile), "servers stopped")
    return exit_status("load.py", lambda: measure(args), "servers stopped")


if __name__ == "__main__":
    sys.exit(main())
