"""FastAPI: the decision as a dependency, and the ASGI middleware for the whole app.

::

    from policyengine.integrations.fastapi import CertificatePolicy, PolicyMiddleware

    partner = CertificatePolicy("policies/partner-api.yaml")

    @app.get("/orders")
    async def orders(decision: Annotated[Decision, Depends(partner)]): ...

    app.add_middleware(PolicyMiddleware, policy="policies/partner-api.yaml")  # or guard all

The dependency decides from the ASGI scope, so the certificate source sees exactly what
the server handed over, and raises ``HTTPException(403)`` on a deny, so the route is not
called. The decision is also in ``request.state.policyengine_decision``.

The only module that imports FastAPI; no other integration's framework.
"""

# No `from __future__ import annotations` here: FastAPI reads the annotations of
# CertificatePolicy.__call__ at run time, and older releases (0.100 among them) resolve
# string annotations of a callable instance against no globals, so `request: Request`
# would turn into a required query parameter.
from pathlib import Path

from fastapi import HTTPException, Request

from policyengine.evaluation.decision import Decision
from policyengine.evaluation.engine import Policy
from policyengine.integrations import (
    DECIDED_KEY,
    decide_request,
    refusal_detail,
    reusable_decision,
)
from policyengine.integrations.asgi import SCOPE_KEY, STATE_KEY, PolicyMiddleware, scope_request
from policyengine.integrations.runtime import (
    DEFAULT_LOG,
    LogOption,
    ReloadingPolicy,
    as_policy_provider,
    decision_log,
)

__all__ = ["CertificatePolicy", "PolicyMiddleware"]


class CertificatePolicy:
    """A dependency that decides the request against ``policy`` and returns the Decision.

    ``policy``: a :class:`~policyengine.Policy`, a
    :class:`~.runtime.ReloadingPolicy` or a policy file path (loaded now, and
    reloaded when the file changes). ``log``: the decision log (None turns it off; by default
    a DecisionLog() of this dependency's own).
    A deny raises ``HTTPException(403)`` whose detail is the reason code and its generic
    sentence (:func:`policyengine.integrations.refusal_detail`); ``expose_trace=True``
    (development only) adds the decision's own message and its explain trace.

    When the ASGI middleware (or another dependency) already decided the request with the
    very policy object this dependency decides with (the same Policy, the same loaded
    generation of a ReloadingPolicy: a file path given to both is loaded once and shared),
    that decision is returned as is, decided and logged once; otherwise the request is
    decided again (:func:`policyengine.integrations.reusable_decision`).
    """

    def __init__(
        self,
        policy: Policy | ReloadingPolicy | str | Path,
        *,
        log: LogOption = DEFAULT_LOG,
        expose_trace: bool = False,
    ) -> None:
        self.policy = as_policy_provider(policy)
        self.log = decision_log(log)
        self.expose_trace = expose_trace

    async def __call__(self, request: Request) -> Decision:
        decided = reusable_decision(request.scope.get(DECIDED_KEY), self.policy)
        if decided is None:
            decided = decide_request(
                self.policy, scope_request(request.scope), self.log, explain=self.expose_trace
            )
            request.scope[SCOPE_KEY] = decided.decision
            request.scope[DECIDED_KEY] = decided
            setattr(request.state, STATE_KEY, decided.decision)
        decision = decided.decision
        if not decision.allowed:
            raise HTTPException(
                status_code=decision.status,
                detail=refusal_detail(decision, expose_trace=self.expose_trace),
            )
        return decision
