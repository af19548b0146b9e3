"""The FastAPI dependency, and the ASGI middleware re-exported for FastAPI, in a real app."""

# No `from __future__ import annotations`: FastAPI evaluates route annotations with the
# module globals, and `Depends(partner)` names a local of make_app.
import asyncio
import logging
import warnings
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from integration_support import (
    FABRIKAM_PEM,
    NGINX_PARTNER,
    PARTNER_API,
    PARTNER_PEM,
    assert_tells_nothing,
    azure_header,
    cn_policy,
    nginx_header,
    open_policy,
    refusal_cases,
    secret_policy,
)

from policyengine import load_policy
from policyengine.evaluation.decision import Decision
from policyengine.integrations import REFUSALS, asgi
from policyengine.integrations.fastapi import CertificatePolicy, PolicyMiddleware
from policyengine.integrations.runtime import DECISION_LOGGER, DecisionLog

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette 1.x asks for httpx2 for its TestClient
    from fastapi.testclient import TestClient

PARTNER = {"X-ARR-ClientCert": azure_header(PARTNER_PEM)}
FABRIKAM = {"X-ARR-ClientCert": azure_header(FABRIKAM_PEM)}


def make_app(partner: CertificatePolicy) -> FastAPI:
    app = FastAPI()

    @app.get("/orders")
    async def orders(decision: Annotated[Decision, Depends(partner)]) -> dict[str, Any]:
        facts = decision.certificate
        assert facts is not None
        return {
            "reason": decision.reason,
            "rule": decision.rule,
            "subject": facts.subject,
            "sha256": facts.sha256,
        }

    @app.get("/state")
    def state(request: Request, decision: Annotated[Decision, Depends(partner)]) -> Any:
        return {"same": request.state.policyengine_decision is decision}

    @app.get("/open")
    def open_route() -> dict[str, str]:
        return {"open": "yes"}

    return app


def get(app: Any, path: str, peer: str = "10.0.0.5", **kw: Any) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app, client=(peer, 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            return await client.get(path, **kw)

    return asyncio.run(send())


def test_dependency_returns_the_decision_and_facts_to_the_route() -> None:
    app = make_app(CertificatePolicy(PARTNER_API))
    response = get(app, "/orders", headers=PARTNER)
    assert response.status_code == 200
    assert response.json() == {
        "reason": "allowed_by_rule",
        "rule": "partner",
        "subject": "O=Microsoft Corp,CN=nildevecc",
        "sha256": "e2d65529f91ba9fc8a79f24d2a7fc2138043fefe478b7036994564dd54872298",
    }
    assert get(app, "/state", headers=PARTNER).json() == {"same": True}
    assert get(app, "/open").json() == {"open": "yes"}  # no dependency, no decision


def test_deny_is_a_403_with_reason_and_message() -> None:
    app = make_app(CertificatePolicy(load_policy(PARTNER_API)))
    refused = get(app, "/orders", headers=FABRIKAM)
    assert refused.status_code == 403
    detail = refused.json()["detail"]
    assert detail == {"reason": "no_matching_rule", "message": REFUSALS["no_matching_rule"]}
    missing = get(app, "/orders")
    assert missing.status_code == 403
    assert missing.json()["detail"]["reason"] == "missing_certificate"


def test_dependency_reads_the_peer_from_the_scope() -> None:
    app = make_app(CertificatePolicy(NGINX_PARTNER))
    header = {"X-SSL-Client-Cert": nginx_header(PARTNER_PEM)}
    assert get(app, "/orders", peer="10.0.0.5", headers=header).status_code == 200
    outsider = get(app, "/orders", peer="203.0.113.7", headers=header)
    assert outsider.json()["detail"]["reason"] == "missing_certificate"


def test_decision_of_the_middleware_is_reused(caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(CertificatePolicy(PARTNER_API))
    app.add_middleware(PolicyMiddleware, policy=PARTNER_API)
    assert PolicyMiddleware is asgi.PolicyMiddleware
    with caplog.at_level(logging.INFO, logger=DECISION_LOGGER):
        assert get(app, "/orders", headers=PARTNER).status_code == 200
        refused = get(app, "/open", headers={"Accept": "application/json"})
    assert refused.status_code == 403  # the middleware guards every route
    assert refused.json()["reason"] == "missing_certificate"
    # one decision per request: the dependency took the middleware's
    assert len([r for r in caplog.records if r.name == DECISION_LOGGER]) == 2


def test_another_policy_in_the_dependency_decides_again(tmp_path: Path) -> None:
    app = make_app(CertificatePolicy(cn_policy(tmp_path / "strict.yaml", "someone-else")))
    app.add_middleware(PolicyMiddleware, policy=PARTNER_API)
    refused = get(app, "/orders", headers=PARTNER)  # the app-wide policy allows it
    assert refused.status_code == 403
    assert refused.json()["detail"]["reason"] == "no_matching_rule"


def test_fastapi_testclient_is_any_peer_under_azure_and_untrusted_under_an_address_list() -> None:
    """FastAPI's TestClient reports the peer as "testclient", which is no IP address."""
    anywhere = TestClient(make_app(CertificatePolicy(PARTNER_API)))
    assert anywhere.get("/orders", headers=PARTNER).json()["reason"] == "allowed_by_rule"
    listed = TestClient(make_app(CertificatePolicy(NGINX_PARTNER)))
    refused = listed.get("/orders", headers={"X-SSL-Client-Cert": nginx_header(PARTNER_PEM)})
    assert refused.status_code == 403
    assert refused.json()["detail"]["reason"] == "missing_certificate"
    # as the docs say: give TestClient an address the policy trusts
    trusted = TestClient(make_app(CertificatePolicy(NGINX_PARTNER)), client=("10.0.0.5", 50000))
    header = {"X-SSL-Client-Cert": nginx_header(PARTNER_PEM)}
    assert trusted.get("/orders", headers=header).status_code == 200


def test_dependency_refusal_tells_the_client_the_reason_code_and_a_generic_sentence_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(CertificatePolicy(secret_policy(tmp_path / "secret.yaml")))
    for headers, reason, explained in refusal_cases():
        caplog.clear()
        with caplog.at_level(logging.INFO, logger=DECISION_LOGGER):
            refused = get(app, "/orders", headers=headers)
        assert refused.status_code == 403
        assert refused.json() == {"detail": {"reason": reason, "message": REFUSALS[reason]}}
        assert_tells_nothing(refused.content, refused.headers)
        (record,) = [r for r in caplog.records if r.name == DECISION_LOGGER]
        assert explained in record.explanation


def test_dependency_with_expose_trace_tells_the_explanation_and_the_trace(tmp_path: Path) -> None:
    app = make_app(CertificatePolicy(secret_policy(tmp_path / "secret.yaml"), expose_trace=True))
    headers, reason, explained = refusal_cases()[1]
    detail = get(app, "/orders", headers=headers).json()["detail"]
    assert (detail["reason"], detail["message"]) == (reason, REFUSALS[reason])
    assert explained in detail["explanation"]
    assert [rule["rule"] for rule in detail["trace"]["rules"]] == ["banned-cn", "secret-allow"]


def test_a_stricter_dependency_policy_with_the_middlewares_name_decides_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The app-wide policy `partner` lets /state through without a certificate; the
    route's own policy, also called `partner`, requires one: the route is refused."""
    strict = CertificatePolicy(cn_policy(tmp_path / "strict.yaml", "nildevecc", name="partner"))
    app = make_app(strict)
    app.add_middleware(PolicyMiddleware, policy=open_policy(tmp_path / "lenient.yaml"))
    with caplog.at_level(logging.INFO, logger=DECISION_LOGGER):
        refused = get(app, "/state")
    assert refused.status_code == 403
    assert refused.json()["detail"]["reason"] == "missing_certificate"
    records = [r for r in caplog.records if r.name == DECISION_LOGGER]
    assert [(r.policy, r.reason) for r in records] == [
        ("partner", "excluded_path"),
        ("partner", "missing_certificate"),
    ]
    assert get(app, "/orders", headers=PARTNER).status_code == 200  # the strict one allows it


def test_the_same_policy_object_in_middleware_and_dependency_is_decided_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    policy = load_policy(PARTNER_API)
    app = make_app(CertificatePolicy(policy))
    app.add_middleware(PolicyMiddleware, policy=policy)
    with caplog.at_level(logging.INFO, logger=DECISION_LOGGER):
        assert get(app, "/state", headers=PARTNER).json() == {"same": True}
    assert len([r for r in caplog.records if r.name == DECISION_LOGGER]) == 1


def test_the_same_file_loaded_twice_is_two_policies_and_decided_twice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """load_policy twice gives two objects: equal text, yet not the same generation."""
    app = make_app(CertificatePolicy(load_policy(PARTNER_API)))
    app.add_middleware(PolicyMiddleware, policy=load_policy(PARTNER_API))
    with caplog.at_level(logging.INFO, logger=DECISION_LOGGER):
        assert get(app, "/orders", headers=PARTNER).status_code == 200
    assert len([r for r in caplog.records if r.name == DECISION_LOGGER]) == 2


def test_each_dependency_writes_through_a_decision_log_of_its_own() -> None:
    policy = load_policy(PARTNER_API)
    first, second = CertificatePolicy(policy), CertificatePolicy(policy)
    assert isinstance(first.log, DecisionLog) and isinstance(second.log, DecisionLog)
    assert first.log is not second.log
    assert CertificatePolicy(policy, log=None).log is None
