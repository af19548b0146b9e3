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
from policyengine.language.glob import compile_glob
from policyengine.language.parser import KEYWORDS
from policyengine.language.vocabulary import VOCABULARY, Attribute, Type, lookup
from policyengine.span import Span
from policyengine.values import (
    FINGERPRINT_LENGTHS,
    normalize_fingerprint,
    normalize_hex,
    parse_duration,
    parse_serial,
    parse_timestamp,
)

__all__ = ["CheckResult", "check"]

_ORDERED = frozenset({Type.INT, Type.TIME, Type.DURATION})
_MEMBERSHIP = frozenset({Type.STRING, Type.INT, Type.SERIAL, Type.FINGERPRINT, Type.HEX})
_LITERAL_TYPES = {
    "string": Type.STRING,
    "int": Type.INT,
    "bool": Type.BOOL,
    "duration": Type.DURATION,
    "timestamp": Type.TIME,
}


@dataclass(frozen=True, slots=True)
class CheckResult:
    expressions: tuple[ast.Expr, ...]
    diagnostics: tuple[Diagnostic, ...]


def check(
    expressions: Iterable[ast.Expr],
    sets: Mapping[str, ast.NamedSet],
    *,
    warn_unused: bool = True,
    has_trust: bool = True,
) -> CheckResult:
    """Check conditions against the vocabulary and the policy's sets.

    ``has_trust``: whether the policy has a ``trust:`` section; without one, the trust
    attributes (``trusted``, ``revoked``, ``chain.*``) can never hold and are an error.
    """
    checker = _Checker(sets, has_trust)
    checker.check_set_names()
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
    return CheckResult(typed, tuple(checker.diagnostics))


class _Checker:
    def __init__(self, sets: Mapping[str, ast.NamedSet], has_trust: bool = True) -> None:
        self.sets = sets
        self.has_trust = has_trust
        self.used: set[str] = set()
        self.diagnostics: list[Diagnostic] = []

    def error(self, span: Span, message: str, hint: str = "", code: str = "type") -> None:
        self.diagnostics.append(Diagnostic(span, message, hint, code=code))

    def warn(self, span: Span, message: str, hint: str = "", code: str = "") -> None:
        self.diagnostics.append(Diagnostic(span, message, hint, severity="warning", code=code))

    def check_set_names(self) -> None:
        for name, named in self.sets.items():
            if name in VOCABULARY or name in KEYWORDS:
                what = "an attribute" if name in VOCABULARY else "a keyword"
                self.error(
                    named.span,
                    f"set `{name}` has the name of {what}",
                    f"rename the set, e.g. `{name}_set`",
                    code="set-name",
                )

    # -- names ---------------------------------------------------------------------------

    def resolve(
        self, operand: ast.Operand, beside: ast.Operand | None = None
    ) -> ast.Operand | None:
        """The attribute or set ``operand`` names. ``beside``: the other side of the
        comparison, for a hint when an unknown word was meant as text."""
        if not isinstance(operand, ast.Name):
            return operand
        name = operand.name
        attribute = lookup(name)
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

    def unknown(self, name: str) -> tuple[str, str]:
        candidates = [*VOCABULARY, *self.sets]
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
                    f"`{attribute.name}` is {_a(attribute.type)}, not a condition",
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
                f"`{op}` does not apply to `{attribute.name}`, {_a(t)}",
                "order comparisons work on numbers, timestamps and durations; use `==` or `in`",
            )
            return None
        if op in ("startswith", "endswith", "contains", "matches"):
            if t is not Type.STRING:
                self.error(
                    right.span,
                    f"`{op}` applies to strings; `{attribute.name}` is {_a(t)}",
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
        return replace(literal, value=value)

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
            value, problem = coerce(attribute, entry.value, _kind_of(entry.value))
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


def _a(t: Type) -> str:
    """``an int``, ``a string``: the type's name with its article."""
    return f"an {t}" if str(t)[0] in "aeiou" else f"a {t}"


def _kind_of(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    return "string"


def coerce(
    attribute: Attribute, value: object, kind: str, text: str | None = None
) -> tuple[object, tuple[str, str] | None]:
    """A constant normalised for comparison with ``attribute``, or a problem and a hint."""
    t = attribute.type
    shown = f"`{text}`" if text is not None else f"`{value}`" if kind != "string" else f'"{value}"'
    if t is Type.FINGERPRINT:
        return _coerce_fingerprint(attribute, value, kind, shown)
    if t is Type.SERIAL:
        serial = parse_serial(value) if kind in ("string", "int") else None  # type: ignore[arg-type]
        if serial is None:
            return None, (
                f"{shown} is not a serial number",
                'write hex text such as "0x1A2B3C" or "1a:2b:3c", or a decimal integer',
            )
        return serial, None
    if t is Type.HEX:
        digits = normalize_hex(str(value)) if kind == "string" else None
        if digits is None:
            return None, (
                f"{shown} is not hex",
                'write hex digits, with or without colons, e.g. "6a:1f:3b"',
            )
        return digits, None
    expected = _KIND_OF_TYPE[t]
    if kind != expected:
        return None, _mismatch(attribute, value, kind, expected, shown)
    if value is None:
        return None, (f"{shown} is not a valid {t}", "")
    if attribute.aliases and isinstance(value, str):
        value = attribute.aliases.get(value, value)
    return value, None


_KIND_OF_TYPE = {
    Type.STRING: "string",
    Type.INT: "int",
    Type.BOOL: "bool",
    Type.TIME: "timestamp",
    Type.DURATION: "duration",
}
"""How a constant of each plain type is written."""

_EXAMPLE_OF_KIND = {
    "string": '"text"',
    "int": "2048",
    "bool": "true",
    "timestamp": "2026-01-01T00:00:00Z",
    "duration": "30d",
}


def _coerce_fingerprint(
    attribute: Attribute, value: object, kind: str, shown: str
) -> tuple[object, tuple[str, str] | None]:
    if kind != "string":
        return None, (f"a fingerprint is written as a quoted hex string, not {shown}", "")
    normalized = normalize_fingerprint(str(value))
    if normalized is None:
        return None, (
            f"{shown} is not a fingerprint",
            "write 40 (SHA-1) or 64 (SHA-256) hex digits, with or without colons",
        )
    algorithm = FINGERPRINT_LENGTHS[len(normalized)]
    if attribute.algorithm is not None and algorithm != attribute.algorithm:
        return None, (
            f"{shown} is a {algorithm.upper()} fingerprint but `{attribute.name}` is "
            f"{attribute.algorithm.upper()}",
            f"compare it with `fingerprint.{algorithm}` or `fingerprint`",
        )
    return normalized, None


def _mismatch(
    attribute: Attribute, value: object, kind: str, expected: str, shown: str
) -> tuple[str, str]:
    """The problem of a constant written as ``kind`` where ``expected`` was wanted."""
    t = attribute.type
    hint = f"compare it with {_a(t)} such as {_EXAMPLE_OF_KIND[expected]}"
    if kind == "string" and isinstance(value, str):
        unquoted = {
            "timestamp": parse_timestamp(value) is not None,
            "duration": parse_duration(value) is not None,
        }.get(expected, False)
        if unquoted:
            hint = f"write the {expected} without quotes: {value.strip()}"
    return (
        f"`{attribute.name}` is {_a(t)} but {shown} is {_a(_LITERAL_TYPES[kind])}",
        hint,
    )
