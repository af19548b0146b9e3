"""Django users from certificates: :class:`CertificateBackend`, and ``request.user``.

::

    # settings.py
    AUTHENTICATION_BACKENDS = ["policyengine.integrations.django.CertificateBackend"]
    POLICYENGINE = {"POLICY": "policies/partner-api.yaml", "CREATE_UNKNOWN_USER": True}

With the backend in ``AUTHENTICATION_BACKENDS``, the ``PolicyMiddleware`` puts a user on
every request it decides (:func:`bind_user`): ``request.user`` (and ``request.auser``) is
the Django user whose username is the principal of the allowing decision, looked up on
first read; in every other case it is ``AnonymousUser``: no principal, a denied or
undecided request (an excluded path, an exempt view), no such user, an inactive one. A
session login (a password through ``ModelBackend``) is never consulted on these
requests: the certificate comes with every request, so nothing is written to the
session, and a session cannot stand in for a certificate.

The settings this module reads from ``settings.POLICYENGINE`` (:func:`read_user_options`,
checked when the middleware is created)::

    "CREATE_UNKNOWN_USER": False,  # create the user (unusable password) when none exists
    "USERNAME_FIELD": "email",     # the user model's field holding the principal;
                                   # default: the user model's USERNAME_FIELD
    "SYNC_GROUPS": ["roles"],      # the user's Django groups follow "groups" and/or "roles"

``SYNC_GROUPS``: on each request, once the user is read, the user's Django groups become
exactly the *existing* groups named by the identity's groups and/or roles; every other
group of the user is removed (the certificate owns the membership), and no group is ever
created (a group grants only the permissions an administrator gave it).

Owns: CertificateBackend, the user settings, putting the user on the request. Imports
Django's auth, so it is imported only once the app registry is ready:
``integrations/django.py`` imports it on first use (and re-exports the backend), never at
its own import. Must not import any other web framework, ``tooling/`` or ``cli/``.
"""

from __future__ import annotations

import difflib
import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model, load_backend
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db import IntegrityError, models, transaction
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject
from django.utils.module_loading import import_string

from policyengine.evaluation.decision import Decision
from policyengine.evaluation.identity import Identity
from policyengine.integrations.django import SETTINGS_NAME, USER_KEYS, PolicyMiddleware

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

__all__ = ["CertificateBackend", "UserOptions", "bind_user", "read_user_options"]

SYNC_SOURCES = ("groups", "roles")
BOUND_ATTRIBUTE = "_policyengine_user"
LOGGER = logging.getLogger("policyengine.integrations.django")

Improperly = Callable[[str], ImproperlyConfigured]
User = Any  # the project's user model: AbstractBaseUser, with groups when SYNC_GROUPS is on


@dataclass(frozen=True, slots=True)
class UserOptions:
    """The user settings, checked: the backend entry that serves them and what it does."""

    backend_path: str
    create_unknown_user: bool
    username_field: str
    sync_groups: tuple[str, ...]


def read_user_options(raw: Mapping[str, Any], improperly: Improperly) -> UserOptions | None:
    """The user settings of ``raw`` (``settings.POLICYENGINE``); None when no
    CertificateBackend is in ``AUTHENTICATION_BACKENDS``, where setting them is a mistake."""
    path = _backend_path()
    if path is None:
        given = [key for key in USER_KEYS if key in raw]
        if given:
            raise improperly(
                f"{given[0]!r} is set, but no CertificateBackend is in AUTHENTICATION_BACKENDS; "
                'add "policyengine.integrations.django.CertificateBackend" to it'
            )
        return None
    create = raw.get("CREATE_UNKNOWN_USER", False)
    if not isinstance(create, bool):
        raise improperly(f'"CREATE_UNKNOWN_USER" must be True or False, not {create!r}')
    user_model = get_user_model()
    field = _username_field(raw.get("USERNAME_FIELD", user_model.USERNAME_FIELD), improperly)
    return UserOptions(path, create, field, _sync_groups(raw.get("SYNC_GROUPS", ()), improperly))


def _backend_path() -> str | None:
    """The first ``AUTHENTICATION_BACKENDS`` entry that is a CertificateBackend."""
    for path in django_settings.AUTHENTICATION_BACKENDS:
        try:
            backend = import_string(path)
        except ImportError:
            continue  # Django says so itself, on first use
        if isinstance(backend, type) and issubclass(backend, CertificateBackend):
            return str(path)
    return None


def _username_field(name: object, improperly: Improperly) -> str:
    """``"USERNAME_FIELD"``: a unique text field of the user model."""
    user_model = get_user_model()
    fields = [f.name for f in user_model._meta.concrete_fields]
    if not isinstance(name, str):
        raise improperly(f'"USERNAME_FIELD" must be a field name, not {name!r}')
    try:
        field = user_model._meta.get_field(name)
    except FieldDoesNotExist:
        close = difflib.get_close_matches(name, fields, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"its fields: {', '.join(fields)}"
        raise improperly(
            f'"USERNAME_FIELD" {name!r} is not a field of {user_model.__name__}; {hint}'
        ) from None
    if not isinstance(field, (models.CharField, models.TextField)) or not field.unique:
        raise improperly(
            f'"USERNAME_FIELD" {name!r} must be a unique text field of {user_model.__name__}, '
            "so that one principal names at most one user"
        )
    return name


def _sync_groups(value: object, improperly: Improperly) -> tuple[str, ...]:
    """``"SYNC_GROUPS"``: which parts of the identity name the user's groups."""
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise improperly(f'"SYNC_GROUPS" must be a list of "groups" and "roles", not {value!r}')
    sources = tuple(dict.fromkeys(value))
    for source in sources:
        if source not in SYNC_SOURCES:
            close = difflib.get_close_matches(str(source), SYNC_SOURCES, n=1)
            hint = f"did you mean {close[0]!r}?" if close else 'it takes "groups" and "roles"'
            raise improperly(f'"SYNC_GROUPS": unknown {source!r}; {hint}')
    if sources and not hasattr(get_user_model(), "groups"):
        raise improperly('"SYNC_GROUPS" needs a user model with groups (PermissionsMixin)')
    return cast(tuple[str, ...], sources)


def check_middleware_order(middleware: type) -> None:
    """``AuthenticationMiddleware`` sets ``request.user`` from the session: placed after
    ``middleware`` it would replace the certificate's user, so that order is refused."""
    classes: list[type] = []
    for path in django_settings.MIDDLEWARE:
        try:
            entry = import_string(path)
        except ImportError:
            continue
        if isinstance(entry, type):
            classes.append(entry)
    ours = [i for i, c in enumerate(classes) if issubclass(c, middleware)]
    sessions = [i for i, c in enumerate(classes) if issubclass(c, AuthenticationMiddleware)]
    if ours and sessions and sessions[-1] > ours[0]:
        raise ImproperlyConfigured(
            f"{middleware.__name__} must come after AuthenticationMiddleware in MIDDLEWARE when "
            "CertificateBackend is in AUTHENTICATION_BACKENDS: placed before it, "
            "AuthenticationMiddleware would replace the certificate's user with the session's"
        )


def bind_user(request: HttpRequest, decision: Decision | None, options: UserOptions) -> None:
    """Make ``request.user`` (and ``request.auser``) the user of ``decision``, looked up on
    first read: the allowing decision's principal's user, else ``AnonymousUser``."""
    found: list[Any] = []

    def user() -> Any:
        if not found:
            found.append(_user_for(request, decision, options))
        return found[0]

    async def auser() -> Any:
        if not found:
            resolved = await sync_to_async(_user_for)(request, decision, options)
            if not found:
                found.append(resolved)
        return found[0]

    lazy = SimpleLazyObject(user)
    request.user = lazy  # type: ignore[assignment]
    request.auser = auser
    setattr(request, BOUND_ATTRIBUTE, lazy)


def check_bound(request: HttpRequest) -> None:
    """Before the view: ``request.user`` must still be the one :func:`bind_user` set. A
    later middleware that replaced it would make the view see another user."""
    bound = request.__dict__.get(BOUND_ATTRIBUTE)
    if bound is not None and request.__dict__.get("user") is not bound:
        raise ImproperlyConfigured(
            "request.user was replaced after PolicyMiddleware set the certificate's user; "
            "put PolicyMiddleware after AuthenticationMiddleware and any other middleware "
            "that sets request.user"
        )


def _user_for(request: HttpRequest, decision: Decision | None, options: UserOptions) -> Any:
    backend = load_backend(options.backend_path)
    user = backend.authenticate(request, policyengine_decision=decision)
    if user is None:
        return AnonymousUser()
    user.backend = options.backend_path
    return user


@functools.lru_cache(maxsize=8)
def _has_policy_middleware(middleware: tuple[str, ...]) -> bool:
    for path in middleware:
        try:
            entry = import_string(path)
        except ImportError:
            continue
        if isinstance(entry, type) and issubclass(entry, PolicyMiddleware):
            return True
    return False


class CertificateBackend(ModelBackend):
    """Django's authentication backend for certificate principals.

    ``authenticate(request, policyengine_decision=decision)`` returns the user whose
    ``USERNAME_FIELD`` (a setting; the user model's by default) equals the principal of an
    allowing decision, exactly (no case folding, no Unicode normalization: a certificate
    for ``ＡＤＭＩＮ`` is not the user ``admin``), creating it with ``CREATE_UNKNOWN_USER``
    and following ``SYNC_GROUPS``; None for any other decision, an unknown user, a
    principal longer than the field, or an inactive user (refused as ``ModelBackend``
    refuses them). It accepts no password: ``authenticate(request, username=...,
    password=...)`` passes it by. Permissions are ``ModelBackend``'s, so
    ``@permission_required`` and the admin work unchanged.

    Subclass it to adapt the name (:meth:`clean_username`) or the user
    (:meth:`configure_user`); put the subclass's path in ``AUTHENTICATION_BACKENDS``.
    """

    def __init__(self) -> None:
        if not _has_policy_middleware(tuple(django_settings.MIDDLEWARE)):
            raise ImproperlyConfigured(
                "CertificateBackend is in AUTHENTICATION_BACKENDS, but "
                "policyengine.integrations.django.PolicyMiddleware is not in MIDDLEWARE: "
                "no request would get the certificate's user"
            )

    def authenticate(  # type: ignore[override]
        self, request: HttpRequest | None, policyengine_decision: Decision | None = None
    ) -> AbstractBaseUser | None:
        decision = policyengine_decision
        if not isinstance(decision, Decision) or not decision.allowed:
            return None
        identity = decision.identity
        if identity is None or not identity.principal:
            return None
        options = read_user_options(_settings(), ImproperlyConfigured)
        if options is None:
            return None
        user, created = self._user(self.clean_username(identity.principal), options)
        if user is None or not self.user_can_authenticate(user):
            return None
        if options.sync_groups:
            sync_groups(user, identity, options.sync_groups)
        configured: AbstractBaseUser | None = self.configure_user(
            request, user, identity, created=created
        )
        return configured

    def clean_username(self, principal: str) -> str:
        """The username for ``principal``: the principal itself. Override to adapt it."""
        return principal

    def configure_user(
        self, request: HttpRequest | None, user: User, identity: Identity, *, created: bool
    ) -> User:
        """Called with the user on every request that reads it (``created`` the first
        time): return it, changed or not. By default, the user as it is."""
        return user

    def _user(self, name: str, options: UserOptions) -> tuple[User | None, bool]:
        """The user named ``name``, created when allowed; whether it was created now."""
        user_model = get_user_model()
        field = user_model._meta.get_field(options.username_field)
        limit = getattr(field, "max_length", None)
        if not name or (limit is not None and len(name) > limit):
            LOGGER.warning("principal %r does not fit %s; no user", name, field.name)
            return None, False
        manager = user_model._default_manager
        lookup = {options.username_field: name}
        try:
            return _exactly(manager.get(**lookup), options.username_field, name), False
        except user_model.DoesNotExist:
            if not options.create_unknown_user:
                return None, False
        user = user_model(**lookup)
        user.set_unusable_password()
        try:
            with transaction.atomic(using=manager.db):
                user.save(using=manager.db)
        except IntegrityError:  # another request created it meanwhile (or a case-blind twin)
            return _exactly(manager.get(**lookup), options.username_field, name), False
        LOGGER.info("created user %r for a certificate principal", name)
        return user, True


def _exactly(user: User, field: str, name: str) -> User | None:
    """``user`` if its ``field`` is ``name`` to the character: a database whose collation
    ignores case (MySQL's default) would find ``admin`` for a certificate's ``ADMIN``."""
    if getattr(user, field) == name:
        return user
    LOGGER.warning("principal %r found user %r only ignoring case; no user", name, user)
    return None


def sync_groups(user: User, identity: Identity, sources: Iterable[str]) -> None:
    """Make the user's groups exactly the existing groups that ``sources`` of ``identity``
    name; no group is created, every other group of the user is removed."""
    names: set[str] = set()
    if "groups" in sources:
        names.update(identity.groups)
    if "roles" in sources:
        names.update(identity.roles)
    group_model = user.groups.model
    wanted = set(group_model.objects.filter(name__in=names).values_list("pk", flat=True))
    have = set(user.groups.values_list("pk", flat=True))
    if wanted - have:
        user.groups.add(*(wanted - have))
    if have - wanted:
        user.groups.remove(*(have - wanted))


def _settings() -> Mapping[str, Any]:
    raw = getattr(django_settings, SETTINGS_NAME, None)
    return raw if isinstance(raw, Mapping) else {}
