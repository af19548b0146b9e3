"""The FastAPI app, guarded by the CertificatePolicy dependency: every path answers with what
the view saw of the policy's decision."""

from __future__ import annotations

from typing import Annotated, Any

from e2e_support import configure_decision_log, describe, policy_path
from fastapi import Depends, FastAPI, Request

from policyengine.evaluation.decision import Decision
from policyengine.integrations.fastapi import CertificatePolicy

configure_decision_log()

partner = CertificatePolicy(policy_path())
app = FastAPI()


@app.api_route("/{path:path}", methods=["GET", "POST"])
async def echo(
    request: Request, path: str, decision: Annotated[Decision, Depends(partner)]
) -> dict[str, Any]:
    return describe(
        "fastapi",
        decision,
        method=request.method,
        path=request.url.path,
        body=await request.body(),
        verify=request.headers.get("X-SSL-Client-Verify"),
    )
