"""WSGI middleware: a policy in front of any WSGI application (Flask, Django, Pyramid, …).

::

    from policyengine.integrations.wsgi import PolicyMiddleware

    app = PolicyMiddleware(app, "policies/partner-api.yaml")

A refused request gets a ready 403 (JSON when the client accepts JSON, text otherwise) and
the application is not called; nothing of the request body is read before the decision.
An allowed request reaches the application with the :class:`~policyengine.Decision` in
``environ["policyengine.decision"]`` (its certificate facts in ``decision.certificate``) and
its :class:`~policyengine.Identity` in ``environ["policyengine.identity"]`` (None when the
decision has none: an excluded path).

``remote_user=True`` makes ``REMOTE_USER`` the principal, as a web server that authenticated
the client would (Django's ``RemoteUserMiddleware``, Trac, Pyramid's
``RemoteUserAuthenticationPolicy`` read it). The middleware then owns the key: a
``REMOTE_USER`` already in the environ (set by the server or an outer middleware) is removed
first, on every request, so that it means the certificate's principal or nothing; it is set
only for an allowed decision whose identity has a principal. With the default
``remote_user=False`` the key is left alone.

Plain WSGI: it imports no web framework, only what the integrations share.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from pathlib import Path
from typing import Any

from policyengine.evaluation.decision import Decision
from policyengine.evaluation.engine import Policy
from policyengine.integrations import (
    DECIDED_KEY,
    DenyHook,
    Middleware,
    decide_request,
    environ_request,
    refusal,
    reusable_decision,
)
from policyengine.integrations.runtime import DEFAULT_LOG, DecisionLog, LogOption, ReloadingPolicy

__all__ = ["ENVIRON_KEY", "IDENTITY_KEY", "REMOTE_USER", "PolicyMiddleware", "decide_environ"]

ENVIRON_KEY = "policyengine.decision"
IDENTITY_KEY = "policyengine.identity"
"""Where the environ keeps the identity of an allowed decision (None otherwise)."""
REMOTE_USER = "REMOTE_USER"

StartResponse = Callable[..., Any]


def decide_environ(
    provider: Policy | ReloadingPolicy,
    environ: dict[str, Any],
    log: DecisionLog | None,
    *,
    explain: bool = False,
) -> Decision:
    """Decide the request a WSGI environ describes, log it, and store it in the environ
    (with the policy that made it, under ``DECIDED_KEY``, for a later guard to reuse), and
    its identity under ``IDENTITY_KEY`` when it allows (None when it refuses: a refused
    request names nobody). A decision an outer guard made with the very same policy
    object is reused."""
    decided = reusable_decision(environ.get(DECIDED_KEY), provider)
    if decided is None:
        decided = decide_request(provider, environ_request(environ), log, explain=explain)
    decision = decided.decision
    environ[ENVIRON_KEY] = decision
    environ[DECIDED_KEY] = decided
    environ[IDENTITY_KEY] = decision.identity if decision.allowed else None
    return decision


class PolicyMiddleware(Middleware):
    """Decides every request before the wrapped application sees it.

    ``policy``: a :class:`~policyengine.Policy`, a
    :class:`~.runtime.ReloadingPolicy`, or a policy file path (reloaded when the
    file changes). ``on_deny``: a hook returning the application's own
    :class:`~policyengine.integrations.DenyResponse` (or None for the default).
    ``expose_trace``: put the explain trace in refusals (for development only).
    ``log``: the decision log (``None`` turns it off). ``remote_user``: set
    ``REMOTE_USER`` to the principal of an allowed decision, and never pass on one that
    came from elsewhere (see the module's docstring).
    """

    protocol = "WSGI"

    def __init__(
        self,
        app: Callable[..., Any],
        policy: Policy | ReloadingPolicy | str | Path,
        *,
        remote_user: bool = False,
        on_deny: DenyHook | None = None,
        expose_trace: bool = False,
        log: LogOption = DEFAULT_LOG,
    ) -> None:
        super().__init__(app, policy, on_deny=on_deny, expose_trace=expose_trace, log=log)
        if not isinstance(remote_user, bool):
            raise TypeError(f"remote_user must be True or False, not {remote_user!r}")
        self.remote_user = remote_user

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if self.remote_user:
            environ.pop(REMOTE_USER, None)  # ours alone: the principal, or nothing
        decision = decide_environ(self.policy, environ, self.log, explain=self.expose_trace)
        if decision.allowed:
            if self.remote_user:
                identity = decision.identity
                principal = identity.principal if identity is not None else None
                if principal:  # None or an empty name: nobody
                    environ[REMOTE_USER] = principal
            result: Iterable[bytes] = self.app(environ, start_response)
            return result
        accept = environ.get("HTTP_ACCEPT", "")
        response = refusal(decision, accept, self.on_deny, self.expose_trace)
        # an on_deny hook may answer with another status (401, 302, ...)
        phrase = _reason_phrase(response.status)
        start_response(f"{response.status} {phrase}", list(response.headers))
        return [response.body]


def _reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
