"""The example apps in examples/ do what README.md's "Examples" section says.

Each app is run against two policies: the certificates and pinned policy that
examples/make_certs.py writes (what the apps enforce behind examples/nginx.conf), and the
default, policies/nginx-partner.yaml, with its pinned partner certificate. The certificate
comes as nginx forwards it (X-SSL-Client-Cert, percent-encoded PEM) from 127.0.0.1, the
address nginx connects from.

Django's settings are global to a process, and tests/test_integrations_django.py configures
its own, so the Django example runs in a subprocess.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from integration_support import PARTNER_PEM, nginx_header

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
POLICY_ENV = "POLICYENGINE_POLICY"
UNTRUSTED_PEER = "192.0.2.10"
"""Not among either policy's trusted_proxies: its certificate header is not believed."""


@dataclass(frozen=True)
class Case:
    """A policy for the apps to enforce (None: their default), and a certificate it allows."""

    policy: Path | None
    pem: bytes
    subject: str

    @property
    def header(self) -> str:
        return nginx_header(self.pem)


@dataclass(frozen=True)
class Seen:
    status: int
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # Flask finds its root path through sys.modules
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Case:
    """What `python examples/make_certs.py` writes, in a temporary folder."""
    make_certs = _load(EXAMPLES / "make_certs.py", "example_make_certs")
    out = tmp_path_factory.mktemp("example-certs")
    written: dict[str, Path] = make_certs.make_certs(out)
    assert {p.name for p in out.iterdir()} >= {
        "ca.pem",
        "server.pem",
        "server.key",
        "client.pem",
        "client.key",
        "nginx-example.yaml",
        "nginx",
    }
    assert oct(written["client_key"].stat().st_mode & 0o777) == "0o600"
    return Case(
        written["policy"],
        written["client"].read_bytes(),
        "O=Example Partner Ltd,CN=orders-client",
    )


@pytest.fixture(params=["generated", "default"])
def case(request: pytest.FixtureRequest, generated: Case) -> Case:
    if request.param == "generated":
        return generated
    return Case(None, PARTNER_PEM, "O=Microsoft Corp,CN=nildevecc")


@pytest.fixture
def policy_env(case: Case, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if case.policy is None:
        monkeypatch.delenv(POLICY_ENV, raising=False)
    else:
        monkeypatch.setenv(POLICY_ENV, str(case.policy))
    yield


def _assert_behaviour(seen: dict[str, Seen], case: Case, policy_name: str) -> None:
    orders = seen["orders"]
    assert orders.status == 200, orders.body
    assert orders.json() == {"rule": "partner", "subject": case.subject}

    for refused in ("anonymous", "untrusted_peer"):
        assert seen[refused].status == 403, seen[refused].body
        assert "missing_certificate" in seen[refused].body
        assert "A client certificate is required." in seen[refused].body
        assert policy_name not in seen[refused].body  # the decision log has the details

    health = seen["health"]
    assert health.status == 200, health.body
    assert health.json() == {"status": "ok"}


def _policy_name(case: Case) -> str:
    return "nginx-partner" if case.policy is None else "nginx-example"


@pytest.mark.usefixtures("policy_env")
def test_flask_example(case: Case) -> None:
    module = _load(EXAMPLES / "flask_app.py", "example_flask_app")
    try:
        client = module.app.test_client()
        trusted = {"REMOTE_ADDR": "127.0.0.1"}
        cert = {"X-SSL-Client-Cert": case.header}
        responses = {
            "orders": client.get("/orders", headers=cert, environ_base=trusted),
            "anonymous": client.get("/orders", environ_base=trusted),
            "untrusted_peer": client.get(
                "/orders", headers=cert, environ_base={"REMOTE_ADDR": UNTRUSTED_PEER}
            ),
            "health": client.get("/health", environ_base=trusted),
        }
        seen = {k: Seen(r.status_code, r.get_data(as_text=True)) for k, r in responses.items()}
    finally:
        del sys.modules["example_flask_app"]
    _assert_behaviour(seen, case, _policy_name(case))


async def _asgi_requests(app: Any, header: str) -> dict[str, Seen]:
    """/orders with and without the certificate from 127.0.0.1, with it from an untrusted
    peer, and /health, through httpx's ASGI transport."""

    def client(peer: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(peer, 1234))
        return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")

    cert = {"X-SSL-Client-Cert": header}
    async with client("127.0.0.1") as trusted, client(UNTRUSTED_PEER) as untrusted:
        responses = {
            "orders": await trusted.get("/orders", headers=cert),
            "anonymous": await trusted.get("/orders"),
            "untrusted_peer": await untrusted.get("/orders", headers=cert),
            "health": await trusted.get("/health"),
        }
    return {k: Seen(r.status_code, r.text) for k, r in responses.items()}


@pytest.mark.usefixtures("policy_env")
def test_fastapi_example(case: Case) -> None:
    module = _load(EXAMPLES / "fastapi_app.py", "example_fastapi_app")
    try:
        seen = asyncio.run(_asgi_requests(module.app, case.header))
    finally:
        del sys.modules["example_fastapi_app"]
    _assert_behaviour(seen, case, _policy_name(case))


DJANGO_SCRIPT = textwrap.dedent(
    """\
    import asyncio, json, os, sys

    import django

    os.environ["DJANGO_SETTINGS_MODULE"] = "django_project.settings"
    django.setup()

    from django.test import Client
    from django.test.utils import setup_test_environment

    from django_project.asgi import application
    from test_examples import UNTRUSTED_PEER, _asgi_requests

    setup_test_environment()
    header = sys.argv[1]
    client = Client(REMOTE_ADDR="127.0.0.1")
    responses = {
        "orders": client.get("/orders", HTTP_X_SSL_CLIENT_CERT=header),
        "anonymous": client.get("/orders"),
        "untrusted_peer": client.get(
            "/orders", HTTP_X_SSL_CLIENT_CERT=header, REMOTE_ADDR=UNTRUSTED_PEER
        ),
        "health": client.get("/health"),
    }
    wsgi = {k: [r.status_code, r.content.decode()] for k, r in responses.items()}
    seen = asyncio.run(_asgi_requests(application, header))
    asgi = {k: [s.status, s.body] for k, s in seen.items()}
    print(json.dumps({"wsgi": wsgi, "asgi": asgi}))
    """
)


def test_django_example(case: Case) -> None:
    """The WSGI application through Django's test client, and the ASGI application through
    httpx, in a process of their own."""
    env = {k: v for k, v in os.environ.items() if k not in (POLICY_ENV, "DJANGO_SETTINGS_MODULE")}
    if case.policy is not None:
        env[POLICY_ENV] = str(case.policy)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(EXAMPLES), str(ROOT / "tests"), env.get("PYTHONPATH", "")) if p
    )
    result = subprocess.run(
        [sys.executable, "-c", DJANGO_SCRIPT, case.header],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout.strip().splitlines()[-1])
    for interface in ("wsgi", "asgi"):
        seen = {k: Seen(status, body) for k, (status, body) in output[interface].items()}
        _assert_behaviour(seen, case, _policy_name(case))
