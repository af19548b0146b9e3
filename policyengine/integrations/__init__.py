"""Thin adapters that put a policy in front of a web application.

- :mod:`policyengine.integrations.wsgi`: WSGI middleware (any WSGI app, Flask, Django under WSGI)
- :mod:`policyengine.integrations.asgi`: ASGI middleware (Starlette, FastAPI, Django under ASGI)
- :mod:`policyengine.integrations.flask`: a Flask extension and a view decorator
- :mod:`policyengine.integrations.django`: a Django middleware and a view decorator
  (:mod:`~policyengine.integrations.django_auth`: ``request.user`` from the certificate)
- :mod:`policyengine.integrations.starlette`: ``request.user`` and ``request.auth`` from
  the certificate, through Starlette's authentication middleware
- :mod:`policyengine.integrations.fastapi`: a FastAPI dependency

Each imports its framework only when it is imported itself; install the framework with the
matching extra (``pip install 'policyengine[flask]'``). What they share is here: turning a
refusal into a response, and reading a WSGI environ as the request view that
``Policy.evaluate_request`` takes.

This package sits beside ``cli/`` and ``tooling/`` and imports neither, only the stages below
(load, evaluation, request). It prints nothing: decisions go to the
``policyengine.decisions`` logger. Each web framework is imported by its own module here
alone, never by this one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from policyengine.evaluation.decision import Decision
from policyengine.evaluation.engine import Policy
from policyengine.evaluation.trace import render_text
from policyengine.integrations.runtime import (
    DEFAULT_LOG,
    DecisionLog,
    LogOption,
    ReloadingPolicy,
    as_policy_provider,
    current_policy,
    decision_log,
)

__all__ = [
    "BAD_REQUEST",
    "DECIDED_KEY",
    "MISSING_ROLE",
    "NOT_DECIDED",
    "NO_PRINCIPAL",
    "REFUSALS",
    "UNKNOWN_POLICY",
    "Decided",
    "DenyResponse",
    "Middleware",
    "decide",
    "decide_fields",
    "decide_request",
    "deny_response",
    "environ_request",
    "log_decision",
    "refusal",
    "refusal_detail",
    "refusal_message",
    "reusable_decision",
]


@dataclass(frozen=True, slots=True)
class DenyResponse:
    """A ready refusal: status 403, headers, body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


DenyHook = Callable[[Decision], DenyResponse | None]
"""An application's own refusal: return a DenyResponse, or None for the default one."""


MISSING_ROLE = "missing_role"
"""An identity check refused: a role the route requires does not hold (which one is not
told to the client)."""
NO_PRINCIPAL = "no_principal"
"""An identity check refused: the policy allowed, but the certificate names no principal."""
NOT_DECIDED = "not_decided"
"""An identity check refused: no policyengine guard decided the request before it."""
UNKNOWN_POLICY = "unknown_policy"
"""The decision server refused: the request names no policy it decides (or names none,
and it decides several)."""
BAD_REQUEST = "bad_request"
"""The decision server refused: what the proxy said of the request is ambiguous (two
original URIs, say), so no policy was asked."""

REFUSALS: Mapping[str, str] = {
    "missing_certificate": "A client certificate is required.",
    "malformed_certificate": "The client certificate could not be read.",
    "duplicate_header": "The forwarded client certificate could not be read.",
    "header_too_large": "The forwarded client certificate could not be read.",
    "malformed_header": "The forwarded client certificate could not be read.",
    "chain_too_long": "The forwarded certificate chain is too long.",
    "denied_by_rule": "The client certificate is not allowed to make this request.",
    "no_matching_rule": "The client certificate is not allowed to make this request.",
    "rule_error": "The request could not be authorized.",
    "evaluation_error": "The request could not be authorized.",
    MISSING_ROLE: "The client certificate does not hold a role this request requires.",
    NO_PRINCIPAL: "The client certificate does not name a principal.",
    NOT_DECIDED: "The request could not be authorized.",
    UNKNOWN_POLICY: "The request names no policy this server decides.",
    BAD_REQUEST: "The request could not be authorized.",
}
"""The one sentence a refusal tells the client, per reason code: a decision's, and the
three an identity check adds (Flask's ``require_role``, Starlette's and FastAPI's identity
guards), and the two of the decision server (``policyengine serve``). It never depends on the
policy or the certificate: the decision's own message names the closest rule and the
condition that failed (a CN, an issuer, a pin to forge), so it goes to the decision log,
and to the client only with ``expose_trace``."""
_REFUSED = "The request is not allowed."
"""For a reason code without a sentence of its own."""


def refusal_message(reason: str) -> str:
    """The generic sentence a refusal with this reason code tells the client."""
    return REFUSALS.get(reason, _REFUSED)


def refusal_detail(decision: Decision, *, expose_trace: bool = False) -> dict[str, Any]:
    """What a refusal tells the client, as data: the reason code and its generic sentence;
    with ``expose_trace`` also the decision's own message (``explanation``) and its trace."""
    detail: dict[str, Any] = {
        "reason": decision.reason,
        "message": refusal_message(decision.reason),
    }
    if expose_trace:
        detail["explanation"] = decision.message
        if decision.trace is not None:
            detail["trace"] = decision.trace.to_dict()
    return detail


def deny_response(decision: Decision, accept: str, *, expose_trace: bool = False) -> DenyResponse:
    """The default refusal: the reason code and its generic sentence, as JSON when the
    client accepts JSON and as plain text otherwise. The decision's own message and its
    trace only when the application opts in with ``expose_trace`` (development)."""
    if "application/json" in accept.lower():
        payload = {"error": "forbidden", **refusal_detail(decision, expose_trace=expose_trace)}
        body = json.dumps(payload).encode()
        content_type = "application/json"
    else:
        text = f"403 Forbidden: {decision.reason}: {refusal_message(decision.reason)}\n"
        if expose_trace:
            text += f"\n{decision.message}\n"
            if decision.trace is not None:
                text += "\n" + render_text(decision.trace) + "\n"
        body = text.encode()
        content_type = "text/plain; charset=utf-8"
    headers = (
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
    )
    return DenyResponse(403, headers, body)


def environ_request(environ: Mapping[str, Any]) -> dict[str, Any]:
    """A WSGI environ (or Django's request.META) as ``evaluate_request`` keyword arguments.

    Header names come back from CGI form (``HTTP_X_SSL_CLIENT_CERT``) as ``X-SSL-Client-Cert``
    style names; the sources match them case-insensitively and treat ``_`` and ``-`` as the
    same, which is exactly the ambiguity WSGI servers create.
    """
    headers = [
        (key[5:].replace("_", "-"), value)
        for key, value in environ.items()
        if key[:5] == "HTTP_" and isinstance(value, str)
    ]
    return {
        "headers": headers,
        "remote_addr": environ.get("REMOTE_ADDR") or None,
        "path": (environ.get("SCRIPT_NAME", "") or "") + (environ.get("PATH_INFO", "") or "/"),
        "method": environ.get("REQUEST_METHOD"),
        "host": environ.get("HTTP_HOST") or environ.get("SERVER_NAME"),
        "environ": environ,
    }


def refusal(
    decision: Decision, accept: str, on_deny: DenyHook | None, expose_trace: bool
) -> DenyResponse:
    """The application's own refusal when its hook gives one, else the default."""
    if on_deny is not None:
        custom = on_deny(decision)
        if custom is not None:
            return custom
    return deny_response(decision, accept, expose_trace=expose_trace)


class Decided(NamedTuple):
    """A decision together with the policy object that made it. Integrations keep it with
    the request (under :data:`DECIDED_KEY`), so that a later guard of the same request can
    tell whether it may reuse the decision: see :func:`reusable_decision`."""

    decision: Decision
    policy: Policy
    """The compiled policy that decided: one loaded generation of a ReloadingPolicy."""
    elapsed_us: float = 0.0


_new_tuple = tuple.__new__  # Decided(...) goes through the named tuple's Python __new__

DECIDED_KEY = "policyengine.decided"
"""Where the WSGI environ and the ASGI scope keep the :class:`Decided` of the request."""


def reusable_decision(earlier: object, provider: Policy | ReloadingPolicy) -> Decided | None:
    """The one rule every integration follows before deciding a request again.

    ``earlier`` is what an earlier guard of this request left (a :class:`Decided`, or
    anything else). It is reused only when the very policy object that ``provider`` would
    decide with now made it: the same :class:`~policyengine.Policy`, and for a
    ReloadingPolicy the same loaded generation. Another policy with the same name, the
    same file loaded twice, or a reload in between: None, and the request is decided again.
    """
    if not isinstance(earlier, Decided):
        return None
    if earlier.policy is not current_policy(provider):
        return None
    return earlier


def decide_request(
    provider: Policy | ReloadingPolicy,
    request: Mapping[str, Any],
    log: DecisionLog | None,
    *,
    explain: bool = False,
) -> Decided:
    """Decide one request view with the provider's current policy, and log the decision
    (``log=None``: not logged). The decision is explained when asked, or when the log
    records traces."""
    get = request.get  # the view's keywords as they are: a Request would cost a microsecond
    return decide_fields(
        provider,
        log,
        explain,
        get("headers"),
        get("remote_addr"),
        get("path"),
        get("method"),
        get("host"),
        get("environ"),
        get("scope"),
        get("now"),
    )


def decide_fields(
    provider: Policy | ReloadingPolicy,
    log: DecisionLog | None,
    explain: bool,
    headers: Any,
    remote_addr: str | None,
    path: str | None,
    method: str | None,
    host: str | None,
    environ: Mapping[str, Any] | None = None,
    scope: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> Decided:
    """:func:`decide_request` on the fields of a view, for a middleware that reads them
    from its request as they are (the ASGI one: no view built on every request)."""
    started = time.perf_counter()
    explain = explain or (log is not None and log.trace)
    policy = current_policy(provider)
    decision = policy.evaluate_request(
        headers=headers,
        remote_addr=remote_addr,
        path=path,
        method=method,
        host=host,
        environ=environ,
        scope=scope,
        now=now,
        explain=explain,
    )
    elapsed_us = (time.perf_counter() - started) * 1e6
    decided = _new_tuple(Decided, (decision, policy, elapsed_us))  # a fifth of a µs less
    if log is not None:
        log.record(decision, method=method, path=path, peer=remote_addr, elapsed_us=elapsed_us)
    return decided


def log_decision(log: DecisionLog, decided: Decided, request: Mapping[str, Any]) -> None:
    """Write the decision record of one request view."""
    log.record(
        decided.decision,
        method=request.get("method"),
        path=request.get("path"),
        peer=request.get("remote_addr"),
        elapsed_us=decided.elapsed_us,
    )


def decide(
    provider: Policy | ReloadingPolicy,
    request: Mapping[str, Any],
    log: DecisionLog | None,
    *,
    explain: bool = False,
) -> Decision:
    """Decide one request view with the provider's current policy, and log the decision.
    The decision is explained when asked, or when the log records traces."""
    return decide_request(provider, request, log, explain=explain).decision


class Middleware:
    """What the WSGI and ASGI middleware share: their options, validated when constructed.

    ``policy``: a :class:`~policyengine.Policy`, a
    :class:`~.runtime.ReloadingPolicy`, or a policy file path (reloaded when the
    file changes). ``on_deny``: a hook returning the application's own
    :class:`DenyResponse` (or None for the default). ``expose_trace``: put the explain trace
    in refusals (for development only). ``log``: the decision log (``None`` turns it off;
    by default a DecisionLog() of this middleware's own).
    """

    protocol = "WSGI"

    def __init__(
        self,
        app: Callable[..., Any],
        policy: Policy | ReloadingPolicy | str | Path,
        *,
        on_deny: DenyHook | None = None,
        expose_trace: bool = False,
        log: LogOption = DEFAULT_LOG,
    ) -> None:
        if not callable(app):
            raise TypeError(f"PolicyMiddleware wraps an {self.protocol} application (a callable)")
        self.app = app
        self.policy = as_policy_provider(policy)
        self.on_deny = on_deny
        self.expose_trace = expose_trace
        self.log = decision_log(log)
