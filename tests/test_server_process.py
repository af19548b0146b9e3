"""``policyengine serve`` as the real process: started on free loopback ports, asked over
real HTTP (httpx) and real gRPC, told by signals.

The decision log on stdout, a policy file replaced while a client keeps asking (and then
replaced by a broken one), SIGHUP, SIGTERM, ``--workers 2`` and the start-up failures.
Every wait has a deadline; a server still running when its test ends is killed.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import grpc
import httpx
import pytest
from envoy.service.auth.v3 import external_auth_pb2_grpc
from google.rpc import code_pb2
from prometheus_client.parser import text_string_to_metric_families
from test_server import EDGE, check_request, escaped, free_port, generic

from policyengine.integrations import REFUSALS
from policyengine.testing import IssuedCertificate, make_certificate

CONTOSO = 'subject.O == "Contoso"'
FABRIKAM = EDGE.replace(CONTOSO, 'subject.O == "Fabrikam"')
"""The policy rewritten: now Fabrikam's certificates pass and Contoso's do not."""
BROKEN_LINE = 1 + EDGE.splitlines().index(
    f'    when: valid and {CONTOSO} and request.path startswith "/orders"'
)
BROKEN = EDGE.replace(f"{CONTOSO} and", f"{CONTOSO} and and")
ALLOWED = {"policy": "edge", "decision": "allow", "reason": "allowed_by_rule"}


@pytest.fixture(scope="module")
def alice() -> IssuedCertificate:
    return make_certificate({"CN": "alice", "O": "Contoso", "OU": "Writers"})


@pytest.fixture(scope="module")
def mallory() -> IssuedCertificate:
    return make_certificate({"CN": "mallory", "O": "Fabrikam"})


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """Poll ``condition`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.02)


def replace(path: Path, text: str) -> None:
    """Write a new policy file and rename it over the old one (atomic)."""
    staged = path.with_name(path.name + ".new")
    staged.write_text(text)
    os.replace(staged, path)


class Server:
    """One ``policyengine serve`` process; its stdout and stderr are read by threads."""

    def __init__(
        self,
        policies: list[Path],
        *options: str,
        cwd: Path,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.http_port, self.grpc_port = free_port(), free_port()
        argv = [*(command or [sys.executable, "-m", "policyengine"]), "serve"]
        argv += [*map(str, policies), *options]
        argv += ["--http", f"127.0.0.1:{self.http_port}", "--grpc", f"127.0.0.1:{self.grpc_port}"]
        self.process = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.readers = [
            threading.Thread(target=_collect, args=(self.process.stdout, self.stdout), daemon=True),
            threading.Thread(target=_collect, args=(self.process.stderr, self.stderr), daemon=True),
        ]
        for reader in self.readers:
            reader.start()
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.fresh = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=5)
        """A new connection for every request (without a new TLS context each time)."""

    def alive(self) -> bool:
        assert self.process.poll() is None, "serve exited:\n" + "\n".join(self.stderr)
        return True

    def wait_ready(self) -> None:
        def ready() -> bool:
            self.alive()
            try:
                return self.fresh.get(f"{self.base}/readyz").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, "/readyz", timeout=20)

    def ask(
        self, cert: IssuedCertificate | None, uri: str = "/orders", client: Any = None
    ) -> httpx.Response:
        """What nginx's auth_request asks for a request to ``uri``."""
        headers = {"X-Original-URI": uri, "X-Original-Method": "GET"}
        if cert is not None:
            headers["X-SSL-Client-Cert"] = escaped(cert)
        response: httpx.Response = (client or self.fresh).get(
            f"{self.base}/authorize/edge", headers=headers, timeout=5
        )
        return response

    def metric(self, name: str, **labels: str) -> float | None:
        text = self.fresh.get(f"{self.base}/metrics").text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return None

    def log_lines(self, count: int) -> list[dict[str, Any]]:
        """The first ``count`` decision records on stdout, waiting for them."""
        wait_until(lambda: len(self.stdout) >= count, f"{count} decision log lines")
        return [json.loads(line) for line in self.stdout[:count]]

    def signal(self, sig: int) -> None:
        self.alive()
        self.process.send_signal(sig)

    def stop(self) -> int:
        """SIGTERM, and the exit status once it has drained."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        status = self.process.wait(timeout=20)
        self.close()
        return status

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.close()

    def close(self) -> None:
        """Once the process has exited: the readers end at the pipes' end; close them."""
        self.fresh.close()
        for reader in self.readers:
            reader.join(timeout=5)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def _collect(stream: IO[str], into: list[str]) -> None:
    for line in stream:
        into.append(line.rstrip("\n"))


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(policies: list[Path], *options: str, **keywords: Any) -> Server:
        server = Server(policies, *options, cwd=tmp_path, **keywords)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "edge.yaml"
    path.write_text(EDGE)
    return path


def grpc_check(port: int, request: Any) -> Any:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        return stub.Check(request, timeout=5, wait_for_ready=True)


def error_line(path: Path, line: int) -> re.Pattern[str]:
    return re.compile(rf"{re.escape(str(path))}:{line}:\d+: error")


# -- the peer ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "claim",
    [
        {"X-Forwarded-For": "10.9.9.9"},
        {"X-Forwarded-For": "10.9.9.9", "X-Forwarded-Proto": "https"},
        {"Forwarded": "for=10.9.9.9"},
        {"X-Real-IP": "10.9.9.9"},
    ],
)
def test_the_peer_is_the_connection_whatever_a_client_claims(
    serve: Callable[..., Server], tmp_path: Path, alice: IssuedCertificate, claim: dict[str, str]
) -> None:
    """Only 10.9.9.9 is trusted to forward a certificate; a client on loopback that says it is
    10.9.9.9 (uvicorn rewrites the peer from X-Forwarded-For unless told not to) is not."""
    trusting = tmp_path / "edge.yaml"
    trusting.write_text(EDGE.replace("trusted_proxies: [127.0.0.1]", "trusted_proxies: [10.9.9.9]"))
    server = serve([trusting])
    server.wait_ready()
    headers = {"X-Original-URI": "/orders", "X-Original-Method": "GET", **claim}
    headers["X-SSL-Client-Cert"] = escaped(alice)
    refused = server.fresh.get(f"{server.base}/authorize/edge", headers=headers)
    assert refused.status_code == 403, refused.headers
    assert refused.json() == generic("missing_certificate")
    assert server.log_lines(1)[0]["peer"] == "127.0.0.1"


# -- the decision log -------------------------------------------------------------------


def test_every_decision_is_one_json_line_on_stdout(
    serve: Callable[..., Server], policy: Path, alice: IssuedCertificate, mallory: IssuedCertificate
) -> None:
    fields = ("principal", "subject", "fingerprint_sha256")
    server = serve([policy], *(f"--log-field={field}" for field in fields))
    server.wait_ready()
    allowed = server.ask(alice, "/orders?page=2")
    assert (allowed.status_code, allowed.headers["x-client-principal"]) == (200, "alice")
    refused = server.ask(mallory)
    assert (refused.status_code, refused.json()) == (403, generic("no_matching_rule"))
    assert refused.headers["content-type"] == "application/json"
    request = check_request(
        policy="edge", certificate=escaped(alice), method="POST", path="/orders/9?x=1"
    )
    checked = grpc_check(server.grpc_port, request)
    assert checked.status.code == code_pb2.OK
    given = {h.header.key: h.header.value for h in checked.ok_response.headers}
    assert given["x-client-principal"] == "alice"
    missing = grpc_check(server.grpc_port, check_request(policy="edge", address=None))
    assert (missing.status.code, missing.status.message) == (
        code_pb2.PERMISSION_DENIED,
        "missing_certificate",
    )

    lines = server.log_lines(4)
    keys = {"time", "message", "decision", "reason", "rule", "policy", "explanation"}
    keys |= {"method", "path", "peer", "elapsed_us", *fields}
    for line in lines:
        assert set(line) == keys
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
        assert line["policy"] == "edge"
        assert isinstance(line["elapsed_us"], float) and line["elapsed_us"] >= 0
    first, second, third, fourth = lines
    assert first["decision"] == "allow" and first["reason"] == "allowed_by_rule"
    assert (first["rule"], first["method"], first["path"], first["peer"]) == (
        "contoso",
        "GET",
        "/orders",
        "127.0.0.1",
    )
    assert (first["principal"], first["fingerprint_sha256"]) == ("alice", alice.sha256)
    assert "CN=alice" in first["subject"] and "O=Contoso" in first["subject"]
    assert first["message"] == "127.0.0.1 GET /orders -> allow (allowed_by_rule, rule contoso)"
    # the decision's own message, which the client was not told, is in the log
    assert (second["decision"], second["reason"], second["principal"]) == (
        "deny",
        "no_matching_rule",
        "mallory",
    )
    assert "contoso" in second["explanation"]
    assert second["explanation"] != REFUSALS["no_matching_rule"]
    # over gRPC: the peer is who sent the request to Envoy, the path without its query
    assert (third["decision"], third["method"], third["path"], third["peer"]) == (
        "allow",
        "POST",
        "/orders/9",
        "198.51.100.7",
    )
    assert (fourth["reason"], fourth["peer"], fourth["principal"]) == (
        "missing_certificate",
        None,
        None,
    )
    assert fourth["fingerprint_sha256"] is None
    assert server.stop() == 0
    assert len(server.stdout) == 4  # decisions only: nothing else is written to stdout
    assert not any(line.startswith("{") for line in server.stderr)
    assert any("serving edge on HTTP" in line for line in server.stderr)


# -- reloading --------------------------------------------------------------------------


class Asking(threading.Thread):
    """A client asking about alice's request in a loop, over a kept-alive connection and
    over new ones in turn, noting every status and every failure."""

    def __init__(self, server: Server, cert: IssuedCertificate) -> None:
        super().__init__(daemon=True)
        self.server, self.cert = server, cert
        self.statuses: list[int] = []
        self.failures: list[BaseException] = []
        self.done = threading.Event()

    def run(self) -> None:
        with httpx.Client() as kept:
            while not self.done.is_set():
                client = kept if len(self.statuses) % 2 else self.server.fresh
                try:
                    self.statuses.append(self.server.ask(self.cert, client=client).status_code)
                except Exception as exc:
                    self.failures.append(exc)

    def finish(self) -> None:
        self.done.set()
        self.join(timeout=10)
        assert not self.is_alive()


def test_a_replaced_policy_switches_decisions_without_a_failed_request(
    serve: Callable[..., Server],
    policy: Path,
    alice: IssuedCertificate,
    mallory: IssuedCertificate,
) -> None:
    server = serve([policy], "--reload-interval=0.1")
    server.wait_ready()
    asking = Asking(server, alice)
    asking.start()
    try:
        wait_until(lambda: len(asking.statuses) >= 20 or asking.failures, "20 answers")
        replace(policy, FABRIKAM)
        replaced = time.monotonic()
        wait_until(lambda: 403 in asking.statuses or asking.failures, "the new policy", 10)
        switched = time.monotonic() - replaced
        seen = len(asking.statuses)
        wait_until(lambda: len(asking.statuses) >= seen + 20 or asking.failures, "more answers")
    finally:
        asking.finish()
    assert asking.failures == []
    statuses = asking.statuses
    assert set(statuses) == {200, 403}
    first = statuses.index(403)
    # one switch, never back: a request sees either policy whole
    assert statuses[:first] == [200] * first
    assert statuses[first:] == [403] * (len(statuses) - first)
    assert first >= 20 and switched < 5
    assert server.ask(mallory).status_code == 200

    # a broken file keeps the last good policy in force, and says so in /metrics
    failures = {"policy": "edge"}
    assert server.metric("policyengine_policy_reload_failures", **failures) == 0
    replace(policy, BROKEN)

    def reload_failed() -> bool:
        assert server.ask(mallory).status_code == 200  # each request may look at the file
        return server.metric("policyengine_policy_reload_failures", **failures) == 1

    wait_until(reload_failed, "the reload failure in /metrics")
    assert server.ask(alice).status_code == 403 and server.ask(mallory).status_code == 200
    assert any(error_line(policy, BROKEN_LINE).search(line) for line in server.stderr)
    assert server.stop() == 0


def test_sighup_loads_the_policy_now(
    serve: Callable[..., Server],
    policy: Path,
    alice: IssuedCertificate,
    mallory: IssuedCertificate,
) -> None:
    server = serve([policy], "--reload-interval=3600")  # only the signal can reload it
    server.wait_ready()
    assert server.ask(alice).status_code == 200
    replace(policy, FABRIKAM)
    for _ in range(5):
        assert server.ask(alice).status_code == 200  # not looked at for an hour
        time.sleep(0.05)
    server.signal(signal.SIGHUP)
    wait_until(lambda: server.ask(alice).status_code == 403, "the SIGHUP reload", 5)
    assert server.ask(mallory).status_code == 200
    failures = {"policy": "edge"}
    assert server.metric("policyengine_policy_reload_failures", **failures) == 0

    replace(policy, BROKEN)
    server.signal(signal.SIGHUP)
    wait_until(
        lambda: server.metric("policyengine_policy_reload_failures", **failures) == 1,
        "the failed reload in /metrics",
        5,
    )
    assert server.ask(mallory).status_code == 200 and server.ask(alice).status_code == 403
    assert any(error_line(policy, BROKEN_LINE).search(line) for line in server.stderr)
    assert any("SIGHUP: policies reloaded (some failed" in line for line in server.stderr)

    replace(policy, EDGE)
    server.signal(signal.SIGHUP)
    wait_until(lambda: server.ask(alice).status_code == 200, "the repaired policy", 5)
    assert server.metric("policyengine_policy_reload_failures", **failures) == 0
    assert server.stop() == 0


# -- stopping ---------------------------------------------------------------------------


def test_sigterm_drains_and_exits_0(
    serve: Callable[..., Server], policy: Path, alice: IssuedCertificate
) -> None:
    server = serve([policy], "--drain=5")
    server.wait_ready()
    with httpx.Client() as kept:
        assert server.ask(alice, client=kept).status_code == 200
        server.signal(signal.SIGTERM)
        seen: list[str] = []

        def not_ready() -> bool:
            try:
                status = server.fresh.get(f"{server.base}/readyz").status_code
            except httpx.TransportError as exc:
                seen.append(type(exc).__name__)
                return True
            seen.append(str(status))
            assert status in (200, 503)
            return status == 503

        wait_until(not_ready, "/readyz to go 503 or the port to close", 10)
        assert server.process.wait(timeout=15) == 0
    assert any("draining" in line for line in server.stderr)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.base}/healthz", timeout=2)
    for port in (server.http_port, server.grpc_port):
        with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
            probe.connect(("127.0.0.1", port))


def test_drain_delay_keeps_answering_with_readyz_503_until_a_second_signal(
    serve: Callable[..., Server], policy: Path, alice: IssuedCertificate
) -> None:
    server = serve([policy], "--drain-delay=30")
    server.wait_ready()
    server.signal(signal.SIGTERM)
    not_ready = lambda: server.fresh.get(f"{server.base}/readyz").status_code == 503  # noqa: E731
    wait_until(not_ready, "/readyz to go 503")
    began = time.monotonic()
    while time.monotonic() - began < 1.0:  # a load balancer still sending meanwhile
        assert server.ask(alice).status_code == 200
        response = grpc_check(server.grpc_port, check_request(certificate=escaped(alice)))
        assert response.status.code == code_pb2.OK
    assert server.process.poll() is None
    server.signal(signal.SIGTERM)  # the operator will not wait: stop now
    assert server.process.wait(timeout=10) == 0
    for port in (server.http_port, server.grpc_port):
        with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
            probe.connect(("127.0.0.1", port))


def test_workers_share_the_addresses_the_metrics_and_the_signals(
    serve: Callable[..., Server],
    policy: Path,
    alice: IssuedCertificate,
    mallory: IssuedCertificate,
    tmp_path: Path,
) -> None:
    script = Path(sys.executable).parent / "policyengine"  # the console script this time
    command = [str(script)] if script.exists() else None
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    server = serve([policy], "--workers=2", env={"TMPDIR": str(scratch)}, command=command)

    def workers(count: int) -> list[int]:
        return server.alive() and serving(server, count)

    pids = wait_until(lambda: workers(2), "two workers", 30)
    assert len(pids) == 2
    for pid in pids:  # children of serve, not of this test
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        assert int(fields[1]) == server.process.pid
    server.wait_ready()
    asked = 60
    for _ in range(asked):  # a new connection each time: the kernel spreads them
        assert server.ask(alice).status_code == 200
    for _ in range(10):
        response = grpc_check(server.grpc_port, check_request(certificate=escaped(alice)))
        assert response.status.code == code_pb2.OK
    # each worker that decided has its own counter file; /metrics from either sums them
    counters = list(scratch.glob("policyengine-metrics-*/counter_*.db"))
    deciders = {int(path.stem.partition("_")[2]) for path in counters}
    assert set(pids) <= deciders, (pids, counters)
    for _ in range(4):
        assert server.metric("policyengine_decisions_total", **ALLOWED) == asked + 10

    # SIGHUP reaches every worker: twenty new connections in a row see the new policy
    replace(policy, FABRIKAM)
    server.signal(signal.SIGHUP)
    switched = lambda: all(server.ask(alice).status_code == 403 for _ in range(20))  # noqa: E731
    wait_until(switched, "both workers to reload", 10)
    # a failed reload shows in /metrics whichever worker answers, and so does its repair
    failures = {"policy": "edge"}
    replace(policy, BROKEN)
    server.signal(signal.SIGHUP)
    failed = lambda: all(  # noqa: E731
        server.metric("policyengine_policy_reload_failures", **failures) == 1 for _ in range(6)
    )
    wait_until(failed, "the failed reload in every worker's /metrics", 10)
    # a worker that dies is replaced, and the other answers meanwhile (once the dead one's
    # socket is gone: what was queued on it when it died is lost, as SO_REUSEPORT goes)
    os.kill(pids[0], signal.SIGKILL)
    reaped = f"worker {pids[0]} exited (-9); starting another"
    wait_until(lambda: any(reaped in line for line in server.stderr), "the supervisor to see it")
    assert all(server.ask(mallory).status_code == 200 for _ in range(10))
    replace(policy, FABRIKAM)  # repaired, for the new worker and, on SIGHUP, the other

    def hup_until_the_new_worker_serves() -> list[int]:  # an operator's reload meanwhile
        server.signal(signal.SIGHUP)
        time.sleep(0.02)
        return [pid for pid in workers(3) if pid not in pids]

    new = wait_until(hup_until_the_new_worker_serves, "a new worker through SIGHUPs", 30)
    assert all(server.ask(mallory).status_code == 200 for _ in range(20))
    exits = [line for line in server.stderr if re.search(r"worker \d+ exited", line)]
    assert len(exits) == 1, exits  # SIGHUP killed no worker while it started
    # the repair shows whichever worker answers; the dead worker's failure is not counted
    repaired = lambda: all(  # noqa: E731
        server.metric("policyengine_policy_reload_failures", **failures) == 0 for _ in range(6)
    )
    wait_until(repaired, "the repair in every live worker's /metrics", 10)

    assert server.stop() == 0
    pids += new
    wait_until(
        lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), "the workers to end", 10
    )
    assert list(scratch.iterdir()) == []  # the metrics directory is gone too


def serving(server: Server, count: int) -> list[int]:
    """The workers that said they serve, once ``count`` of them have."""
    found = [re.search(r"worker (\d+) serving", line) for line in server.stderr]
    pids = [int(match.group(1)) for match in found if match]
    return pids if len(pids) >= count else []


def test_workers_stop_when_their_supervisor_is_killed(
    serve: Callable[..., Server], policy: Path
) -> None:
    server = serve([policy], "--workers=2")
    pids = wait_until(lambda: server.alive() and serving(server, 2), "two workers", 30)
    server.process.kill()  # SIGKILL: the parent forwards nothing
    server.process.wait(timeout=10)
    wait_until(
        lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids),
        "the orphaned workers to stop",
        15,
    )
    assert any("supervising process" in line and "gone" in line for line in server.stderr)


def test_a_worker_that_keeps_dying_is_started_again_later_each_time(
    serve: Callable[..., Server], policy: Path, alice: IssuedCertificate
) -> None:
    server = serve([policy], "--workers=2")
    pid = wait_until(lambda: server.alive() and serving(server, 2), "two workers", 30)[0]
    policy.rename(policy.with_suffix(".gone"))  # the workers keep theirs; a new one fails
    os.kill(pid, signal.SIGKILL)
    waits = re.compile(r"exited \(1\); starting another in ([\d.]+) s")

    def three_waits() -> list[float]:
        found = [float(m.group(1)) for m in map(waits.search, server.stderr) if m]
        return found[:3] if len(found) >= 3 else []

    # killed soon after it started: 0.5 s; then each new one fails to load: twice as long
    assert wait_until(three_waits, "three restarts", 20) == [1.0, 2.0, 4.0]
    assert server.ask(alice).status_code == 200  # the other worker answers meanwhile
    policy.with_suffix(".gone").rename(policy)
    wait_until(lambda: serving(server, 3), "a worker that starts", 20)
    assert server.stop() == 0


def _write_lines(lock: Any, go: Any, fifo: str, mark: str, count: int) -> None:
    """A worker's decision lines, longer than a pipe holds, to a pipe others write to."""
    from policyengine.server import run

    run._lines_lock = lock
    with open(fifo, "w") as stream:
        handler = run.Lines(stream)
        go.wait(timeout=20)  # all at once
        record = logging.LogRecord("x", logging.INFO, __file__, 1, mark * 100_000, None, None)
        for _ in range(count):
            handler.emit(record)


def _read_all(path: Path, into: list[str]) -> None:
    with open(path) as stream:
        _collect(stream, into)


def test_long_lines_from_several_workers_are_never_cut(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    lock = context.Lock()
    fifo = tmp_path / "stdout"
    os.mkfifo(fifo)
    go = context.Event()
    writers = [
        context.Process(target=_write_lines, args=(lock, go, str(fifo), mark, 10)) for mark in "ab"
    ]
    seen: list[str] = []
    reading = threading.Thread(target=_read_all, args=(fifo, seen), daemon=True)
    with os.fdopen(os.open(fifo, os.O_RDWR), "w"):  # the pipe ends when every writer is done
        for process in writers:
            process.start()
        time.sleep(0.5)  # both have opened the pipe
        go.set()
        time.sleep(0.3)  # both are stuck mid-line on the full pipe
        reading.start()
        for process in writers:
            process.join(timeout=20)
    reading.join(timeout=20)
    assert [process.exitcode for process in writers] == [0, 0]
    assert len(seen) == 20
    assert sorted(seen) == ["a" * 100_000] * 10 + ["b" * 100_000] * 10


# -- failing to start -------------------------------------------------------------------


def run_serve(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "policyengine", "serve", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_policy_that_does_not_load_stops_serve_before_it_listens(
    policy: Path, tmp_path: Path, workers: str
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN.replace("policy: edge", "policy: broken"))
    port = free_port()
    result = run_serve(
        str(policy), str(broken), f"--http=127.0.0.1:{port}", f"--workers={workers}", cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "the server did not start" in result.stderr
    assert error_line(broken, BROKEN_LINE).search(result.stderr), result.stderr
    assert "Traceback" not in result.stderr
    assert "serving" not in result.stderr and "Started server" not in result.stderr


def test_serve_refuses_what_it_cannot_serve(policy: Path, tmp_path: Path) -> None:
    twin = tmp_path / "twin.yaml"
    twin.write_text(EDGE)
    result = run_serve(str(policy), str(twin), f"--http=127.0.0.1:{free_port()}", cwd=tmp_path)
    assert result.returncode == 2 and "both policy 'edge'" in result.stderr
    result = run_serve(str(policy), "--no-http", cwd=tmp_path)
    assert result.returncode == 2 and "--no-http needs --grpc" in result.stderr


@pytest.mark.parametrize(
    ("which", "workers"), [("http", "1"), ("grpc", "1"), ("http", "2"), ("grpc", "2")]
)
def test_a_taken_port_stops_serve_with_an_error(
    policy: Path, tmp_path: Path, which: str, workers: str
) -> None:
    with socket.socket() as taken:  # bound without SO_REUSEPORT: nobody else may bind it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        other = free_port()
        ports = {"http": port, "grpc": other} if which == "http" else {"http": other, "grpc": port}
        result = run_serve(
            str(policy),
            f"--http=127.0.0.1:{ports['http']}",
            f"--grpc=127.0.0.1:{ports['grpc']}",
            f"--workers={workers}",
            cwd=tmp_path,
        )  # with workers, not a loop of workers dying at start and started again
    assert result.returncode == 2, result.stderr
    assert f"the server did not start: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr and "Started server" not in result.stderr
    assert "exited" not in result.stderr


def test_a_port_another_serve_shares_stops_serve(policy: Path, tmp_path: Path) -> None:
    """A running ``serve`` listens with SO_REUSEPORT (for its workers): a second one on the
    same port must not join it and take a share of the proxy's connections unseen."""
    with socket.socket() as running:
        running.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        running.bind(("127.0.0.1", 0))
        running.listen()
        port = running.getsockname()[1]
        result = run_serve(str(policy), f"--http=127.0.0.1:{port}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
