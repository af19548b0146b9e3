"""The FastAPI example: the ASGI middleware decides every request before a route runs, and
the CertificatePolicy dependency hands the decision to the route that needs it.

    uvicorn --app-dir examples fastapi_app:app --port 8000 --no-proxy-headers  # from the root

The policy is policies/nginx-partner.yaml (the app behind examples/nginx.conf), or the file
named by the environment variable POLICYENGINE_POLICY. ``--no-proxy-headers``: uvicorn
otherwise takes the peer address from X-Forwarded-For (docs/integrations.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI

from policyengine.evaluation.decision import Decision
from policyengine.integrations.fastapi import CertificatePolicy, PolicyMiddleware
from policyengine.integrations.runtime import ReloadingPolicy

DEFAULT_POLICY = Path(__file__).resolve().parent.parent / "policies" / "nginx-partner.yaml"

policy = ReloadingPolicy(os.environ.get("POLICYENGINE_POLICY") or DEFAULT_POLICY)
partner = CertificatePolicy(policy)  # reuses the middleware's decision: decided once

app = FastAPI()
app.add_middleware(PolicyMiddleware, policy=policy)


@app.get("/orders")
async def orders(decision: Annotated[Decision, Depends(partner)]) -> dict[str, str | None]:
    certificate = decision.certificate
    return {"rule": decision.rule, "subject": certificate.subject if certificate else None}


@app.get("/health")
async def health() -> dict[str, str]:  # in the policy's exclusion_paths: no certificate needed
    return {"status": "ok"}
