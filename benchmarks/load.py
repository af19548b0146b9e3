"""Requests/s of a Flask app under gunicorn, with and without policyengine's WSGI middleware.

    python benchmarks/load.py [--duration 10] [--rounds 5] [--connections 8] [--workers 2] [--quick]
    python benchmarks/load.py --profile 20000   # in-process cProfile, no server

Needs ``wrk`` (Debian/Ubuntu: ``apt-get install wrk``) and gunicorn and Flask (the test
extras); exits with status 2 and says what is missing otherwise.

Two variants of one hello-world Flask app, each served by its own gunicorn on loopback:

- plain       the Flask app alone;
- middleware  the same app wrapped in ``policyengine.integrations.wsgi.PolicyMiddleware``
              with the four-predicate policy of ``decision.py`` (validity, subject CN,
              issuer O, SHA-1 fingerprint in a set of three) and the ``azure`` source, given
              as a policy file path, as the docs show (so the reload check runs too).

wrk sends every request of both variants with the same ``X-ARR-ClientCert`` header: the
base64 DER of a certificate the policy allows. Before measuring, one real request checks
that the middleware variant answers 200 with the certificate and 403 without it; a run in
which wrk counts any non-2xx/3xx response fails the benchmark. Decision logging is at its
default (``DecisionLog()``): the ``policyengine.decisions`` logger is not enabled in these
workers, as in an app that does not configure it, so no record is written.

After a short warm-up of each server, the variants are measured alternately (plain,
middleware, plain, ...) for ``--rounds`` rounds of ``--duration`` seconds each, so that a
drift of the machine falls on both. The table shows requests/s: the median over the
rounds, the spread (min..max), the ratio of the medians, and the range of the per-round
ratios (each middleware run over the plain run just before it); then the server's CPU
time per request (user + system time of the gunicorn processes during the run, from
/proc, so Linux only) and its ratio: the cost of the middleware in work, which other
processes sharing the machine disturb less than they disturb requests/s.

Workers: ``--workers 2`` sync workers by default, one per core of a 2-core machine. Both
variants are CPU-bound (no I/O to wait on), so a sync worker keeps a core busy by itself;
gunicorn's usual ``2 * cores + 1`` is meant for workers that wait on a database or an
upstream. Here wrk runs on the same cores, and extra workers would only compete with it
and with each other for CPU, adding context switches without adding throughput (3 and 5
workers did no better than 2 on such a machine). Sync
workers close the connection after each response, so wrk reconnects for every request.

``--profile N`` runs N requests through each variant in-process (a WSGI call on a
prepared environ, no server and no sockets), prints the time per request of both, and
where the middleware variant spends its time under cProfile: policyengine's functions by
cumulative time, and the whole request by each function's own time.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import cProfile
import dataclasses
import http.client
import importlib.util
import io
import os
import pstats
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from common import format_table, four_predicates

HEADER = "X-ARR-ClientCert"
VARIANTS = {"plain": "bench_app:plain", "middleware": "bench_app:guarded"}
BODY = b"Hello, World!"
PROC = os.path.isdir("/proc")
"""Whether processes' CPU times can be read (Linux)."""

APP_SOURCE = '''\
"""The benchmarked app: one Flask hello world, bare and behind PolicyMiddleware."""

import os

from flask import Flask

from policyengine.integrations.wsgi import PolicyMiddleware

app = Flask(__name__)


@app.get("/")
def hello() -> str:
    return "Hello, World!"


plain = app
guarded = PolicyMiddleware(app, os.environ["BENCH_POLICY"])
'''


class Missing(Exception):
    """A tool the benchmark needs is not installed."""


class BenchmarkError(Exception):
    """The benchmark could not measure what it set out to (a check failed)."""


@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    requests: int
    non_2xx: int
    socket_errors: int
    latency: str
    server_cpu: float | None = None
    """CPU seconds the server's processes used during the run (Linux), or None."""

    @property
    def cpu_per_request(self) -> float | None:
        if self.server_cpu is None or not self.requests:
            return None
        return self.server_cpu / self.requests


@dataclass
class Workspace:
    """The temporary directory with the app module and the policy, and the header value."""

    directory: Path
    header_value: str


def check_tools() -> str:
    """The path of wrk; raises Missing when wrk, gunicorn or Flask is not installed."""
    missing = []
    wrk = shutil.which("wrk")
    if wrk is None:
        missing.append("wrk (Debian/Ubuntu: apt-get install wrk)")
    for module, package in (("gunicorn", "gunicorn"), ("flask", "flask")):
        if importlib.util.find_spec(module) is None:
            missing.append(f"{package} (pip install {package}, or the test extras)")
    if missing:
        raise Missing("this benchmark needs " + " and ".join(missing))
    assert wrk is not None
    return wrk


def prepare(directory: Path) -> Workspace:
    """Write the app module and the policy into ``directory``; a certificate it allows."""
    from policyengine import load_policy
    from policyengine.testing import make_certificate

    cert = make_certificate({"CN": "api-client", "O": "Contoso Ltd"})
    pins = [cert.sha1, "30757a2e831977d8bd9c8496e4c99ab26cb9622b", "5e" * 20]
    policy_path = directory / "bench-load.yaml"
    policy_path.write_text(four_predicates(pins, "bench-load"))
    (directory / "bench_app.py").write_text(APP_SOURCE)
    header_value = base64.b64encode(cert.der).decode()
    decision = load_policy(policy_path).evaluate_request(
        headers=[(HEADER, header_value)], remote_addr="127.0.0.1", path="/"
    )
    if not decision.allowed:
        raise BenchmarkError(f"the policy does not allow the benchmark's certificate: {decision}")
    os.environ["BENCH_POLICY"] = str(policy_path)
    return Workspace(directory, header_value)


class Process:
    """A long-lived subprocess in its own process group (spared our Ctrl-C, stopped as
    one), its output in a log file."""

    def __init__(self, name: str, command: list[str], directory: Path, **options: Any) -> None:
        """``options`` are ``subprocess.Popen``'s, over stdout and stderr to the log."""
        self.name = name
        self.command = command
        self.options = options
        self.log_path = directory / f"{name.replace(' ', '-')}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command,
                **{"stdout": log, "stderr": log, **self.options},
                start_new_session=True,
            )

    def check_alive(self) -> None:
        if self.process is None or self.process.poll() is not None:
            raise BenchmarkError(f"{self.name} exited:\n{self.log()}")

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the live processes of its process group, from
        /proc (0 where there is none)."""
        if self.process is None or not PROC:
            return 0.0
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
            except (OSError, IndexError):
                continue  # gone meanwhile
            if int(fields[2]) == self.process.pid:  # pgrp: the process leads the group
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / tick

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM to the group (also reaching orphaned children), SIGKILL after 10 s."""
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def get(port: int, path: str = "/", headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """The status and body of a GET of ``path`` from ``port`` on loopback."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wait_for(
    what: str, processes: Sequence[Process], probe: Callable[[], bool], timeout: float = 30
) -> None:
    """Until ``probe()`` holds (a connection refused or reset is not yet), or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            process.check_alive()
        with contextlib.suppress(OSError, http.client.HTTPException):
            if probe():
                return
        time.sleep(0.1)
    logs = "\n".join(f"--- {p.name}:\n{p.log()}" for p in processes)
    raise BenchmarkError(f"{what} was not ready in {timeout:g} s\n{logs}")


class Server(Process):
    """One gunicorn, in its own process group, on a loopback socket this process made."""

    def __init__(self, name: str, target: str, workspace: Workspace, workers: int) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=2048)
        self.port: int = self.listener.getsockname()[1]
        fd = self.listener.fileno()
        command = [sys.executable, "-m", "gunicorn", "--worker-class", "sync"]
        command += ["--workers", str(workers), "--bind", f"fd://{fd}", "--log-level", "warning"]
        command.append(target)
        super().__init__(
            f"gunicorn ({name})",
            command,
            workspace.directory,
            pass_fds=(fd,),
            # `python -m` puts the working directory first on sys.path: the temporary
            # one, so that policyengine is imported as this process imports it
            cwd=workspace.directory,
            env=os.environ.copy(),
        )

    def stop(self) -> None:
        super().stop()  # the arbiter stops its workers
        self.listener.close()


def check_responses(servers: dict[str, Server], header_value: str) -> None:
    """One real request per variant: 200 and the body with the certificate; 403 without
    it behind the middleware (so the middleware is there and decides)."""
    for name, server in servers.items():
        status, body = get(server.port, headers={HEADER: header_value})
        if status != 200 or body != BODY:
            raise BenchmarkError(f"{name}: expected 200 {BODY!r}, got {status} {body[:200]!r}")
    status, body = get(servers["middleware"].port)
    if status != 403:
        raise BenchmarkError(
            f"middleware: a request without a certificate got {status}, not 403: {body[:200]!r}"
        )


_NUMBER = r"([0-9.]+)"


def wrk_output(wrk: str, url: str, duration: float, options: Sequence[str]) -> str:
    """wrk's report of a run of ``duration`` seconds on ``url`` with ``options``."""
    command = [wrk, "-d", f"{duration:g}s", *options, url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60)
    if done.returncode != 0:
        raise BenchmarkError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return done.stdout


def wrk_failures(out: str) -> tuple[int, int]:
    """The non-2xx or 3xx responses and the socket errors of a wrk report."""
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return (
        int(non_2xx.group(1)) if non_2xx else 0,
        sum(int(n) for n in errors.groups()) if errors else 0,
    )


def run_wrk(
    wrk: str, port: int, header_value: str, duration: float, connections: int, threads: int
) -> WrkResult:
    options = ["-t", str(threads), "-c", str(connections), "-H", f"{HEADER}: {header_value}"]
    out = wrk_output(wrk, f"http://127.0.0.1:{port}/", duration, options)
    rate = re.search(r"Requests/sec:\s+" + _NUMBER, out)
    total = re.search(r"(\d+) requests in", out)
    if rate is None or total is None:
        raise BenchmarkError(f"cannot read wrk's output:\n{out}")
    non_2xx, socket_errors = wrk_failures(out)
    latency = re.search(r"Latency\s+(\S+)", out)
    return WrkResult(
        requests_per_second=float(rate.group(1)),
        requests=int(total.group(1)),
        non_2xx=non_2xx,
        socket_errors=socket_errors,
        latency=latency.group(1) if latency else "?",
    )


def wrk_version(wrk: str) -> str:
    done = subprocess.run([wrk, "--version"], capture_output=True, text=True, timeout=10)
    text = (done.stdout + done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


@contextlib.contextmanager
def exit_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise SystemExit, so that ``finally`` blocks stop the servers."""

    def leave(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, leave) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def measure(args: argparse.Namespace) -> int:
    wrk = check_tools()
    threads = max(1, min(args.wrk_threads, args.connections))
    print(
        f"{wrk_version(wrk)}; gunicorn sync x {args.workers}, wrk -t {threads} "
        f"-c {args.connections} -d {args.duration:g}s, {args.rounds} rounds, "
        f"{os.cpu_count()} CPUs"
    )
    results: dict[str, list[WrkResult]] = {name: [] for name in VARIANTS}
    with contextlib.ExitStack() as stack:
        stack.enter_context(exit_on_signals())
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pe-load-")))
        workspace = prepare(directory)
        servers: dict[str, Server] = {}
        for name, target in VARIANTS.items():
            server = Server(name, target, workspace, args.workers)
            stack.callback(server.stop)
            servers[name] = server
            server.start()
        for server in servers.values():
            wait_for(server.name, [server], lambda s=server: bool(get(s.port)[0]))
        check_responses(servers, workspace.header_value)
        for name, server in servers.items():  # warm-up: every worker has seen the certificate
            warm = run_wrk(wrk, server.port, workspace.header_value, 2, args.connections, threads)
            if warm.non_2xx:
                raise BenchmarkError(f"{name}: {warm.non_2xx} non-2xx responses in the warm-up")
        for round_number in range(1, args.rounds + 1):
            for name, server in servers.items():
                cpu_before = server.cpu_seconds()
                result = run_wrk(
                    wrk,
                    server.port,
                    workspace.header_value,
                    args.duration,
                    args.connections,
                    threads,
                )
                if PROC:
                    used = server.cpu_seconds() - cpu_before
                    result = dataclasses.replace(result, server_cpu=used)
                results[name].append(result)
                cpu = result.cpu_per_request
                print(
                    f"  round {round_number} {name:<10} {result.requests_per_second:>9,.0f} "
                    f"req/s  latency {result.latency:>8}  "
                    + (f"server CPU {cpu * 1e6:6.0f} µs/req  " if cpu is not None else "")
                    + f"non-2xx {result.non_2xx}  socket errors {result.socket_errors}",
                    flush=True,
                )
                if result.non_2xx:
                    raise BenchmarkError(
                        f"{name}: wrk counted {result.non_2xx} non-2xx responses: requests "
                        "were refused, the measurement is not of allowed requests"
                    )
    print_table(results)
    return 0


def print_table(results: dict[str, list[WrkResult]]) -> None:
    medians = {n: statistics.median(r.requests_per_second for r in rs) for n, rs in results.items()}
    plain = medians["plain"]
    paired = [
        guarded.requests_per_second / bare.requests_per_second
        for bare, guarded in zip(results["plain"], results["middleware"], strict=True)
    ]
    cpu = {n: [c for r in rs if (c := r.cpu_per_request) is not None] for n, rs in results.items()}
    cpu_medians = {n: statistics.median(c) if c else None for n, c in cpu.items()}
    body = []
    for name, runs in results.items():
        rates = [r.requests_per_second for r in runs]
        cpu_median, cpu_plain = cpu_medians[name], cpu_medians["plain"]
        body.append(
            (
                name,
                f"{medians[name]:,.0f}",
                f"{min(rates):,.0f}..{max(rates):,.0f}",
                f"{medians[name] / plain:.3f}",
                f"{min(paired):.3f}..{max(paired):.3f}" if name != "plain" else "",
                f"{cpu_median * 1e6:.0f} µs" if cpu_median is not None else "-",
                f"{cpu_median / cpu_plain:.3f}" if cpu_median and cpu_plain else "-",
                str(sum(r.requests for r in runs)),
                str(sum(r.non_2xx for r in runs)),
                str(sum(r.socket_errors for r in runs)),
            )
        )
    header = (
        "variant",
        "req/s",
        "spread",
        "x plain",
        "per-round x",
        "CPU/req",
        "x plain",
        "requests",
        "non-2xx",
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
        workspace = prepare(Path(name))
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


def exit_status(script: str, run: Callable[[], int], stopped: str) -> int:
    """What ``run()`` returns, or a failure said on stderr: 2 for a missing tool, 1 for a
    failed check, 130 for Ctrl-C (after which ``stopped`` says what was)."""
    try:
        return run()
    except Missing as exc:
        print(f"{script}: {exc}", file=sys.stderr)
        return 2
    except BenchmarkError as exc:
        print(f"{script}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{script}: interrupted; {stopped}", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=5, help="wrk runs per variant")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads")
    parser.add_argument(
        "--profile", type=int, metavar="N", help="profile N in-process requests instead"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: one wrk run of a second per variant"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.rounds = 1.0, 1
    if args.duration <= 0 or args.rounds < 1 or args.connections < 1 or args.workers < 1:
        parser.error("--duration, --rounds, --connections and --workers must be positive")
    if args.profile:
        return exit_status("load.py", lambda: profile(args.profile), "servers stopped")
    return exit_status("load.py", lambda: measure(args), "servers stopped")


if __name__ == "__main__":
    sys.exit(main())
