"""Django: a middleware configured from settings, and a decorator that guards one view.

::

    # settings.py
    POLICYENGINE = {"POLICY": BASE_DIR / "policies/partner-api.yaml"}
    MIDDLEWARE = ["policyengine.integrations.django.PolicyMiddleware", *MIDDLEWARE]

    # views.py
    from policyengine.integrations.django import require_certificate

    @require_certificate("policies/admin.yaml")
    def admin(request): ...

The middleware is sync and async capable, so it runs without a thread hop under WSGI
(gunicorn) and under ASGI (uvicorn). It decides from what the server handed over: the
ASGI scope (``request.scope``) under ASGI, the WSGI environ (``request.META``) under WSGI.
The decision is on ``request.policyengine_decision``; a refused request gets an
``HttpResponse`` 403 (JSON when the client accepts JSON, text otherwise) and the view is not
called. Put it first in ``MIDDLEWARE``: nothing before it then reads the request body.

Settings, all checked when the middleware is created (``ImproperlyConfigured`` otherwise)::

    POLICYENGINE = {
        "POLICY": "path/to/policy.yaml",   # or a Policy / ReloadingPolicy; required
        "EXPOSE_TRACE": False,             # the explain trace in refusals: development only
        "LOG_FIELDS": ["fingerprint_sha256", "subject"],  # certificate fields in decision logs
        "LOG_TRACE": False,                # explain every decision, its trace in the log
        "ON_DENY": "myapp.security.refusal",  # dotted path to a DenyHook, or None
        "EXEMPT_VIEWS": ["myapp.views.health", "health"],  # dotted view paths or URL names
        # with CertificateBackend in AUTHENTICATION_BACKENDS (request.user from the principal):
        "CREATE_UNKNOWN_USER": False,      # create the principal's user when none exists
        "USERNAME_FIELD": "username",      # the user field holding it; default USERNAME_FIELD
        "SYNC_GROUPS": ["roles"],          # the user's groups follow "groups" and/or "roles"
    }

With :class:`CertificateBackend` (``policyengine.integrations.django_auth``, re-exported
here) in ``AUTHENTICATION_BACKENDS``, ``request.user`` is the principal's Django user; the
middleware then goes after ``AuthenticationMiddleware`` (checked).

``EXEMPT_VIEWS`` applies to the view Django dispatches, resolved with the URLconf it really
uses (``request.urlconf`` set by a later middleware included): see :class:`PolicyMiddleware`.

With ``django_auth.py`` (the backend, imported on first use), the only modules that import
Django (and asgiref); no other integration's framework.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.apps import apps
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.utils.module_loading import import_string

from policyengine.errors import PolicyError
from policyengine.evaluation.decision import Decision
from policyengine.evaluation.engine import Policy
from policyengine.integrations import (
    DECIDED_KEY,
    Decided,
    DenyHook,
    decide_request,
    environ_request,
    log_decision,
    refusal,
    reusable_decision,
)
from policyengine.integrations.asgi import scope_request
from policyengine.integrations.runtime import (
    DEFAULT_LOG_FIELDS,
    DecisionLog,
    ReloadingPolicy,
    as_policy_provider,
)
from policyengine.request.answers import off_the_loop

if TYPE_CHECKING:
    from policyengine.integrations.django_auth import CertificateBackend, UserOptions

__all__ = [
    "SETTINGS_NAME",
    "CertificateBackend",
    "PolicyMiddleware",
    "request_view",
    "require_certificate",
]

SETTINGS_NAME = "POLICYENGINE"
REQUEST_ATTRIBUTE = "policyengine_decision"
DECIDED_ATTRIBUTE = "_policyengine_decided"
PENDING_ATTRIBUTE = "_policyengine_pending"
USER_KEYS = ("CREATE_UNKNOWN_USER", "USERNAME_FIELD", "SYNC_GROUPS")
"""Read by CertificateBackend (``integrations/django_auth.py``)."""
_KEYS = ("POLICY", "EXPOSE_TRACE", "LOG_FIELDS", "LOG_TRACE", "ON_DENY", "EXEMPT_VIEWS", *USER_KEYS)

PolicyLike = Policy | ReloadingPolicy | str | Path
SyncView = Callable[..., HttpResponseBase]
AsyncView = Callable[..., Awaitable[HttpResponseBase]]
GetResponse = Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]


@dataclass(frozen=True, slots=True)
class _Options:
    """``settings.POLICYENGINE``, checked once; ``provider`` is None when POLICY is unset
    and was not required (a decorator that brings its own policy)."""

    provider: Policy | ReloadingPolicy | None
    expose_trace: bool
    log: DecisionLog
    on_deny: DenyHook | None
    exempt_views: frozenset[str]
    users: UserOptions | None


def _improperly(message: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"settings.{SETTINGS_NAME}: {message}")


def _read_options(*, need_policy: bool) -> _Options:
    """Check ``settings.POLICYENGINE`` and build what it describes; every mistake is an
    ImproperlyConfigured naming the key, so a deploy fails at start-up, not per request."""
    raw = _raw_settings(need_policy=need_policy)
    provider = _provider(raw.get("POLICY"), need_policy=need_policy)
    expose_trace = raw.get("EXPOSE_TRACE", False)
    if not isinstance(expose_trace, bool):
        raise _improperly(f'"EXPOSE_TRACE" must be True or False, not {expose_trace!r}')
    users = _users(raw)
    return _Options(provider, expose_trace, _log(raw), _on_deny(raw), _exempt_views(raw), users)


def _users(raw: Mapping[str, Any]) -> UserOptions | None:
    """The user settings, when CertificateBackend is in AUTHENTICATION_BACKENDS (or set
    while it is not: a mistake). Imported now, not with this module: Django's auth models
    need the app registry, which an import of this module from settings precedes."""
    if not apps.is_installed("django.contrib.auth"):
        named = f"{__name__}.CertificateBackend" in django_settings.AUTHENTICATION_BACKENDS
        given = [key for key in USER_KEYS if key in raw]
        if named or given:
            what = "CertificateBackend" if named else repr(given[0])
            raise _improperly(f'{what} needs "django.contrib.auth" in INSTALLED_APPS')
        return None
    from policyengine.integrations.django_auth import read_user_options

    return read_user_options(raw, _improperly)


def _bind_user(request: HttpRequest, decision: Decision | None, users: UserOptions) -> None:
    from policyengine.integrations.django_auth import bind_user

    bind_user(request, decision, users)


def __getattr__(name: str) -> Any:
    """``CertificateBackend``, imported on first use (see :func:`_users`)."""
    if name == "CertificateBackend":
        from policyengine.integrations.django_auth import CertificateBackend

        return CertificateBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _raw_settings(*, need_policy: bool) -> Mapping[str, Any]:
    """``settings.POLICYENGINE`` as given, once it is a dict of known keys."""
    raw = getattr(django_settings, SETTINGS_NAME, None)
    if raw is None:
        raw = {}
        if need_policy:
            raise _improperly(
                'is not set; add POLICYENGINE = {"POLICY": "path/to/policy.yaml"} to settings'
            )
    if not isinstance(raw, Mapping):
        raise _improperly(f"must be a dict, not {type(raw).__name__}")
    for key in raw:
        if key not in _KEYS:
            close = difflib.get_close_matches(str(key), _KEYS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(_KEYS)}"
            raise _improperly(f"unknown key {key!r}; {hint}")
    return raw


def _provider(policy: object, *, need_policy: bool) -> Policy | ReloadingPolicy | None:
    """``"POLICY"``, loaded now."""
    if policy is None:
        if need_policy:
            raise _improperly('"POLICY" is required: a policy file path, Policy or ReloadingPolicy')
        return None
    if not isinstance(policy, (str, Path, Policy, ReloadingPolicy)):
        raise _improperly(
            f'"POLICY" must be a policy file path, Policy or ReloadingPolicy, not {policy!r}'
        )
    try:
        return as_policy_provider(policy)
    except PolicyError as exc:
        raise _improperly(f'"POLICY" does not load:\n{exc}') from exc


def _log(raw: Mapping[str, Any]) -> DecisionLog:
    """The decision log ``"LOG_FIELDS"`` and ``"LOG_TRACE"`` describe."""
    fields = raw.get("LOG_FIELDS", DEFAULT_LOG_FIELDS)
    if isinstance(fields, str) or not isinstance(fields, Iterable):
        raise _improperly(f'"LOG_FIELDS" must be a list of field names, not {fields!r}')
    log_trace = raw.get("LOG_TRACE", False)
    if not isinstance(log_trace, bool):
        raise _improperly(f'"LOG_TRACE" must be True or False, not {log_trace!r}')
    try:
        return DecisionLog(fields=tuple(fields), trace=log_trace)
    except ValueError as exc:
        raise _improperly(f'"LOG_FIELDS": {exc}') from exc


def _on_deny(raw: Mapping[str, Any]) -> DenyHook | None:
    """``"ON_DENY"``: a callable, or a dotted path imported now."""
    on_deny = raw.get("ON_DENY")
    if isinstance(on_deny, str):
        try:
            on_deny = import_string(on_deny)
        except ImportError as exc:
            raise _improperly(f'"ON_DENY" {raw["ON_DENY"]!r} cannot be imported: {exc}') from exc
    if on_deny is not None and not callable(on_deny):
        raise _improperly(f'"ON_DENY" must be a dotted path to a callable or None, not {on_deny!r}')
    return cast(DenyHook | None, on_deny)


def _exempt_views(raw: Mapping[str, Any]) -> frozenset[str]:
    """``"EXEMPT_VIEWS"``: dotted view paths and URL names."""
    exempt = raw.get("EXEMPT_VIEWS", ())
    if isinstance(exempt, str) or not isinstance(exempt, Iterable):
        raise _improperly('"EXEMPT_VIEWS" must be a list of dotted view paths or URL names')
    names = frozenset(exempt)
    if not all(isinstance(name, str) for name in names):
        raise _improperly('"EXEMPT_VIEWS" entries must be strings')
    return names


def request_view(request: HttpRequest) -> dict[str, Any]:
    """The request as ``evaluate_request`` takes it: from the ASGI scope under ASGI (where
    the ``asgi-tls`` source finds the TLS extension), else from ``request.META``, which
    under WSGI is the server's environ (where ``wsgi-environ`` finds ``SSL_CLIENT_CERT``)."""
    scope = getattr(request, "scope", None)
    if isinstance(scope, Mapping):
        return scope_request(cast(Any, scope))
    return environ_request(request.META)


def _decide(
    request: HttpRequest,
    provider: Policy | ReloadingPolicy,
    options: _Options,
    on_deny: DenyHook | None,
) -> HttpResponse | None:
    """Decide (or reuse what an earlier guard of this request decided with the very same
    policy object), keep the decision on the request, and answer a refusal (None: go on)."""
    decided = _reusable(request, provider)
    if decided is None:
        decided = decide_request(
            provider, request_view(request), options.log, explain=options.expose_trace
        )
    _keep(request, decided)
    return _answer(request, decided.decision, options, on_deny)


def _reusable(request: HttpRequest, provider: Policy | ReloadingPolicy) -> Decided | None:
    """What the middleware, another decorator, or the WSGI / ASGI middleware in front of
    Django decided for this request, if the same policy object made it."""
    scope = getattr(request, "scope", None)
    places = (
        getattr(request, DECIDED_ATTRIBUTE, None),
        request.META.get(DECIDED_KEY),
        scope.get(DECIDED_KEY) if isinstance(scope, Mapping) else None,
    )
    for earlier in places:
        decided = reusable_decision(earlier, provider)
        if decided is not None:
            return decided
    return None


def _keep(request: HttpRequest, decided: Decided) -> None:
    setattr(request, REQUEST_ATTRIBUTE, decided.decision)
    setattr(request, DECIDED_ATTRIBUTE, decided)


def _answer(
    request: HttpRequest, decision: Decision, options: _Options, on_deny: DenyHook | None
) -> HttpResponse | None:
    """None for an allow, else the refusal."""
    if decision.allowed:
        return None
    accept = request.headers.get("Accept", "")
    denied = refusal(decision, accept, on_deny, options.expose_trace)
    return HttpResponse(denied.body, status=denied.status, headers=dict(denied.headers))


class PolicyMiddleware:
    """Decides every request before the view (and any later middleware) sees it.

    Configured from ``settings.POLICYENGINE`` (see the module docstring), checked here so a
    mistake stops start-up. Requests dispatched to one of the ``EXEMPT_VIEWS`` are not
    decided and carry ``request.policyengine_decision = None``.

    With ``EXEMPT_VIEWS``, which view a request reaches is known only once Django resolves
    it, after every middleware's request phase (a later middleware may set
    ``request.urlconf``: per-host or per-tenant URLconfs). So the request is decided
    first, as always, and a refusal is answered in ``process_view``, for the view Django
    actually dispatches, unless that view is exempt; a refused request that never reaches
    a view (a later middleware answered, the URL did not resolve) gets the refusal in
    place of whatever response came back.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.options = _read_options(need_policy=True)
        assert self.options.provider is not None
        self.provider: Policy | ReloadingPolicy = self.options.provider
        self.users = self.options.users
        if self.users is not None:
            from policyengine.integrations import django_auth

            django_auth.check_middleware_order(type(self))
        self._async = iscoroutinefunction(get_response)
        if self._async:
            # Django then calls us from its event loop instead of a worker thread
            markcoroutinefunction(self)
            # and process_view too: Django would run a sync one in a thread
            self.process_view = self._process_view_async  # type: ignore[method-assign,assignment]

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self._async:
            return self.__acall__(request)
        if not self.options.exempt_views:
            refused = self._decide(request)
            return refused if refused is not None else self.get_response(request)
        self._decide_pending(request)
        response = cast(HttpResponseBase, self.get_response(request))
        return self._settle_undispatched(request, response)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        # Deciding is CPU work on data in memory (at most a stat() of the policy file), so
        # it runs on the loop, where a thread hop would cost more than it saves; unless a
        # revocation answer must be fetched first: then in a thread (off_the_loop).
        if not self.options.exempt_views:
            refused = await off_the_loop(lambda: self._decide(request))
            if refused is not None:
                return refused
            return await cast(Awaitable[HttpResponseBase], self.get_response(request))
        await off_the_loop(lambda: self._decide_pending(request))
        response = await cast(Awaitable[HttpResponseBase], self.get_response(request))
        return self._settle_undispatched(request, response)

    def _decide(self, request: HttpRequest) -> HttpResponse | None:
        refused = _decide(request, self.provider, self.options, self.options.on_deny)
        if refused is None and self.users is not None:
            _bind_user(request, getattr(request, REQUEST_ATTRIBUTE), self.users)
        return refused

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        """Settle a pending decision for the view Django resolved: exempt, or decided."""
        return self._settle_view(request, view_func)

    async def _process_view_async(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        return self._settle_view(request, view_func)

    def _settle_view(
        self, request: HttpRequest, view_func: Callable[..., Any]
    ) -> HttpResponse | None:
        if self.users is not None:
            from policyengine.integrations.django_auth import check_bound

            check_bound(request)
        pending = cast(_Pending | None, request.__dict__.pop(PENDING_ATTRIBUTE, None))
        if pending is None:
            return None
        if self._exempt(request, view_func):
            setattr(request, REQUEST_ATTRIBUTE, None)
            setattr(request, DECIDED_ATTRIBUTE, None)
            if self.users is not None:
                _bind_user(request, None, self.users)
            return None  # an exempt view is not decided, nor logged
        return self._settle(request, pending)

    def _decide_pending(self, request: HttpRequest) -> None:
        """Decide now, from the request as the server handed it over; log and answer once
        the view is known."""
        view = request_view(request)
        decided = decide_request(self.provider, view, None, explain=self.options.expose_trace)
        _keep(request, decided)
        setattr(request, PENDING_ATTRIBUTE, _Pending(decided, view))
        if self.users is not None:
            _bind_user(request, decided.decision, self.users)

    def _settle(self, request: HttpRequest, pending: _Pending) -> HttpResponse | None:
        if self.options.log is not None:
            log_decision(self.options.log, pending.decided, pending.view)
        return _answer(request, pending.decided.decision, self.options, self.options.on_deny)

    def _settle_undispatched(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        """No view was dispatched (a later middleware answered, the URL did not resolve, a
        view middleware answered before ours): the decision stands as made."""
        pending = cast(_Pending | None, request.__dict__.pop(PENDING_ATTRIBUTE, None))
        if pending is None:
            return response
        refused = self._settle(request, pending)
        if refused is None:
            return response
        if hasattr(response, "close"):
            response.close()
        return refused

    def _exempt(self, request: HttpRequest, view_func: Callable[..., Any]) -> bool:
        """Whether the view Django is about to call is exempt, by dotted path or URL name."""
        exempt = self.options.exempt_views
        view = getattr(view_func, "view_class", view_func)
        dotted = f"{getattr(view, '__module__', '')}.{getattr(view, '__qualname__', '')}"
        if dotted in exempt:
            return True
        match = getattr(request, "resolver_match", None)
        name = getattr(match, "view_name", None)
        return isinstance(name, str) and name in exempt


@dataclass(frozen=True, slots=True)
class _Pending:
    """A decision made before the view was known, with the request view it was made from."""

    decided: Decided
    view: Mapping[str, Any]


def require_certificate(
    policy: PolicyLike | None = None, *, on_deny: DenyHook | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Guard one view, sync or async.

    With ``policy`` (a path, Policy or ReloadingPolicy, loaded now) the view is decided
    against it; without, against ``settings.POLICYENGINE["POLICY"]``. A request that the
    middleware (or another decorator) already decided with the very policy object this
    view decides with (the same Policy, the same loaded generation of a ReloadingPolicy; a
    file path named twice is loaded once and shared) is not decided twice; any other
    earlier decision, whatever its policy's name, is not reused. ``EXPOSE_TRACE``,
    ``LOG_FIELDS`` and ``ON_DENY`` come from the settings when they are there (``on_deny``
    overrides).
    """
    own = as_policy_provider(policy) if policy is not None else None
    loaded: list[_Options] = []  # settings are read at the first request, then kept

    def options() -> _Options:
        if not loaded:
            loaded.append(_read_options(need_policy=own is None))
        return loaded[0]

    def check(request: HttpRequest) -> HttpResponse | None:
        opts = options()
        provider = own if own is not None else opts.provider
        assert provider is not None  # _read_options required it
        return _decide(request, provider, opts, on_deny or opts.on_deny)

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        if iscoroutinefunction(view):
            async_view = cast(AsyncView, view)

            @functools.wraps(view)
            async def guarded_async(
                request: HttpRequest, *args: Any, **kwargs: Any
            ) -> HttpResponseBase:
                refused = await off_the_loop(lambda: check(request))
                if refused is not None:
                    return refused
                return await async_view(request, *args, **kwargs)

            return guarded_async

        sync_view = cast(SyncView, view)

        @functools.wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            refused = check(request)
            if refused is not None:
                return refused
            return sync_view(request, *args, **kwargs)

        return guarded

    return decorate
