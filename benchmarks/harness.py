"""What the load benchmarks share: servers in their own process groups, and wrk.

``load.py`` (WSGI and ASGI apps under gunicorn and uvicorn) and ``server.py`` (the
decision server behind real proxies) start their servers with :class:`Process`, wait for
them with :func:`wait_for`, load them with wrk (:func:`run_wrk`, :func:`wrk_output`), and
stop them whatever happens (:func:`exit_on_signals`, :func:`exit_status`).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

PROC = os.path.isdir("/proc")
"""Whether processes' CPU times can be read (Linux)."""


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


def free_port() -> int:
    """A TCP port free on loopback just now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
    wrk: str, port: int, duration: float, connections: int, threads: int, traffic: Sequence[str]
) -> WrkResult:
    """A wrk run of ``duration`` seconds on ``port``'s ``/``; ``traffic``: wrk's options
    saying what to send (``-H`` a header, or ``-s`` a script)."""
    options = ["-t", str(threads), "-c", str(connections), *traffic]
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
