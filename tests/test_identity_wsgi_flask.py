"""The identity in the WSGI and ASGI middleware and in Flask: ``REMOTE_USER``,
``environ["policyengine.identity"]``, the ASGI scope and state, ``current_identity`` and
``require_role``, in real applications (a plain WSGI app under werkzeug's test client, a
Starlette app under httpx's ASGITransport and Starlette's TestClient, Flask apps under
Flask's test client) with real certificates from a CA of the test's own."""

from __future__ import annotations

import asyncio
import json
import logging
import textwrap
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flask
import httpx
import pytest
from integration_support import PARTNER_PEM, nginx_header
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from werkzeug.test import Client

from policyengine import Identity, load_policy
from policyengine.integrations import REFUSALS
from policyengine.integrations import asgi as asgi_integration
from policyengine.integrations import wsgi as wsgi_integration
from policyengine.integrations.flask import (
    PolicyEngine,
    current_identity,
    get_identity,
    require_certificate,
    require_role,
)
from policyengine.integrations.runtime import DECISION_LOGGER
from policyengine.testing import IssuedCertificate, make_certificate

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette 1.x asks for httpx2 for its TestClient
    from starlette.testclient import TestClient

JSON = {"Accept": "application/json"}
FLASK_LOG = "policyengine.integrations.flask"


@dataclass(frozen=True)
class Staff:
    """A staff CA, the policy trusting it, and certificates: issued ones and a forgery. The
    policy lints clean: every rule that admits a certificate verifies it, so the principal
    is never what an unverified certificate says."""

    policy: Path
    alice: IssuedCertificate  # CN=alice, OU=Operations: roles ops and reader
    bob: IssuedCertificate  # CN=bob, OU=Sales: role reader
    service: IssuedCertificate  # a DNS SAN: the principal is the SAN
    two_cns: IssuedCertificate  # two CNs and no SAN: no principal, still allowed
    mallory: IssuedCertificate  # self-signed copy of alice's name: not trusted


STAFF_POLICY = """\
policy: staff
mode: optional
exclusion_paths: /health
certificate:
  source: nginx
  trusted_proxies: [127.0.0.1]
trust:
  anchors: [ca.pem]
identity:
  principal: [san.dns, subject.CN]
  groups: [subject.OU]
  roles:
    ops: '"Operations" in subject.OU and trusted'
    reader: trusted
rules:
  - id: staff
    effect: allow
    when: trusted
  - id: public
    effect: allow
    when: request.path startswith "/public" and not present
"""


@pytest.fixture(scope="module")
def staff(tmp_path_factory: pytest.TempPathFactory) -> Staff:
    folder = tmp_path_factory.mktemp("staff")
    ca = make_certificate({"CN": "Staff CA", "O": "Contoso"}, ca=True)
    (folder / "ca.pem").write_bytes(ca.pem)
    (folder / "staff.yaml").write_text(STAFF_POLICY)
    return Staff(
        policy=folder / "staff.yaml",
        alice=make_certificate({"CN": "alice", "OU": "Operations"}, issuer=ca),
        bob=make_certificate({"CN": "bob", "OU": "Sales"}, issuer=ca),
        service=make_certificate({"CN": "svc"}, issuer=ca, dns=["svc.contoso.com"]),
        two_cns=make_certificate((("CN", "one"), ("CN", "two")), issuer=ca),
        mallory=make_certificate({"CN": "alice", "OU": "Operations"}),
    )


def cert(certificate: IssuedCertificate) -> dict[str, str]:
    """The certificate as nginx forwards it (from 127.0.0.1, the policy's trusted proxy)."""
    return {"X-SSL-Client-Cert": nginx_header(certificate.pem)}


# -- WSGI ---------------------------------------------------------------------------------


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Reports what the middleware left in the environ."""
    identity = environ[wsgi_integration.IDENTITY_KEY]
    decision = environ[wsgi_integration.ENVIRON_KEY]
    payload = {
        "remote_user": environ.get("REMOTE_USER", "<unset>"),
        "identity": identity.to_dict() if identity is not None else None,
        "same": identity is decision.identity,
    }
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(payload).encode()]


class Outer:
    """A WSGI server around the middleware: sets the peer (and what a server that
    authenticated the client itself would set), and keeps the environ it handed in."""

    def __init__(self, app: Any, **server: str) -> None:
        self.app = app
        self.server = server
        self.environ: dict[str, Any] = {}

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        environ.setdefault("REMOTE_ADDR", "127.0.0.1")
        environ.update(self.server)
        self.environ = environ
        return self.app(environ, start_response)  # type: ignore[no-any-return]


def wsgi(staff: Staff, **options: Any) -> tuple[Client, Outer]:
    server_keys = {k: options.pop(k) for k in list(options) if k.isupper()}
    outer = Outer(wsgi_integration.PolicyMiddleware(wsgi_app, staff.policy, **options))
    outer.server.update(server_keys)
    return Client(outer), outer


def test_remote_user_is_the_principal_of_an_allowed_decision(staff: Staff) -> None:
    client, _ = wsgi(staff, remote_user=True)
    alice = client.get("/orders", headers=cert(staff.alice)).json
    assert alice is not None and alice["remote_user"] == "alice"
    assert alice["identity"] == {
        "principal": "alice",
        "principal_from": "subject.CN",
        "groups": ["Operations"],
        "groups_from": ["subject.OU"],
        "roles": ["ops", "reader"],
    }
    assert alice["same"] is True  # the decision's own identity, not a copy
    service = client.get("/orders", headers=cert(staff.service)).json
    assert service is not None
    assert (service["remote_user"], service["identity"]["principal_from"]) == (
        "svc.contoso.com",
        "san.dns",
    )


def test_no_principal_sets_no_remote_user(staff: Staff) -> None:
    client, _ = wsgi(staff, remote_user=True)
    two = client.get("/orders", headers=cert(staff.two_cns)).json
    assert two is not None
    assert two["remote_user"] == "<unset>"
    assert two["identity"]["principal"] is None and two["identity"]["roles"] == ["reader"]
    # optional mode, no certificate, a rule that allows it: an identity naming nobody
    anonymous = client.get("/public/docs").json
    assert anonymous is not None and anonymous["remote_user"] == "<unset>"
    assert anonymous["identity"]["principal"] is None
    # an excluded path: the rules did not run, there is no identity at all
    health = client.get("/health").json
    assert health == {"remote_user": "<unset>", "identity": None, "same": True}


def test_a_remote_user_from_elsewhere_never_passes_when_the_middleware_owns_it(
    staff: Staff,
) -> None:
    client, _ = wsgi(staff, remote_user=True, REMOTE_USER="admin")
    for path, headers in (("/public/x", {}), ("/health", {}), ("/orders", cert(staff.two_cns))):
        seen = client.get(path, headers=headers).json
        assert seen is not None and seen["remote_user"] == "<unset>", path
    alice = client.get("/orders", headers=cert(staff.alice)).json
    assert alice is not None and alice["remote_user"] == "alice"


def test_a_client_header_cannot_set_remote_user(staff: Staff) -> None:
    client, outer = wsgi(staff, remote_user=True)
    seen = client.get("/public/x", headers={"Remote-User": "admin"}).json
    assert seen is not None and seen["remote_user"] == "<unset>"
    assert outer.environ["HTTP_REMOTE_USER"] == "admin"  # a header stays a header


def test_a_refused_request_names_nobody(staff: Staff) -> None:
    client, outer = wsgi(staff, remote_user=True, REMOTE_USER="alice")
    refused = client.get("/orders", headers={**cert(staff.mallory), **JSON})
    assert refused.status_code == 403
    assert refused.json is not None and refused.json["reason"] == "no_matching_rule"
    # what a server's access log (or an outer middleware) sees after the refusal
    assert "REMOTE_USER" not in outer.environ
    assert outer.environ[wsgi_integration.IDENTITY_KEY] is None
    decision = outer.environ[wsgi_integration.ENVIRON_KEY]
    assert decision.identity is not None and decision.identity.principal == "alice"


def test_remote_user_is_left_alone_by_default(staff: Staff) -> None:
    client, _ = wsgi(staff, REMOTE_USER="apache-user")
    alice = client.get("/orders", headers=cert(staff.alice)).json
    assert alice is not None and alice["remote_user"] == "apache-user"
    assert alice["identity"]["principal"] == "alice"  # the identity is always there
    bare, _ = wsgi(staff)
    seen = bare.get("/orders", headers=cert(staff.alice)).json
    assert seen is not None and seen["remote_user"] == "<unset>"


def test_remote_user_option_is_checked(staff: Staff) -> None:
    with pytest.raises(TypeError, match="remote_user must be True or False"):
        wsgi_integration.PolicyMiddleware(wsgi_app, staff.policy, remote_user="yes")  # type: ignore[arg-type]


def test_stacked_middleware_decide_once_and_the_inner_owns_remote_user(
    staff: Staff, caplog: pytest.LogCaptureFixture
) -> None:
    policy = load_policy(staff.policy)
    inner = wsgi_integration.PolicyMiddleware(wsgi_app, policy, remote_user=True)
    outer = Outer(wsgi_integration.PolicyMiddleware(inner, policy), REMOTE_USER="x")
    with caplog.at_level(logging.INFO, logger=DECISION_LOGGER):
        seen = Client(outer).get("/orders", headers=cert(staff.bob)).json
    assert seen is not None and seen["remote_user"] == "bob"
    assert len([r for r in caplog.records if r.name == DECISION_LOGGER]) == 1


def test_remote_user_under_a_real_server_is_valid_wsgi(staff: Staff) -> None:
    """wsgiref's server on a loopback port, with its PEP 3333 validator between the
    middleware and the application: REMOTE_USER is a native string, the environ valid."""
    import threading
    import urllib.request
    from wsgiref.simple_server import WSGIRequestHandler, make_server
    from wsgiref.validate import validator

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    app = wsgi_integration.PolicyMiddleware(validator(wsgi_app), staff.policy, remote_user=True)
    with make_server("127.0.0.1", 0, validator(app), handler_class=Quiet) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{server.server_port}/orders"
            request = urllib.request.Request(url, headers=cert(staff.alice))
            with urllib.request.urlopen(request, timeout=10) as response:
                seen = json.loads(response.read())
        finally:
            server.shutdown()
            thread.join(timeout=10)
    assert seen["remote_user"] == "alice"
    assert seen["identity"]["roles"] == ["ops", "reader"]


# -- ASGI ---------------------------------------------------------------------------------


async def whoami(request: Request) -> JSONResponse:
    identity = request.state.policyengine_identity
    assert request.scope[asgi_integration.IDENTITY_KEY] is identity
    assert identity is request.state.policyengine_decision.identity
    return JSONResponse(
        {
            "identity": identity.to_dict() if identity is not None else None,
            "user": "user" in request.scope,
        }
    )


async def whoami_ws(websocket: WebSocket) -> None:
    await websocket.accept()
    identity: Identity | None = websocket.scope[asgi_integration.IDENTITY_KEY]
    await websocket.send_text(str(identity.principal if identity else None))
    await websocket.close()


def starlette(staff: Staff) -> asgi_integration.PolicyMiddleware:
    app = Starlette(
        routes=[
            Route("/orders", whoami),
            Route("/health", whoami),
            Route("/public/x", whoami),
            WebSocketRoute("/ws", whoami_ws),
        ]
    )
    return asgi_integration.PolicyMiddleware(app, staff.policy)


def asgi_get(app: Any, path: str, headers: dict[str, str]) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path, headers=headers)

    return asyncio.run(send())


def test_asgi_identity_in_scope_and_state(staff: Staff) -> None:
    app = starlette(staff)
    alice = asgi_get(app, "/orders", cert(staff.alice))
    assert alice.status_code == 200
    assert alice.json()["identity"]["principal"] == "alice"
    assert alice.json()["identity"]["roles"] == ["ops", "reader"]
    assert alice.json()["user"] is False  # scope["user"] is the auth middleware's, not ours
    assert asgi_get(app, "/health", {}).json()["identity"] is None
    assert asgi_get(app, "/public/x", {}).json()["identity"]["principal"] is None
    refused = asgi_get(app, "/orders", {**cert(staff.mallory), **JSON})
    assert (refused.status_code, refused.json()["reason"]) == (403, "no_matching_rule")


def test_asgi_refusal_leaves_no_identity_in_the_scope(staff: Staff) -> None:
    seen: dict[str, Any] = {}

    async def never(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("a refused request reached the app")

    middleware = asgi_integration.PolicyMiddleware(never, staff.policy)

    async def keep(scope: Any, receive: Any, send: Any) -> None:
        await middleware(scope, receive, send)
        seen.update(scope)  # what an outer middleware sees once the refusal is sent

    refused = asgi_get(keep, "/orders", cert(staff.mallory))
    assert refused.status_code == 403
    assert seen[asgi_integration.IDENTITY_KEY] is None
    assert seen["state"][asgi_integration.IDENTITY_STATE_KEY] is None
    assert seen[asgi_integration.SCOPE_KEY].identity.principal == "alice"


def test_asgi_identity_on_a_websocket(staff: Staff) -> None:
    client = TestClient(starlette(staff), client=("127.0.0.1", 50000))
    with client, client.websocket_connect("/ws", headers=cert(staff.service)) as ws:
        assert ws.receive_text() == "svc.contoso.com"


def test_asgi_has_no_remote_user_option(staff: Staff) -> None:
    with pytest.raises(TypeError):
        asgi_integration.PolicyMiddleware(starlette(staff), staff.policy, remote_user=True)  # type: ignore[call-arg]


# -- Flask --------------------------------------------------------------------------------


def flask_app(staff: Staff | None = None, **options: Any) -> flask.Flask:
    app = flask.Flask(__name__)
    if staff is not None:
        PolicyEngine(app, staff.policy, **options)

    @app.get("/hello")
    def hello() -> dict[str, Any]:
        if not current_identity:
            return {"hello": None, "identity": get_identity() is not None}
        return {"hello": current_identity.principal, "groups": list(current_identity.groups)}

    @app.get("/ops")
    @require_role("ops")
    def ops() -> str:
        return f"ops for {current_identity.principal if current_identity else None}"

    @app.get("/health")
    @require_role("reader")
    def health() -> str:
        return "health with a role"

    @app.get("/public/reader")
    @require_role("reader")
    def public_reader() -> str:
        return "reader"

    return app


def test_current_identity_is_the_requests_identity(staff: Staff) -> None:
    client = flask_app(staff).test_client()
    assert client.get("/hello", headers=cert(staff.alice)).json == {
        "hello": "alice",
        "groups": ["Operations"],
    }
    assert client.get("/hello", headers=cert(staff.service)).json == {
        "hello": "svc.contoso.com",
        "groups": [],
    }
    refused = client.get("/hello", headers=cert(staff.mallory))
    assert refused.status_code == 403


def test_current_identity_is_falsy_without_a_principal_or_an_identity(staff: Staff) -> None:
    app = flask_app(staff)

    @app.get("/public/hello")
    def public_hello() -> dict[str, Any]:
        identity = get_identity()
        return {
            "truthy": bool(current_identity),
            "is_identity": isinstance(identity, Identity),
            "principal": identity.principal if identity else None,
        }

    client = app.test_client()
    # optional mode, no certificate: an identity naming nobody (it is an object: truthy)
    assert client.get("/public/hello").json == {
        "truthy": True,
        "is_identity": True,
        "principal": None,
    }
    with app.test_request_context("/hello"):  # no guard decided this request
        assert get_identity() is None
        assert not current_identity
        assert current_identity == None  # noqa: E711  (the proxy compares as what it holds)


def test_require_role_lets_the_role_in_and_refuses_the_rest(staff: Staff) -> None:
    client = flask_app(staff).test_client()
    alice = client.get("/ops", headers=cert(staff.alice))
    assert (alice.status_code, alice.text) == (200, "ops for alice")

    bob = client.get("/ops", headers={**cert(staff.bob), **JSON})
    assert bob.status_code == 403
    assert bob.json == {
        "error": "forbidden",
        "reason": "missing_role",
        "message": REFUSALS["missing_role"],
    }
    assert bob.headers["Cache-Control"] == "no-store"
    text = client.get("/ops", headers=cert(staff.two_cns))
    assert text.status_code == 403
    assert text.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert text.text == f"403 Forbidden: missing_role: {REFUSALS['missing_role']}\n"
    assert "ops" not in text.text and "Operations" not in text.text  # the role stays unsaid


def test_role_refusals_have_the_format_of_the_extensions_refusals(staff: Staff) -> None:
    client = flask_app(staff).test_client()
    for accept in ({}, JSON):
        extension = client.get("/ops", headers={**cert(staff.mallory), **accept})
        role = client.get("/ops", headers={**cert(staff.bob), **accept})
        assert extension.status_code == role.status_code == 403
        for header in ("Content-Type", "Cache-Control"):
            assert extension.headers[header] == role.headers[header]
        if accept:
            assert extension.json is not None and role.json is not None
            assert extension.json.keys() == role.json.keys()
        else:
            assert extension.text.startswith("403 Forbidden: no_matching_rule: ")
            assert role.text.startswith("403 Forbidden: missing_role: ")


def test_require_role_on_an_excluded_path_is_missing_certificate(staff: Staff) -> None:
    client = flask_app(staff).test_client()
    health = client.get("/health", headers={**cert(staff.alice), **JSON})
    assert health.status_code == 403
    assert health.json is not None and health.json["reason"] == "missing_certificate"


def test_require_role_checks_the_role_not_the_certificate(staff: Staff) -> None:
    # reader is "trusted": an anonymous request allowed by the public rule does not hold it
    client = flask_app(staff).test_client()
    anonymous = client.get("/public/reader", headers=JSON)
    assert anonymous.status_code == 403
    assert anonymous.json is not None and anonymous.json["reason"] == "missing_role"
    assert client.get("/public/reader", headers=cert(staff.bob)).status_code == 200


def test_require_role_decides_when_the_extension_guards_no_view(
    staff: Staff, caplog: pytest.LogCaptureFixture
) -> None:
    client = flask_app(staff, guard_all=False).test_client()
    with caplog.at_level(logging.INFO, logger=DECISION_LOGGER):
        assert client.get("/ops", headers=cert(staff.alice)).status_code == 200
    assert len([r for r in caplog.records if r.name == DECISION_LOGGER]) == 1
    forged = client.get("/ops", headers={**cert(staff.mallory), **JSON})
    assert forged.status_code == 403
    assert forged.json is not None and forged.json["reason"] == "no_matching_rule"
    # a view no guard decided: no identity, even for a good certificate
    assert client.get("/hello", headers=cert(staff.alice)).json == {
        "hello": None,
        "identity": False,
    }


def test_require_role_without_any_guard_fails_and_never_runs_the_view() -> None:
    app = flask_app()
    ran: list[str] = []

    @app.get("/guarded")
    @require_role("ops")
    def guarded() -> str:
        ran.append("view")
        return "ran"

    app.testing = True  # the exception reaches the test
    client = app.test_client()
    with pytest.raises(RuntimeError, match="found no decision for this request"):
        client.get("/guarded")
    assert ran == []
    app.testing = False  # as served: a 500
    assert app.test_client().get("/guarded").status_code == 500
    assert ran == []


def test_a_role_the_policy_does_not_define_is_held_by_nobody(
    staff: Staff, caplog: pytest.LogCaptureFixture
) -> None:
    app = flask_app(staff)

    @app.get("/typo")
    @require_role("osp")
    def typo() -> str:
        return "never"

    with caplog.at_level(logging.INFO, logger=FLASK_LOG):
        refused = app.test_client().get("/typo", headers={**cert(staff.alice), **JSON})
    assert refused.status_code == 403
    assert refused.json is not None and refused.json["reason"] == "missing_role"
    (record,) = [r for r in caplog.records if r.name == FLASK_LOG]
    assert record.levelno == logging.WARNING
    assert "policy staff defines no role 'osp' (its roles: ['ops', 'reader'])" in record.message


def test_every_role_refusal_is_logged(staff: Staff, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=FLASK_LOG):
        flask_app(staff).test_client().get("/ops", headers=cert(staff.bob))
    (record,) = [r for r in caplog.records if r.name == FLASK_LOG]
    assert record.levelno == logging.INFO
    assert record.message == "refused GET /ops: missing_role (require_role 'ops', policy staff)"
    assert (record.reason, record.role, record.policy) == ("missing_role", "ops", "staff")


def test_require_role_takes_a_role_name() -> None:
    for wrong in ("", None, ["ops"]):
        with pytest.raises(TypeError, match="require_role takes the name of a role"):
            require_role(wrong)  # type: ignore[arg-type]


def test_the_wsgi_middleware_in_front_of_flask_gives_the_identity(staff: Staff) -> None:
    app = flask_app()  # no extension: the middleware decides
    app.wsgi_app = wsgi_integration.PolicyMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, staff.policy, remote_user=True
    )

    @app.get("/remote-user")
    def remote_user() -> dict[str, Any]:
        return {"remote_user": flask.request.remote_user}

    client = app.test_client()
    assert client.get("/hello", headers=cert(staff.bob)).json == {
        "hello": "bob",
        "groups": ["Sales"],
    }
    assert client.get("/ops", headers=cert(staff.alice)).status_code == 200
    assert client.get("/ops", headers=cert(staff.bob)).status_code == 403
    assert client.get("/remote-user", headers=cert(staff.bob)).json == {"remote_user": "bob"}


def test_require_role_under_a_decorator_reads_the_decorators_decision(
    staff: Staff, tmp_path: Path
) -> None:
    # the app's policy gives alice no role; the view's own policy (staff) does
    (tmp_path / "plain.yaml").write_text(
        textwrap.dedent(
            """\
            policy: plain
            mode: required
            certificate:
              source: nginx
              trusted_proxies: [127.0.0.1]
            rules:
              - id: anyone
                effect: allow
                when: subject.CN in ["alice", "bob"]
            """
        )
    )
    app = flask.Flask(__name__)
    PolicyEngine(app, tmp_path / "plain.yaml")

    @app.get("/ops")
    @require_certificate(staff.policy)
    @require_role("ops")
    def ops() -> str:
        return f"ops for {current_identity.principal if current_identity else None}"

    client = app.test_client()
    assert client.get("/ops", headers=cert(staff.alice)).text == "ops for alice"
    assert client.get("/ops", headers=cert(staff.bob)).status_code == 403


def test_async_views_are_guarded_by_role(staff: Staff) -> None:
    app = flask_app(staff)

    @app.get("/async-ops")
    @require_role("ops")
    async def async_ops() -> str:
        return "async ops"

    client = app.test_client()
    assert client.get("/async-ops", headers=cert(staff.alice)).text == "async ops"
    assert client.get("/async-ops", headers=cert(staff.bob)).status_code == 403


def test_an_app_context_pushed_beforehand_never_lends_an_identity(staff: Staff) -> None:
    app = flask_app(staff, guard_all=False)

    @app.get("/guarded-hello")
    @require_certificate()
    def guarded_hello() -> str:
        return str(current_identity.principal if current_identity else None)

    context = app.app_context()
    context.push()
    try:
        client = app.test_client()
        assert client.get("/guarded-hello", headers=cert(staff.alice)).text == "alice"
        # the next request, on a view no guard decides, finds g still holding alice's
        # decision: the identity is the request's own, so it is none
        assert flask.g.get("policyengine_decision") is not None
        assert client.get("/hello", headers=cert(staff.bob)).json == {
            "hello": None,
            "identity": False,
        }
    finally:
        context.pop()


# -- the example app ----------------------------------------------------------------------


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """examples/flask_app.py with the policy examples/make_certs.py writes."""
    import importlib.util
    import sys

    root = Path(__file__).resolve().parent.parent / "examples"
    spec = importlib.util.spec_from_file_location("example_make_certs_id", root / "make_certs.py")
    assert spec is not None and spec.loader is not None
    make_certs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_certs)
    written = make_certs.make_certs(tmp_path / "certs")

    def load(policy: Path | None) -> Any:
        if policy is None:
            monkeypatch.delenv("POLICYENGINE_POLICY", raising=False)
        else:
            monkeypatch.setenv("POLICYENGINE_POLICY", str(policy))
        name = "example_flask_identity"
        spec = importlib.util.spec_from_file_location(name, root / "flask_app.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module.app

    yield load, written
    sys.modules.pop("example_flask_identity", None)


def test_the_example_greets_the_principal_and_guards_by_role(example: Any) -> None:
    load, written = example
    generated = load(written["policy"]).test_client()
    client_header = {"X-SSL-Client-Cert": nginx_header(written["client"].read_bytes())}
    assert generated.get("/whoami", headers=client_header).json == {
        "principal": "orders-client",
        "from": "subject.CN",
        "groups": ["Example Partner Ltd"],
        "roles": ["reports"],
    }
    reports = generated.get("/reports", headers=client_header)
    assert (reports.status_code, reports.json) == (200, {"report": "for orders-client"})
    assert generated.get("/whoami").status_code == 403  # no certificate: the extension refuses

    # the default policy (policies/nginx-partner.yaml) names the partner, gives no role
    default = load(None).test_client()
    partner_header = {"X-SSL-Client-Cert": nginx_header(PARTNER_PEM), **JSON}
    assert default.get("/whoami", headers=partner_header).json == {
        "principal": "nildevecc",
        "from": "subject.CN",
        "groups": [],
        "roles": [],
    }
    refused = default.get("/reports", headers=partner_header)
    assert refused.status_code == 403
    assert refused.json is not None and refused.json["reason"] == "missing_role"


def test_a_forged_certificate_names_nobody_even_on_a_public_path(staff: Staff) -> None:
    # the public rule admits requests without a certificate only: a self-signed one naming
    # alice is refused there too, so nothing can make REMOTE_USER "alice" but the CA
    assert load_policy(staff.policy).warnings == ()
    client, outer = wsgi(staff, remote_user=True)
    assert client.get("/public/docs", headers=cert(staff.mallory)).status_code == 403
    assert "REMOTE_USER" not in outer.environ
