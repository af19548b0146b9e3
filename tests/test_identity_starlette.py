"""The identity in Starlette and FastAPI: ``request.user``, ``@requires``, ``Depends`` and
``Security``, in real apps with real certificates.

Starlette: ``CertificateBackend`` under Starlette's own ``AuthenticationMiddleware``,
inside the policyengine ASGI middleware. FastAPI: ``certificate_identity`` and
``CertificatePolicy.identity`` as dependencies, with ``Security(..., scopes=[...])``.
Every path: a role that holds, one that does not, no principal, no certificate, an excluded
path, and no decision at all (the middleware missing, or in the wrong order): fail closed.
The FastAPI example runs under the test client and under uvicorn.
"""

# No `from __future__ import annotations`: FastAPI evaluates the annotations of the routes
# defined inside the functions below, with their locals out of reach.
import asyncio
import importlib.util
import json
import logging
import os
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Security
from integration_support import azure_header, nginx_header
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from policyengine import Identity, load_policy
from policyengine.integrations import REFUSALS, Decided, refusal_message
from policyengine.integrations import fastapi as fastapi_integration
from policyengine.integrations.asgi import PolicyMiddleware
from policyengine.integrations.fastapi import CertificatePolicy, certificate_identity
from policyengine.integrations.starlette import (
    CertificateBackend,
    CertificateUser,
    connection_identity,
    missing_roles,
)
from policyengine.testing import IssuedCertificate, make_certificate

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette 1.x asks for httpx2 for its TestClient
    from starlette.testclient import TestClient

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TRUSTED_PEER = "127.0.0.1"
UNTRUSTED_PEER = "192.0.2.10"

POLICY = """\
policy: roles-{mode}
mode: {mode}
exclusion_paths: /health
silence: [trusted-anywhere]
certificate:
  source: {source}
{proxies}
trust:
  anchors: [ca.pem]
identity:
  principal: [san.uri, san.dns, subject.CN]
  groups: [subject.O, subject.OU]
  roles:
    ops: trusted and "Operations" in subject.OU
    reader: trusted
    anyone: "true"
rules:
  - id: trusted-clients
    effect: allow
    when: trusted
  - id: public
    effect: allow
    when: request.path == "/public" and not present
"""
"""Trusted certificates are allowed; ``ops`` needs the Operations OU as well. ``anyone``
holds on every request the rules see, with a principal or without: on ``/public`` too,
which is open to a request without a certificate (in the optional mode)."""


class Pki:
    """A CA, the policies that trust it, and certificates it issued (valid at the wall
    clock: these requests are decided at the wall clock)."""

    def __init__(self, folder: Path) -> None:
        self.ca = make_certificate({"CN": "Roles Test CA", "O": "Contoso Ltd"}, ca=True)
        (folder / "ca.pem").write_bytes(self.ca.pem)
        self.folder = folder
        self.ops = self.issue([("CN", "ops-console"), ("O", "Contoso Ltd"), ("OU", "Operations")])
        self.reader = self.issue({"CN": "report-reader", "O": "Contoso Ltd"})
        self.service = self.issue({"CN": "ignored-cn", "O": "Contoso Ltd"}, dns=["svc.contoso.com"])
        self.nameless = self.issue([("O", "Contoso Ltd"), ("OU", "Operations")])
        self.two_cns = self.issue([("CN", "alice"), ("CN", "bob"), ("OU", "Operations")])
        self.outsider = make_certificate([("CN", "ops-console"), ("OU", "Operations")])

    def issue(self, subject: Any, **names: Any) -> IssuedCertificate:
        return make_certificate(subject, issuer=self.ca, **names)

    def policy(self, mode: str = "required", source: str = "azure") -> Path:
        proxies = "  trusted_proxies: [127.0.0.1]" if source == "nginx" else ""
        path = self.folder / f"roles-{mode}-{source}.yaml"
        path.write_text(POLICY.format(mode=mode, source=source, proxies=proxies))
        return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("roles-pki"))


def cert_header(certificate: IssuedCertificate) -> dict[str, str]:
    return {"X-ARR-ClientCert": azure_header(certificate.pem)}


def client(app: Any, peer: str = "testclient") -> TestClient:
    return TestClient(app, client=(peer, 50000))


# ------------------------------------------------------------------------------ Starlette


async def whoami(request: Request) -> JSONResponse:
    user = request.user
    body: dict[str, Any] = {
        "authenticated": user.is_authenticated,
        "display_name": user.display_name,
        "identity": user.identity,
        "scopes": request.auth.scopes,
    }
    if isinstance(user, CertificateUser):
        decision = request.state.policyengine_decision
        body["principal"] = user.principal
        body["groups"] = list(user.groups)
        body["roles"] = list(user.roles)
        body["is_the_decisions"] = user.certificate_identity is decision.identity
    return JSONResponse(body)


@requires("ops")
async def ops(request: Request) -> JSONResponse:
    return JSONResponse({"ops": request.user.display_name})


@requires(["ops", "reader"])
async def ops_and_reader(request: Request) -> JSONResponse:
    return JSONResponse({"both": request.user.display_name})


@requires("ops")
async def ops_socket(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"ops": websocket.user.display_name})
    await websocket.close()


ROUTES = [
    Route("/whoami", whoami),
    Route("/health", whoami),
    Route("/public", whoami),
    Route("/ops", ops),
    Route("/ops-and-reader", ops_and_reader),
    WebSocketRoute("/ops-socket", ops_socket),
]


def starlette_app(policy: Path | None, *, policy_outside: bool = True) -> Starlette:
    """Starlette with the policy middleware outside the authentication middleware (as
    documented), inside it (wrong), or missing (``policy=None``)."""
    auth = Middleware(AuthenticationMiddleware, backend=CertificateBackend())
    if policy is None:
        return Starlette(routes=ROUTES, middleware=[auth])
    guard = Middleware(PolicyMiddleware, policy=policy)
    stack = [guard, auth] if policy_outside else [auth, guard]
    return Starlette(routes=ROUTES, middleware=stack)


def test_a_trusted_certificate_is_the_user_and_its_roles_are_the_scopes(pki: Pki) -> None:
    web = client(starlette_app(pki.policy()))
    seen = web.get("/whoami", headers=cert_header(pki.ops))
    assert seen.status_code == 200
    assert seen.json() == {
        "authenticated": True,
        "display_name": "ops-console",
        "identity": "ops-console",
        "scopes": ["ops", "reader", "anyone"],
        "principal": "ops-console",
        "groups": ["Contoso Ltd", "Operations"],
        "roles": ["ops", "reader", "anyone"],
        "is_the_decisions": True,
    }
    service = web.get("/whoami", headers=cert_header(pki.service)).json()
    assert (service["identity"], service["scopes"]) == ("svc.contoso.com", ["reader", "anyone"])


def test_requires_passes_with_the_role_and_refuses_without_it(pki: Pki) -> None:
    web = client(starlette_app(pki.policy()))
    assert web.get("/ops", headers=cert_header(pki.ops)).json() == {"ops": "ops-console"}
    assert web.get("/ops-and-reader", headers=cert_header(pki.ops)).status_code == 200
    reader = web.get("/ops", headers=cert_header(pki.reader))
    assert reader.status_code == 403  # Starlette's own refusal: the policy allowed the request
    assert web.get("/ops-and-reader", headers=cert_header(pki.reader)).status_code == 403
    assert web.get("/whoami", headers=cert_header(pki.reader)).json()["scopes"] == [
        "reader",
        "anyone",
    ]


def test_a_websocket_gets_the_user_and_requires_its_role(pki: Pki) -> None:
    web = client(starlette_app(pki.policy()))
    with web.websocket_connect("/ops-socket", headers=cert_header(pki.ops)) as socket_:
        assert socket_.receive_json() == {"ops": "ops-console"}
    with (
        pytest.raises(WebSocketDisconnect),
        web.websocket_connect("/ops-socket", headers=cert_header(pki.reader)) as socket_,
    ):
        socket_.receive_json()


UNAUTHENTICATED = {"authenticated": False, "display_name": "", "identity": "", "scopes": []}


def test_no_principal_is_unauthenticated_even_with_roles_that_hold(pki: Pki) -> None:
    """Allowed (trusted), roles hold, but the certificate names no one (no SAN and no CN;
    two CNs): no user, and no scopes either."""
    web = client(starlette_app(pki.policy()))
    for certificate in (pki.nameless, pki.two_cns):
        decision = load_policy(pki.policy()).evaluate(certificate.pem)
        assert decision.allowed and decision.identity is not None
        assert decision.identity.principal is None and "ops" in decision.identity.roles
        assert web.get("/whoami", headers=cert_header(certificate)).json() == UNAUTHENTICATED
        assert web.get("/ops", headers=cert_header(certificate)).status_code == 403


def test_no_certificate_and_an_excluded_path_are_unauthenticated(pki: Pki) -> None:
    optional = client(starlette_app(pki.policy("optional")))
    # optional mode, no certificate: the rules run, and the "anyone" role holds
    public = load_policy(pki.policy("optional")).evaluate(None, path="/public")
    assert public.allowed and public.identity is not None
    assert public.identity.roles == ("anyone",)
    assert optional.get("/public").json() == UNAUTHENTICATED
    assert optional.get("/whoami").status_code == 403  # no rule allows it
    assert optional.get("/health").json() == UNAUTHENTICATED  # excluded: no rules ran
    required = client(starlette_app(pki.policy()))
    assert required.get("/health", headers=cert_header(pki.ops)).json() == UNAUTHENTICATED
    assert required.get("/whoami").status_code == 403  # the policy middleware refused


def test_nothing_a_client_sends_authenticates_it(pki: Pki) -> None:
    """Identity headers, a certificate header from a peer the policy does not believe,
    and a certificate from another CA: no user."""
    app = starlette_app(pki.policy("optional", source="nginx"))
    forged = {
        "X-Client-Principal": "ops-console",
        "X-Client-Roles": "ops",
        "X-SSL-Client-Cert": nginx_header(pki.ops.pem),
    }
    outsider = {"X-SSL-Client-Cert": nginx_header(pki.outsider.pem)}
    believed = {"X-SSL-Client-Cert": nginx_header(pki.ops.pem)}
    assert client(app, TRUSTED_PEER).get("/whoami", headers=believed).json()["scopes"] == [
        "ops",
        "reader",
        "anyone",
    ]
    untrusted = client(app, UNTRUSTED_PEER)
    assert untrusted.get("/whoami", headers=forged).status_code == 403  # no certificate
    assert untrusted.get("/health", headers=forged).json() == UNAUTHENTICATED
    trusted = client(app, TRUSTED_PEER)
    assert trusted.get("/whoami", headers=outsider).status_code == 403  # not trusted
    headers_only = {k: v for k, v in forged.items() if k.startswith("X-Client")}
    assert trusted.get("/health", headers=headers_only).json() == UNAUTHENTICATED


def test_without_a_decision_every_request_is_unauthenticated_and_a_warning_says_why(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    for app in (starlette_app(None), starlette_app(pki.policy(), policy_outside=False)):
        web = client(app)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="policyengine"):
            assert web.get("/health", headers=cert_header(pki.ops)).json() == UNAUTHENTICATED
            assert web.get("/ops", headers=cert_header(pki.ops)).status_code == 403
        warned = [r.getMessage() for r in caplog.records if r.name == "policyengine"]
        assert len(warned) == 1  # once per backend, not once per request
        assert "must be outside (listed before) Starlette's AuthenticationMiddleware" in warned[0]


def test_connection_identity_says_why_there_is_none(pki: Pki) -> None:
    policy = load_policy(pki.policy())
    excluded = policy.evaluate(None, path="/health")
    refused = policy.evaluate(pki.outsider.pem)
    nameless = policy.evaluate(pki.nameless.pem)
    allowed = policy.evaluate(pki.ops.pem)
    key = "policyengine.decided"
    assert connection_identity({}) == "not_decided"
    assert connection_identity({key: allowed}) == "not_decided"  # a Decision is not a Decided
    assert connection_identity({key: Decided(refused, policy)}) == "no_matching_rule"
    assert connection_identity({key: Decided(excluded, policy)}) == "missing_certificate"
    assert connection_identity({key: Decided(nameless, policy)}) == "no_principal"
    found = connection_identity({key: Decided(allowed, policy)})
    assert isinstance(found, Identity) and found is allowed.identity
    assert missing_roles(found, ["reader", "root", "ops", "admin"]) == ("root", "admin")
    assert refusal_message("no_principal") == REFUSALS["no_principal"]
    assert refusal_message("denied_by_rule") == REFUSALS["denied_by_rule"]
    with pytest.raises(ValueError, match="principal"):
        assert nameless.identity is not None
        CertificateUser(nameless.identity)
    assert CertificateUser(found) == CertificateUser(found)
    assert repr(CertificateUser(found)) == (
        "CertificateUser('ops-console', groups=('Contoso Ltd', 'Operations'), "
        "roles=('ops', 'reader', 'anyone'))"
    )


def _modules_after(statement: str, *, block: str = "") -> set[str]:
    blocker = f"import sys; sys.modules[{block!r}] = None\n" if block else ""
    loaded = "sorted(m for m, v in sys.modules.items() if v is not None)"
    probe = f"{blocker}import json, sys\n{statement}\nprint(json.dumps({loaded}))\n"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


def test_starlette_needs_no_fastapi_and_the_asgi_middleware_no_framework() -> None:
    loaded = _modules_after("import policyengine.integrations.starlette", block="fastapi")
    assert "starlette.authentication" in loaded
    assert not any(m == "fastapi" or m.startswith("fastapi.") for m in loaded)
    plain = _modules_after("import policyengine.integrations.asgi")
    assert not any(m.split(".")[0] in ("starlette", "fastapi") for m in plain)


# -------------------------------------------------------------------------------- FastAPI


def fastapi_app(policy: Path | None, partner: CertificatePolicy | None = None) -> FastAPI:
    """Routes taking the identity through ``certificate_identity`` (the middleware's
    decision) or, given ``partner``, through ``partner.identity`` (its own)."""
    dependency = certificate_identity if partner is None else partner.identity
    app = FastAPI()

    @app.get("/me")
    async def me(identity: Annotated[Identity, Depends(dependency)]) -> dict[str, Any]:
        return identity.to_dict()

    @app.get("/ops")
    async def ops_route(
        identity: Annotated[Identity, Security(dependency, scopes=["ops"])],
    ) -> dict[str, Any]:
        return {"ops": identity.principal}

    @app.get("/health")
    async def health(identity: Annotated[Identity, Depends(dependency)]) -> dict[str, Any]:
        return identity.to_dict()

    @app.get("/public")
    async def public(identity: Annotated[Identity, Depends(dependency)]) -> dict[str, Any]:
        return identity.to_dict()

    readers = APIRouter(dependencies=[Security(dependency, scopes=["reader"])])

    @readers.get("/reports", dependencies=[Security(dependency, scopes=["ops"])])
    async def reports() -> dict[str, str]:
        return {"reports": "yes"}

    @readers.get("/catalog")
    async def catalog() -> dict[str, str]:
        return {"catalog": "yes"}

    app.include_router(readers)
    if policy is not None:
        app.add_middleware(PolicyMiddleware, policy=policy)
    return app


def refusal(reason: str) -> dict[str, Any]:
    return {"detail": {"reason": reason, "message": refusal_message(reason)}}


def test_the_dependency_returns_the_identity_of_the_middlewares_decision(pki: Pki) -> None:
    web = client(fastapi_app(pki.policy()))
    seen = web.get("/me", headers=cert_header(pki.service))
    assert seen.status_code == 200
    assert seen.json() == {
        "principal": "svc.contoso.com",
        "principal_from": "san.dns",
        "groups": ["Contoso Ltd"],
        "groups_from": ["subject.O"],
        "roles": ["reader", "anyone"],
    }


def test_security_scopes_require_every_role(pki: Pki) -> None:
    web = client(fastapi_app(pki.policy()))
    ops_cert, reader_cert = cert_header(pki.ops), cert_header(pki.reader)
    assert web.get("/ops", headers=ops_cert).json() == {"ops": "ops-console"}
    refused = web.get("/ops", headers=reader_cert)
    assert refused.status_code == 403
    assert refused.json() == refusal("missing_role")
    assert "ops" not in refused.text  # the client is not told which role
    # the router asks reader, the route adds ops: both are needed
    assert web.get("/reports", headers=ops_cert).json() == {"reports": "yes"}
    assert web.get("/reports", headers=reader_cert).json() == refusal("missing_role")
    assert web.get("/catalog", headers=reader_cert).json() == {"catalog": "yes"}


def test_the_dependency_refuses_without_a_principal_or_a_certificate(pki: Pki) -> None:
    web = client(fastapi_app(pki.policy()))
    for certificate in (pki.nameless, pki.two_cns):
        nameless = web.get("/me", headers=cert_header(certificate))
        assert (nameless.status_code, nameless.json()) == (403, refusal("no_principal"))
        assert web.get("/ops", headers=cert_header(certificate)).json() == refusal("no_principal")
    excluded = web.get("/health", headers=cert_header(pki.ops))
    assert (excluded.status_code, excluded.json()) == (403, refusal("missing_certificate"))
    optional = client(fastapi_app(pki.policy("optional")))
    public = optional.get("/public")  # allowed without a certificate, and "anyone" holds
    assert (public.status_code, public.json()) == (403, refusal("missing_certificate"))
    refused = web.get("/me", headers={"Accept": "application/json"})  # the middleware's own
    assert refused.json()["reason"] == "missing_certificate"


def test_without_a_decision_the_dependency_refuses(
    pki: Pki, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fastapi_integration, "_warned", set())  # as in a new process
    web = client(fastapi_app(None))
    with caplog.at_level(logging.WARNING, logger="policyengine"):
        for path in ("/me", "/ops", "/catalog"):
            seen = web.get(path, headers=cert_header(pki.ops))
            assert (seen.status_code, seen.json()) == (403, refusal("not_decided"))
    warned = [r.getMessage() for r in caplog.records if r.name == "policyengine"]
    assert len(warned) == 1  # once per process, not once per request
    assert "add the policyengine ASGI middleware" in warned[0]
    assert refusal("not_decided")["detail"]["message"] == "The request could not be authorized."


def test_certificate_policy_identity_decides_itself_and_refuses_with_its_reason(
    pki: Pki,
) -> None:
    web = client(fastapi_app(None, CertificatePolicy(pki.policy(), log=None)))
    assert web.get("/me", headers=cert_header(pki.ops)).json()["principal"] == "ops-console"
    assert web.get("/ops", headers=cert_header(pki.ops)).json() == {"ops": "ops-console"}
    assert web.get("/ops", headers=cert_header(pki.reader)).json() == refusal("missing_role")
    outsider = web.get("/me", headers=cert_header(pki.outsider))
    assert outsider.status_code == 403
    assert outsider.json() == {
        "detail": {"reason": "no_matching_rule", "message": REFUSALS["no_matching_rule"]}
    }
    assert web.get("/me").json()["detail"]["reason"] == "missing_certificate"


def test_certificate_policy_identity_reuses_the_middlewares_decision(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    policy = load_policy(pki.policy())
    app = fastapi_app(None, CertificatePolicy(policy))
    app.add_middleware(PolicyMiddleware, policy=policy)
    with caplog.at_level(logging.INFO, logger="policyengine.decisions"):
        assert client(app).get("/reports", headers=cert_header(pki.ops)).status_code == 200
    assert len([r for r in caplog.records if r.name == "policyengine.decisions"]) == 1


def test_the_openapi_schema_still_builds(pki: Pki) -> None:
    schema = fastapi_app(pki.policy()).openapi()
    assert set(schema["paths"]) == {"/me", "/ops", "/health", "/public", "/reports", "/catalog"}
    assert "security_scopes" not in json.dumps(schema)


# ------------------------------------------------------------------------------- the example


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "example_fastapi_identity", EXAMPLES / "fastapi_app.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _example_requests(base: str, transport: httpx.AsyncBaseTransport | None, pki: Pki) -> Any:
    async def run() -> dict[str, httpx.Response]:
        async with httpx.AsyncClient(transport=transport, base_url=base) as web:
            ops_cert = {"X-SSL-Client-Cert": nginx_header(pki.ops.pem)}
            reader_cert = {"X-SSL-Client-Cert": nginx_header(pki.reader.pem)}
            nameless = {"X-SSL-Client-Cert": nginx_header(pki.nameless.pem)}
            return {
                "whoami": await web.get("/whoami", headers=ops_cert),
                "admin": await web.get("/admin", headers=ops_cert),
                "admin_reader": await web.get("/admin", headers=reader_cert),
                "whoami_nameless": await web.get("/whoami", headers=nameless),
                "anonymous": await web.get("/whoami"),
                "health": await web.get("/health"),
            }

    return asyncio.run(run())


def _assert_example(seen: dict[str, httpx.Response]) -> None:
    assert seen["whoami"].json() == {
        "user": "ops-console",
        "principal": "ops-console",
        "principal_from": "subject.CN",
        "groups": ["Contoso Ltd", "Operations"],
        "roles": ["ops", "reader", "anyone"],
    }
    assert seen["admin"].json() == {"admin": "ops-console"}
    assert (seen["admin_reader"].status_code, seen["admin_reader"].json()) == (
        403,
        refusal("missing_role"),
    )
    assert seen["whoami_nameless"].json() == refusal("no_principal")
    assert seen["anonymous"].status_code == 403
    assert "missing_certificate" in seen["anonymous"].text
    assert seen["health"].json() == {"status": "ok"}


@pytest.fixture
def example_policy(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    policy = pki.policy(source="nginx")
    monkeypatch.setenv("POLICYENGINE_POLICY", str(policy))
    yield policy


def test_the_fastapi_example_shows_the_identity(example_policy: Path, pki: Pki) -> None:
    app = _load_example().app
    transport = httpx.ASGITransport(app=app, client=(TRUSTED_PEER, 1234))
    _assert_example(_example_requests("http://127.0.0.1", transport, pki))


def test_the_fastapi_example_with_its_shipped_policy_holds_no_admin_role(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("POLICYENGINE_POLICY", raising=False)
    app = _load_example().app
    partner = {
        "X-SSL-Client-Cert": nginx_header((ROOT / "policies/certs/partner.pem").read_bytes())
    }
    web = client(app, TRUSTED_PEER)
    assert web.get("/whoami", headers=partner).json() == {
        "user": "nildevecc",
        "principal": "nildevecc",
        "principal_from": "subject.CN",
        "groups": [],
        "roles": [],
    }
    assert web.get("/admin", headers=partner).json() == refusal("missing_role")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_the_fastapi_example_under_uvicorn(example_policy: Path, pki: Pki) -> None:
    port = _free_port()
    env = {**os.environ, "POLICYENGINE_POLICY": str(example_policy), "PYTHONUNBUFFERED": "1"}
    command = [
        *(sys.executable, "-m", "uvicorn", "fastapi_app:app", "--app-dir", str(EXAMPLES)),
        *("--host", "127.0.0.1", "--port", str(port), "--no-proxy-headers"),
        *("--log-level", "warning"),
    ]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert server.poll() is None, server.communicate()[1]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.1)
        _assert_example(_example_requests(f"http://127.0.0.1:{port}", None, pki))
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
