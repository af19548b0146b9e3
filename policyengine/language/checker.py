"""Static checks: resolve every name, check every type, normalise every constant.

Runs once when a policy is loaded. Unknown names get a "did you mean" suggestion; a
comparison between mismatched types, a fingerprint that is not 40 or 64 hex digits, a
timestamp that is not a date: each is an error pointing at the token in the policy file.
An unused set is a warning. The result is a tree in which names are resolved
(:class:`~policyengine.language.ast.AttributeRef`, :class:`~policyengine.language.ast.SetRef`)
and constants are normalised, ready for the compiler.

Names are resolved against :mod:`policyengine.language.vocabulary` (what each is, never how
it is read). Must not import: ``cryptography``, anything of ``policyengine.request``,
``evaluation`` or ``load``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from policyengine.errors import Diagnostic, GlobError
from policyengine.language import ast
from policyengine.language.constants import article, coerce, kind_of
from policyengine.language.glob import compile_glob
from policyengine.language.parser import KEYWORDS
from policyengine.language.vocabulary import (
    IDENTITY_NAMES,
    VOCABULARY,
    Attribute,
    Dependency,
    Type,
    lookup,
)
from policyengine.span import Span

__all__ = ["CheckResult", "check"]

_ORDERED = frozenset({Type.INT, Type.TIME, Type.DURATION})
_MEMBERSHIP = frozenset({Type.STRING, Type.INT, Type.SERIAL, Type.FINGERPRINT, Type.HEX})


@dataclass(frozen=True, slots=True)
class CheckResult:
    expressions: tuple[ast.Expr, ...]
    diagnostics: tuple[Diagnostic, ...]
    principal: tuple[Attribute, ...] = ()
    """The attributes the principal is taken from, in order (``identity.principal``)."""
    groups: tuple[Attribute, ...] = ()
    """The attributes the groups are taken from (``identity.groups``)."""
    roles: tuple[tuple[str, ast.Expr], ...] = ()
    """Each role with its checked condition."""


def check(
    expressions: Iterable[ast.Expr],
    sets: Mapping[str, ast.NamedSet],
    *,
    warn_unused: bool = True,
    has_trust: bool = True,
    identity: ast.IdentityDecl | None = None,
) -> CheckResult:
    """Check conditions against the vocabulary and the policy's sets.

    ``has_trust``: whether the policy has a ``trust:`` section; without one, the trust
    attributes (``trusted``, ``revoked``, ``chain.*``) can never hold and are an error.
    ``identity``: the policy's ``identity:`` section. Its roles are checked first, as rules
    are, and may not read ``roles``; ``roles`` in the rules then depends on what they read.
    """
    checker = _Checker(sets, has_trust)
    checker.check_set_names(declares_identity=identity is not None and identity.declared)
    principal: tuple[Attribute, ...] = ()
    groups: tuple[Attribute, ...] = ()
    roles: tuple[tuple[str, ast.Expr], ...] = ()
    if identity is not None:
        principal = checker.identity_names(identity.principal, "principal")
        groups = checker.identity_names(identity.groups, "groups")
        roles = checker.roles(identity.roles)
    typed = tuple(checker.condition(expr) for expr in expressions)
    if warn_unused:
        for name, named in sets.items():
            if name not in checker.used:
                checker.warn(
                    named.span,
                    f"set `{name}` is never used",
                    "use it in a rule (e.g. `fingerprint in " + name + "`) or remove it",
                    code="unused-set",
                )
    return CheckResult(typed, tuple(checker.diagnostics), principal, groups, roles)


class _Checker:
    def __init__(self, sets: Mapping[str, ast.NamedSet], has_trust: bool = True) -> None:
        self.sets = sets
        self.has_trust = has_trust
        self.used: set[str] = set()
        self.diagnostics: list[Diagnostic] = []
        self.role_names: tuple[str, ...] = ()
        """The policy's roles: a role name written in a rule must be one of them."""
        self.overrides: dict[str, Attribute] = {}
        """Attributes whose meaning the policy gives (``roles``: what its conditions read)."""
        self.in_role: str | None = None
        """The role whose condition is being checked, if one is."""
        self.shadowing: set[str] = set()
        """Sets that keep the name of an identity attribute (see check_set_names)."""

    def error(self, span: Span, message: str, hint: str = "", code: str = "type") -> None:
        self.diagnostics.append(Diagnostic(span, message, hint, code=code))

    def warn(self, span: Span, message: str, hint: str = "", code: str = "") -> None:
        self.diagnostics.append(Diagnostic(span, message, hint, severity="warning", code=code))

    def check_set_names(self, declares_identity: bool) -> None:
        """A set may not take an attribute's name or a keyword's. One exception keeps
        policies written before the identity attributes loading: without an ``identity:``
        section, a set named ``principal``, ``groups`` or ``roles`` is the set, with a
        warning."""
        for name, named in self.sets.items():
            if name in IDENTITY_NAMES and not declares_identity:
                self.shadowing.add(name)
                self.warn(
                    named.span,
                    f"set `{name}` has the name of the identity attribute `{name}`: the "
                    "rules read the set",
                    f"rename the set (e.g. `{name}_set`) to read the attribute, and before "
                    "adding an `identity:` section, where the name is the attribute's",
                    code="set-name",
                )
            elif name in VOCABULARY or name in KEYWORDS:
                what = "an attribute" if name in VOCABULARY else "a keyword"
                self.error(
                    named.span,
                    f"set `{name}` has the name of {what}",
                    f"rename the set, e.g. `{name}_set`",
                    code="set-name",
                )

    # -- identity ------------------------------------------------------------------------

    def identity_names(
        self, names: Iterable[tuple[str, Span]], field: str
    ) -> tuple[Attribute, ...]:
        """The attributes ``identity.<field>`` names: text read from the certificate."""
        found: list[Attribute] = []
        for name, span in names:
            attribute = lookup(name)
            if attribute is None:
                message, hint = self.unknown(name, sets=False)
                self.error(span, f"in identity.{field}: {message}", hint, code="unknown-name")
            elif (
                attribute.type is not Type.STRING
                or not attribute.depends <= {"certificate"}
                or name in IDENTITY_NAMES
            ):
                what = (
                    f"{article(attribute.type)}"
                    if attribute.type is not Type.STRING
                    else "not read from the certificate alone"
                )
                self.error(
                    span,
                    f"identity.{field} takes text read from the certificate; `{name}` is {what}",
                    "use attributes such as san.uri, san.dns, spiffe_id, subject.CN, subject.O",
                    code="identity",
                )
            else:
                found.append(attribute)
        return tuple(found)

    def roles(
        self, roles: Iterable[tuple[str, Span, ast.Expr]]
    ) -> tuple[tuple[str, ast.Expr], ...]:
        """Each role's condition, checked as a rule's is; ``roles`` then reads what they do."""
        written = tuple(roles)
        self.role_names = tuple(name for name, _, _ in written)
        checked: list[tuple[str, ast.Expr]] = []
        depends: frozenset[Dependency] = frozenset({"certificate"})
        for name, _, expr in written:
            self.in_role = name
            typed = self.condition(expr)
            checked.append((name, typed))
            for node in ast.walk(typed):
                if isinstance(node, ast.AttributeRef):
                    depends |= node.attribute.depends
                elif isinstance(node, ast.ExpiresWithin):
                    depends |= {"time"}
                elif isinstance(node, ast.PathExcluded):
                    depends |= {"request"}
        self.in_role = None
        self.overrides["roles"] = replace(VOCABULARY["roles"], depends=depends)
        return tuple(checked)

    # -- names ---------------------------------------------------------------------------

    def resolve(
        self, operand: ast.Operand, beside: ast.Operand | None = None
    ) -> ast.Operand | None:
        """The attribute or set ``operand`` names. ``beside``: the other side of the
        comparison, for a hint when an unknown word was meant as text."""
        if not isinstance(operand, ast.Name):
            return operand
        name = operand.name
        if name in self.shadowing:
            self.used.add(name)
            return ast.SetRef(name=name, span=operand.span, text=operand.text)
        attribute = self.overrides.get(name) or lookup(name)
        if name == "roles" and self.in_role is not None:
            self.error(
                operand.span,
                f"role `{self.in_role}` reads `roles`: a role cannot depend on the roles "
                f"({self.in_role} -> roles -> {self.in_role})",
                "write the condition out: a role holds by its own condition alone",
                code="role-cycle",
            )
            return None
        if attribute is not None and not self.has_trust and "trust" in attribute.depends:
            self.error(
                operand.span,
                f"`{name}` needs trust anchors, and the policy has no `trust:` section",
                "add `trust:` with `anchors: [your-root-ca.pem]` (see docs/trust.md)",
                code="no-trust",
            )
            return None
        if attribute is not None:
            return ast.AttributeRef(
                attribute=attribute, name=name, span=operand.span, text=operand.text
            )
        if name in self.sets:
            self.used.add(name)
            return ast.SetRef(name=name, span=operand.span, text=operand.text)
        message, hint = self.unknown(name)
        if hint == _NEITHER and isinstance(beside, ast.Name) and lookup(beside.name) is not None:
            # `subject.CN == nildevecc`: a bare word where a value goes is text left unquoted
            hint = f'text is written in quotes: `{beside.name} == "{name}"`'
        self.error(operand.span, message, hint, code="unknown-name")
        return None

    def unknown(self, name: str, *, sets: bool = True) -> tuple[str, str]:
        candidates = [*VOCABULARY, *self.sets] if sets else [*VOCABULARY]
        lowered = {c.lower(): c for c in candidates}
        if name.lower() in lowered:
            return f"unknown name `{name}`", f"did you mean `{lowered[name.lower()]}`?"
        if name.lower() in KEYWORDS:
            return f"unknown name `{name}`", f"keywords are lower case: write `{name.lower()}`"
        close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
        if close:
            return f"unknown name `{name}`", f"did you mean `{close[0]}`?"
        if "." in name:
            head = name.split(".", 1)[0]
            family = sorted(c for c in VOCABULARY if c.startswith(head + "."))
            if family:
                shown = ", ".join(family[:12])
                return f"unknown attribute `{name}`", f"`{head}` has: {shown}"
        return f"unknown name `{name}`", _NEITHER

    # -- conditions ----------------------------------------------------------------------

    def condition(self, expr: ast.Expr) -> ast.Expr:
        """Check a boolean expression; returns it with names resolved."""
        if isinstance(expr, ast.And):
            return replace(expr, operands=tuple(self.condition(e) for e in expr.operands))
        if isinstance(expr, ast.Or):
            return replace(expr, operands=tuple(self.condition(e) for e in expr.operands))
        if isinstance(expr, ast.Not):
            return replace(expr, operand=self.condition(expr.operand))
        if isinstance(expr, ast.Compare):
            return self.compare(expr)
        if isinstance(expr, ast.Quantified):
            return self.quantified(expr)
        if isinstance(expr, ast.ExpiresWithin):
            if expr.duration.value is None:
                self.error(expr.duration.span, f"`{expr.duration.text}` is too long a duration")
            return expr
        if isinstance(expr, ast.PathExcluded):
            return expr
        return self.boolean_operand(expr)

    def boolean_operand(self, operand: ast.Operand) -> ast.Expr:
        resolved = self.resolve(operand)
        if resolved is None:
            return operand
        if isinstance(resolved, ast.AttributeRef):
            attribute = resolved.attribute
            if attribute.type is not Type.BOOL:
                self.error(
                    resolved.span,
                    f"`{attribute.name}` is {article(attribute.type)}, not a condition",
                    f"compare it, e.g. `{attribute.example}`",
                )
            return resolved
        if isinstance(resolved, ast.SetRef):
            self.error(
                resolved.span,
                f"`{resolved.name}` is a set, not a condition",
                f"test membership, e.g. `fingerprint in {resolved.name}`",
            )
            return resolved
        if isinstance(resolved, ast.Literal) and resolved.kind == "bool":
            return resolved
        self.error(
            resolved.span,
            f"`{resolved.text}` is a value, not a condition",
            'compare it with an attribute, e.g. `subject.CN == "api-client"`',
        )
        return resolved

    def compare(self, expr: ast.Compare) -> ast.Expr:
        left = self.resolve(expr.left, beside=expr.right)
        right = self.resolve(expr.right, beside=expr.left)
        if left is None or right is None:
            return expr
        op = expr.op
        if op in ("in", "not in"):
            return self.membership(expr, left, right)
        if isinstance(left, (ast.Literal, ast.ListLiteral)) and isinstance(
            right, (ast.AttributeRef, ast.SetRef)
        ):
            if op in ("==", "!="):
                left, right = right, left
            elif op in ("<", "<=", ">", ">="):
                flipped = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}[op]
                left, right, op = right, left, flipped
        if isinstance(left, ast.SetRef) or isinstance(right, ast.SetRef):
            where = left if isinstance(left, ast.SetRef) else right
            self.error(
                where.span,
                f"a set can only be used with `in` or `not in`, not `{op}`",
                f"e.g. `fingerprint in {where.name}`",  # type: ignore[union-attr]
            )
            return expr
        if not isinstance(left, ast.AttributeRef):
            self.error(
                left.span,
                f"`{left.text}` is a constant; the left side of `{op}` must be an attribute",
                'e.g. `subject.CN == "api-client"`',
            )
            return expr
        attribute = left.attribute
        typed_right = self.operand_for(attribute, op, right)
        if typed_right is None:
            return expr
        return replace(expr, left=left, right=typed_right, op=op)

    def operand_for(self, attribute: Attribute, op: str, right: ast.Operand) -> ast.Operand | None:
        """Check the right side of ``attribute op right`` (op is not a membership test)."""
        t = attribute.type
        if op in ("<", "<=", ">", ">=") and t not in _ORDERED:
            self.error(
                right.span,
                f"`{op}` does not apply to `{attribute.name}`, {article(t)}",
                "order comparisons work on numbers, timestamps and durations; use `==` or `in`",
            )
            return None
        if op in ("startswith", "endswith", "contains", "matches"):
            if t is not Type.STRING:
                self.error(
                    right.span,
                    f"`{op}` applies to strings; `{attribute.name}` is {article(t)}",
                    "use `==` or `in`",
                )
                return None
            if op == "matches":
                if not (isinstance(right, ast.Literal) and right.kind == "string"):
                    self.error(
                        right.span, '`matches` takes a quoted glob pattern such as "*.contoso.com"'
                    )
                    return None
                try:
                    compile_glob(str(right.value))
                except GlobError as exc:
                    self.error(right.span, str(exc), 'see "Glob patterns" in docs/language.md')
                    return None
                return right
        if isinstance(right, ast.AttributeRef):
            other = right.attribute
            if other.type is not t:
                self.error(
                    right.span,
                    f"cannot compare `{attribute.name}` ({t}) with `{other.name}` ({other.type})",
                )
                return None
            if t is Type.FINGERPRINT and (attribute.algorithm is None or other.algorithm is None):
                self.error(right.span, "compare fingerprints of one algorithm, e.g. `.sha256`")
                return None
            return right
        if isinstance(right, ast.ListLiteral):
            self.error(
                right.span,
                f"a list can only be used with `in` or `not in`, not `{op}`",
                f"write `{attribute.name} in {right.text}`",
            )
            return None
        assert isinstance(right, ast.Literal)
        return self.literal_for(attribute, right)

    def literal_for(self, attribute: Attribute, literal: ast.Literal) -> ast.Literal | None:
        value, problem = coerce(attribute, literal.value, literal.kind, literal.text)
        if problem:
            self.error(literal.span, problem[0], problem[1])
            return None
        if attribute.name == "roles" and value not in self.role_names:
            self.unknown_role(literal.span, str(value))
            return None
        return replace(literal, value=value)

    def unknown_role(self, span: Span, name: str) -> None:
        close = difflib.get_close_matches(name, self.role_names, n=1, cutoff=0.6)
        if close:
            hint = f"did you mean `{close[0]}`?"
        elif self.role_names:
            hint = f"the roles are: {', '.join(self.role_names)}"
        else:
            hint = "define it under identity.roles (docs/identity.md)"
        self.error(span, f'"{name}" is not a role of this policy', hint, code="unknown-role")

    def membership(self, expr: ast.Compare, left: ast.Operand, right: ast.Operand) -> ast.Expr:
        op = expr.op
        if isinstance(right, ast.AttributeRef):
            return self.member_of_attribute(expr, left, right)
        if not isinstance(left, ast.AttributeRef):
            self.error(
                left.span,
                f"the left side of `{op}` must be an attribute",
                'e.g. `fingerprint in partners` or `"Payments" in subject.OU`',
            )
            return expr
        attribute = left.attribute
        if attribute.type not in _MEMBERSHIP:
            self.error(
                left.span,
                f"`{op}` does not apply to `{attribute.name}`, a {attribute.type}",
                "membership works on strings, numbers, serials and fingerprints",
            )
            return expr
        if isinstance(right, ast.ListLiteral):
            items: list[ast.Literal] = []
            for item in right.items:
                typed_item = self.literal_for(attribute, item)
                if typed_item is not None:
                    items.append(typed_item)
            if len(items) != len(right.items):
                return expr
            return replace(expr, left=left, right=replace(right, items=tuple(items)))
        if isinstance(right, ast.SetRef):
            values = self.set_values(attribute, right)
            if values is None:
                return expr
            return replace(expr, left=left, right=replace(right, values=values))
        self.error(
            right.span,
            f"`{op}` needs a list, a set or a multi-valued attribute on its right",
            f'e.g. `{attribute.name} {op} ["a", "b"]`',
        )
        return expr

    def member_of_attribute(
        self, expr: ast.Compare, left: ast.Operand, right: ast.AttributeRef
    ) -> ast.Expr:
        """``left in right`` where ``right`` is an attribute: it must be multi-valued."""
        attribute = right.attribute
        if not attribute.multi:
            hint = (
                f"for a substring write `{attribute.name} contains {left.text}`"
                if attribute.type is Type.STRING
                else f"compare with `==`: `{attribute.name} == {left.text}`"
            )
            self.error(
                right.span,
                f"`{expr.op}` needs a list, a set or a multi-valued attribute on its right; "
                f"`{attribute.name}` holds one {attribute.type}",
                hint,
            )
            return expr
        typed: ast.Operand | None
        if isinstance(left, ast.Literal):
            typed = self.literal_for(attribute, left)
        elif isinstance(left, ast.AttributeRef):
            typed = self.operand_for(attribute, "==", left)
        else:
            self.error(left.span, f"`{left.text}` cannot be a member of `{attribute.name}`")
            return expr
        if typed is None:
            return expr
        return replace(expr, left=typed, right=right)

    def set_values(self, attribute: Attribute, right: ast.SetRef) -> tuple[object, ...] | None:
        """A named set's entries normalised for ``attribute``, or None after an error."""
        named = self.sets[right.name]
        values: list[object] = []
        ok = True
        for entry in named.entries:
            value, problem = coerce(attribute, entry.value, kind_of(entry.value))
            if problem:
                ok = False
                self.error(
                    entry.span,
                    f"in set `{named.name}`: {problem[0]}",
                    problem[1]
                    or f"`{named.name}` is compared with `{attribute.name}` at {right.span}",
                    code="set-entry",
                )
            else:
                values.append(value)
        return tuple(values) if ok else None

    def quantified(self, expr: ast.Quantified) -> ast.Expr:
        subject = self.resolve(expr.subject)
        right = self.resolve(expr.right)
        if subject is None or right is None:
            return expr
        if not (isinstance(subject, ast.AttributeRef) and subject.attribute.multi):
            self.error(
                subject.span,
                f"`{expr.quantifier}` needs a multi-valued attribute; `{subject.text}` is not one",
                "multi-valued attributes are the subject.* and issuer.* names, san.*, eku, "
                "key_usage and certificate_policies",
            )
            return expr
        attribute = subject.attribute
        if isinstance(right, ast.AttributeRef):
            # each value is compared with a constant; the compiler has no other form
            self.error(
                right.span,
                f"`{expr.quantifier}` compares each value with a constant, a list or a set, "
                f"not with `{right.name}`",
                f"e.g. `{expr.quantifier} {attribute.example}`",
            )
            return expr
        if expr.op in ("in", "not in"):
            as_compare = ast.Compare(
                op=expr.op, left=subject, right=right, span=expr.span, text=expr.text
            )
            checked = self.membership(as_compare, subject, right)
            if not isinstance(checked, ast.Compare) or checked is as_compare:
                return expr
            return replace(expr, subject=subject, right=checked.right)
        if isinstance(right, ast.SetRef):
            self.error(right.span, f"a set can only be used with `in` or `not in`, not `{expr.op}`")
            return expr
        typed_right = self.operand_for(attribute, expr.op, right)
        if typed_right is None:
            return expr
        return replace(expr, subject=subject, right=typed_right)


_NEITHER = "it is neither an attribute (see docs/language.md) nor a set under `sets:`"
