"""The FastAPI example: the ASGI middleware decides every request before a route runs, the
CertificatePolicy dependency hands the decision to the route that needs it, and the
certificate's identity reaches the routes as a dependency and as ``request.user``.

    uvicorn --app-dir examples fastapi_app:app --port 8000 --no-proxy-headers  # from the root

The policy is policies/nginx-partner.yaml (the app behind examples/nginx.conf), or the file
named by the environment variable POLICYENGINE_POLICY. ``--no-proxy-headers``: uvicorn
otherwise takes the peer address from X-Forwarded-For (docs/integrations.md).

- ``/orders``: the decision (``Depends(partner)``).
- ``/whoami``: the identity (``Depends(certificate_identity)``): the principal, where it came
  from, the groups and the roles; and ``request.user``, which Starlette's
  AuthenticationMiddleware sets with policyengine's CertificateBackend.
- ``/admin``: ``Security(certificate_identity, scopes=["ops"])``, refused (403
  ``missing_role``) unless the policy's ``identity:`` section gives the certificate the
  ``ops`` role. The shipped policies define no roles, so they open it to no one.
- ``/health``: in the policy's exclusion_paths: no certificate needed.

docs/identity.md ("Starlette and FastAPI") walks through it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Request, Security
from starlette.middleware.authentication import AuthenticationMiddleware

from policyengine.evaluation.decision import Decision
from policyengine.evaluation.identity import Identity
from policyengine.integrations.fastapi import (
    CertificatePolicy,
    PolicyMiddleware,
    certificate_identity,
)
from policyengine.integrations.runtime import ReloadingPolicy
from policyengine.integrations.starlette import CertificateBackend

DEFAULT_POLICY = Path(__file__).resolve().parent.parent / "policies" / "nginx-partner.yaml"

policy = ReloadingPolicy(os.environ.get("POLICYENGINE_POLICY") or DEFAULT_POLICY)
partner = CertificatePolicy(policy)  # reuses the middleware's decision: decided once

app = FastAPI()
# The middleware added last runs first: the policy decides, then request.user is set from
# that decision.
app.add_middleware(AuthenticationMiddleware, backend=CertificateBackend())
app.add_middleware(PolicyMiddleware, policy=policy)


@app.get("/orders")
async def orders(decision: Annotated[Decision, Depends(partner)]) -> dict[str, str | None]:
    certificate = decision.certificate
    return {"rule": decision.rule, "subject": certificate.subject if certificate else None}


@app.get("/whoami")
async def whoami(
    request: Request, identity: Annotated[Identity, Depends(certificate_identity)]
) -> dict[str, object]:
    return {
        "user": request.user.display_name,
        "principal": identity.principal,
        "principal_from": identity.principal_from,
        "groups": list(identity.groups),
        "roles": list(identity.roles),
    }


@app.get("/admin")
async def admin(
    identity: Annotated[Identity, Security(certificate_identity, scopes=["ops"])],
) -> dict[str, str | None]:
    return {"admin": identity.principal}


@app.get("/health")
async def health() -> dict[str, str]:  # in the policy's exclusion_paths: no certificate needed
    return {"status": "ok"}
