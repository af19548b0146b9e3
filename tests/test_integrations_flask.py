"""The Flask extension and view decorator, in real Flask applications."""

from __future__ import annotations

import hashlib
import logging
import os
import textwrap
from pathlib import Path
from typing import Any

import flask
import pytest
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
from werkzeug.test import EnvironBuilder

from policyengine import load_policy
from policyengine.evaluation.decision import Decision
from policyengine.integrations import REFUSALS, DenyResponse
from policyengine.integrations.flask import PolicyEngine, require_certificate
from policyengine.integrations.runtime import DECISION_LOGGER, DecisionLog, ReloadingPolicy
from policyengine.testing import make_certificate

PARTNER = {"X-ARR-ClientCert": azure_header(PARTNER_PEM)}
FABRIKAM = {"X-ARR-ClientCert": azure_header(FABRIKAM_PEM)}
JSON = {"Accept": "application/json"}


def make_app() -> flask.Flask:
    app = flask.Flask(__name__)

    @app.get("/orders")
    def orders() -> dict[str, Any]:
        decision: Decision | None = flask.g.get("policyengine_decision")
        if decision is None:
            return {"reason": None}  # no guard ran
        facts = decision.certificate
        return {"reason": decision.reason, "subject": facts.subject if facts else None}

    @app.get("/health")
    def health() -> dict[str, Any]:
        decision: Decision | None = flask.g.get("policyengine_decision")
        return {"reason": decision.reason if decision else None}

    @app.post("/upload")
    def upload() -> dict[str, Any]:
        body = flask.request.get_data()
        return {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}

    return app


def test_extension_guards_every_view() -> None:
    app = make_app()
    PolicyEngine(app, PARTNER_API)
    client = app.test_client()
    allowed = client.get("/orders", headers=PARTNER)
    assert allowed.status_code == 200
    assert allowed.json == {"reason": "allowed_by_rule", "subject": "O=Microsoft Corp,CN=nildevecc"}
    assert client.get("/health").json == {"reason": "excluded_path"}

    text = client.get("/orders", headers=FABRIKAM)
    assert text.status_code == 403
    assert text.content_type == "text/plain; charset=utf-8"
    assert text.get_data(as_text=True).startswith("403 Forbidden: no_matching_rule: ")
    as_json = client.get("/orders", headers={**FABRIKAM, **JSON})
    assert as_json.status_code == 403
    assert as_json.json is not None and as_json.json["reason"] == "no_matching_rule"
    assert as_json.headers["Cache-Control"] == "no-store"
    assert "trace" not in as_json.json


def test_refusal_tells_the_client_the_reason_code_and_a_generic_sentence_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the extension and through the decorator: never the CN, issuer, pin, rule or
    policy name the decision's message holds; that message is in the decision log."""
    secret = secret_policy(tmp_path / "secret.yaml")
    guarded = make_app()
    PolicyEngine(guarded, secret)
    decorated = make_app()

    @decorated.get("/admin")
    @require_certificate(secret)
    def admin_view() -> str:
        return "admin"

    for client, path in ((guarded.test_client(), "/orders"), (decorated.test_client(), "/admin")):
        for headers, reason, explained in refusal_cases():
            caplog.clear()
            with caplog.at_level(logging.INFO, logger=DECISION_LOGGER):
                text = client.get(path, headers=headers)
                as_json = client.get(path, headers={**headers, **JSON})
            assert text.get_data(as_text=True) == f"403 Forbidden: {reason}: {REFUSALS[reason]}\n"
            assert as_json.json == {
                "error": "forbidden",
                "reason": reason,
                "message": REFUSALS[reason],
            }
            for response in (text, as_json):
                assert response.status_code == 403
                assert_tells_nothing(response.get_data(), response.headers)
            records = [r for r in caplog.records if r.name == DECISION_LOGGER]
            assert [explained in r.explanation for r in records] == [True, True]


def test_init_app_reads_the_policy_from_config_and_checks_it_is_there() -> None:
    app = make_app()
    app.config["POLICYENGINE_POLICY"] = str(NGINX_PARTNER)
    engine = PolicyEngine()
    engine.init_app(app)
    assert isinstance(app.extensions["policyengine"].provider, ReloadingPolicy)
    client = app.test_client()
    header = {"X-SSL-Client-Cert": nginx_header(PARTNER_PEM)}
    assert client.get("/orders", headers=header).status_code == 200  # from 127.0.0.1
    outsider = client.get(
        "/orders", headers={**header, **JSON}, environ_base={"REMOTE_ADDR": "203.0.113.7"}
    )
    assert outsider.status_code == 403
    assert outsider.json is not None and outsider.json["reason"] == "missing_certificate"

    with pytest.raises(RuntimeError, match="POLICYENGINE_POLICY"):
        PolicyEngine(make_app())


def test_each_extension_writes_through_a_decision_log_of_its_own() -> None:
    first, second, off = PolicyEngine(), PolicyEngine(), PolicyEngine(log=None)
    assert isinstance(first.log, DecisionLog) and isinstance(second.log, DecisionLog)
    assert first.log is not second.log
    assert off.log is None


def test_one_extension_serves_several_apps_with_their_own_policies(tmp_path: Path) -> None:
    engine = PolicyEngine(log=None)
    first, second = make_app(), make_app()
    engine.init_app(first, load_policy(PARTNER_API))
    engine.init_app(second, cn_policy(tmp_path / "other.yaml", "someone-else"))
    assert first.test_client().get("/orders", headers=PARTNER).status_code == 200
    assert second.test_client().get("/orders", headers=PARTNER).status_code == 403


def test_on_deny_and_expose_trace() -> None:
    def on_deny(decision: Decision) -> DenyResponse | None:
        if decision.reason != "missing_certificate":
            return None
        return DenyResponse(401, (("Content-Type", "text/plain"),), b"certificate please")

    app = make_app()
    PolicyEngine(app, PARTNER_API, on_deny=on_deny, expose_trace=True)
    client = app.test_client()
    hooked = client.get("/orders")
    assert (hooked.status_code, hooked.get_data()) == (401, b"certificate please")
    traced = client.get("/orders", headers={**FABRIKAM, **JSON})
    assert traced.status_code == 403
    assert traced.json is not None and "trace" in traced.json


def test_large_body_reaches_the_view_and_a_refused_body_is_never_read() -> None:
    app = make_app()
    PolicyEngine(app, PARTNER_API)
    body = os.urandom(3 * 1024 * 1024)
    response = app.test_client().post("/upload", headers=PARTNER, data=body)
    assert response.json == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}

    stream = UnreadableInput()
    environ = EnvironBuilder(
        path="/upload", method="POST", headers=FABRIKAM, data=b"x" * 1000
    ).get_environ()
    environ.update({"wsgi.input": stream, "REMOTE_ADDR": "127.0.0.1"})
    statuses: list[str] = []
    chunks = app.wsgi_app(environ, lambda status, headers, *rest: statuses.append(status))
    assert statuses == ["403 FORBIDDEN"]
    assert b"".join(chunks).startswith(b"403 Forbidden: no_matching_rule")
    assert not stream.touched


def test_decision_log_one_record_per_request(caplog: pytest.LogCaptureFixture) -> None:
    app = make_app()
    PolicyEngine(app, PARTNER_API)
    with caplog.at_level(logging.INFO, logger=DECISION_LOGGER):
        app.test_client().get("/orders", headers=PARTNER)
    (record,) = [r for r in caplog.records if r.name == DECISION_LOGGER]
    assert (record.decision, record.path, record.peer) == ("allow", "/orders", "127.0.0.1")


def test_decorator_with_its_own_policy_guards_one_view(tmp_path: Path) -> None:
    admin = make_certificate({"CN": "admin"})
    app = make_app()
    admin_policy = cn_policy(tmp_path / "admin.yaml", "admin", name="admin-only")

    @app.get("/admin")
    @require_certificate(admin_policy)
    def admin_view() -> dict[str, Any]:
        return {"policy": flask.g.policyengine_decision.policy}

    client = app.test_client()  # no extension: only /admin is guarded
    assert client.get("/orders").json == {"reason": None}  # unguarded
    ok = client.get("/admin", headers={"X-ARR-ClientCert": azure_header(admin.pem)})
    assert ok.json == {"policy": "admin-only"}
    refused = client.get("/admin", headers={**PARTNER, **JSON})
    assert refused.status_code == 403
    assert refused.json is not None and refused.json["reason"] == "no_matching_rule"


def test_decorator_on_top_of_the_extension_applies_both_policies(tmp_path: Path) -> None:
    admin = make_certificate({"CN": "admin", "O": "Microsoft Corp"})
    app = make_app()
    PolicyEngine(app, cn_policy(tmp_path / "app.yaml", "admin", "nildevecc"))

    @app.get("/admin")
    @require_certificate(cn_policy(tmp_path / "admin.yaml", "admin", name="admin-only"))
    def admin_view() -> str:
        return "admin"

    client = app.test_client()
    assert client.get("/orders", headers=PARTNER).status_code == 200
    assert client.get("/admin", headers=PARTNER).status_code == 403  # app yes, view no
    admin_header = {"X-ARR-ClientCert": azure_header(admin.pem)}
    assert client.get("/admin", headers=admin_header).get_data() == b"admin"


def test_decorator_without_a_policy_uses_the_extension(caplog: pytest.LogCaptureFixture) -> None:
    app = make_app()
    PolicyEngine(app, PARTNER_API, guard_all=False)

    @app.get("/partner")
    @require_certificate()
    async def partner_view() -> str:  # async views are guarded too
        return "partner"

    client = app.test_client()
    assert client.get("/orders").json == {"reason": None}  # unguarded
    with caplog.at_level(logging.INFO, logger=DECISION_LOGGER):
        assert client.get("/partner", headers=PARTNER).get_data() == b"partner"
        assert client.get("/partner", headers=FABRIKAM).status_code == 403
    assert len([r for r in caplog.records if r.name == DECISION_LOGGER]) == 2

    guarded_app = make_app()
    PolicyEngine(guarded_app, PARTNER_API)

    @guarded_app.get("/partner")
    @require_certificate()
    def guarded_view() -> str:
        return "partner"

    caplog.clear()
    with caplog.at_level(logging.INFO, logger=DECISION_LOGGER):
        assert guarded_app.test_client().get("/partner", headers=PARTNER).status_code == 200
    # the app-wide hook decided; the decorator did not decide (and log) again
    assert len([r for r in caplog.records if r.name == DECISION_LOGGER]) == 1


def test_decorator_without_a_policy_or_extension_fails_at_the_first_request() -> None:
    app = make_app()

    @app.get("/partner")
    @require_certificate()
    def partner_view() -> str:
        return "partner"

    app.testing = True  # let the error through instead of a 500 page
    with pytest.raises(RuntimeError, match="has none"):
        app.test_client().get("/partner", headers=PARTNER)


def test_a_stricter_decorator_policy_with_the_extensions_name_decides_again(
    tmp_path: Path,
) -> None:
    app = make_app()
    PolicyEngine(app, open_policy(tmp_path / "lenient.yaml"))  # /admin needs nothing

    @app.get("/admin")
    @require_certificate(cn_policy(tmp_path / "strict.yaml", "nildevecc", name="partner"))
    def admin_view() -> str:
        return "admin"

    client = app.test_client()
    refused = client.get("/admin", headers=JSON)
    assert refused.status_code == 403
    assert refused.json is not None and refused.json["reason"] == "missing_certificate"
    assert client.get("/admin", headers=PARTNER).get_data() == b"admin"


def test_a_policy_reloaded_between_the_hook_and_the_view_is_decided_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The hook allowed /partner under one generation of the file; the file changed and
    was reloaded before the view's guard ran: the view decides with the new generation."""
    path = open_policy(tmp_path / "policy.yaml")
    reloading = ReloadingPolicy(path, interval=0)
    app = make_app()
    PolicyEngine(app, reloading)
    strict = cn_policy(tmp_path / "strict.yaml", "nildevecc", name="partner").read_text()

    @app.before_request
    def an_edit_lands_now() -> None:  # runs after the extension's hook
        before = path.stat().st_mtime_ns
        path.write_text(strict)
        os.utime(path, ns=(before + 10**9, before + 10**9))
        for _ in range(3):  # as many checks as the reload needs to see a settled file
            reloading.current()
        assert reloading.reloads == 1

    @app.get("/partner")
    @require_certificate()
    def partner_view() -> str:
        return "partner"

    with caplog.at_level(logging.INFO, logger=DECISION_LOGGER):
        refused = app.test_client().get("/partner", headers=JSON)
    assert refused.status_code == 403
    assert refused.json is not None and refused.json["reason"] == "missing_certificate"
    records = [r for r in caplog.records if r.name == DECISION_LOGGER]
    assert [r.reason for r in records] == ["excluded_path", "missing_certificate"]


def test_the_extensions_own_policy_is_decided_once_for_a_decorated_view(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The same file path given to the extension and to the decorator is one shared
    ReloadingPolicy: one policy object, one decision, one record."""
    path = tmp_path / "partner.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            policy: partner
            silence: [trusted-anywhere]
            rules:
              - id: partner
                effect: allow
                when: subject.CN == "nildevecc"
            """
        )
    )
    app = make_app()
    PolicyEngine(app, path)

    @app.get("/partner")
    @require_certificate(str(path))
    def partner_view() -> str:
        return "partner"

    with caplog.at_level(logging.INFO, logger=DECISION_LOGGER):
        assert app.test_client().get("/partner", headers=PARTNER).get_data() == b"partner"
    assert len([r for r in caplog.records if r.name == DECISION_LOGGER]) == 1


@pytest.mark.parametrize("guard", ["extension", "decorator"])
def test_an_app_context_pushed_beforehand_never_carries_a_decision_to_the_next_request(
    guard: str,
) -> None:
    """`g` belongs to the app context, which outlives a request when one was pushed before
    (at import, or a test's `with app.app_context()`): the next request, without a
    certificate, must be decided anew and refused, not handed the last one's allow."""
    app = make_app()
    if guard == "extension":
        PolicyEngine(app, PARTNER_API)
    else:

        @app.get("/guarded")
        @require_certificate(PARTNER_API)
        def guarded() -> dict[str, Any]:
            return {"reason": flask.g.policyengine_decision.reason}

    path = "/orders" if guard == "extension" else "/guarded"
    client = app.test_client()
    with app.app_context():
        assert client.get(path, headers=PARTNER).status_code == 200
        refused = client.get(path)
        assert refused.status_code == 403
        assert b"missing_certificate" in refused.data
        if guard == "extension":
            # and an unguarded view does not see the decision of the request before it
            assert client.get("/health").json == {"reason": "excluded_path"}
