"""Starlette: the certificate's principal as ``request.user``, its roles as ``request.auth``.

::

    from starlette.middleware import Middleware
    from starlette.middleware.authentication import AuthenticationMiddleware

    from policyengine.integrations.asgi import PolicyMiddleware
    from policyengine.integrations.starlette import CertificateBackend

    app = Starlette(routes=routes, middleware=[
        Middleware(PolicyMiddleware, policy="policies/partner-roles.yaml"),  # decides first
        Middleware(AuthenticationMiddleware, backend=CertificateBackend()),   # then reads it
    ])

:class:`CertificateBackend` is an authentication backend for Starlette's own
``AuthenticationMiddleware``. It decides nothing and reads no header: it reads the decision
that the policyengine ASGI middleware (or the FastAPI dependency) already made for this
connection and keeps in the ASGI scope. When that decision allowed and its identity has a
principal, ``request.user`` is a :class:`CertificateUser` (``is_authenticated`` true,
``display_name`` and ``identity`` the principal, ``certificate_identity`` the
:class:`~policyengine.Identity`) and ``request.auth.scopes`` are the roles that hold, so
``@requires("ops")`` works. In every other case the connection is unauthenticated
(Starlette's ``UnauthenticatedUser``, no scopes): no decision (the policy middleware is
missing, or inside the authentication middleware instead of outside it; a warning is
logged once), a decision that refused, an excluded path, no certificate, or a certificate
that names no principal. Roles without a principal give no scopes either.

What :func:`connection_identity` says is shared with the FastAPI integration, which refuses
with its reason codes.

Owns: CertificateBackend, CertificateUser, connection_identity. The identity refusal codes
are shared: :data:`policyengine.integrations.REFUSALS`.
Imports Starlette (and nothing else of a web framework); must not import FastAPI, so that a
Starlette-only application needs no FastAPI installed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser
from starlette.requests import HTTPConnection

from policyengine.errors import MISSING_CERTIFICATE
from policyengine.evaluation.identity import Identity
from policyengine.integrations import (
    DECIDED_KEY,
    NO_PRINCIPAL,
    NOT_DECIDED,
    Decided,
)

__all__ = [
    "CertificateBackend",
    "CertificateUser",
    "connection_identity",
    "missing_roles",
]

_log = logging.getLogger("policyengine")

NOT_DECIDED_WARNING = (
    "CertificateBackend found no policyengine decision for this request: the policyengine "
    "ASGI middleware must be outside (listed before) Starlette's AuthenticationMiddleware; "
    "every request is unauthenticated until it is"
)


def connection_identity(scope: Mapping[str, Any]) -> Identity | str:
    """The identity of the connection an ASGI scope describes, or the reason code why there
    is none. It comes from the decision an earlier guard made and kept in the scope, and
    only when that decision allowed and its identity has a principal:

    - no decision in the scope: :data:`NOT_DECIDED`;
    - a decision that refused: its reason code;
    - no identity or no principal: ``missing_certificate`` when no certificate was read
      (an excluded path, an optional mode), else :data:`NO_PRINCIPAL`.
    """
    decided = scope.get(DECIDED_KEY)
    if not isinstance(decided, Decided):
        return NOT_DECIDED
    decision = decided.decision
    if not decision.allowed:
        return decision.reason
    identity = decision.identity
    if identity is None or identity.principal is None:
        return MISSING_CERTIFICATE if decision.certificate is None else NO_PRINCIPAL
    return identity


def missing_roles(identity: Identity, required: Iterable[str]) -> tuple[str, ...]:
    """The roles of ``required`` that ``identity`` does not hold, in the order asked."""
    return tuple(role for role in required if not identity.has_role(role))


class CertificateUser(BaseUser):
    """``request.user`` for a connection whose certificate names a principal.

    ``identity`` and ``display_name`` are the principal (Starlette's names for it);
    ``principal``, ``groups`` and ``roles`` are the identity's; ``certificate_identity`` is
    the :class:`~policyengine.Identity` itself (where each part came from, ``to_dict()``).
    """

    def __init__(self, identity: Identity) -> None:
        principal = identity.principal
        if principal is None:
            raise ValueError("a CertificateUser needs an identity with a principal")
        self._identity = identity
        self._principal = principal

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self._principal

    @property
    def identity(self) -> str:
        """The principal (Starlette's ``BaseUser.identity``)."""
        return self._principal

    @property
    def principal(self) -> str:
        return self._principal

    @property
    def groups(self) -> tuple[str, ...]:
        return self._identity.groups

    @property
    def roles(self) -> tuple[str, ...]:
        return self._identity.roles

    @property
    def certificate_identity(self) -> Identity:
        """The decision's :class:`~policyengine.Identity`."""
        return self._identity

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CertificateUser):
            return NotImplemented
        return self._identity == other._identity

    def __hash__(self) -> int:
        return hash(self._identity)

    def __repr__(self) -> str:
        return f"CertificateUser({self._principal!r}, groups={self.groups!r}, roles={self.roles!r})"


class CertificateBackend(AuthenticationBackend):
    """Starlette authentication from the policyengine decision of the connection.

    Give it to ``AuthenticationMiddleware(app, backend=CertificateBackend())`` inside the
    policyengine ASGI middleware. It returns ``(AuthCredentials(roles), CertificateUser)``
    when the decision allowed and names a principal, and None (unauthenticated) otherwise;
    it never raises, so ``AuthenticationMiddleware``'s ``on_error`` is never used.
    """

    def __init__(self) -> None:
        self._warned = False

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        found = connection_identity(conn.scope)
        if isinstance(found, str):
            if found == NOT_DECIDED and not self._warned:
                self._warned = True
                _log.warning(NOT_DECIDED_WARNING)
            return None
        return AuthCredentials(found.roles), CertificateUser(found)
