"""FastAPI: the decision and the identity as dependencies, and the ASGI middleware.

::

    from policyengine.integrations.fastapi import (
        CertificatePolicy, PolicyMiddleware, certificate_identity)

    partner = CertificatePolicy("policies/partner-api.yaml")

    @app.get("/orders")
    async def orders(decision: Annotated[Decision, Depends(partner)]): ...

    app.add_middleware(PolicyMiddleware, policy="policies/partner-api.yaml")  # or guard all

    @app.get("/admin")
    async def admin(identity: Annotated[Identity, Security(certificate_identity, scopes=["ops"])]):
        ...

The dependency decides from the ASGI scope, so the certificate source sees exactly what
the server handed over, and raises ``HTTPException(403)`` on a deny, so the route is not
called. The decision is also in ``request.state.policyengine_decision``.

:func:`certificate_identity` returns the identity of the decision the middleware (or an
earlier dependency) made, and :meth:`CertificatePolicy.identity` that of its own decision;
with ``Security(..., scopes=[...])`` each refuses unless every scope asked is a role that
holds. A refusal is ``HTTPException(403)`` with the reason code and its generic sentence.

The only module that imports FastAPI; no other integration's framework (Starlette comes
with FastAPI, through :mod:`policyengine.integrations.starlette`).
"""

# No `from __future__ import annotations` here: FastAPI reads the annotations of
# CertificatePolicy.__call__ at run time, and older releases (0.100 among them) resolve
# string annotations of a callable instance against no globals, so `request: Request`
# would turn into a required query parameter.
import logging
from pathlib import Path

from fastapi import HTTPException, Request
from fastapi.security import SecurityScopes

from policyengine.evaluation.decision import Decision
from policyengine.evaluation.engine import Policy
from policyengine.evaluation.identity import Identity
from policyengine.integrations import (
    DECIDED_KEY,
    MISSING_ROLE,
    NOT_DECIDED,
    decide_request,
    refusal_detail,
    refusal_message,
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
from policyengine.integrations.starlette import connection_identity, missing_roles
from policyengine.request.answers import off_the_loop

__all__ = ["CertificatePolicy", "PolicyMiddleware", "certificate_identity"]

_log = logging.getLogger("policyengine")
_warned: set[str] = set()
NOT_DECIDED_WARNING = (
    "certificate_identity found no policyengine decision for this request: add the "
    "policyengine ASGI middleware (app.add_middleware(PolicyMiddleware, ...)), or take the "
    "identity from a CertificatePolicy (Depends(partner.identity)); it refuses with "
    "not_decided until then"
)


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
            decided = await off_the_loop(
                lambda: decide_request(
                    self.policy, scope_request(request.scope), self.log, explain=self.expose_trace
                )
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

    async def identity(self, request: Request, security_scopes: SecurityScopes) -> Identity:
        """A dependency: this policy's decision (made now, or reused as the call does), and
        then its identity, as :func:`certificate_identity` checks it: ``Depends(
        partner.identity)``, or ``Security(partner.identity, scopes=["ops"])`` to require
        roles. A deny refuses as the call does."""
        await self(request)
        return _checked_identity(request, security_scopes.scopes)


def _refused(reason: str) -> HTTPException:
    """The 403 of an identity check: the reason code and its generic sentence, as the
    decision's own refusals (:func:`policyengine.integrations.refusal_detail`)."""
    detail = {"reason": reason, "message": refusal_message(reason)}
    return HTTPException(status_code=403, detail=detail)


def _checked_identity(request: Request, roles: list[str]) -> Identity:
    found = connection_identity(request.scope)
    if isinstance(found, str):
        if found == NOT_DECIDED and NOT_DECIDED not in _warned:
            _warned.add(NOT_DECIDED)
            _log.warning(NOT_DECIDED_WARNING)
        raise _refused(found)
    if missing_roles(found, roles):
        raise _refused(MISSING_ROLE)
    return found


async def certificate_identity(request: Request, security_scopes: SecurityScopes) -> Identity:
    """A dependency returning the identity of the decision already made for this request:
    by the ASGI middleware, or by a :class:`CertificatePolicy` dependency resolved before
    it. ``Depends(certificate_identity)`` requires a principal;
    ``Security(certificate_identity, scopes=["ops", ...])`` also requires every scope to be
    a role that holds.

    It refuses with ``HTTPException(403)``, detail ``{"reason", "message"}``: the decision's
    reason code when it refused, ``missing_certificate`` without a certificate (an excluded
    path, an optional mode), ``no_principal`` when the certificate names none,
    ``missing_role`` when a role asked for does not hold, and ``not_decided`` when nothing
    decided the request (the middleware is missing: fail closed, and a warning is logged
    once).
    """
    return _checked_identity(request, security_scopes.scopes)
