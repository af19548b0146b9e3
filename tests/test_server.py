"""``policyengine serve`` in-process: the Authorizer's verdicts, the HTTP authorizer (a plain
ASGI app, asked through httpx's ASGITransport as nginx, Caddy, Traefik and Envoy ask it)
and Envoy's ext_authz over a real grpc.aio server on loopback. Real policy files, real
certificates (made now, so valid at the wall clock the server decides at), no mocks: a
failure is injected only through the server's own hooks (its decision log and its metrics
observer). The process itself (signals, reloading, workers) is tests/test_server_process.py.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import re
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import grpc
import httpx
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc
from google.rpc import code_pb2
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from policyengine import PolicyError
from policyengine.integrations import REFUSALS
from policyengine.integrations.headers import IdentityHeaders
from policyengine.integrations.runtime import DecisionLog, ReloadingPolicy
from policyengine.load.loader import load_policy
from policyengine.server.authorizer import Authorizer, Verdict
from policyengine.server.grpc import ExtAuthz, grpc_server
from policyengine.server.http import AuthorizerApp
from policyengine.server.metrics import Metrics
from policyengine.testing import IssuedCertificate, make_certificate

IDENTITY = ("X-Client-Principal", "X-Client-Groups", "X-Client-Roles")

EDGE = """\
policy: edge
description: behind nginx auth_request
mode: required
exclusion_paths: /health
certificate:
  source: nginx
  trusted_proxies: [127.0.0.1]
identity:
  principal: [subject.CN]
  groups: [subject.O, subject.OU]
  roles:
    writer: subject.OU == "Writers"
rules:
  - id: no-deletes
    effect: deny
    when: request.method == "DELETE"
  - id: contoso
    effect: allow
    when: valid and subject.O == "Contoso" and request.path startswith "/orders"
"""

SHOP = """\
policy: shop
description: behind Caddy forward_auth (one base64 DER)
mode: required
certificate:
  source: caddy
  trusted_proxies: [127.0.0.1]
identity:
  principal: [subject.CN]
rules:
  - id: checkout
    effect: allow
    when: |
      valid and subject.O == "Contoso" and request.method == "POST"
      and request.path == "/cart/checkout" and request.host == "shop.example.com"
"""

GATEWAY = """\
policy: gateway
description: behind Traefik forwardAuth with passTLSClientCert
mode: required
certificate:
  source: traefik
  trusted_proxies: [127.0.0.1]
trust:
  anchors: [root.pem]
  header_intermediates: true
identity:
  principal: [subject.CN]
rules:
  - id: partners
    effect: allow
    when: |
      trusted and request.host == "orders.example.com" and request.method == "GET"
      and request.path startswith "/orders/"
"""

MESH = """\
policy: mesh
description: a front Envoy's XFCC
mode: required
certificate:
  source: envoy
  trusted_proxies: [10.1.2.3, 127.0.0.0/8]
identity:
  principal: [san.uri]
rules:
  - id: payments
    effect: allow
    when: valid and principal == "spiffe://contoso.com/payments" and request.path startswith "/pay"
"""


# -- certificates and policy files -------------------------------------------------------


class Certs:
    """Made once for the module, valid now (the server decides at the wall clock)."""

    def __init__(self) -> None:
        self.alice = make_certificate({"CN": "alice", "O": "Contoso", "OU": "Writers"})
        self.carol = make_certificate({"CN": "carol", "O": "Contoso"})
        self.mallory = make_certificate({"CN": "mallory", "O": "Fabrikam"})
        self.payments = make_certificate({"CN": "payments"}, uris=["spiffe://contoso.com/payments"])
        self.root = make_certificate({"CN": "Partner Root", "O": "Contoso"}, ca=True)
        self.issuing = make_certificate(
            {"CN": "Partner Issuing", "O": "Contoso"}, ca=True, issuer=self.root
        )
        self.partner = make_certificate(
            [("C", "US"), ("O", "Contoso"), ("CN", "partner-7")], issuer=self.issuing
        )


@pytest.fixture(scope="module")
def certs() -> Certs:
    return Certs()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("policies")
    (folder / "root.pem").write_bytes(certs.root.pem)
    out = {}
    for name, text in (("edge", EDGE), ("shop", SHOP), ("gateway", GATEWAY), ("mesh", MESH)):
        out[name] = folder / f"{name}.yaml"
        out[name].write_text(text)
    return out


def escaped(cert: IssuedCertificate) -> str:
    """nginx's ``$ssl_client_escaped_cert`` (and Envoy's ``attributes.source.certificate``)."""
    return quote(cert.pem.decode(), safe="")


def der64(cert: IssuedCertificate) -> str:
    """Caddy's ``{http.request.tls.client.certificate_der_base64}``."""
    return base64.b64encode(cert.der).decode()


def xfcc(cert: IssuedCertificate, uri: str) -> str:
    """The element a front Envoy adds with SANITIZE_SET and ``cert: true, uri: true``."""
    pem = quote(cert.pem.decode(), safe="")
    return f'By=spiffe://contoso.com/edge;Hash={cert.sha256};Cert="{pem}";URI={uri}'


def _go_dn(pairs: Sequence[tuple[str, str]]) -> str:
    """Traefik's getDNInfo: C, ST, L, O, SN, CN, each ``K=V,``, the last comma trimmed."""
    order = ("C", "ST", "L", "O", "SN", "CN")
    return ",".join(f"{k}={v}" for key in order for k, v in pairs if k == key)


def traefik_headers(chain: Sequence[IssuedCertificate], *, pre_2_9_2: bool = False) -> list:
    """What passTLSClientCert (``pem: true``, ``info`` with subject, issuer, serial, dates)
    puts on the request: the peer certificates as base64 DER joined with ``,`` (before
    Traefik 2.9.2 each one also url.QueryEscape'd), and the info url.QueryEscape'd."""
    items = [der64(cert) for cert in chain]
    if pre_2_9_2:
        items = [quote_plus(item, safe="") for item in items]
    infos = []
    for cert in chain:
        c = cert.certificate
        subject = [(a.rfc4514_attribute_name, str(a.value)) for a in c.subject]
        issuer = [(a.rfc4514_attribute_name, str(a.value)) for a in c.issuer]
        infos.append(
            f'Subject="{_go_dn(subject)}";Issuer="{_go_dn(issuer)}";'
            f'SerialNumber="{c.serial_number}";NB="{int(c.not_valid_before_utc.timestamp())}";'
            f'NA="{int(c.not_valid_after_utc.timestamp())}"'
        )
    return [
        ("X-Forwarded-Tls-Client-Cert", ",".join(items)),
        ("X-Forwarded-Tls-Client-Cert-Info", quote_plus(",".join(infos), safe="")),
    ]


def nginx_view(cert: IssuedCertificate | None, path: str = "/orders", **more: Any) -> dict:
    headers = [("X-SSL-Client-Cert", escaped(cert))] if cert is not None else []
    return {"headers": headers, "remote_addr": "127.0.0.1", "path": path, "method": "GET", **more}


def body_of(verdict: Verdict) -> dict[str, str]:
    return json.loads(verdict.body)  # type: ignore[no-any-return]


def generic(reason: str) -> dict[str, str]:
    """The only thing a refusal tells the client."""
    return {"reason": reason, "message": REFUSALS[reason]}


def sample(metrics: Metrics, authorizer: Authorizer, name: str, **labels: str) -> float | None:
    """One sample of /metrics as rendered (None when absent)."""
    text = metrics.render(authorizer)[0].decode()
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return None


# -- the Authorizer --------------------------------------------------------------------------


def test_requests_are_routed_by_policy_name(files: dict[str, Path], certs: Certs) -> None:
    authorizer = Authorizer([files["edge"], files["shop"]])
    assert authorizer.names == ("edge", "shop")
    by_nginx = authorizer.authorize("edge", nginx_view(certs.alice))
    assert (by_nginx.allowed, by_nginx.decision.policy) == (True, "edge")
    # the same request asked of the other policy is read its way: Caddy's header, not nginx's
    same_to_shop = authorizer.authorize("shop", nginx_view(certs.alice))
    assert (same_to_shop.decision.policy, same_to_shop.reason) == ("shop", "missing_certificate")
    caddy = {
        "headers": [("X-Client-Cert", der64(certs.alice))],
        "remote_addr": "127.0.0.1",
        "path": "/cart/checkout",
        "method": "POST",
        "host": "shop.example.com",
    }
    by_caddy = authorizer.authorize("shop", caddy)
    assert (by_caddy.allowed, by_caddy.decision.policy, by_caddy.decision.rule) == (
        True,
        "shop",
        "checkout",
    )
    assert authorizer.authorize("edge", caddy).reason == "missing_certificate"


def test_one_policy_decides_a_request_that_names_none(files: dict[str, Path], certs: Certs) -> None:
    authorizer = Authorizer([files["edge"]])
    verdict = authorizer.authorize(None, nginx_view(certs.alice))
    assert verdict.allowed and verdict.decision.policy == "edge"
    certificate = authorizer.authorize_certificate(
        None, escaped(certs.alice), {"path": "/orders"}, given_by="test"
    )
    assert certificate.allowed and certificate.decision.policy == "edge"


def test_several_policies_and_no_name_is_unknown_policy(
    files: dict[str, Path], certs: Certs
) -> None:
    authorizer = Authorizer([files["edge"], files["shop"]])
    for verdict in (
        authorizer.authorize(None, nginx_view(certs.alice)),
        authorizer.authorize_certificate(None, escaped(certs.alice), {}, given_by="test"),
    ):
        assert (verdict.allowed, verdict.status, verdict.reason) == (False, 403, "unknown_policy")
        assert body_of(verdict) == generic("unknown_policy")
        assert "edge, shop" in verdict.decision.message  # the log says which there are


def test_an_unknown_name_is_refused_and_counted_under_no_label(
    files: dict[str, Path], certs: Certs
) -> None:
    metrics = Metrics()
    seen: list[str] = []

    def observe(label: str, decision: Any, seconds: float) -> None:
        seen.append(label)
        metrics.observe(label, decision, seconds)

    authorizer = Authorizer([files["edge"]], observe=observe)
    for name in ("edge-v2", "EDGE", "edge ", "x" * 200):
        verdict = authorizer.authorize(name, nginx_view(certs.alice))
        assert (verdict.allowed, verdict.reason) == (False, "unknown_policy")
        assert body_of(verdict) == generic("unknown_policy")
    authorizer.authorize_certificate("nope", escaped(certs.alice), {}, given_by="test")
    assert authorizer.authorize("edge", nginx_view(certs.alice)).allowed
    assert seen == ["", "", "", "", "", "edge"]
    text = metrics.render(authorizer)[0].decode()
    assert "edge-v2" not in text and "EDGE" not in text and "nope" not in text
    unknown = {"policy": "", "decision": "deny", "reason": "unknown_policy"}
    assert sample(metrics, authorizer, "policyengine_decisions_total", **unknown) == 5
    allowed = {"policy": "edge", "decision": "allow", "reason": "allowed_by_rule"}
    assert sample(metrics, authorizer, "policyengine_decisions_total", **allowed) == 1


def test_two_files_of_one_policy_name_are_refused(files: dict[str, Path], tmp_path: Path) -> None:
    twin = tmp_path / "edge-copy.yaml"
    twin.write_text(EDGE.replace("behind nginx", "a copy"))
    with pytest.raises(ValueError, match="both policy 'edge'") as error:
        Authorizer([files["edge"], twin])
    assert str(twin) in str(error.value) and str(files["edge"]) in str(error.value)
    with pytest.raises(ValueError, match="at least one policy"):
        Authorizer([])


def test_a_policy_that_does_not_load_raises_with_file_line_and_column(
    files: dict[str, Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(EDGE.replace('subject.O == "Contoso" and', 'subject.O == "Contoso" and and'))
    line = 1 + EDGE.splitlines().index(
        '    when: valid and subject.O == "Contoso" and request.path startswith "/orders"'
    )
    with pytest.raises(PolicyError) as error:
        Authorizer([files["edge"], broken])
    first = str(error.value).splitlines()[0]
    assert re.match(rf"{re.escape(str(broken))}:{line}:\d+: error", first), first


def test_verdict_headers_set_and_removed_never_overlap_and_ignore_the_client(
    files: dict[str, Path], certs: Certs
) -> None:
    authorizer = Authorizer([files["edge"]])
    forged = [
        ("X-Client-Principal", "admin"),
        ("x-client-roles", "superuser"),
        ("X-Client-Groups", "Administrators"),
    ]
    alice = nginx_view(certs.alice)
    alice["headers"] += forged
    verdict = authorizer.authorize("edge", alice)
    assert verdict.set_headers == (
        ("X-Client-Principal", "alice"),
        ("X-Client-Groups", "Contoso,Writers"),
        ("X-Client-Roles", "writer"),
    )
    assert verdict.remove_headers == ()
    carol = nginx_view(certs.carol)
    carol["headers"] += forged
    verdict = authorizer.authorize("edge", carol)
    assert verdict.set_headers == (("X-Client-Principal", "carol"), ("X-Client-Groups", "Contoso"))
    assert verdict.remove_headers == ("X-Client-Roles",)  # her forged roles must not pass
    excluded = nginx_view(None, "/health/live")
    excluded["headers"] += forged
    verdict = authorizer.authorize("edge", excluded)
    assert verdict.allowed and verdict.reason == "excluded_path"
    assert (verdict.set_headers, verdict.remove_headers) == ((), IDENTITY)
    for verdict in (
        authorizer.authorize("edge", alice),
        authorizer.authorize("edge", carol),
        authorizer.authorize("edge", excluded),
    ):
        given = {name.lower() for name, _ in verdict.set_headers}
        removed = {name.lower() for name in verdict.remove_headers}
        assert not given & removed
        assert given | removed == {name.lower() for name in IDENTITY}
        values = " ".join(value for _, value in verdict.set_headers)
        assert "admin" not in values and "superuser" not in values


def test_identity_header_values_are_percent_encoded_one_line(files: dict[str, Path]) -> None:
    hostile = make_certificate(
        {"CN": "Zoë, Admin\r\nX-Client-Roles: admin", "O": "Contoso", "OU": "Writers"}
    )
    authorizer = Authorizer([files["edge"]])
    verdict = authorizer.authorize("edge", nginx_view(hostile))
    assert verdict.allowed
    principal = dict(verdict.set_headers)["X-Client-Principal"]
    assert principal == "Zo%C3%AB%2C%20Admin%0D%0AX-Client-Roles:%20admin"
    assert principal.isascii() and principal.isprintable() and "," not in principal
    renamed = IdentityHeaders(principal="X-User", groups=None, roles="X-Roles")
    authorizer = Authorizer([files["edge"]], headers=renamed)
    verdict = authorizer.authorize("edge", nginx_view(hostile))
    assert [name for name, _ in verdict.set_headers] == ["X-User", "X-Roles"]
    assert verdict.remove_headers == ()


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("stranger", "no_matching_rule"),
        ("delete", "denied_by_rule"),
        ("none", "missing_certificate"),
        ("garbage", "malformed_header"),
        ("twice", "duplicate_header"),
    ],
)
def test_a_refusal_body_is_the_reason_and_its_generic_sentence_only(
    files: dict[str, Path], certs: Certs, case: str, reason: str
) -> None:
    views = {
        "stranger": nginx_view(certs.mallory),
        "delete": nginx_view(certs.alice, method="DELETE"),
        "none": nginx_view(None),
        "garbage": {**nginx_view(None), "headers": [("X-SSL-Client-Cert", "-----BEGIN%20x")]},
        "twice": {
            **nginx_view(certs.alice),
            "headers": [("X-SSL-Client-Cert", escaped(certs.alice))] * 2,
        },
    }
    verdict = Authorizer([files["edge"]]).authorize("edge", views[case])
    assert (verdict.allowed, verdict.status, verdict.reason) == (False, 403, reason)
    assert body_of(verdict) == generic(reason)
    assert (verdict.set_headers, verdict.remove_headers) == ((), ())
    # the decision's own message says more (which rule, what failed); the client gets none of it
    assert verdict.decision.message != REFUSALS[reason]
    assert verdict.decision.message not in verdict.body.decode()
    for secret in ("Contoso", "contoso", "no-deletes", "Fabrikam", "mallory", "127.0.0.1"):
        assert secret not in verdict.body.decode()


class _Failing(logging.Filter):
    """A decision log that fails: a real logger whose filter raises."""

    def filter(self, record: logging.LogRecord) -> bool:
        raise RuntimeError("the log volume is gone")


@pytest.fixture
def failing_log() -> Iterator[DecisionLog]:
    logger = logging.getLogger("tests.test_server.failing")
    logger.setLevel(logging.INFO)
    failing = _Failing()
    logger.addFilter(failing)
    yield DecisionLog(logger=logger)
    logger.removeFilter(failing)


def test_an_exception_while_deciding_is_a_refusal_not_a_crash(
    files: dict[str, Path], certs: Certs, failing_log: DecisionLog
) -> None:
    metrics = Metrics()
    authorizer = Authorizer([files["edge"]], log=failing_log, observe=metrics.observe)
    verdicts = [
        authorizer.authorize("edge", nginx_view(certs.alice)),  # would allow
        authorizer.authorize(None, nginx_view(certs.mallory)),
        authorizer.authorize_certificate("edge", escaped(certs.alice), {}, given_by="test"),
    ]
    for verdict in verdicts:
        assert (verdict.allowed, verdict.status, verdict.reason) == (False, 403, "evaluation_error")
        assert body_of(verdict) == generic("evaluation_error")
        assert verdict.set_headers == () and verdict.remove_headers == ()
        assert "the log volume is gone" not in verdict.body.decode()
    # counted under the policy that was asked, also when the request named none
    failed = {"policy": "edge", "decision": "deny", "reason": "evaluation_error"}
    assert sample(metrics, authorizer, "policyengine_decisions_total", **failed) == 3
    # the server's own refusals (unknown policy, bad request) stand when the log fails too
    unknown = authorizer.authorize("nope", nginx_view(certs.alice))
    assert unknown.reason == "unknown_policy"
    app = AuthorizerApp(authorizer)
    response = ask(app, "/authorize/edge", _nginx(certs.alice))
    assert (response.status_code, response.json()) == (403, generic("evaluation_error"))
    check = ExtAuthz(authorizer).decide(
        check_request(policy="edge", certificate=escaped(certs.alice))
    )
    assert (check.allowed, check.reason) == (False, "evaluation_error")


def test_a_verdict_that_cannot_be_counted_is_not_an_allow(
    files: dict[str, Path], certs: Certs
) -> None:
    def broken(label: str, decision: Any, seconds: float) -> None:
        raise OSError("the metrics directory is gone")

    authorizer = Authorizer([files["edge"]], observe=broken)
    allowed = authorizer.authorize("edge", nginx_view(certs.alice))
    assert (allowed.allowed, allowed.reason) == (False, "evaluation_error")
    assert body_of(allowed) == generic("evaluation_error")
    denied = authorizer.authorize("edge", nginx_view(certs.mallory))
    assert (denied.allowed, denied.reason) == (False, "no_matching_rule")
    response = ask(AuthorizerApp(authorizer), "/authorize", _nginx(certs.alice))
    assert response.status_code == 403


def test_reload_switches_policies_and_keeps_the_last_good_one(
    files: dict[str, Path], certs: Certs, tmp_path: Path
) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text(EDGE)
    metrics = Metrics()
    authorizer = Authorizer([path], interval=3600, observe=metrics.observe)
    assert authorizer.authorize("edge", nginx_view(certs.alice)).allowed
    staged = tmp_path / "edge.yaml.new"
    staged.write_text(EDGE.replace('subject.O == "Contoso"', 'subject.O == "Fabrikam"'))
    staged.replace(path)
    assert authorizer.authorize("edge", nginx_view(certs.alice)).allowed  # not looked at yet
    assert authorizer.reload() is True
    assert not authorizer.authorize("edge", nginx_view(certs.alice)).allowed
    assert authorizer.authorize("edge", nginx_view(certs.mallory)).allowed
    failures = {"policy": "edge"}
    assert sample(metrics, authorizer, "policyengine_policy_reload_failures", **failures) == 0
    staged.write_text("policy: edge\nrules: [\n")
    staged.replace(path)
    assert authorizer.reload() is False
    assert authorizer.authorize("edge", nginx_view(certs.mallory)).allowed  # the last good one
    assert sample(metrics, authorizer, "policyengine_policy_reload_failures", **failures) == 1
    error = authorizer.providers["edge"].last_error
    assert error is not None and str(error).startswith(f"{path}:")


def test_a_policy_renamed_in_its_file_is_not_reloaded(certs: Certs, tmp_path: Path) -> None:
    """Requests for "edge" must not be decided by a policy now called "edge-v2", nor
    "edge-v2" be unknown while it decides them: a rename waits for a restart."""
    path = tmp_path / "edge.yaml"
    path.write_text(EDGE)
    authorizer = Authorizer([path], interval=3600)
    renamed = EDGE.replace("policy: edge\n", "policy: edge-v2\n").replace(
        'subject.O == "Contoso"', 'subject.O == "Fabrikam"'
    )
    path.write_text(renamed)
    assert authorizer.reload() is False
    assert authorizer.names == ("edge",)
    assert authorizer.authorize("edge", nginx_view(certs.alice)).allowed  # the one in force
    assert authorizer.authorize("edge-v2", nginx_view(certs.mallory)).reason == "unknown_policy"
    error = str(authorizer.providers["edge"].last_error)
    assert error.startswith(f"{path}:1:1: error: the policy is served as 'edge';")
    assert "    1 | policy: edge-v2\n      | ^^^^^^" in error
    assert "hint: restart policyengine serve" in error
    path.write_text(EDGE)  # named back: reloaded as any change is
    assert authorizer.reload() is True
    assert authorizer.providers["edge"].last_error is None


# -- the HTTP authorizer through ASGI ---------------------------------------------------------


def ask(
    app: AuthorizerApp,
    target: str,
    headers: Sequence[tuple[str, str]] = (),
    *,
    method: str = "GET",
    peer: str = "127.0.0.1",
) -> httpx.Response:
    """One request to the app as ``peer`` (the proxy) sends it."""

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(peer, 51234))
        async with httpx.AsyncClient(transport=transport, base_url="http://authorizer") as client:
            return await client.request(method, target, headers=list(headers))

    return asyncio.run(send())


def _nginx(cert: IssuedCertificate | None, uri: str = "/orders?page=2") -> list[tuple[str, str]]:
    """What the exported nginx auth_request location sends."""
    headers = [("X-Original-URI", uri), ("X-Original-Method", "GET")]
    headers.append(("X-Forwarded-Host", "api.contoso.com"))
    if cert is not None:
        headers.append(("X-SSL-Client-Cert", escaped(cert)))
    return headers


@pytest.fixture(scope="module")
def app(files: dict[str, Path]) -> AuthorizerApp:
    """The four policies, each behind its proxy, with a decision log."""
    authorizer = Authorizer(
        [files["edge"], files["shop"], files["gateway"], files["mesh"]],
        log=DecisionLog(fields=("principal",)),
    )
    return AuthorizerApp(authorizer)


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Callable[[], dict[str, Any]]:
    """The fields of the test's last decision log record."""
    caplog.set_level(logging.INFO, logger="policyengine.decisions")

    def last() -> dict[str, Any]:
        records = [r for r in caplog.records if r.name == "policyengine.decisions"]
        assert records, "no decision was logged"
        fields: dict[str, Any] = getattr(records[-1], "policyengine")  # noqa: B009
        return fields

    return last


def test_nginx_certificate_from_the_trusted_proxy_is_allowed(
    app: AuthorizerApp, certs: Certs, logged: Callable[[], dict[str, Any]]
) -> None:
    response = ask(app, "/authorize/edge", _nginx(certs.alice))
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["x-client-principal"] == "alice"
    assert response.headers["x-client-groups"] == "Contoso,Writers"
    assert response.headers["x-client-roles"] == "writer"
    assert response.headers["cache-control"] == "no-store"
    record = logged()
    assert (record["path"], record["method"], record["peer"]) == ("/orders", "GET", "127.0.0.1")
    assert (record["policy"], record["principal"]) == ("edge", "alice")
    # a client's own identity headers, passed on by the proxy, are never answered back
    forged = [*_nginx(certs.carol), ("X-Client-Roles", "writer"), ("X-Client-Principal", "alice")]
    response = ask(app, "/authorize/edge", forged)
    assert response.status_code == 200
    assert response.headers.get_list("x-client-principal") == ["carol"]
    assert "x-client-roles" not in response.headers


def test_nginx_header_from_an_untrusted_peer_is_ignored(
    app: AuthorizerApp, certs: Certs, logged: Callable[[], dict[str, Any]]
) -> None:
    for peer in ("203.0.113.9", "10.0.0.7", "::1"):
        response = ask(app, "/authorize/edge", _nginx(certs.alice), peer=peer)
        assert (response.status_code, response.json()) == (403, generic("missing_certificate"))
        assert "x-client-principal" not in response.headers
    assert logged()["peer"] == "::1"


def _caddy(cert_header: str | None, uri: str = "/cart/checkout") -> list[tuple[str, str]]:
    """What Caddy's forward_auth sends (with the exported header_up for the certificate)."""
    headers = [
        ("X-Forwarded-Method", "POST"),
        ("X-Forwarded-Uri", uri),
        ("X-Forwarded-Host", "shop.example.com"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-For", "203.0.113.50"),
    ]
    if cert_header is not None:
        headers.append(("X-Client-Cert", cert_header))
    return headers


def test_caddy_forward_auth_with_base64_der(app: AuthorizerApp, certs: Certs) -> None:
    # forward_auth asks with GET; the original method, path and host are in the headers
    response = ask(app, "/authorize/shop", _caddy(der64(certs.alice), "/cart/checkout?step=3"))
    assert response.status_code == 200
    assert response.headers["x-client-principal"] == "alice"
    other_host = [
        (k, "evil.example.com" if k == "X-Forwarded-Host" else v)
        for k, v in _caddy(der64(certs.alice))
    ]
    assert ask(app, "/authorize/shop", other_host).json()["reason"] == "no_matching_rule"
    # without X-Forwarded-Host, the host is the Host the authorizer was asked with
    own_host = [(k, v) for k, v in _caddy(der64(certs.alice)) if k != "X-Forwarded-Host"]
    assert ask(app, "/authorize/shop", [*own_host, ("Host", "shop.example.com")]).status_code == 200
    assert ask(app, "/authorize/shop", own_host).json()["reason"] == "no_matching_rule"
    stranger = ask(app, "/authorize/shop", _caddy(der64(certs.mallory)))
    assert (stranger.status_code, stranger.json()) == (403, generic("no_matching_rule"))


@pytest.mark.parametrize("value", ["", " ", "\t"])
def test_caddy_empty_certificate_header_counts_as_absent(app: AuthorizerApp, value: str) -> None:
    # {http.request.tls.client.certificate_der_base64} is empty on a connection without one
    response = ask(app, "/authorize/shop", _caddy(value))
    assert (response.status_code, response.json()) == (403, generic("missing_certificate"))


def test_caddy_garbage_certificate_header_is_malformed(app: AuthorizerApp, certs: Certs) -> None:
    for value in ("not base64!", der64(certs.alice)[:-8], escaped(certs.alice)):
        response = ask(app, "/authorize/shop", _caddy(value))
        assert (response.status_code, response.json()) == (403, generic("malformed_header"))


def _traefik(chain: Sequence[IssuedCertificate], *, pre_2_9_2: bool = False) -> list:
    """The forwardAuth request exactly as Traefik (v3, trustForwardHeader: false) makes
    it: the client's headers copied (those the entry point added too), then its own
    X-Forwarded-* set, and the passTLSClientCert headers."""
    return [
        ("User-Agent", "curl/8.5.0"),
        ("Accept", "*/*"),
        ("X-Forwarded-Port", "443"),
        ("X-Forwarded-Server", "traefik-7d9f"),
        ("X-Real-Ip", "203.0.113.50"),
        *traefik_headers(chain, pre_2_9_2=pre_2_9_2),
        ("X-Forwarded-For", "203.0.113.50"),
        ("X-Forwarded-Method", "GET"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "orders.example.com"),
        ("X-Forwarded-Uri", "/orders/17?expand=lines"),
        ("Accept-Encoding", "gzip"),
    ]


@pytest.mark.parametrize("pre_2_9_2", [False, True], ids=["traefik-3", "traefik-before-2.9.2"])
def test_traefik_forward_auth_with_pass_tls_client_cert(
    app: AuthorizerApp, certs: Certs, logged: Callable[[], dict[str, Any]], pre_2_9_2: bool
) -> None:
    # the chain the client sent follows the leaf in the same header: it chains to root.pem
    headers = _traefik([certs.partner, certs.issuing], pre_2_9_2=pre_2_9_2)
    response = ask(app, "/authorize/gateway", headers)
    assert response.status_code == 200, response.text
    assert response.headers["x-client-principal"] == "partner-7"
    assert logged()["path"] == "/orders/17"
    # the method and host are Traefik's X-Forwarded-Method and -Host, not the GET it asks with
    for name, value in (("X-Forwarded-Method", "DELETE"), ("X-Forwarded-Host", "other.example")):
        changed = [(k, value if k == name else v) for k, v in headers]
        assert ask(app, "/authorize/gateway", changed).json() == generic("no_matching_rule")
    # without the intermediate it chains to nothing
    alone = ask(app, "/authorize/gateway", _traefik([certs.partner], pre_2_9_2=pre_2_9_2))
    assert (alone.status_code, alone.json()) == (403, generic("no_matching_rule"))


def test_traefik_cert_info_header_is_never_believed(app: AuthorizerApp, certs: Certs) -> None:
    headers = _traefik([certs.mallory])
    info = dict(_traefik([certs.partner, certs.issuing]))["X-Forwarded-Tls-Client-Cert-Info"]
    headers = [(k, info if k == "X-Forwarded-Tls-Client-Cert-Info" else v) for k, v in headers]
    response = ask(app, "/authorize/gateway", headers)
    assert (response.status_code, response.json()["reason"]) == (403, "no_matching_rule")
    # and from a peer that is not Traefik, nothing of it is read
    trusted = _traefik([certs.partner, certs.issuing])
    response = ask(app, "/authorize/gateway", trusted, peer="198.51.100.1")
    assert response.json()["reason"] == "missing_certificate"


def test_envoy_http_mode_appends_the_original_path(
    app: AuthorizerApp, certs: Certs, logged: Callable[[], dict[str, Any]]
) -> None:
    header = [("x-forwarded-client-cert", xfcc(certs.payments, "spiffe://contoso.com/payments"))]
    response = ask(app, "/authorize/mesh/pay/17?amount=5", header, method="POST", peer="10.1.2.3")
    assert response.status_code == 200
    assert response.headers["x-client-principal"] == "spiffe://contoso.com/payments"
    assert (logged()["path"], logged()["method"]) == ("/pay/17", "POST")
    wrong_path = ask(app, "/authorize/mesh/refund", header, peer="10.1.2.3")
    assert wrong_path.json()["reason"] == "no_matching_rule"
    untrusted = ask(app, "/authorize/mesh/pay/17", header, peer="10.1.2.4")
    assert untrusted.json()["reason"] == "missing_certificate"
    # the path after /authorize/<policy> decides an exclusion path too
    assert ask(app, "/authorize/edge/health/live").status_code == 200
    assert ask(app, "/authorize/edge/orders").json() == generic("missing_certificate")
    # no path at all is not "/": refused, as nothing says what the client asked for
    assert ask(app, "/authorize/edge").json() == generic("bad_request")


def test_the_query_string_is_never_part_of_the_path(
    app: AuthorizerApp, logged: Callable[[], dict[str, Any]]
) -> None:
    assert ask(app, "/authorize/edge", _nginx(None, "/health?next=/orders")).status_code == 200
    refused = ask(app, "/authorize/edge", _nginx(None, "/orders?next=/health"))
    assert refused.json() == generic("missing_certificate")
    assert logged()["path"] == "/orders"
    # ingress-nginx: the whole URL, query and all
    url = [("X-Original-URL", "https://api.contoso.com/health/live?x=/orders")]
    url.append(("X-Original-Method", "GET"))
    assert ask(app, "/authorize/edge", url).status_code == 200
    assert logged()["path"] == "/health/live"
    assert ask(app, "/authorize/edge/health?x=1").status_code == 200  # Envoy's appended path


def test_an_excluded_path_passes_without_identity_headers(app: AuthorizerApp, certs: Certs) -> None:
    response = ask(app, "/authorize/edge", _nginx(None, "/health/live"))
    assert (response.status_code, response.content) == (200, b"")
    assert not any(name.lower() in response.headers for name in IDENTITY)
    # even with a certificate and a client's forged identity headers
    forged = [*_nginx(certs.alice, "/health"), ("X-Client-Principal", "admin")]
    response = ask(app, "/authorize/edge", forged)
    assert response.status_code == 200 and "x-client-principal" not in response.headers


@pytest.mark.parametrize(
    "headers",
    [
        [("X-Original-URI", "/health"), ("X-Original-URI", "/orders")],
        [("X-Original-URI", "/orders"), ("x-original-uri", "/orders")],
        [("X-Forwarded-Uri", "/health"), ("X-Forwarded-Uri", "/health")],
        [("X-Original-URI", "/health"), ("X-Original-Method", "GET"), ("X-Original-Method", "GET")],
        [("X-Original-URI", "/health"), ("X-Forwarded-Host", "a"), ("X-Forwarded-Host", "b")],
        # a client's copy passed on beside the one the proxy set (Caddy, Traefik, nginx)
        [("X-Original-URI", "/health"), ("X-Forwarded-Uri", "/orders")],
        [("X-Forwarded-Uri", "/orders"), ("X-Original-URL", "https://api/health")],
        [
            ("X-Original-URI", "/health"),
            ("X-Original-Method", "GET"),
            ("X-Forwarded-Method", "POST"),
        ],
        # a URL that cannot be read
        [("X-Original-URL", "http://[::1/health")],
    ],
    ids=[
        "uri-twice",
        "uri-twice-same",
        "forwarded-uri-twice",
        "method-twice",
        "host-twice",
        "uri-and-forwarded-uri",
        "forwarded-uri-and-url",
        "two-methods",
        "broken-url",
    ],
)
def test_an_ambiguous_description_is_bad_request(
    app: AuthorizerApp, logged: Callable[[], dict[str, Any]], headers: list[tuple[str, str]]
) -> None:
    response = ask(app, "/authorize/edge", headers)
    assert (response.status_code, response.json()) == (403, generic("bad_request"))
    assert logged()["reason"] == "bad_request"
    # with the Envoy-style appended path too
    assert ask(app, "/authorize/edge/health", headers).json()["reason"] == "bad_request"


def test_descriptions_that_agree_are_one(app: AuthorizerApp) -> None:
    # ingress-nginx with auth-method sends both X-Original-URI and X-Original-URL
    agree = [
        ("X-Original-URI", "/health/live?x=1"),
        ("X-Original-URL", "https://api.contoso.com/health/live?x=1"),
        ("X-Original-Method", "GET"),
        ("X-Forwarded-Method", "GET"),
    ]
    assert ask(app, "/authorize/edge", agree).status_code == 200
    assert ask(app, "/authorize/edge/health/live", agree).status_code == 200
    assert ask(app, "/authorize/edge/orders", agree).json()["reason"] == "bad_request"


def test_the_method_comes_from_the_proxy_or_from_envoy_s_request_itself(
    app: AuthorizerApp, certs: Certs, logged: Callable[[], dict[str, Any]]
) -> None:
    cert = ("X-SSL-Client-Cert", escaped(certs.alice))
    said = [("X-Original-URI", "/orders"), cert, ("X-Original-Method", "DELETE")]
    assert ask(app, "/authorize/edge", said).json() == generic("denied_by_rule")
    forwarded = [("X-Forwarded-Uri", "/orders"), cert, ("X-Forwarded-Method", "DELETE")]
    assert ask(app, "/authorize/edge", forwarded).json()["reason"] == "denied_by_rule"
    # Envoy's HTTP ext_authz asks with the original method and appends the original path
    assert ask(app, "/authorize/edge/orders", [cert], method="DELETE").json()["reason"] == (
        "denied_by_rule"
    )
    assert ask(app, "/authorize/edge/orders", [cert], method="POST").status_code == 200


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_no_method_from_the_proxy_is_bad_request_not_the_subrequest_s(
    app: AuthorizerApp, certs: Certs, logged: Callable[[], dict[str, Any]], method: str
) -> None:
    """nginx asks its auth_request with GET whatever the client sent: without
    X-Original-Method, a DELETE would be decided as a GET and pass the no-deletes rule."""
    unsaid = [("X-Original-URI", "/orders"), ("X-SSL-Client-Cert", escaped(certs.alice))]
    response = ask(app, "/authorize/edge", unsaid, method=method)
    assert (response.status_code, response.json()) == (403, generic("bad_request"))
    assert "X-Original-Method" in logged()["explanation"]


def test_policy_names_are_percent_decoded_and_never_split(app: AuthorizerApp, certs: Certs) -> None:
    assert ask(app, "/authorize/%65dge", _nginx(certs.alice)).status_code == 200
    assert ask(app, "/authorize/%65%64%67%65/orders", _nginx(certs.alice)).status_code == 200
    for target in ("/authorize/edge%2Forders", "/authorize/edge%20", "/authorize/nope"):
        assert ask(app, target, _nginx(certs.alice)).json() == generic("unknown_policy")
    # with four policies, a request naming none is refused
    assert ask(app, "/authorize", _nginx(certs.alice)).json() == generic("unknown_policy")
    assert ask(app, "/authorize/", _nginx(certs.alice)).json() == generic("unknown_policy")


def test_probes_and_everything_else(files: dict[str, Path], certs: Certs) -> None:
    ready = [True]
    authorizer = Authorizer([files["edge"]])
    app = AuthorizerApp(authorizer, ready=lambda: ready[0])
    health = ask(app, "/healthz")
    assert (health.status_code, health.text) == (200, "ok\n")
    assert (ask(app, "/readyz").status_code, ask(app, "/readyz").text) == (200, "ready\n")
    ready[0] = False
    assert (ask(app, "/readyz").status_code, ask(app, "/readyz").text) == (503, "draining\n")
    assert ask(app, "/healthz").status_code == 200
    assert ask(app, "/authorize", _nginx(certs.alice)).status_code == 200  # still decides
    for target in ("/", "/metrics", "/authorizer", "/authorize-edge", "/healthz/x", "/edge"):
        response = ask(app, target, _nginx(certs.alice))
        assert response.status_code == 404, target
        assert "x-client-principal" not in response.headers
    assert ask(app, "/metrics", method="POST").status_code == 404  # metrics are off here


def test_metrics_count_verdicts_and_time_them(files: dict[str, Path], certs: Certs) -> None:
    metrics = Metrics()
    authorizer = Authorizer([files["edge"], files["shop"]], observe=metrics.observe)
    app = AuthorizerApp(authorizer, metrics=lambda: metrics.render(authorizer))
    for _ in range(3):
        assert ask(app, "/authorize/edge", _nginx(certs.alice)).status_code == 200
    assert ask(app, "/authorize/edge", _nginx(certs.mallory)).status_code == 403
    assert ask(app, "/authorize/shop", _caddy("")).status_code == 403
    assert ask(app, "/authorize/nope", _nginx(certs.alice)).status_code == 403
    assert ask(app, "/authorize/edge", [("X-Original-URI", "/a"), ("X-Original-URI", "/b")])
    response = ask(app, "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float | None:
        return samples.get((name, tuple(sorted(labels.items()))))

    total = "policyengine_decisions_total"
    assert value(total, policy="edge", decision="allow", reason="allowed_by_rule") == 3
    assert value(total, policy="edge", decision="deny", reason="no_matching_rule") == 1
    assert value(total, policy="shop", decision="deny", reason="missing_certificate") == 1
    assert value(total, policy="", decision="deny", reason="unknown_policy") == 1
    assert value(total, policy="edge", decision="deny", reason="bad_request") == 1
    assert not any(dict(labels).get("policy") == "nope" for _, labels in samples)
    histogram = "policyengine_decision_seconds"
    assert value(f"{histogram}_count", policy="edge") == 5
    assert value(f"{histogram}_count", policy="") == 1
    assert value(f"{histogram}_bucket", policy="edge", le="+Inf") == 5
    buckets = sorted(
        (float(dict(labels)["le"]), v)
        for (name, labels), v in samples.items()
        if name == f"{histogram}_bucket" and dict(labels)["policy"] == "edge"
    )
    assert buckets[0][0] == 5e-6 and buckets[-2][0] == 0.05
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(buckets))
    edge_sum = value(f"{histogram}_sum", policy="edge")
    assert edge_sum is not None and 0 < edge_sum < 5
    assert value("policyengine_policy_reload_failures", policy="edge") == 0
    assert value("policyengine_policy_reload_failures", policy="shop") == 0


# -- Envoy ext_authz over gRPC ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def check_request(
    *,
    policy: str | None = None,
    certificate: str = "",
    path: str = "/orders",
    method: str = "GET",
    host: str = "api.contoso.com",
    headers: dict[str, str] | None = None,
    address: str | None = "198.51.100.7",
) -> Any:
    """A CheckRequest as Envoy's ext_authz filter sends it (include_peer_certificate)."""
    context = attribute_context_pb2.AttributeContext
    source = context.Peer(certificate=certificate)
    if address is not None:
        source.address.socket_address.address = address
        source.address.socket_address.port_value = 44321
    http = context.HttpRequest(
        method=method, path=path, host=host, scheme="https", headers=headers or {}
    )
    attributes = context(source=source, request=context.Request(http=http))
    if policy is not None:
        attributes.context_extensions["policy"] = policy
    return external_auth_pb2.CheckRequest(attributes=attributes)


@pytest.fixture(scope="module")
def check(files: dict[str, Path]) -> Iterator[Callable[[Any], Any]]:
    """Check over a real channel, against grpc_server on a grpc.aio loop of its own."""
    authorizer = Authorizer([files["edge"], files["mesh"]])
    address = f"127.0.0.1:{free_port()}"
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> Any:
        server = grpc_server(authorizer, address)
        await server.start()
        return server

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    channel = grpc.insecure_channel(address)
    try:
        grpc.channel_ready_future(channel).result(timeout=10)
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        yield lambda request: stub.Check(request, timeout=5)
    finally:
        channel.close()
        asyncio.run_coroutine_threadsafe(server.stop(0), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def _set(response: Any) -> list[tuple[str, str, int]]:
    return [(h.header.key, h.header.value, h.append_action) for h in response.ok_response.headers]


def _denied(response: Any, reason: str) -> None:
    assert not response.HasField("ok_response")
    assert response.status.code == code_pb2.PERMISSION_DENIED
    assert response.status.message == reason
    denied = response.denied_response
    assert denied.status.code == 403
    assert json.loads(denied.body) == generic(reason)
    shown = {h.header.key: h.header.value for h in denied.headers}
    assert shown == {"content-type": "application/json", "cache-control": "no-store"}


def test_grpc_allow_sets_identity_headers_and_removes_the_others(
    check: Callable[[Any], Any], certs: Certs
) -> None:
    forged = {"x-client-principal": "admin", "x-client-roles": "superuser"}
    response = check(check_request(policy="edge", certificate=escaped(certs.alice), headers=forged))
    assert response.status.code == code_pb2.OK
    assert not response.HasField("denied_response")
    assert _set(response) == [
        ("x-client-principal", "alice", OVERWRITE),
        ("x-client-groups", "Contoso,Writers", OVERWRITE),
        ("x-client-roles", "writer", OVERWRITE),
    ]
    assert list(response.ok_response.headers_to_remove) == []
    carol = check(check_request(policy="edge", certificate=escaped(certs.carol), headers=forged))
    assert _set(carol) == [
        ("x-client-principal", "carol", OVERWRITE),
        ("x-client-groups", "Contoso", OVERWRITE),
    ]
    assert list(carol.ok_response.headers_to_remove) == ["x-client-roles"]
    # the path without its query, the method: what the rules see
    assert check(
        check_request(policy="edge", certificate=escaped(certs.alice), path="/orders?a=b")
    ).HasField("ok_response")
    assert not check(
        check_request(policy="edge", certificate=escaped(certs.alice), path="/admin?x=/orders")
    ).HasField("ok_response")
    deleted = check(check_request(policy="edge", certificate=escaped(certs.alice), method="DELETE"))
    _denied(deleted, "denied_by_rule")
    excluded = check(check_request(policy="edge", path="/health/live"))
    assert excluded.status.code == code_pb2.OK
    assert _set(excluded) == []
    assert list(excluded.ok_response.headers_to_remove) == [n.lower() for n in IDENTITY]


def test_grpc_without_a_certificate_is_refused(check: Callable[[Any], Any], certs: Certs) -> None:
    _denied(check(check_request(policy="edge")), "missing_certificate")
    # an XFCC header does not stand in for the peer certificate of a policy read as nginx's
    headers = {
        "x-forwarded-client-cert": xfcc(certs.alice, "spiffe://x"),
        "x-ssl-client-cert": escaped(certs.alice),
    }
    _denied(
        check(check_request(policy="edge", headers=headers, address="127.0.0.1")),
        "missing_certificate",
    )
    _denied(
        check(check_request(policy="edge", certificate=escaped(certs.mallory))), "no_matching_rule"
    )


@pytest.mark.parametrize(
    "certificate",
    [
        "garbage",
        "-----BEGIN%20CERTIFICATE-----%0AAAAA%0A-----END%20CERTIFICATE-----%0A",
        "%FF%FE%00%01",
        "-----BEGIN CERTIFICATE-----",
    ],
    ids=["text", "bad-der", "bytes", "armor-only"],
)
def test_grpc_garbage_certificate_is_malformed_never_allowed(
    check: Callable[[Any], Any], certs: Certs, certificate: str
) -> None:
    response = check(check_request(policy="edge", certificate=certificate, path="/orders"))
    assert not response.HasField("ok_response")
    assert response.status.code == code_pb2.PERMISSION_DENIED
    assert response.status.message.startswith("malformed_"), response.status.message
    _denied(response, response.status.message)
    base64_der = check(check_request(policy="edge", certificate=der64(certs.alice)))
    assert base64_der.status.message.startswith("malformed_")


def test_grpc_unknown_policy(check: Callable[[Any], Any], certs: Certs) -> None:
    for policy in ("nope", "EDGE", "edge/orders"):
        response = check(check_request(policy=policy, certificate=escaped(certs.alice)))
        _denied(response, "unknown_policy")
    # two policies are served: a check naming none is refused too
    _denied(check(check_request(certificate=escaped(certs.alice))), "unknown_policy")
    _denied(check(check_request(policy="", certificate=escaped(certs.alice))), "unknown_policy")


def test_grpc_envoy_source_reads_xfcc_from_a_trusted_source_address_only(
    check: Callable[[Any], Any], certs: Certs
) -> None:
    headers = {"x-forwarded-client-cert": xfcc(certs.payments, "spiffe://contoso.com/payments")}
    allowed = check(
        check_request(policy="mesh", path="/pay/1", headers=headers, address="10.1.2.3")
    )
    assert allowed.status.code == code_pb2.OK
    assert _set(allowed) == [("x-client-principal", "spiffe://contoso.com/payments", OVERWRITE)]
    assert list(allowed.ok_response.headers_to_remove) == ["x-client-groups", "x-client-roles"]
    # the gRPC peer (this test, on 127.0.0.1, which the policy trusts) is not who sent the
    # headers: attributes.source.address is, and it is not trusted; or it is not given
    for address in ("203.0.113.9", "10.1.2.4", None):
        response = check(
            check_request(policy="mesh", path="/pay/1", headers=headers, address=address)
        )
        _denied(response, "missing_certificate")
    # a policy read as envoy's takes its certificate from XFCC, never attributes.source
    peer_only = check(
        check_request(
            policy="mesh", path="/pay/1", certificate=escaped(certs.payments), address="10.1.2.3"
        )
    )
    _denied(peer_only, "missing_certificate")
    wrong_path = check(
        check_request(policy="mesh", path="/refund", headers=headers, address="10.1.2.3")
    )
    _denied(wrong_path, "no_matching_rule")


class ReloadedBetweenReads(ReloadingPolicy):
    """A policy file rewritten right after each read: the first read gives the policy at
    ``first``, every later one the policy at ``then`` (a reload that lands mid-request)."""

    def __init__(self, first: Path, then: Path) -> None:
        super().__init__(first)
        self.then = load_policy(then)
        self.reads = 0

    def current(self) -> Any:
        self.reads += 1
        return super().current() if self.reads == 1 else self.then


@pytest.mark.parametrize("first", ["peer", "xfcc"])
def test_grpc_decides_with_the_one_policy_it_read(tmp_path: Path, certs: Certs, first: str) -> None:
    """Which certificate a check reads (Envoy's peer, or XFCC) and the rules that decide it
    come from one read of the policy, even when a reload lands between them."""
    rule = '  - id: {id}\n    effect: allow\n    when: valid and subject.O == "Contoso"\n'
    peer = "policy: swap\nmode: required\nrules:\n" + rule.format(id="peer-rule")
    xfcc_policy = (
        "policy: swap\nmode: required\ncertificate:\n  source: envoy\n"
        "  trusted_proxies: [10.1.2.3]\nrules:\n" + rule.format(id="xfcc-rule")
    )
    texts = {"peer": peer, "xfcc": xfcc_policy}
    for name, text in texts.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    then = "xfcc" if first == "peer" else "peer"
    authorizer = Authorizer([tmp_path / f"{first}.yaml"])
    flipping = ReloadedBetweenReads(tmp_path / f"{first}.yaml", tmp_path / f"{then}.yaml")
    authorizer.providers["swap"] = flipping
    headers = {"x-forwarded-client-cert": xfcc(certs.alice, "spiffe://contoso.com/alice")}
    request = check_request(
        policy="swap", certificate=escaped(certs.alice), headers=headers, address="10.1.2.3"
    )
    verdict = ExtAuthz(authorizer).decide(request)
    assert (verdict.allowed, verdict.decision.rule) == (True, f"{first}-rule")
    assert flipping.reads == 1


def test_grpc_server_on_a_taken_address_raises_oserror(files: dict[str, Path]) -> None:
    authorizer = Authorizer([files["edge"]])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"

        async def make() -> None:
            grpc_server(authorizer, address)

        with pytest.raises(OSError, match=f"cannot listen on {address} for gRPC"):
            asyncio.run(make())
