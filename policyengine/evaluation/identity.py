"""Who a certificate names: the ``identity:`` section compiled, and the :class:`Identity`.

A policy's :class:`IdentitySpec` is built once, when the policy is compiled: the readers of
the attributes its principal and groups are taken from, and each role's compiled
condition. The decision procedure asks it for the request's :class:`Identity` once the
rules are about to run (:meth:`IdentitySpec.identify`), so the rules can read
``principal``, ``groups`` and ``roles`` and the decision carries the identity.

- **The principal** is the first attribute of ``identity.principal`` that has exactly one
  value, not empty. One with none or several (or an empty one) is skipped, and said so;
  values are never joined. None
  left: the principal is absent. A part of the certificate that cannot be read stops the
  search (the principal is then absent and the reason is an error): a broken SAN must not
  let a later attribute speak for the certificate.
- **The groups** are every value of each attribute of ``identity.groups``, in order,
  without repeats.
- **The roles** are those whose condition holds (true; undefined does not hold). A role
  whose condition cannot be evaluated does not hold, and a rule that reads ``roles`` then
  fails as a rule reading a broken attribute does (fail closed).

The principal and the groups depend on the certificate alone, so they are worked out on
first read (an app that never asks pays nothing); the roles depend on the request too and
are decided with it, only for a policy that has roles.

Owns: IdentitySpec, Identity, Role. Must not import: load/, integrations/, tooling/, cli/.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from policyengine.errors import FactError
from policyengine.evaluation.attributes import readers_for
from policyengine.language import ast
from policyengine.language.vocabulary import DEFAULT_PRINCIPAL, Attribute, lookup
from policyengine.values import Missing

if TYPE_CHECKING:
    from policyengine.evaluation.compiler import CompiledCondition
    from policyengine.evaluation.context import Context
    from policyengine.request.certificate import CertificateFacts

__all__ = ["Identity", "IdentitySpec", "Role"]

_ReadAll = Callable[["Context"], object]


@dataclass(frozen=True, slots=True)
class Role:
    """One role: its name, its condition as written, checked, and compiled."""

    name: str
    when: str
    expression: ast.Expr
    condition: CompiledCondition


class IdentitySpec:
    """The policy's ``identity:`` section, compiled: how each part of an identity is read."""

    __slots__ = ("declared", "groups", "principal", "roles")

    def __init__(
        self,
        principal: Iterable[Attribute],
        groups: Iterable[Attribute] = (),
        roles: Iterable[Role] = (),
        *,
        declared: bool = False,
    ) -> None:
        self.principal: tuple[tuple[str, _ReadAll], ...] = tuple(
            (a.name, _values_reader(a)) for a in principal
        )
        self.groups: tuple[tuple[str, _ReadAll], ...] = tuple(
            (a.name, _values_reader(a)) for a in groups
        )
        self.roles = tuple(roles)
        self.declared = declared
        """Whether the policy has an ``identity:`` section (else these are the defaults)."""

    @classmethod
    def default(cls) -> IdentitySpec:
        """The identity of a policy without an ``identity:`` section."""
        attributes = [lookup(name) for name in DEFAULT_PRINCIPAL]
        return cls([a for a in attributes if a is not None])

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.groups)

    def identify(self, ctx: Context) -> Identity:
        """The identity of the request ``ctx`` sees, its roles decided now (``ctx.identity``
        is set to it while they are). Never raises."""
        identity = Identity(self, ctx.facts, (), ())
        if not self.roles:
            return identity
        # a role may read the principal and the groups (never the roles): the identity is
        # on the context while the roles are decided, and gets them before anyone sees it
        ctx.identity = identity
        held: list[str] = []
        errors: list[str] = []
        for role in self.roles:
            try:
                holds = role.condition.test(ctx)
            except Exception as exc:  # the role does not hold; a rule reading roles fails
                errors.append(f"role {role.name}: {exc}")
                continue
            if holds is True:
                held.append(role.name)
        identity._roles, identity._role_errors = tuple(held), tuple(errors)
        return identity


def _values_reader(attribute: Attribute) -> _ReadAll:
    """Every value of ``attribute`` (a tuple), or a Missing; single-valued ones as one."""
    readers = readers_for(attribute)
    if readers.read_all is not None:
        return readers.read_all
    read = readers.read

    def read_one(ctx: Context) -> object:
        value = read(ctx)
        return value if isinstance(value, Missing) else (value,)

    return read_one


class Identity:
    """Who the certificate of one decision names: principal, groups and roles, and where
    each came from. Immutable; two identities are equal when these are."""

    __slots__ = (
        "_facts",
        "_groups",
        "_groups_error",
        "_groups_from",
        "_principal",
        "_principal_error",
        "_principal_from",
        "_role_errors",
        "_roles",
        "_spec",
        "_steps",
    )
    _steps: tuple[str, ...]
    """How the principal was looked for; set (last) by the first :meth:`_resolve`."""

    def __init__(
        self,
        spec: IdentitySpec,
        facts: CertificateFacts | None,
        roles: tuple[str, ...],
        role_errors: tuple[str, ...],
    ) -> None:
        self._spec = spec
        self._facts = facts
        self._roles = roles
        self._role_errors = role_errors
        # the principal and groups slots stay unset until _resolve fills them: one store
        # fewer per decision than a flag

    @property
    def roles(self) -> tuple[str, ...]:
        """The roles that hold, in the order the policy defines them."""
        return self._roles

    @property
    def role_errors(self) -> tuple[str, ...]:
        """Roles whose condition could not be evaluated (they do not hold), and why."""
        return self._role_errors

    # -- the principal and the groups, worked out on first read ---------------------------

    def _resolve(self) -> None:
        try:
            self._steps  # noqa: B018 (set by the first _resolve)
            return
        except AttributeError:
            pass
        facts = self._facts
        principal: str | None = None
        principal_from: str | None = None
        error: str | None = None
        groups_error: str | None = None
        steps: list[str] = []
        groups: list[str] = []
        groups_from: list[str] = []
        if facts is not None:
            ctx = _FactsOnly(facts)
            for name, read in self._spec.principal:
                try:
                    values = read(ctx)  # type: ignore[arg-type]
                except FactError as exc:
                    error = f"{name} could not be read: {exc}"
                    steps.append(error)
                    break
                if isinstance(values, Missing):
                    steps.append(f"{name} absent")
                    continue
                assert isinstance(values, tuple)
                if len(values) == 1 and isinstance(values[0], str) and values[0]:
                    principal, principal_from = values[0], name
                    break
                if len(values) == 1:
                    steps.append(f"{name} is empty")  # an empty name names no one
                else:
                    steps.append(f"{name} has {len(values)} values" if values else f"{name} absent")
            for name, read in self._spec.groups:
                try:
                    values = read(ctx)  # type: ignore[arg-type]
                except FactError as exc:
                    groups_error = groups_error or f"{name} could not be read: {exc}"
                    continue
                if isinstance(values, Missing):
                    continue
                assert isinstance(values, tuple)
                for value in values:
                    if isinstance(value, str) and value and value not in groups:
                        groups.append(value)
                        groups_from.append(name)
        self._principal = principal
        self._principal_from = principal_from
        self._principal_error = error
        self._groups_error = groups_error
        self._groups = tuple(groups)
        self._groups_from = tuple(groups_from)
        self._steps = tuple(steps)  # last: another thread sees it only once all are set

    @property
    def principal(self) -> str | None:
        """Who the certificate names, or None (no certificate, or no attribute of
        ``identity.principal`` with exactly one value)."""
        self._resolve()
        return self._principal

    @property
    def principal_from(self) -> str | None:
        """The attribute the principal was taken from (``san.dns``), or None."""
        self._resolve()
        return self._principal_from

    @property
    def groups(self) -> tuple[str, ...]:
        """Every value of the ``identity.groups`` attributes, in order, without repeats
        (none from an attribute that could not be read: :attr:`errors` says which)."""
        self._resolve()
        return self._groups

    @property
    def groups_from(self) -> tuple[str, ...]:
        """For each group, the attribute it was taken from."""
        self._resolve()
        return self._groups_from

    @property
    def errors(self) -> tuple[str, ...]:
        """What could not be read while working the identity out: such a part is absent."""
        self._resolve()
        found = tuple(e for e in (self._principal_error, self._groups_error) if e)
        return found + self.role_errors

    def has_role(self, role: str) -> bool:
        """Whether ``role`` holds (``role in identity.roles``)."""
        return role in self.roles

    # -- what the rules read ----------------------------------------------------------------

    def principal_value(self) -> object:
        """``principal`` as a rule reads it: the text, or a Missing saying why there is
        none; FactError when a part of the certificate it needed could not be read."""
        self._resolve()
        if self._principal_error is not None:
            raise FactError(self._principal_error)
        if self._principal is not None:
            return self._principal
        if self._facts is None:
            return Missing("no certificate was presented")
        tried = "; ".join(self._steps) or "the policy names no principal attribute"
        return Missing(f"no principal: {tried}")

    def groups_value(self) -> tuple[str, ...]:
        """``groups`` as a rule reads it; FactError when an attribute of
        ``identity.groups`` could not be read, so that no rule decides on part of them."""
        self._resolve()
        if self._groups_error is not None:
            raise FactError(self._groups_error)
        return self._groups

    def roles_value(self) -> tuple[str, ...]:
        if self.role_errors:
            raise FactError("; ".join(self.role_errors))
        return self.roles

    # -- shown ------------------------------------------------------------------------------

    def describe_principal(self) -> str:
        """``principal "svc.contoso.com" from san.dns (san.uri absent)``: the principal and
        how it was found."""
        self._resolve()
        if self._principal is not None:
            part = f'principal "{self._principal}" from {self._principal_from}'
        elif self._facts is None:
            part = "no principal: no certificate was presented"
        else:
            part = "no principal"
        return part + (f" ({'; '.join(self._steps)})" if self._steps else "")

    def describe(self) -> str:
        """How the identity was worked out, for the explain trace: the principal (see
        :meth:`describe_principal`); the groups and where from; the roles held."""
        parts = [self.describe_principal()]
        if self._spec.groups:
            shown = ", ".join(f'"{g}"' for g in self._groups) or "none"
            parts.append(f"groups {shown} from {', '.join(self._spec.group_names)}")
        if self._spec.roles:
            held = ", ".join(self.roles) or "none"
            parts.append(f"roles {held}")
            rest = [r.name for r in self._spec.roles if r.name not in self.roles]
            if rest:
                parts[-1] += f" ({', '.join(rest)} not held)"
        parts.extend(self.role_errors)
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The identity as plain data."""
        self._resolve()
        out: dict[str, Any] = {
            "principal": self._principal,
            "principal_from": self._principal_from,
            "groups": list(self._groups),
            "groups_from": list(self._groups_from),
            "roles": list(self.roles),
        }
        if self.errors:
            out["errors"] = list(self.errors)
        return out

    def _key(self) -> tuple[object, ...]:
        self._resolve()
        return (self._principal, self._principal_from, self._groups, self.roles)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Identity):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        self._resolve()
        return (
            f"Identity(principal={self._principal!r}, groups={self._groups!r}, "
            f"roles={self.roles!r})"
        )


class _FactsOnly:
    """What the readers of certificate attributes need of a context: the facts."""

    __slots__ = ("facts",)

    def __init__(self, facts: CertificateFacts) -> None:
        self.facts = facts
