"""WSGI middleware: a policy in front of any WSGI application (Flask, Django, Pyramid, …).

::

    from policyengine.integrations.wsgi import PolicyMiddleware

    app = PolicyMiddleware(app, "policies/partner-api.yaml")

A refused request gets a ready 403 (JSON when the client accepts JSON, text otherwise) and
the application is not called; nothing of the request body is read before the decision.
An allowed request reaches the application with the :class:`~policyengine.Decision` in
``environ["policyengine.decision"]`` (its certificate facts in ``decision.certificate``).

Plain WSGI: it imports no web framework, only what the integrations share.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from policyengine.evaluation.decision import Decision
from policyengine.evaluation.engine import Policy
from policyengine.integrations import (
    DECIDED_KEY,
    Middleware,
    decide_request,
    environ_request,
    refusal,
    reusable_decision,
)
from policyengine.integrations.runtime import DecisionLog, ReloadingPolicy

__all__ = ["ENVIRON_KEY", "PolicyMiddleware", "decide_environ"]

ENVIRON_KEY = "policyengine.decision"

StartResponse = Callable[..., Any]


def decide_environ(
    provider: Policy | ReloadingPolicy,
    environ: dict[str, Any],
    log: DecisionLog | None,
    *,
    explain: bool = False,
) -> Decision:
    """Decide the request a WSGI environ describes, log it, and store it in the environ
    (with the policy that made it, under ``DECIDED_KEY``, for a later guard to reuse). A
    decision an outer guard made with the very same policy object is reused."""
    decided = reusable_decision(environ.get(DECIDED_KEY), provider)
    if decided is None:
        decided = decide_request(provider, environ_request(environ), log, explain=explain)
    environ[ENVIRON_KEY] = decided.decision
    environ[DECIDED_KEY] = decided
    return decided.decision


class PolicyMiddleware(Middleware):
    """Decides every request before the wrapped application sees it.

    ``policy``: a :class:`~policyengine.Policy`, a
    :class:`~.runtime.ReloadingPolicy`, or a policy file path (reloaded when the
    file changes). ``on_deny``: a hook returning the application's own
    :class:`~policyengine.integrations.DenyResponse` (or None for the default).
    ``expose_trace``: put the explain trace in refusals (for development only).
    ``log``: the decision log (``None`` turns it off).
    """

    protocol = "WSGI"

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        decision = decide_environ(self.policy, environ, self.log, explain=self.expose_trace)
        if decision.allowed:
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
