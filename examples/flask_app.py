"""The Flask example: every request is decided by the policy before its view runs.

    gunicorn --pythonpath examples flask_app:app -b 127.0.0.1:8000     # from the project root

The policy is policies/nginx-partner.yaml (the app behind examples/nginx.conf), or the file
named by the environment variable POLICYENGINE_POLICY.

/whoami greets the certificate's principal (docs/identity.md); /reports needs the role
``reports``, which the policy examples/make_certs.py writes gives its client, and
policies/nginx-partner.yaml (no roles) gives nobody: there it is refused, missing_role.
"""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask, g

from policyengine.evaluation.decision import Decision
from policyengine.integrations.flask import PolicyEngine, current_identity, require_role

DEFAULT_POLICY = Path(__file__).resolve().parent.parent / "policies" / "nginx-partner.yaml"

app = Flask(__name__)
PolicyEngine(app, os.environ.get("POLICYENGINE_POLICY") or DEFAULT_POLICY)


@app.get("/orders")
def orders() -> dict[str, str | None]:
    decision: Decision = g.policyengine_decision
    certificate = decision.certificate
    return {"rule": decision.rule, "subject": certificate.subject if certificate else None}


@app.get("/whoami")
def whoami() -> dict[str, object]:
    if not current_identity:  # an excluded path: nobody
        return {"principal": None}
    return {
        "principal": current_identity.principal,
        "from": current_identity.principal_from,
        "groups": list(current_identity.groups),
        "roles": list(current_identity.roles),
    }


@app.get("/reports")
@require_role("reports")
def reports() -> dict[str, str | None]:
    return {"report": f"for {current_identity.principal if current_identity else None}"}


@app.get("/health")
def health() -> dict[str, str]:  # in the policy's exclusion_paths: no certificate needed
    return {"status": "ok"}
