"""Lint: warnings about policies that load but are likely to be wrong.

Runs on the checked syntax tree when a policy is loaded; ``policyengine check`` prints the
warnings (``--strict`` makes them failures). Every warning has a stable code, points at the
policy text, and says what to do. A rule silences its own warnings with ``silence: [code]``;
warnings about the policy as a whole (its mode, its exclusion paths, its source) are
silenced with the policy's top-level ``silence:``.

=======================  =====  =================================================================
code                     scope  when
=======================  =====  =================================================================
``renegotiation``        policy exclusion paths or optional_interactive_user: App Service then
                                renegotiates TLS (no TLS 1.3, no HTTP/2, bodies over 100 KB fail)
``optional-no-present``  policy an optional mode whose rules never look at ``present``
``sha1-pin``             rule   a SHA-1 fingerprint pin
``no-validity``          rule   an allow rule with no validity check
``any-certificate``      rule   an allow rule with no pin, no trust anchor and no issuer check
``never-holds``          rule   a rule that can never hold
``shadowed``             rule   an allow rule that can never be the first allow rule to hold
=======================  =====  =================================================================
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from policyengine.errors import Diagnostic
from policyengine.language import ast
from policyengine.language.catalog import Type
from policyengine.span import Span

__all__ = ["POLICY_CODES", "RULE_CODES", "LintRule", "lint"]

POLICY_CODES = ("renegotiation", "optional-no-present")
RULE_CODES = ("sha1-pin", "no-validity", "any-certificate", "never-holds", "shadowed")

_VALIDITY = frozenset({"valid", "trusted", "expired", "not_yet_valid", "not_after"})
_PINS = ("fingerprint", "chain.root.fingerprint", "chain.issuer.fingerprint")


@dataclass(frozen=True, slots=True)
class LintRule:
    """What lint needs to know of one rule."""

    id: str
    effect: str
    span: Span
    condition: ast.Expr


def lint(
    rules: Sequence[LintRule],
    *,
    mode: str,
    source: str,
    exclusion_paths: Sequence[str],
    exclusion_span: Span | None,
    policy_span: Span,
) -> list[tuple[str | None, Diagnostic]]:
    """Every warning, each with the id of the rule it is about (None: the policy)."""
    found: list[tuple[str | None, Diagnostic]] = []
    found.extend(
        (None, d)
        for d in _policy_warnings(rules, mode, source, exclusion_paths, exclusion_span, policy_span)
    )
    earlier = _Earlier([r for r in rules if r.effect == "allow"])
    for rule in rules:
        shadowing = earlier.implied_by(rule) if rule.effect == "allow" else []
        found.extend((rule.id, d) for d in _rule_warnings(rule, shadowing))
        if rule.effect == "allow":
            earlier.add(rule)
    return found


class _Earlier:
    """The allow rules seen so far, found by their rarest part.

    A rule is shadowed by an earlier one whose every part it has. Each earlier rule is
    filed under its part that fewest rules share, so only the rules filed under one of the
    later rule's own parts need comparing: thousands of rules pinning one name each are
    checked in linear time, not quadratic.
    """

    def __init__(self, rules: Sequence[LintRule]) -> None:
        self._count: dict[ast.Expr, int] = {}
        for rule in rules:
            for part in set(_conjuncts(rule.condition)):
                self._count[part] = self._count.get(part, 0) + 1
        self._filed: dict[ast.Expr, list[tuple[int, LintRule]]] = {}
        self._seen = 0

    def add(self, rule: LintRule) -> None:
        rarest = min(_conjuncts(rule.condition), key=lambda part: self._count.get(part, 0))
        self._filed.setdefault(rarest, []).append((self._seen, rule))
        self._seen += 1

    def implied_by(self, rule: LintRule) -> list[LintRule]:
        """The earlier rules whose every part ``rule`` has, in their order."""
        found: list[tuple[int, LintRule]] = []
        for part in set(_conjuncts(rule.condition)):
            found.extend(
                (n, other)
                for n, other in self._filed.get(part, ())
                if _implies(rule.condition, other.condition)
            )
        return [other for _, other in sorted(found, key=lambda item: item[0])]


def _warning(span: Span, code: str, message: str, hint: str) -> Diagnostic:
    return Diagnostic(span, message, hint, severity="warning", code=code)


def _policy_warnings(
    rules: Sequence[LintRule],
    mode: str,
    source: str,
    exclusion_paths: Sequence[str],
    exclusion_span: Span | None,
    policy_span: Span,
) -> Iterator[Diagnostic]:
    causes = []
    if exclusion_paths:
        causes.append("exclusion paths")
    if mode == "optional_interactive_user":
        causes.append("the optional_interactive_user mode")
    if causes and source == "azure":  # App Service's front end is what renegotiates
        yield _warning(
            exclusion_span or policy_span,
            "renegotiation",
            f"{' and '.join(causes)} make App Service renegotiate TLS: TLS 1.3 and HTTP/2 "
            "cannot be used, and POST/PUT bodies over 100 KB fail with 403",
            "use mode required or optional without exclusion paths, or have clients send a "
            "HEAD request before an upload, or `Expect: 100-continue`",
        )
    if mode != "required":
        allow = [r for r in rules if r.effect == "allow"]
        if allow and not any("present" in _names(r.condition) for r in rules):
            yield _warning(
                policy_span,
                "optional-no-present",
                f"mode {mode} lets requests without a certificate reach the rules, and no "
                "rule looks at `present`",
                'say what such requests may do (`not present and request.method == "GET"`), '
                "or use mode required",
            )


def _rule_warnings(rule: LintRule, shadowing: Sequence[LintRule]) -> Iterator[Diagnostic]:
    condition = rule.condition
    names = _names(condition)
    for literal in _sha1_pins(condition):
        yield _warning(
            literal.span,
            "sha1-pin",
            "a SHA-1 fingerprint pin",
            "pin the SHA-256 fingerprint instead (`policyengine inspect CERT` prints it)",
        )
    if rule.effect == "allow" and not _without_certificate(condition):
        if not names & _VALIDITY:
            yield _warning(
                rule.span,
                "no-validity",
                f"allow rule `{rule.id}` does not check that the certificate is valid",
                "add `valid` (or `trusted`, which checks validity along the whole chain)",
            )
        pinned = any(n.startswith(_PINS) for n in names)
        issuer_checked = any(n.startswith(("issuer", "chain.")) for n in names)
        if not (pinned or "trusted" in names or issuer_checked):
            yield _warning(
                rule.span,
                "any-certificate",
                f"allow rule `{rule.id}` admits a certificate from any issuer: it has no "
                "fingerprint pin, no trust anchor and no issuer check",
                "anyone can make a certificate with any subject; add `trusted` with a trust: "
                "section, a `fingerprint in` pin, or an issuer check",
            )
    why = _never_holds(condition)
    if why:
        yield _warning(
            rule.span,
            "never-holds",
            f"rule `{rule.id}` can never hold: {why}",
            "fix the condition, or remove the rule",
        )
    if rule.effect == "allow" and shadowing:
        other = shadowing[0]
        yield _warning(
            rule.span,
            "shadowed",
            f"allow rule `{rule.id}` is shadowed by `{other.id}` (line "
            f"{other.span.line}): whenever it holds, `{other.id}` holds first",
            "remove it, or make it less strict than the earlier rule",
        )


def _without_certificate(expr: ast.Expr) -> bool:
    """The rule holds only for requests without a certificate (`not present and ...`)."""
    return any(
        isinstance(part, ast.Not)
        and isinstance(part.operand, ast.AttributeRef)
        and part.operand.name == "present"
        for part in _conjuncts(expr)
    )


def _names(expr: ast.Expr) -> set[str]:
    found = set()
    for node in ast.walk(expr):
        if isinstance(node, ast.AttributeRef):
            found.add(node.name)
        elif isinstance(node, ast.ExpiresWithin):
            found.add("not_after")
    return found


def _sha1_pins(expr: ast.Expr) -> Iterator[ast.Node]:
    for node in ast.walk(expr):
        if not isinstance(node, ast.Compare) or not isinstance(node.left, ast.AttributeRef):
            continue
        attribute = node.left.attribute
        if attribute.type is not Type.FINGERPRINT:
            continue
        right = node.right
        if isinstance(right, ast.Literal) and len(str(right.value)) == 40:
            yield right
        elif isinstance(right, ast.ListLiteral):
            yield from (i for i in right.items if len(str(i.value)) == 40)
        elif isinstance(right, ast.SetRef) and any(len(str(v)) == 40 for v in right.values):
            yield right


def _conjuncts(expr: ast.Expr) -> list[ast.Expr]:
    return list(expr.operands) if isinstance(expr, ast.And) else [expr]


def _never_holds(expr: ast.Expr) -> str:
    parts = _conjuncts(expr)
    for part in parts:
        if isinstance(part, ast.Literal) and part.value is False:
            return "it requires `false`"
        if isinstance(part, ast.PathExcluded):
            return (
                "excluded paths are allowed before any rule runs, so `path excluded` is "
                "false in every rule"
            )
    equal: dict[tuple[str, int], ast.Literal] = {}
    for part in parts:
        if (
            isinstance(part, ast.Compare)
            and part.op == "=="
            and isinstance(part.left, ast.AttributeRef)
            and isinstance(part.right, ast.Literal)
        ):
            # plain `fingerprint` compares by the pin's length: a SHA-1 and a SHA-256 pin
            # are two facts, which can both hold
            length = len(str(part.right.value)) if part.left.name == "fingerprint" else 0
            key = (part.left.name, length)
            seen = equal.get(key)
            if seen is not None and seen.value != part.right.value:
                return f"`{part.left.name}` cannot equal both {seen.text} and {part.right.text}"
            equal[key] = part.right
    for part in parts:
        if isinstance(part, ast.Not) and part.operand in parts:
            return f"it requires both `{part.operand.text}` and its negation"
    return ""


def _implies(later: ast.Expr, earlier: ast.Expr) -> bool:
    """Every part of the earlier rule is a part of the later one: the earlier holds first."""
    mine = _conjuncts(later)
    return all(part in mine for part in _conjuncts(earlier))
