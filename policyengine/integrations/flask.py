"""Flask: an extension that guards a whole application, and a decorator that guards one view.

::

    from policyengine.integrations.flask import PolicyEngine, require_certificate

    PolicyEngine(app, "policies/partner-api.yaml")  # every request is decided first

    @app.post("/admin")
    @require_certificate("policies/admin.yaml")     # this view also needs the admin policy
    def admin(): ...

The decision is in ``flask.g.policyengine_decision``. A refused request gets a 403 built by
:func:`policyengine.integrations.refusal` (JSON when the client accepts JSON, text
otherwise) and its view is not called. Deciding reads the WSGI environ only, never the body,
so a refused upload is never read.

Who the certificate names::

    from policyengine.integrations.flask import current_identity, require_role

    @app.get("/ops")
    @require_role("ops")            # 403 missing_role unless the policy's role "ops" holds
    def ops(): return f"hello {current_identity.principal}"

``current_identity`` is the :class:`~policyengine.Identity` of the request's allowed
decision, or None (no decision, a refusal, an excluded path); it is a proxy, so test it
with ``if current_identity:`` (``get_identity()`` returns the object itself).

The only module that imports Flask; no other integration's framework.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, cast

import flask
from werkzeug.local import LocalProxy

from policyengine.errors import MISSING_CERTIFICATE
from policyengine.evaluation.decision import Decision
from policyengine.evaluation.engine import Policy
from policyengine.evaluation.identity import Identity
from policyengine.integrations import (
    DECIDED_KEY,
    MISSING_ROLE,
    Decided,
    DenyHook,
    decide_request,
    environ_request,
    refusal,
    refusal_message,
    reusable_decision,
)
from policyengine.integrations.runtime import (
    DEFAULT_LOG,
    DecisionLog,
    LogOption,
    ReloadingPolicy,
    as_policy_provider,
    decision_log,
)

__all__ = [
    "CONFIG_KEY",
    "EXTENSION_KEY",
    "PolicyEngine",
    "current_identity",
    "get_identity",
    "require_certificate",
    "require_role",
]

CONFIG_KEY = "POLICYENGINE_POLICY"
"""``app.config`` key read by :meth:`PolicyEngine.init_app` when no policy is given."""
EXTENSION_KEY = "policyengine"
"""Where the per-application settings live: ``app.extensions["policyengine"]``."""
G_KEY = "policyengine_decision"
DECIDED_FLASK_KEY = "policyengine.flask.decided"
"""The request environ key of what a guard of this request decided (the reuse record)."""

PolicyLike = Policy | ReloadingPolicy | str | Path
P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class _AppSettings:
    """What one application was configured with; kept per app so one extension object can
    serve several apps (the factory pattern) without sharing their policies."""

    provider: Policy | ReloadingPolicy
    on_deny: DenyHook | None
    expose_trace: bool
    log: DecisionLog | None
    guard_all: bool


class PolicyEngine:
    """The Flask extension: decides every request of an application before its view runs.

    ``policy``: a :class:`~policyengine.Policy`, a
    :class:`~.runtime.ReloadingPolicy`, or a policy file path (reloaded when it
    changes); when None, :meth:`init_app` reads ``app.config["POLICYENGINE_POLICY"]``.
    ``on_deny``, ``expose_trace`` and ``log`` are as for the WSGI middleware.
    ``guard_all=False`` installs no hook: only views decorated with
    :func:`require_certificate` are guarded, with this policy.
    """

    def __init__(
        self,
        app: flask.Flask | None = None,
        policy: PolicyLike | None = None,
        *,
        on_deny: DenyHook | None = None,
        expose_trace: bool = False,
        log: LogOption = DEFAULT_LOG,
        guard_all: bool = True,
    ) -> None:
        self.policy = policy
        self.on_deny = on_deny
        self.expose_trace = expose_trace
        self.log = decision_log(log)
        self.guard_all = guard_all
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask, policy: PolicyLike | None = None) -> None:
        """Attach to ``app``. The policy is loaded here, so a broken file stops start-up
        instead of refusing every request later."""
        chosen = policy if policy is not None else self.policy
        if chosen is None:
            chosen = app.config.get(CONFIG_KEY)
        if chosen is None:
            raise RuntimeError(
                "PolicyEngine needs a policy: pass one to PolicyEngine(app, policy) or "
                f"init_app(app, policy), or set app.config[{CONFIG_KEY!r}] to a policy file path"
            )
        settings = _AppSettings(
            provider=as_policy_provider(chosen),
            on_deny=self.on_deny,
            expose_trace=self.expose_trace,
            log=self.log,
            guard_all=self.guard_all,
        )
        app.extensions[EXTENSION_KEY] = settings
        hooks = app.before_request_funcs.setdefault(None, [])
        if settings.guard_all and _guard_request not in hooks:  # init_app twice: one hook
            app.before_request(_guard_request)


def _guard_request() -> flask.Response | None:
    """The before_request hook: a response refuses the request, None lets the view run."""
    settings = cast(_AppSettings, flask.current_app.extensions[EXTENSION_KEY])
    # an app context pushed beforehand outlives requests: no view may see the decision of
    # the request before it
    flask.g.pop(G_KEY, None)
    if not settings.guard_all:  # re-initialised with guard_all=False: the hook stays inert
        return None
    return _decide_or_refuse(settings.provider, settings, settings.on_deny)


def _decide_or_refuse(
    provider: Policy | ReloadingPolicy, settings: _AppSettings, on_deny: DenyHook | None
) -> flask.Response | None:
    """Decide (or reuse what an earlier guard of this request decided with the very same
    policy object), keep the decision in ``g``, and answer a refusal (None: go on)."""
    # what an earlier guard decided is kept in the request's own environ, never in `g`:
    # `g` lives as long as the app context, which outlives a request when a context was
    # already pushed (`app.app_context().push()` at import, a test's `with app.app_context()`)
    environ = flask.request.environ
    decided = reusable_decision(environ.get(DECIDED_FLASK_KEY), provider) or reusable_decision(
        environ.get(DECIDED_KEY), provider
    )
    if decided is None:
        decided = decide_request(
            provider, environ_request(environ), settings.log, explain=settings.expose_trace
        )
    setattr(flask.g, G_KEY, decided.decision)
    environ[DECIDED_FLASK_KEY] = decided
    if decided.decision.allowed:
        return None
    return _refusal_response(decided.decision, on_deny, settings.expose_trace)


def _refusal_response(
    decision: Decision, on_deny: DenyHook | None, expose_trace: bool
) -> flask.Response:
    accept = flask.request.headers.get("Accept", "")
    denied = refusal(decision, accept, on_deny, expose_trace)
    return flask.Response(denied.body, status=denied.status, headers=list(denied.headers))


def require_certificate(
    policy: PolicyLike | None = None, *, on_deny: DenyHook | None = None
) -> Callable[[Callable[P, R]], Callable[P, R | flask.Response]]:
    """Guard one view. With ``policy`` (a path, Policy or ReloadingPolicy), the view is
    decided against that policy, loaded now; without, against the policy of the app's
    :class:`PolicyEngine` (a request fails with RuntimeError if the app has none).

    When the app-wide hook (or the WSGI middleware, or another decorator) already decided
    this request with the very policy object this view decides with (the same Policy, the
    same loaded generation of a ReloadingPolicy), the view reuses that decision instead of
    deciding (and logging) twice; otherwise it decides again. Logging and
    ``expose_trace`` follow the app's extension; without one, decisions are logged with
    a default :class:`~policyengine.integrations.runtime.DecisionLog` of this decorator's.
    """
    own = as_policy_provider(policy) if policy is not None else None
    # for an app without the extension: this decorator's own settings
    fallback = _AppSettings(own, None, False, DecisionLog(), False) if own is not None else None

    def settings_for_request() -> tuple[Policy | ReloadingPolicy, _AppSettings]:
        settings = cast(_AppSettings | None, flask.current_app.extensions.get(EXTENSION_KEY))
        if settings is None:
            if fallback is None:
                raise RuntimeError(
                    "require_certificate() without a policy uses the app's PolicyEngine "
                    "policy, and this app has none: call PolicyEngine(app, policy) or pass "
                    "require_certificate(policy)"
                )
            settings = fallback
        return (own if own is not None else settings.provider), settings

    def guard() -> flask.Response | None:
        provider, settings = settings_for_request()
        return _decide_or_refuse(provider, settings, on_deny or settings.on_deny)

    return _guarded_by(guard)


def _guarded_by(
    guard: Callable[[], flask.Response | None],
) -> Callable[[Callable[P, R]], Callable[P, R | flask.Response]]:
    """A decorator running ``guard`` before the view (sync or async): a response it returns
    is the answer, and the view is not called."""

    def decorate(view: Callable[P, R]) -> Callable[P, R | flask.Response]:
        if inspect.iscoroutinefunction(view):
            async_view = cast(Callable[P, Awaitable[Any]], view)

            @functools.wraps(view)
            async def guarded_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                refused = guard()
                if refused is not None:
                    return refused
                return await async_view(*args, **kwargs)

            return cast(Callable[P, R | flask.Response], guarded_async)

        @functools.wraps(view)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R | flask.Response:
            refused = guard()
            if refused is not None:
                return refused
            return view(*args, **kwargs)

        return guarded

    return decorate


# -- who the certificate names ------------------------------------------------------------

_ROLE_LOG = logging.getLogger(__name__)


def _request_decided() -> Decided | None:
    """What the last guard of this request decided: this module's hook or decorator (kept
    in the request's environ), else the WSGI middleware in front of the app. Never read
    from ``flask.g``, which can outlive the request (see :func:`_decide_or_refuse`)."""
    environ = flask.request.environ
    for key in (DECIDED_FLASK_KEY, DECIDED_KEY):
        decided = environ.get(key)
        if isinstance(decided, Decided):
            return decided
    return None


def get_identity() -> Identity | None:
    """The :class:`~policyengine.Identity` of this request's decision when it allowed;
    None when nothing decided this request, when the decision refused, or when it has no
    identity (an excluded path). Needs a request context."""
    decided = _request_decided()
    if decided is None or not decided.decision.allowed:
        return None
    return decided.decision.identity


current_identity = cast(Identity | None, LocalProxy(get_identity))
"""The request's identity, a proxy like ``flask.g`` (see :func:`get_identity`). It is
never ``None`` itself: test it with ``if current_identity:``."""


def require_role(role: str) -> Callable[[Callable[P, R]], Callable[P, R | flask.Response]]:
    """Guard one view by a role of the policy's ``identity:`` section: the view runs only
    when the request's decision allowed and its identity holds ``role``.

    Refused otherwise, with a 403 in the format of the extension's refusals: reason
    ``missing_role`` (an identity without the role) or ``missing_certificate`` (no
    identity: an excluded path, where no rule ran). The decision is the one the app's
    :class:`PolicyEngine` hook, a :func:`require_certificate` above this decorator, or the
    WSGI middleware made; when none did (an extension with ``guard_all=False``), the
    request is decided here with the extension's policy. With no extension and no
    middleware the request fails with RuntimeError (a 500). A role the deciding policy
    does not define is held by nobody: ``missing_role``, and a warning on the
    ``policyengine.integrations.flask`` logger naming the policy's roles. Every refusal
    is logged there (INFO); the extension's ``on_deny`` hook is not asked.
    """
    if not isinstance(role, str) or not role:
        raise TypeError(f"require_role takes the name of a role, not {role!r}")

    def guard() -> flask.Response | None:
        decided = _request_decided()
        if decided is None:
            settings = cast(_AppSettings | None, flask.current_app.extensions.get(EXTENSION_KEY))
            if settings is None:
                raise RuntimeError(
                    f"require_role({role!r}) found no decision for this request: guard the "
                    "app with PolicyEngine(app, policy) or the WSGI PolicyMiddleware"
                )
            refused = _decide_or_refuse(settings.provider, settings, settings.on_deny)
            if refused is not None:
                return refused
            decided = cast(Decided, _request_decided())
        return _role_refusal(decided, role)

    return _guarded_by(guard)


def _role_refusal(decided: Decided, role: str) -> flask.Response | None:
    """None when ``role`` holds for the decision, else the refusal saying why not."""
    decision = decided.decision
    if not decision.allowed:  # a refused request never reaches a view; if one did: refuse
        return _refusal_response(decision, None, False)
    identity = decision.identity
    if identity is not None and identity.has_role(role):
        return None
    reason = MISSING_ROLE if identity is not None else MISSING_CERTIFICATE
    policy = decided.policy
    defined = [r.name for r in policy.identity.roles]
    level, note = logging.INFO, ""
    if role not in defined:  # a typo, or a role taken out of the policy: nobody holds it
        level = logging.WARNING
        note = f"; policy {policy.name} defines no role {role!r} (its roles: {defined or 'none'})"
    _ROLE_LOG.log(
        level,
        "refused %s %s: %s (require_role %r, policy %s)%s",
        flask.request.method,
        flask.request.path,
        reason,
        role,
        policy.name,
        note,
        extra={"reason": reason, "role": role, "policy": policy.name},
    )
    return _role_response(reason)


def _role_response(reason: str) -> flask.Response:
    """A role refusal, as the extension's refusals are: the reason code and its sentence,
    JSON when the client accepts JSON, text otherwise, never stored by a cache."""
    sentence = refusal_message(reason)
    if "application/json" in flask.request.headers.get("Accept", "").lower():
        payload = {"error": "forbidden", "reason": reason, "message": sentence}
        body, content_type = json.dumps(payload).encode(), "application/json"
    else:
        body = f"403 Forbidden: {reason}: {sentence}\n".encode()
        content_type = "text/plain; charset=utf-8"
    headers = [("Content-Type", content_type), ("Cache-Control", "no-store")]
    return flask.Response(body, status=403, headers=headers)
