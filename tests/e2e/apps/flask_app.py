"""The Flask app, guarded by the Flask extension: every path answers with what the view saw
of the policy's decision."""

from __future__ import annotations

from typing import Any

from e2e_support import configure_decision_log, describe, policy_path
from flask import Flask, g, request

from policyengine.integrations.flask import PolicyEngine

configure_decision_log()

app = Flask(__name__)
PolicyEngine(app, policy_path())


@app.route("/", defaults={"path": ""}, methods=["GET", "POST"])
@app.route("/<path:path>", methods=["GET", "POST"])
def echo(path: str) -> dict[str, Any]:
    decision = g.policyengine_decision
    return describe(
        "flask",
        decision,
        method=request.method,
        path=request.path,
        body=request.get_data(),
        verify=request.headers.get("X-SSL-Client-Verify"),
    )
