"""Fixtures for the end-to-end tests: a PKI, a policy, three apps in real servers and nginx.

Everything runs on loopback, in temporary directories, as the current user:

- a test CA, a server certificate for 127.0.0.1/localhost, and client certificates: allowed,
  from an unknown CA, expired, and pinned out (valid, from the CA, fingerprint not pinned);
- the Flask and Django apps under gunicorn, the FastAPI app under uvicorn, each enforcing the
  policy file and writing its decision log as JSON lines;
- nginx terminating TLS with ``ssl_verify_client optional_no_ca`` and forwarding the
  certificate in ``X-SSL-Client-Cert`` from the source address 127.0.0.2 (``proxy_bind``),
  the only address the policy trusts. A test connecting straight to an app from 127.0.0.1
  is therefore an untrusted peer, although it is on loopback too.

Every process started here is stopped by the fixtures, also when a test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from policyengine.testing import IssuedCertificate, make_certificate, make_server_certificate

HERE = Path(__file__).resolve().parent
APPS_DIR = HERE / "apps"
ROOT = HERE.parent.parent

PROXY_ADDRESS = "127.0.0.2"
"""nginx connects to the apps from here (``proxy_bind``); the policy trusts only this."""
CLIENT_ADDRESS = "127.0.0.1"
"""Direct (forged) requests to the apps come from here: loopback, yet not trusted."""
PARTNER_SUBJECT = {"CN": "orders-client", "O": "E2E Partners Ltd"}
STARTUP_TIMEOUT = 20.0
APP_NAMES = ("flask", "django", "fastapi")

NGINX_MISSING = (
    "nginx is not installed (looked on PATH and in /usr/sbin, /usr/local/sbin, "
    "/usr/local/nginx/sbin): the end-to-end tests in tests/e2e run the apps behind a real "
    "nginx terminating mutual TLS. Install it, e.g. `sudo apt-get install -y nginx` "
    "(.ci/run installs it on CI)."
)


# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class Pki:
    """Certificate and key files, and the certificates themselves."""

    directory: Path
    ca: IssuedCertificate
    certificates: dict[str, IssuedCertificate]

    def cert(self, name: str) -> Path:
        return self.directory / f"{name}.pem"

    def key(self, name: str) -> Path:
        return self.directory / f"{name}.key"

    def sha256(self, name: str) -> str:
        return self.certificates[name].sha256

    def pem(self, name: str) -> bytes:
        return self.certificates[name].pem


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("e2e-pki")
    now = datetime.now(UTC)
    ca = make_certificate({"CN": "E2E Test CA", "O": "E2E Test PKI"}, ca=True)
    unknown_ca = make_certificate({"CN": "Unknown CA", "O": "Somebody Else"}, ca=True)
    certificates = {
        "ca": ca,
        "server": make_server_certificate(ca, days=30),
        "allowed": make_certificate(PARTNER_SUBJECT, issuer=ca),
        "unknown_ca": make_certificate(PARTNER_SUBJECT, issuer=unknown_ca),
        "expired": make_certificate(
            PARTNER_SUBJECT,
            issuer=ca,
            not_before=now - timedelta(days=60),
            not_after=now - timedelta(days=1),
        ),
        "pinned_out": make_certificate(PARTNER_SUBJECT, issuer=ca),
    }
    for name, issued in certificates.items():
        (directory / f"{name}.pem").write_bytes(issued.pem)
        (directory / f"{name}.key").write_bytes(issued.key_pem)
    return Pki(directory, ca, certificates)


@pytest.fixture(scope="session")
def policy_file(pki: Pki) -> Path:
    """The policy the apps enforce. The unknown-CA and expired certificates are pinned too,
    so that `trusted` and `valid` refuse them, not the pin."""
    path = pki.directory / "e2e-policy.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            policy: e2e-nginx
            description: the end-to-end tests' apps behind nginx
            mode: required
            exclusion_paths: /health
            certificate:
              source: nginx
              trusted_proxies: ["{PROXY_ADDRESS}"]
            trust:
              anchors: [ca.pem]
            sets:
              partners:
                - {pki.sha256("allowed")}
                - {pki.sha256("unknown_ca")}
                - {pki.sha256("expired")}
            rules:
              - id: partner
                effect: allow
                when: |
                  valid
                  and trusted
                  and subject.O == "{PARTNER_SUBJECT["O"]}"
                  and fingerprint.sha256 in partners
            """
        )
    )
    return path


# ------------------------------------------------------------------------------ processes


def free_port() -> int:
    """A port nobody listens on right now, picked by the kernel."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Process:
    """A server process in its own process group, stopped with its children: SIGTERM to the
    group, then SIGKILL when it has not exited within a few seconds."""

    def __init__(self, name: str, argv: list[str], *, cwd: Path, env: dict[str, str]) -> None:
        self.name = name
        self.output = cwd / f"{name}.out"
        with self.output.open("wb") as out:
            self.popen = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.output.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_listening(self, port: int, timeout: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                pytest.fail(
                    f"{self.name} exited with status {self.popen.returncode} before listening "
                    f"on port {port}:\n{self.tail()}",
                    pytrace=False,
                )
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                return
            time.sleep(0.05)
        pytest.fail(
            f"{self.name} did not listen on port {port} within {timeout:.0f} s:\n{self.tail()}",
            pytrace=False,
        )

    def stop(self) -> None:
        if self.popen.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.popen.wait(timeout=5)
        # Workers left behind by a master that died: the group outlives its leader.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signum)


def _server_env(policy: Path, decision_log: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(APPS_DIR), str(ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["POLICYENGINE_E2E_POLICY"] = str(policy)
    env["POLICYENGINE_E2E_DECISION_LOG"] = str(decision_log)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _app_command(name: str, port: int) -> tuple[list[str], dict[str, str]]:
    bind = f"127.0.0.1:{port}"
    gunicorn = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        bind,
        "--workers",
        "1",
        "--worker-class",
        "sync",
        "--preload",  # the app is loaded before the port opens: an import error shows here
        "--pythonpath",
        str(APPS_DIR),
        "--log-level",
        "warning",
    ]
    if name == "flask":
        return [*gunicorn, "flask_app:app"], {}
    if name == "django":
        return [*gunicorn, "django_project.wsgi:application"], {
            "DJANGO_SETTINGS_MODULE": "django_project.settings"
        }
    if name == "fastapi":
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "fastapi_app:app",
            "--app-dir",
            str(APPS_DIR),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            # uvicorn believes X-Forwarded-For from 127.0.0.1 by default, which would let a
            # direct client choose the peer address the policy sees.
            "--no-proxy-headers",
            "--log-level",
            "warning",
        ], {}
    raise ValueError(name)


# ----------------------------------------------------------------------------------- nginx


def find_nginx() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    for directory in ("/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin"):
        candidate = Path(directory) / "nginx"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def nginx_version(binary: str) -> tuple[int, ...]:
    """nginx's version, from ``nginx -v`` ("nginx version: nginx/1.22.1" on stderr)."""
    result = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False)
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", result.stderr + result.stdout)
    return tuple(int(part) for part in match.groups()) if match else (0, 0, 0)


def nginx_config(prefix: Path, pki: Pki, ports: dict[str, tuple[int, int]]) -> str:
    """One TLS server block per app: ``ports`` maps the app to (https port, app port)."""
    servers = []
    for name, (https_port, app_port) in ports.items():
        servers.append(
            f"""
    server {{  # {name}
        listen 127.0.0.1:{https_port} ssl;
        server_name localhost;
        ssl_certificate {pki.cert("server")};
        ssl_certificate_key {pki.key("server")};
        ssl_client_certificate {pki.cert("ca")};
        ssl_verify_client optional_no_ca;
        client_max_body_size 10m;

        location / {{
            proxy_pass http://127.0.0.1:{app_port};
            proxy_bind {PROXY_ADDRESS};
            proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;
            proxy_set_header X-SSL-Client-Verify $ssl_client_verify;
        }}
    }}"""
        )
    # Running as root, nginx's workers would switch to an unprivileged user that cannot
    # write the temporary directories under pytest's private tmp dir.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return (
        f"""daemon off;
{user}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{
    worker_connections 128;
}}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
"""
        + "\n".join(servers)
        + "\n}\n"
    )


# ------------------------------------------------------------------------------ the stack


@dataclass
class App:
    """One app as the tests see it: through nginx, and straight at its own port."""

    name: str
    app_port: int
    https_port: int
    decision_log: Path
    pki: Pki
    expected: Counter[str] = field(default_factory=Counter)
    """Requests per path that reached the app, each of which must be logged exactly once."""

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def via_nginx(self, certificate: str | None) -> httpx.Client:
        """An HTTPS client presenting ``certificate`` (a Pki name, or None for none)."""
        context = ssl.create_default_context(cafile=str(self.pki.cert("ca")))
        if certificate is not None:
            context.load_cert_chain(self.pki.cert(certificate), self.pki.key(certificate))
        return httpx.Client(base_url=self.url, verify=context, timeout=30)

    def direct(self, source: str = CLIENT_ADDRESS) -> httpx.Client:
        """A plain HTTP client connecting straight to the app, from ``source``."""
        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.app_port}",
            transport=httpx.HTTPTransport(local_address=source),
            timeout=30,
        )

    def reached(self, path: str) -> None:
        """Note that a request for ``path`` reached the app (and so must be logged)."""
        self.expected[path] += 1

    def records(self) -> list[dict[str, Any]]:
        text = self.decision_log.read_text(encoding="utf-8") if self.decision_log.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def records_for(self, path: str) -> list[dict[str, Any]]:
        return [record for record in self.records() if record["path"] == path]

    def assert_log_complete(self) -> None:
        """Exactly one decision record for every request that reached the app, by path."""
        logged = Counter(record["path"] for record in self.records())
        assert logged == self.expected, f"{self.name}: decision log {logged} != {self.expected}"


@dataclass
class Stack:
    apps: dict[str, App]
    nginx_error_log: Path


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    binary = find_nginx()
    if binary is None:
        pytest.fail(NGINX_MISSING, pytrace=False)
    return binary


@pytest.fixture(scope="session")
def stack(
    nginx_binary: str, pki: Pki, policy_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The three apps in their servers, and nginx in front of them."""
    base = tmp_path_factory.mktemp("e2e-servers")
    with contextlib.ExitStack() as cleanup:
        apps: dict[str, App] = {}
        started: list[tuple[Process, int]] = []
        for name in APP_NAMES:
            port = free_port()
            decision_log = base / f"{name}-decisions.jsonl"
            argv, extra = _app_command(name, port)
            process = Process(
                name, argv, cwd=base, env=_server_env(policy_file, decision_log, **extra)
            )
            cleanup.callback(process.stop)
            started.append((process, port))
            apps[name] = App(name, port, free_port(), decision_log, pki)
        for process, port in started:  # started together, waited for together: faster
            process.wait_listening(port)

        prefix = base / "nginx"
        prefix.mkdir()
        config = prefix / "nginx.conf"
        config.write_text(
            nginx_config(prefix, pki, {a.name: (a.https_port, a.app_port) for a in apps.values()})
        )
        argv = [nginx_binary, "-p", str(prefix), "-c", str(config)]
        if nginx_version(nginx_binary) >= (1, 19, 5):  # -e: no early log to /var/log/nginx
            argv += ["-e", str(prefix / "error.log")]
        nginx = Process(
            "nginx",
            argv,
            cwd=prefix,
            env=dict(os.environ),
        )
        cleanup.callback(nginx.stop)
        for app in apps.values():
            nginx.wait_listening(app.https_port)
        yield Stack(apps, prefix / "error.log")


@pytest.fixture(params=APP_NAMES)
def app(request: pytest.FixtureRequest, stack: Stack) -> App:
    """Each test runs once for each app."""
    return stack.apps[request.param]
