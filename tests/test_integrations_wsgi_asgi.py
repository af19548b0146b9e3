"""The WSGI and ASGI middleware in front of real applications: a plain WSGI app driven by
werkzeug's test client, and a Starlette app driven by httpx's ASGITransport and Starlette's
TestClient (for websockets). No mocks: every request goes through the framework."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import textwrap
import threading
import warnings
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import NOW
from integration_support import (
    FABRIKAM_PEM,
    NGINX_PARTNER,
    PARTNER_API,
    PARTNER_PEM,
    UnreadableInput,
    assert_tells_nothing,
    azure_header,
    cn_policy,
    nginx_header,
    open_policy,
    refusal_cases,
    secret_policy,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from werkzeug.test import Client, EnvironBuilder

from policyengine import load_policy, policy_from_text
from policyengine.evaluation.decision import Decision
from policyengine.integrations import REFUSALS, DenyResponse, environ_request
from policyengine.integrations import asgi as asgi_integration
from policyengine.integrations import wsgi as wsgi_integration
from policyengine.integrations.runtime import DECISION_LOGGER, DecisionLog, ReloadingPolicy
from policyengine.testing import make_certificate

with warnings.catch_warnings():
    # Starlette 1.x asks for httpx2 for its TestClient; httpx still drives it fine
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

PARTNER = {"X-ARR-ClientCert": azure_header(PARTNER_PEM)}
FABRIKAM = {"X-ARR-ClientCert": azure_header(FABRIKAM_PEM)}
JSON = {"Accept": "application/json"}


# -- a plain WSGI application -----------------------------------------------------------


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Reports what it saw: the decision the middleware left, and the body it read."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    decision: Decision = environ[wsgi_integration.ENVIRON_KEY]
    payload = {
        "reason": decision.reason,
        "subject": decision.certificate.subject if decision.certificate else None,
        "body_length": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
    }
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(payload).encode()]


def served(app: Any) -> Any:
    """``app`` as a WSGI server runs it: werkzeug's test client sets no REMOTE_ADDR, and
    every real server does (the TCP peer, here loopback)."""

    def server(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ.setdefault("REMOTE_ADDR", "127.0.0.1")
        return app(environ, start_response)  # type: ignore[no-any-return]

    return server


def wsgi_client(policy: Any = PARTNER_API, **options: Any) -> Client:
    return Client(served(wsgi_integration.PolicyMiddleware(wsgi_app, policy, **options)))


def test_wsgi_allowed_request_reaches_the_app_with_its_decision() -> None:
    response = wsgi_client().get("/orders", headers=PARTNER)
    assert response.status_code == 200
    assert response.json == {
        "reason": "allowed_by_rule",
        "subject": "O=Microsoft Corp,CN=nildevecc",
        "body_length": 0,
        "body_sha256": hashlib.sha256(b"").hexdigest(),
    }


def test_wsgi_refusal_is_text_by_default_and_json_when_accepted() -> None:
    client = wsgi_client()
    text = client.get("/orders", headers=FABRIKAM)
    assert text.status_code == 403
    assert text.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert text.headers["Cache-Control"] == "no-store"
    assert text.get_data(as_text=True).startswith("403 Forbidden: no_matching_rule: ")

    as_json = client.get("/orders", headers={**FABRIKAM, **JSON})
    assert as_json.status_code == 403
    assert as_json.headers["Content-Type"] == "application/json"
    assert as_json.json is not None
    assert as_json.json["error"] == "forbidden"
    assert as_json.json["reason"] == "no_matching_rule"
    assert "trace" not in as_json.json  # never without expose_trace


def test_wsgi_missing_certificate_and_exclusion_path() -> None:
    client = wsgi_client()
    refused = client.get("/orders", headers=JSON)
    assert refused.status_code == 403
    assert refused.json is not None
    assert (refused.json["error"], refused.json["reason"]) == ("forbidden", "missing_certificate")
    health = client.get("/health/live")
    assert health.status_code == 200
    assert health.json is not None and health.json["reason"] == "excluded_path"


def test_wsgi_nginx_header_believed_only_from_trusted_proxies() -> None:
    client = wsgi_client(NGINX_PARTNER)
    header = {"X-SSL-Client-Cert": nginx_header(PARTNER_PEM), **JSON}
    trusted = client.get("/orders", headers=header, environ_overrides={"REMOTE_ADDR": "10.0.0.5"})
    assert trusted.status_code == 200
    outsider = client.get(
        "/orders", headers=header, environ_overrides={"REMOTE_ADDR": "203.0.113.7"}
    )
    assert outsider.status_code == 403
    assert outsider.json is not None and outsider.json["reason"] == "missing_certificate"


def test_wsgi_large_body_reaches_the_app_intact() -> None:
    body = os.urandom(3 * 1024 * 1024)
    response = wsgi_client().post("/upload", headers=PARTNER, data=body)
    assert response.status_code == 200
    assert response.json is not None
    assert response.json["body_length"] == len(body)
    assert response.json["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_wsgi_refused_request_body_is_never_read() -> None:
    stream = UnreadableInput()
    environ = EnvironBuilder(
        path="/upload", method="POST", headers=FABRIKAM, data=b"x" * 1000
    ).get_environ()
    environ["wsgi.input"] = stream
    environ["REMOTE_ADDR"] = "127.0.0.1"
    statuses: list[str] = []
    middleware = wsgi_integration.PolicyMiddleware(wsgi_app, PARTNER_API)
    body = b"".join(middleware(environ, lambda status, headers: statuses.append(status)))
    assert statuses == ["403 Forbidden"]
    assert body.startswith(b"403 Forbidden: no_matching_rule")
    assert not stream.touched


def test_wsgi_on_deny_hook_answers_with_its_own_response() -> None:
    seen: list[Decision] = []

    def on_deny(decision: Decision) -> DenyResponse | None:
        seen.append(decision)
        if decision.reason == "missing_certificate":
            body = b"present a client certificate"
            return DenyResponse(401, (("Content-Type", "text/plain"),), body)
        return None  # the default refusal for everything else

    client = wsgi_client(on_deny=on_deny)
    custom = client.get("/orders")
    assert custom.status == "401 Unauthorized"
    assert custom.get_data() == b"present a client certificate"
    default = client.get("/orders", headers=FABRIKAM)
    assert default.status == "403 Forbidden"
    assert [d.reason for d in seen] == ["missing_certificate", "no_matching_rule"]


def test_wsgi_expose_trace_puts_the_trace_in_refusals() -> None:
    client = wsgi_client(expose_trace=True)
    as_json = client.get("/orders", headers={**FABRIKAM, **JSON}).json
    assert as_json is not None and "trace" in as_json
    text = client.get("/orders", headers=FABRIKAM).get_data(as_text=True)
    assert 'issuer.O == "Microsoft Corp"' in text  # the predicate that failed, explained


def test_wsgi_refusal_tells_the_client_the_reason_code_and_a_generic_sentence_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The decision's message names what the policy wants (a CN, an issuer, a pin, a rule,
    the policy): the body and headers carry only the reason code and its sentence, and the
    message goes to the decision log."""
    client = wsgi_client(secret_policy(tmp_path / "secret.yaml"))
    for headers, reason, explained in refusal_cases():
        caplog.clear()
        with caplog.at_level(logging.INFO, logger=DECISION_LOGGER):
            text = client.get("/orders", headers=headers)
            as_json = client.get("/orders", headers={**headers, **JSON})
        assert text.status_code == as_json.status_code == 403
        assert text.get_data(as_text=True) == f"403 Forbidden: {reason}: {REFUSALS[reason]}\n"
        assert as_json.json == {"error": "forbidden", "reason": reason, "message": REFUSALS[reason]}
        for response in (text, as_json):
            assert_tells_nothing(response.get_data(), response.headers)
        records = [r for r in caplog.records if r.name == DECISION_LOGGER]
        assert len(records) == 2
        assert all(explained in r.explanation for r in records), explained


def test_wsgi_expose_trace_tells_the_client_the_explanation_too(tmp_path: Path) -> None:
    client = wsgi_client(secret_policy(tmp_path / "secret.yaml"), expose_trace=True)
    headers, reason, explained = refusal_cases()[1]
    as_json = client.get("/orders", headers={**headers, **JSON}).json
    assert as_json is not None
    assert (as_json["reason"], as_json["message"]) == (reason, REFUSALS[reason])
    assert explained in as_json["explanation"]
    assert "trace" in as_json
    text = client.get("/orders", headers=headers).get_data(as_text=True)
    assert text.startswith(f"403 Forbidden: {reason}: {REFUSALS[reason]}\n\nNo allow rule holds")


def test_wsgi_middleware_checks_its_configuration() -> None:
    with pytest.raises(TypeError, match="WSGI application"):
        wsgi_integration.PolicyMiddleware("not an app", PARTNER_API)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="policy file path"):
        wsgi_integration.PolicyMiddleware(wsgi_app, 42)  # type: ignore[arg-type]


def test_nested_wsgi_middleware_decide_again_under_another_policy_of_the_same_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lenient = open_policy(tmp_path / "lenient.yaml")
    strict = cn_policy(tmp_path / "strict.yaml", "nildevecc", name="partner")
    inner = wsgi_integration.PolicyMiddleware(wsgi_app, strict)
    client = Client(served(wsgi_integration.PolicyMiddleware(inner, lenient)))
    assert client.get("/orders", headers=JSON).status_code == 403
    same = load_policy(PARTNER_API)
    twice = wsgi_integration.PolicyMiddleware(wsgi_app, same)
    client = Client(served(wsgi_integration.PolicyMiddleware(twice, same)))
    with caplog.at_level(logging.INFO, logger=DECISION_LOGGER):
        assert client.get("/orders", headers=PARTNER).status_code == 200
    assert len([r for r in caplog.records if r.name == DECISION_LOGGER]) == 1


# -- decision logs ----------------------------------------------------------------------


def test_one_decision_record_per_request_with_the_documented_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = wsgi_client()
    with caplog.at_level(logging.INFO, logger=DECISION_LOGGER):
        client.get("/orders", headers=PARTNER)
        client.post("/orders", headers=FABRIKAM)
        client.get("/health")
    records = [r for r in caplog.records if r.name == DECISION_LOGGER]
    assert len(records) == 3
    allowed, denied, excluded = records
    fields = ["decision", "reason", "rule", "policy", "method", "path", "peer"]
    fields += ["elapsed_us", "fingerprint_sha256", "subject", "explanation"]
    assert {name: getattr(allowed, name) for name in fields[:7]} == {
        "decision": "allow",
        "reason": "allowed_by_rule",
        "rule": "partner",
        "policy": "partner-api",
        "method": "GET",
        "path": "/orders",
        "peer": "127.0.0.1",
    }
    assert allowed.fingerprint_sha256 == (
        "e2d65529f91ba9fc8a79f24d2a7fc2138043fefe478b7036994564dd54872298"
    )
    assert allowed.subject == "O=Microsoft Corp,CN=nildevecc"
    assert allowed.explanation == "Allowed by rule partner."
    assert denied.explanation.startswith("No allow rule holds; the closest is partner")
    assert not hasattr(allowed, "trace")  # not explained: no trace
    assert isinstance(allowed.elapsed_us, float) and allowed.elapsed_us >= 0
    assert allowed.policyengine == {name: getattr(allowed, name) for name in fields}
    assert (denied.decision, denied.reason, denied.method) == ("deny", "no_matching_rule", "POST")
    assert (excluded.reason, excluded.fingerprint_sha256) == ("excluded_path", None)
    assert allowed.getMessage() == "127.0.0.1 GET /orders -> allow (allowed_by_rule, rule partner)"


def test_decision_log_fields_are_chosen_and_the_log_can_be_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    chosen = wsgi_client(log=DecisionLog(fields=("serial", "issuer")))
    silent = wsgi_client(log=None)
    with caplog.at_level(logging.INFO, logger=DECISION_LOGGER):
        chosen.get("/orders", headers=PARTNER)
        silent.get("/orders", headers=PARTNER)
    (record,) = [r for r in caplog.records if r.name == DECISION_LOGGER]
    assert set(record.policyengine) >= {"serial", "issuer"}
    assert "subject" not in record.policyengine
    with pytest.raises(ValueError, match="unknown log fields"):
        DecisionLog(fields=("subjet",))


def test_each_middleware_writes_through_a_decision_log_of_its_own() -> None:
    """The default ``log`` is made per middleware, never one instance shared by all;
    ``log=None`` stays off and a given log is kept as given."""
    policy = load_policy(PARTNER_API)
    first = wsgi_integration.PolicyMiddleware(wsgi_app, policy)
    second = starlette_app(policy)
    assert isinstance(first.log, DecisionLog) and isinstance(second.log, DecisionLog)
    assert first.log is not second.log
    assert first.log == DecisionLog()
    assert wsgi_integration.PolicyMiddleware(wsgi_app, policy, log=None).log is None
    chosen = DecisionLog(trace=True)
    assert starlette_app(policy, log=chosen).log is chosen


def test_decision_log_with_trace_explains_every_decision_without_telling_the_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = wsgi_client(log=DecisionLog(trace=True))
    with caplog.at_level(logging.INFO, logger=DECISION_LOGGER):
        refused = client.get("/orders", headers={**FABRIKAM, **JSON})
    assert refused.json is not None and "trace" not in refused.json
    assert "explanation" not in refused.json
    (record,) = [r for r in caplog.records if r.name == DECISION_LOGGER]
    assert [rule["rule"] for rule in record.trace["rules"]] == ["revoked-partner", "partner"]
    assert 'issuer.O == "Microsoft Corp"' in str(record.trace)
    assert record.policyengine["trace"] is record.trace


# -- a policy file that changes -----------------------------------------------------------


def _rewrite(path: Path, text: str) -> None:
    """Write and move the modification time on, so the change is seen even on a file
    system whose clock is coarser than the time between two writes."""
    before = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_reloading_policy_picks_up_an_edit_and_keeps_the_old_one_when_broken(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    alice = {"X-ARR-ClientCert": azure_header(make_certificate({"CN": "alice"}).pem)}
    bob = {"X-ARR-ClientCert": azure_header(make_certificate({"CN": "bob"}).pem)}
    path = cn_policy(tmp_path / "policy.yaml", "alice")
    reloading = ReloadingPolicy(path, interval=0)
    client = wsgi_client(reloading)
    assert client.get("/orders", headers=alice).status_code == 200
    assert client.get("/orders", headers=bob).status_code == 403

    cn_policy(tmp_path / "next.yaml", "alice", "bob")
    _rewrite(path, (tmp_path / "next.yaml").read_text())
    # the first check sees the change, the second sees it settled and loads it
    assert client.get("/orders", headers=bob).status_code == 403
    assert reloading.reloads == 0
    assert client.get("/orders", headers=bob).status_code == 200
    assert reloading.reloads == 1

    broken = path.read_text().replace("subject.CN in", "subjet.CN in")
    with caplog.at_level(logging.ERROR, logger="policyengine"):
        _rewrite(path, broken)
        for _ in range(3):
            assert client.get("/orders", headers=bob).status_code == 200  # the previous policy
    assert reloading.last_error is not None
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "not reloaded; the previous one stays in force" in errors[0]
    assert f"{path}:8:" in errors[0]  # file:line:col of the typo
    assert "did you mean `subject.CN`?" in errors[0]

    _rewrite(path, (tmp_path / "next.yaml").read_text().replace('"bob"', '"carol"'))
    assert client.get("/orders", headers=bob).status_code == 200  # seen; not settled yet
    assert client.get("/orders", headers=bob).status_code == 403
    assert reloading.last_error is None and reloading.reloads == 2


GUARDED = textwrap.dedent(
    """\
    policy: guarded
    silence: [trusted-anywhere]
    rules:
      - id: known-client
        effect: allow
        when: subject.CN in ["alice", "mallory"]
      - id: no-mallory
        effect: deny
        when: subject.CN == "mallory"
    """
)
"""A policy whose deny rule comes last: the prefix of the file that ends before it is a
valid policy that allows mallory."""
PREFIX = GUARDED[: GUARDED.index("  - id: no-mallory")]


def _write_at(path: Path, text: str, mtime_ns: int) -> None:
    """Write ``text`` in place (as an editor or cp does) and set its modification time."""
    with open(path, "w") as file:
        file.write(text)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_a_policy_file_caught_mid_write_is_not_loaded(tmp_path: Path) -> None:
    """cp writes the new file in place: a check that sees the first half sees a valid
    policy without the deny rule (mallory allowed). The file is loaded only once two checks
    in a row see the same size and modification time, which a file still being written
    does not show."""
    mallory = make_certificate({"CN": "mallory"}).pem
    assert policy_from_text(PREFIX).evaluate(cert=mallory, path="/").allowed  # the danger
    path = tmp_path / "policy.yaml"
    path.write_text(GUARDED.replace("mallory", "eve"))
    reloading = ReloadingPolicy(path, interval=0)
    original = reloading.current()
    base = path.stat().st_mtime_ns

    _write_at(path, PREFIX, base + 10**9)  # the writer is half-way
    assert reloading.current() is original
    _write_at(path, GUARDED, base + 2 * 10**9)  # and done
    assert reloading.current() is original  # changed again since the last check: wait
    settled = reloading.current()
    assert settled is not original and reloading.reloads == 1
    assert [rule.id for rule in settled.rules] == ["known-client", "no-mallory"]
    assert not settled.evaluate(cert=mallory, path="/").allowed
    assert reloading.current() is settled  # nothing changed: nothing loaded


def test_a_policy_file_written_to_while_it_loads_is_loaded_again_once_settled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The prefix looked settled for two checks, but the writer finishes while the reload
    reads it: what was read may be half the file, and is not used."""
    from policyengine.integrations import runtime

    mallory = make_certificate({"CN": "mallory"}).pem
    path = tmp_path / "policy.yaml"
    path.write_text(GUARDED.replace("mallory", "eve"))
    reloading = ReloadingPolicy(path, interval=0)
    original = reloading.current()
    base = path.stat().st_mtime_ns
    _write_at(path, PREFIX, base + 10**9)
    finishing = [GUARDED]
    real_load = runtime.load_policy

    def load_while_the_writer_finishes(target: Path) -> Any:
        loaded = real_load(target)
        while finishing:
            _write_at(path, finishing.pop(), base + 2 * 10**9)
        return loaded

    monkeypatch.setattr(runtime, "load_policy", load_while_the_writer_finishes)
    assert reloading.current() is original  # first sight of the change
    assert reloading.current() is original  # read the prefix, but the file changed meanwhile
    assert reloading.reloads == 0
    assert reloading.current() is original  # the finished file, first seen
    final = reloading.current()
    assert final is not original and reloading.reloads == 1
    assert not final.evaluate(cert=mallory, path="/").allowed


def _pki_policy(folder: Path, root: Any, revoked: list[int]) -> Path:
    (folder / "root.pem").write_bytes(root.pem)
    _write_crl(folder / "root.crl", root, revoked, number=1)
    policy = folder / "pki.yaml"
    policy.write_text(
        textwrap.dedent(
            """\
            policy: pki
            silence: [trusted-anywhere]
            trust:
              anchors: [root.pem]
              revocation:
                crls: [root.crl]
                mode: hard
            rules:
              - id: revoked
                effect: deny
                when: revoked
              - id: client
                effect: allow
                when: trusted and subject.CN == "alice"
            """
        )
    )
    return policy


def _write_crl(path: Path, issuer: Any, revoked: list[int], *, number: int) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(NOW - timedelta(days=1) + timedelta(hours=number))
        .next_update(NOW + timedelta(days=30))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(NOW - timedelta(hours=1))
            .build()
        )
    data = builder.sign(issuer.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    replacement = path.with_suffix(".new")
    replacement.write_bytes(data)
    os.replace(replacement, path)  # the safe way: a rename is atomic


def test_a_new_crl_file_is_loaded_without_the_policy_file_changing(tmp_path: Path) -> None:
    validity = {"not_before": NOW - timedelta(days=30), "not_after": NOW + timedelta(days=300)}
    root = make_certificate({"CN": "Reload Root"}, ca=True, **validity)
    alice = make_certificate({"CN": "alice"}, issuer=root, serial=0x1001, **validity)
    reloading = ReloadingPolicy(_pki_policy(tmp_path, root, []), interval=0)
    assert reloading.current().evaluate(cert=alice.pem, path="/", now=NOW).allowed

    _write_crl(tmp_path / "root.crl", root, [0x1001], number=2)  # the CA revokes alice
    reloading.current()  # seen
    revoked = reloading.current().evaluate(cert=alice.pem, path="/", now=NOW)  # settled: loaded
    assert reloading.reloads == 1
    assert (revoked.allowed, revoked.reason, revoked.rule) == (False, "denied_by_rule", "revoked")
    assert [p.name for p in reloading.watched] == ["pki.yaml", "root.pem", "root.crl"]


def test_a_changed_anchor_file_is_loaded_too(tmp_path: Path) -> None:
    validity = {"not_before": NOW - timedelta(days=30), "not_after": NOW + timedelta(days=300)}
    root = make_certificate({"CN": "Reload Root"}, ca=True, **validity)
    other = make_certificate({"CN": "Other Root"}, ca=True, **validity)
    alice = make_certificate({"CN": "alice"}, issuer=other, serial=0x1001, **validity)
    path = _pki_policy(tmp_path, root, [])
    _write_crl(tmp_path / "other.crl", other, [], number=1)
    path.write_text(path.read_text().replace("crls: [root.crl]", "crls: [root.crl, other.crl]"))
    reloading = ReloadingPolicy(path, interval=0)
    assert not reloading.current().evaluate(cert=alice.pem, path="/", now=NOW).allowed

    anchors = tmp_path / "anchors.new"
    anchors.write_bytes(root.pem + other.pem)
    os.replace(anchors, tmp_path / "root.pem")  # the other root becomes an anchor too
    reloading.current()
    assert reloading.current().evaluate(cert=alice.pem, path="/", now=NOW).allowed
    assert reloading.reloads == 1


def test_a_certificate_added_to_an_anchor_folder_is_loaded_and_a_missing_file_waited_for(
    tmp_path: Path,
) -> None:
    validity = {"not_before": NOW - timedelta(days=30), "not_after": NOW + timedelta(days=300)}
    root = make_certificate({"CN": "Reload Root"}, ca=True, **validity)
    other = make_certificate({"CN": "Other Root"}, ca=True, **validity)
    alice = make_certificate({"CN": "alice"}, issuer=other, serial=0x1001, **validity)
    (tmp_path / "roots").mkdir()
    (tmp_path / "roots" / "root.pem").write_bytes(root.pem)
    path = tmp_path / "pki.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            policy: pki
            silence: [trusted-anywhere]
            trust:
              anchors: [roots/]
            rules:
              - id: client
                effect: allow
                when: trusted and subject.CN == "alice"
            """
        )
    )
    reloading = ReloadingPolicy(path, interval=0)
    first = reloading.current()
    assert not first.evaluate(cert=alice.pem, path="/", now=NOW).allowed
    (tmp_path / "roots" / "other.pem").write_bytes(other.pem)
    reloading.current()
    assert reloading.current().evaluate(cert=alice.pem, path="/", now=NOW).allowed

    kept = reloading.current()
    path.unlink()  # an editor that deletes, then writes: the policy in force stays
    assert reloading.current() is kept and reloading.current() is kept
    assert reloading.last_error is None


def test_a_policy_path_is_reloaded_and_must_load_the_first_time(tmp_path: Path) -> None:
    middleware = wsgi_integration.PolicyMiddleware(wsgi_app, str(PARTNER_API))
    assert isinstance(middleware.policy, ReloadingPolicy)
    broken = tmp_path / "broken.yaml"
    broken.write_text("policy: broken\nrules: 3\n")
    with pytest.raises(Exception, match=r"broken\.yaml"):
        wsgi_integration.PolicyMiddleware(wsgi_app, broken)


def test_one_file_path_named_twice_is_one_shared_policy_until_the_file_changes(
    tmp_path: Path,
) -> None:
    from policyengine.integrations.runtime import as_policy_provider

    path = cn_policy(tmp_path / "policy.yaml", "alice")
    first = as_policy_provider(path)
    assert as_policy_provider(str(path)) is first
    assert as_policy_provider(tmp_path / "." / "policy.yaml") is first
    assert ReloadingPolicy(path) is not first  # built by hand: its own

    cn_policy(tmp_path / "next.yaml", "alice", "bob")
    _rewrite(path, (tmp_path / "next.yaml").read_text())
    changed = as_policy_provider(path)
    assert changed is not first  # loaded afresh, now
    assert isinstance(changed, ReloadingPolicy)
    assert changed.current().evaluate(cert=make_certificate({"CN": "bob"}).pem, path="/")
    _rewrite(path, "policy: broken\nrules: 3\n")
    with pytest.raises(Exception, match=r"policy\.yaml"):
        as_policy_provider(path)  # as the first time: a broken file stops start-up


# -- many threads, one middleware ---------------------------------------------------------


def test_threads_sharing_one_middleware_get_their_own_decisions(tmp_path: Path) -> None:
    names = [f"client-{n}" for n in range(8)]
    path = cn_policy(tmp_path / "policy.yaml", *names[::2])  # even clients allowed
    headers = {
        name: {"X-ARR-ClientCert": azure_header(make_certificate({"CN": name}).pem)}
        for name in names
    }
    middleware = wsgi_integration.PolicyMiddleware(
        wsgi_app, ReloadingPolicy(path, interval=0), log=None
    )
    wrong: list[str] = []
    start = threading.Barrier(len(names))

    def run(index: int) -> None:
        client = Client(served(middleware))
        start.wait()
        for round_ in range(60):
            name = names[(index + round_) % len(names)]
            response = client.get("/orders", headers=headers[name])
            expected = 200 if int(name.rsplit("-", 1)[1]) % 2 == 0 else 403
            if response.status_code != expected:
                wrong.append(f"{name}: {response.status_code}")
            elif expected == 200 and response.json != {
                "reason": "allowed_by_rule",
                "subject": f"CN={name}",
                "body_length": 0,
                "body_sha256": hashlib.sha256(b"").hexdigest(),
            }:
                wrong.append(f"{name}: {response.json}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(names))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


# -- a Starlette application behind the ASGI middleware -------------------------------------


async def orders(request: Request) -> JSONResponse:
    decision: Decision = request.state.policyengine_decision
    assert request.scope[asgi_integration.SCOPE_KEY] is decision
    return JSONResponse({"reason": decision.reason, "path": request.url.path})


async def upload(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"length": len(body), "sha256": hashlib.sha256(body).hexdigest()})


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    decision: Decision = websocket.scope[asgi_integration.SCOPE_KEY]
    await websocket.send_text(decision.reason)
    await websocket.close()


def starlette_app(policy: Any = PARTNER_API, **options: Any) -> asgi_integration.PolicyMiddleware:
    app = Starlette(
        routes=[
            Route("/orders", orders),
            Route("/health", orders),
            Route("/upload", upload, methods=["POST"]),
            WebSocketRoute("/ws", echo),
        ]
    )
    return asgi_integration.PolicyMiddleware(app, policy, **options)


def asgi_request(app: Any, method: str, path: str, peer: str = "10.0.0.5", **kw: Any) -> Any:
    """One request through httpx's ASGITransport, from ``peer`` as the TCP client."""

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app, client=(peer, 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            return await client.request(method, path, **kw)

    return asyncio.run(send())


def test_asgi_allowed_request_has_the_decision_in_request_state() -> None:
    response = asgi_request(starlette_app(), "GET", "/orders", headers=PARTNER)
    assert response.status_code == 200
    assert response.json() == {"reason": "allowed_by_rule", "path": "/orders"}
    excluded = asgi_request(starlette_app(), "GET", "/health")
    assert excluded.json()["reason"] == "excluded_path"


def test_asgi_refusal_is_text_or_json_by_accept() -> None:
    app = starlette_app()
    text = asgi_request(app, "GET", "/orders", headers=FABRIKAM)
    assert text.status_code == 403
    assert text.headers["content-type"] == "text/plain; charset=utf-8"
    assert text.text.startswith("403 Forbidden: no_matching_rule: ")
    as_json = asgi_request(app, "GET", "/orders", headers={**FABRIKAM, **JSON})
    assert as_json.status_code == 403
    assert as_json.json()["reason"] == "no_matching_rule"
    assert as_json.headers["cache-control"] == "no-store"


def test_asgi_nginx_header_believed_only_from_trusted_proxies() -> None:
    app = starlette_app(NGINX_PARTNER)
    header = {"X-SSL-Client-Cert": nginx_header(PARTNER_PEM), **JSON}
    assert asgi_request(app, "GET", "/orders", peer="10.0.0.5", headers=header).status_code == 200
    outsider = asgi_request(app, "GET", "/orders", peer="203.0.113.7", headers=header)
    assert outsider.status_code == 403
    assert outsider.json()["reason"] == "missing_certificate"


def test_asgi_on_deny_and_expose_trace() -> None:
    def on_deny(decision: Decision) -> DenyResponse:
        return DenyResponse(451, (("Content-Type", "text/plain"),), decision.reason.encode())

    hooked = asgi_request(starlette_app(on_deny=on_deny), "GET", "/orders")
    assert (hooked.status_code, hooked.text) == (451, "missing_certificate")
    traced = asgi_request(
        starlette_app(expose_trace=True), "GET", "/orders", headers={**FABRIKAM, **JSON}
    )
    assert "trace" in traced.json()


def test_asgi_refusal_tells_the_client_the_reason_code_and_a_generic_sentence_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = starlette_app(secret_policy(tmp_path / "secret.yaml"))
    for headers, reason, explained in refusal_cases():
        caplog.clear()
        with caplog.at_level(logging.INFO, logger=DECISION_LOGGER):
            text = asgi_request(app, "GET", "/orders", headers=headers)
            as_json = asgi_request(app, "GET", "/orders", headers={**headers, **JSON})
        assert text.status_code == as_json.status_code == 403
        assert text.text == f"403 Forbidden: {reason}: {REFUSALS[reason]}\n"
        expected = {"error": "forbidden", "reason": reason, "message": REFUSALS[reason]}
        assert as_json.json() == expected
        for response in (text, as_json):
            assert_tells_nothing(response.content, response.headers)
        records = [r for r in caplog.records if r.name == DECISION_LOGGER]
        assert [explained in r.explanation for r in records] == [True, True]


def test_asgi_large_body_reaches_the_app_intact() -> None:
    body = os.urandom(3 * 1024 * 1024)
    response = asgi_request(starlette_app(), "POST", "/upload", headers=PARTNER, content=body)
    assert response.status_code == 200
    assert response.json() == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def _call(app: Any, scope: dict[str, Any], incoming: list[dict[str, Any]]) -> list[Any]:
    """Drive an ASGI app by hand: ``incoming`` are the messages it may receive."""
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_asgi_refused_request_body_is_never_received() -> None:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/upload",
        "raw_path": b"/upload",
        "headers": [(b"accept", b"application/json")],
        "client": ("10.0.0.5", 1234),
    }
    sent = _call(starlette_app(), scope, [])  # receive() would fail: nothing to receive
    assert sent[0]["status"] == 403
    assert json.loads(sent[1]["body"])["reason"] == "missing_certificate"


def test_asgi_lifespan_passes_through_untouched() -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)
        while True:
            message = await receive()
            seen.append(message["type"])
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
    sent = _call(
        asgi_integration.PolicyMiddleware(app, PARTNER_API),
        scope,
        [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}],
    )
    assert seen == [scope, "lifespan.startup", "lifespan.shutdown"]
    assert scope == {"type": "lifespan", "asgi": {"version": "3.0"}}  # nothing added
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]


def test_websocket_allowed_and_refused_with_1008() -> None:
    client = TestClient(starlette_app(), client=("10.0.0.5", 50000))
    with client.websocket_connect("/ws", headers=PARTNER) as websocket:
        assert websocket.receive_text() == "allowed_by_rule"
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect("/ws", headers=FABRIKAM) as websocket,
    ):
        websocket.receive_text()
    assert refused.value.code == 1008


def test_starlette_testclient_peer_is_trusted_by_any_peer_and_not_by_an_address_list() -> None:
    """TestClient reports the peer as "testclient": the azure source (any peer) believes
    its header; the nginx source (an address list) ignores it, and the trace says why."""
    anywhere = TestClient(starlette_app())
    allowed = anywhere.get("/orders", headers=PARTNER)
    assert allowed.status_code == 200
    assert allowed.json() == {"reason": "allowed_by_rule", "path": "/orders"}

    listed = TestClient(starlette_app(NGINX_PARTNER, expose_trace=True))
    header = {"X-SSL-Client-Cert": nginx_header(PARTNER_PEM), **JSON}
    refused = listed.get("/orders", headers=header)
    assert refused.status_code == 403
    assert refused.json()["reason"] == "missing_certificate"
    assert "peer testclient is not a trusted proxy (not an IP address)" in refused.text


def test_asgi_middleware_checks_its_configuration() -> None:
    with pytest.raises(TypeError, match="ASGI application"):
        asgi_integration.PolicyMiddleware(None, PARTNER_API)  # type: ignore[arg-type]
    assert asgi_integration.PolicyMiddleware(starlette_app(), load_policy(PARTNER_API))


def test_environ_and_scope_views_agree() -> None:
    """Both adapters hand the engine the same request, so a policy decides alike."""
    environ = EnvironBuilder(
        path="/orders", base_url="http://api.test/", headers=PARTNER
    ).get_environ()
    environ["REMOTE_ADDR"] = "10.0.0.5"
    from_environ = environ_request(environ)
    from_scope = asgi_integration.scope_request(
        {
            "type": "http",
            "method": "GET",
            "path": "/orders",
            "headers": [
                (b"host", b"api.test"),
                (b"x-arr-clientcert", PARTNER["X-ARR-ClientCert"].encode()),
            ],
            "client": ("10.0.0.5", 1),
        }
    )
    for key in ("remote_addr", "path", "method", "host"):
        assert from_environ[key] == from_scope[key], key
    policy = load_policy(PARTNER_API)
    assert policy.evaluate_request(**from_environ) == policy.evaluate_request(**from_scope)
