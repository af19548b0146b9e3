"""Flask, Django and FastAPI apps behind a real nginx terminating mutual TLS.

nginx asks for a client certificate (``ssl_verify_client optional_no_ca``) and forwards it
in ``X-SSL-Client-Cert``; the apps decide with the policy written by the ``policy_file``
fixture (see conftest.py). Every test runs once per app, and checks afterwards that the
app's decision log holds exactly one record for each request that reached the app.
"""

from __future__ import annotations

import hashlib
import os
from urllib.parse import quote

import httpx
import pytest

from policyengine.integrations import REFUSALS

from .conftest import CLIENT_ADDRESS, PARTNER_SUBJECT, PROXY_ADDRESS, App, Stack

JSON = {"Accept": "application/json"}


def _refusal(app: App, response: httpx.Response) -> dict[str, str]:
    """The reason and message of a 403. The Flask extension and the Django middleware answer
    ``{"error": "forbidden", "reason": ..., "message": ...}``; FastAPI's dependency raises
    HTTPException, which FastAPI answers as ``{"detail": {"reason": ..., "message": ...}}``.
    Either way the message is the reason code's generic sentence and nothing else: what the
    policy wants is in the decision log (``explanation``), never told to the client."""
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    if app.name != "fastapi":
        assert body.pop("error") == "forbidden"
        detail = dict(body)
    else:
        detail = dict(body["detail"])
    assert detail == {"reason": detail["reason"], "message": REFUSALS[detail["reason"]]}
    for secret in (PARTNER_SUBJECT["CN"], PARTNER_SUBJECT["O"], "e2e-nginx", "partner"):
        assert secret not in response.text
    return detail


def _only_record(app: App, path: str) -> dict[str, object]:
    records = app.records_for(path)
    assert len(records) == 1, f"{app.name}: {len(records)} decision records for {path}"
    return records[0]


def test_allowed_certificate_reaches_the_view_with_the_decision(app: App) -> None:
    path = "/orders/allowed"
    with app.via_nginx("allowed") as client:
        response = client.get(path, headers=JSON)
    app.reached(path)

    assert response.status_code == 200, response.text
    seen = response.json()
    assert seen["app"] == app.name
    assert seen["path"] == path
    assert seen["decision"]["decision"] == "allow"
    assert seen["decision"]["reason"] == "allowed_by_rule"
    assert seen["decision"]["rule"] == "partner"
    assert seen["decision"]["policy"] == "e2e-nginx"
    facts = seen["certificate"]
    assert facts["fingerprint.sha256"] == app.pki.sha256("allowed")
    assert f"CN={PARTNER_SUBJECT['CN']}" in facts["subject"]
    assert f"O={PARTNER_SUBJECT['O']}" in facts["subject"]
    assert "CN=E2E Test CA" in facts["issuer"]
    assert seen["proxy_verify"] == "SUCCESS"  # nginx checked it against the same CA

    record = _only_record(app, path)
    assert record["decision"] == "allow"
    assert record["reason"] == "allowed_by_rule"
    assert record["rule"] == "partner"
    assert record["peer"] == PROXY_ADDRESS  # nginx really connects from proxy_bind's address
    assert record["fingerprint_sha256"] == app.pki.sha256("allowed")
    app.assert_log_complete()


@pytest.mark.parametrize(
    ("certificate", "failed_condition"),
    [
        # Pinned, but issued by a CA the policy does not anchor: `trusted` refuses it.
        ("unknown_ca", "trusted"),
        # From the right CA with the right subject, but not pinned.
        ("pinned_out", "fingerprint.sha256 in partners"),
    ],
)
def test_refused_certificates_get_403_with_the_reason(
    app: App, certificate: str, failed_condition: str
) -> None:
    path = f"/orders/{certificate}"
    with app.via_nginx(certificate) as client:
        response = client.get(path, headers=JSON)
    app.reached(path)

    body = _refusal(app, response)
    assert body["reason"] == "no_matching_rule"

    record = _only_record(app, path)
    assert record["decision"] == "deny"
    assert record["reason"] == "no_matching_rule"
    explanation = str(record["explanation"])
    assert f"the closest is partner, where `{failed_condition}` is false" in explanation
    assert record["fingerprint_sha256"] == app.pki.sha256(certificate)
    app.assert_log_complete()


def test_expired_certificate_is_refused_by_nginx_itself(app: App, stack: Stack) -> None:
    """With optional_no_ca nginx forwards certificates it cannot chain (an unknown CA, a
    self-signed one), but an expired one is refused by nginx with a 400 of its own: the
    request never reaches the app, so the app logs no decision for it."""
    path = "/orders/expired"
    with app.via_nginx("expired") as client:
        response = client.get(path, headers=JSON)

    assert response.status_code == 400
    assert "The SSL certificate error" in response.text
    assert "server" in response.headers and response.headers["server"].startswith("nginx")
    assert app.records_for(path) == []
    assert "certificate has expired" in stack.nginx_error_log.read_text(errors="replace")
    app.assert_log_complete()


def test_no_certificate_is_refused_except_on_the_excluded_path(app: App) -> None:
    with app.via_nginx(None) as client:
        guarded = client.get("/orders/anonymous", headers=JSON)
        health = client.get("/health", headers=JSON)
    app.reached("/orders/anonymous")
    app.reached("/health")

    assert _refusal(app, guarded)["reason"] == "missing_certificate"
    assert _only_record(app, "/orders/anonymous")["reason"] == "missing_certificate"

    assert health.status_code == 200, health.text
    assert health.json()["decision"]["reason"] == "excluded_path"
    assert health.json()["certificate"] is None
    record = _only_record(app, "/health")
    assert record["decision"] == "allow"
    assert record["reason"] == "excluded_path"
    app.assert_log_complete()


def _forged_headers(app: App, certificate: str) -> dict[str, str]:
    """What nginx would send for ``certificate``, plus the usual address-spoofing headers."""
    return {
        **JSON,
        "X-SSL-Client-Cert": quote(app.pki.pem(certificate).decode(), safe=""),
        "X-SSL-Client-Verify": "SUCCESS",
        "X-Forwarded-For": PROXY_ADDRESS,
        "X-Real-IP": PROXY_ADDRESS,
        "Forwarded": f"for={PROXY_ADDRESS}",
    }


def test_forged_header_sent_straight_to_the_app_is_ignored(app: App) -> None:
    """A client on loopback, but not at the trusted proxy's address, sends the allowed
    certificate in nginx's header: the header is ignored, as if no certificate came."""
    path = "/orders/forged-direct"
    with app.direct(CLIENT_ADDRESS) as client:
        response = client.get(path, headers=_forged_headers(app, "allowed"))
    app.reached(path)

    assert _refusal(app, response)["reason"] == "missing_certificate"
    record = _only_record(app, path)
    assert record["peer"] == CLIENT_ADDRESS  # X-Forwarded-For & co. changed nothing
    assert record["reason"] == "missing_certificate"
    app.assert_log_complete()


@pytest.mark.parametrize(
    ("certificate", "status", "reason"),
    [("allowed", 200, "allowed_by_rule"), ("expired", 403, "no_matching_rule")],
)
def test_same_headers_from_the_trusted_address_are_believed(
    app: App, certificate: str, status: int, reason: str
) -> None:
    """The control for the test above: the same request from the address nginx uses is
    decided on the certificate, so only the peer address made the difference. It also
    shows what the policy does with an expired certificate, which nginx never forwards."""
    path = f"/orders/forged-trusted-{certificate}"
    with app.direct(PROXY_ADDRESS) as client:
        response = client.get(path, headers=_forged_headers(app, certificate))
    app.reached(path)

    if status == 200:
        assert response.status_code == 200, response.text
        assert response.json()["decision"]["reason"] == reason
    else:
        body = _refusal(app, response)
        assert body["reason"] == reason
    record = _only_record(app, path)
    if status != 200:
        assert "where `valid` is false" in str(record["explanation"])
    assert record["peer"] == PROXY_ADDRESS
    assert record["fingerprint_sha256"] == app.pki.sha256(certificate)
    app.assert_log_complete()


def test_forged_header_through_nginx_is_replaced(app: App) -> None:
    """nginx's proxy_set_header replaces a client's own X-SSL-Client-Cert: without a client
    certificate it sends none, with one it sends the one from the handshake."""
    anonymous_path = "/orders/forged-anonymous"
    with app.via_nginx(None) as client:
        anonymous = client.get(anonymous_path, headers=_forged_headers(app, "allowed"))
    app.reached(anonymous_path)
    assert _refusal(app, anonymous)["reason"] == "missing_certificate"

    pinned_out_path = "/orders/forged-pinned-out"
    with app.via_nginx("pinned_out") as client:
        pinned_out = client.get(pinned_out_path, headers=_forged_headers(app, "allowed"))
    app.reached(pinned_out_path)
    assert _refusal(app, pinned_out)["reason"] == "no_matching_rule"
    record = _only_record(app, pinned_out_path)
    assert record["fingerprint_sha256"] == app.pki.sha256("pinned_out")
    app.assert_log_complete()


def test_large_post_reaches_the_view_intact(app: App) -> None:
    path = "/orders/upload"
    body = os.urandom(5 * 1024 * 1024)
    with app.via_nginx("allowed") as client:
        response = client.post(
            path, content=body, headers={**JSON, "Content-Type": "application/octet-stream"}
        )
    app.reached(path)

    assert response.status_code == 200, response.text[:500]
    seen = response.json()
    assert seen["method"] == "POST"
    assert seen["decision"]["reason"] == "allowed_by_rule"
    assert seen["body_length"] == len(body)
    assert seen["body_sha256"] == hashlib.sha256(body).hexdigest()
    record = _only_record(app, path)
    assert record["method"] == "POST"
    assert record["decision"] == "allow"
    app.assert_log_complete()
