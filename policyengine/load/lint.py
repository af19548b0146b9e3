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
``any-certificate``      rule   an allow rule with a branch (of its disjunctive normal form) that
                                holds without ``trusted``, a fingerprint pin or ``proxy.verified``
``dn-substring``         rule   the whole ``subject`` or ``issuer`` string matched with
                                ``contains``, ``startswith``, ``endswith`` or ``matches``
``never-holds``          rule   a rule that can never hold
``shadowed``             rule   an allow rule that can never be the first allow rule to hold
``identity-unverified``  policy the identity, or a role, comes from the certificate, and an
                                allow rule admits a certificate from any issuer
=======================  =====  =================================================================

A rule's ``"ops" in roles`` is judged as role ``ops``'s condition written in its place: a
role that requires ``trusted`` guards the rules that require the role. A role's own
condition is linted for ``sha1-pin`` and ``dn-substring`` (warnings about the policy).

A branch of a rule is one way it can hold: one conjunction of the rule's disjunctive normal
form (``a or b and c`` has the branches ``a`` and ``b and c``). ``any-certificate`` judges
each branch, without writing the normal form out: a branch is found by one walk of the
condition, so a rule of thousands of ``or`` and ``and`` terms costs time linear in its size.

Owns: the lint warnings and their codes (POLICY_CODES, RULE_CODES); it judges the checked
tree (and asks the request side's source records what a source does). Must not import:
evaluation/, yaml or jsonschema, the rest of load/, integrations/, tooling/, cli/.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from policyengine.errors import Diagnostic
from policyengine.language import ast
from policyengine.language.vocabulary import Type, depends_of
from policyengine.request.sources import source_named
from policyengine.span import Span

__all__ = ["POLICY_CODES", "RULE_CODES", "LintIdentity", "LintRule", "lint"]

POLICY_CODES = ("renegotiation", "optional-no-present", "identity-unverified")
RULE_CODES = (
    "sha1-pin",
    "no-validity",
    "any-certificate",
    "dn-substring",
    "never-holds",
    "shadowed",
)

_VALIDITY = frozenset({"valid", "trusted", "expired", "not_yet_valid", "not_after"})
_DN_STRINGS = frozenset(
    {
        "subject",
        "issuer",
        *(f"chain.{m}.{n}" for m in ("root", "issuer") for n in ("subject", "issuer")),
    }
)
"""Attributes holding a whole distinguished name as one string."""
_SUBSTRING_OPS = ("contains", "startswith", "endswith", "matches")
_NEGATED_OP = {"==": "!=", "!=": "==", "in": "not in", "not in": "in"}
_BRANCH_TEXT = 100
"""The most characters of a branch a warning quotes."""


@dataclass(frozen=True, slots=True)
class LintRule:
    """What lint needs to know of one rule."""

    id: str
    effect: str
    span: Span
    condition: ast.Expr


@dataclass(frozen=True, slots=True)
class LintIdentity:
    """What lint needs to know of the ``identity:`` section."""

    span: Span
    declared: bool
    """Whether the section names the principal's or the groups' attributes."""
    roles: Mapping[str, tuple[Span, ast.Expr]] = field(default_factory=dict)
    """Each role's checked condition, and where its name is written."""


def lint(
    rules: Sequence[LintRule],
    *,
    mode: str,
    source: str,
    exclusion_paths: Sequence[str],
    exclusion_span: Span | None,
    policy_span: Span,
    identity: LintIdentity | None = None,
) -> list[tuple[str | None, Diagnostic]]:
    """Every warning, each with the id of the rule it is about (None: the policy)."""
    found: list[tuple[str | None, Diagnostic]] = []
    found.extend(
        (None, d)
        for d in _policy_warnings(rules, mode, source, exclusion_paths, exclusion_span, policy_span)
    )
    roles = {name: expr for name, (_, expr) in identity.roles.items()} if identity else {}
    earlier = _Earlier([r for r in rules if r.effect == "allow"])
    for rule in rules:
        shadowing = earlier.implied_by(rule) if rule.effect == "allow" else []
        found.extend((rule.id, d) for d in _rule_warnings(rule, shadowing, roles))
        if rule.effect == "allow":
            earlier.add(rule)
    if identity is not None:
        found.extend((None, d) for d in _identity_warnings(rules, identity))
    return found


_INLINE_DEPTH = 160
"""Roles are inlined into a rule only while the result nests at most this deep. Lint's
walkers recurse: a rule and a role each nested as deeply as the parser admits would, one
inside the other, exhaust the stack (and take time in proportion to their product)."""


def _with_roles(expr: ast.Expr, roles: Mapping[str, ast.Expr]) -> ast.Expr:
    """``expr`` with each ``"r" in roles`` replaced by role r's condition (``not in``: its
    negation), as lint judges it; ``expr`` itself, the roles left opaque, when that would
    nest deeper than :data:`_INLINE_DEPTH`."""
    if not roles or _depth(expr) + max(map(_depth, roles.values())) > _INLINE_DEPTH:
        return expr
    return _inlined(expr, roles)


def _depth(expr: ast.Expr) -> int:
    """How deeply ``and``, ``or`` and ``not`` nest in ``expr`` (without recursing)."""
    deepest, stack = 0, [(expr, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(node, (ast.And, ast.Or)):
            stack.extend((operand, level + 1) for operand in node.operands)
        elif isinstance(node, ast.Not):
            stack.append((node.operand, level + 1))
    return deepest


def _inlined(expr: ast.Expr, roles: Mapping[str, ast.Expr]) -> ast.Expr:
    if isinstance(expr, (ast.And, ast.Or)):
        return replace(expr, operands=tuple(_inlined(e, roles) for e in expr.operands))
    if isinstance(expr, ast.Not):
        return replace(expr, operand=_inlined(expr.operand, roles))
    if (
        isinstance(expr, ast.Compare)
        and expr.op in ("in", "not in")
        and isinstance(expr.right, ast.AttributeRef)
        and expr.right.name == "roles"
        and isinstance(expr.left, ast.Literal)
        and expr.left.value in roles
    ):
        condition = roles[str(expr.left.value)]
        return (
            condition
            if expr.op == "in"
            else ast.Not(operand=condition, span=expr.span, text=expr.text)
        )
    return expr


def _identity_warnings(rules: Sequence[LintRule], identity: LintIdentity) -> Iterator[Diagnostic]:
    roles = {name: expr for name, (_, expr) in identity.roles.items()}
    for _, expr in identity.roles.values():
        yield from _pin_and_substring_warnings(expr)
    unguarded = [
        r
        for r in rules
        if r.effect == "allow"
        and not _without_certificate(r.condition)
        and _open_branch(_with_roles(r.condition, roles), True) is not None
    ]
    if not unguarded:
        return
    first = unguarded[0].id
    used = any(_names(r.condition) & {"principal", "groups"} for r in rules)
    if identity.declared or used:
        yield _warning(
            identity.span,
            "identity-unverified",
            f"the principal and groups come from the certificate, and allow rule `{first}` "
            "admits a certificate from any issuer: anyone can make one that names any "
            "principal",
            f"give `{first}` `trusted` (with a trust: section), a `fingerprint in` pin, or "
            "`proxy.verified` behind a proxy that verifies client certificates",
        )
    for name, (span, expr) in identity.roles.items():
        from_certificate = any(not n.startswith("request.") for n in _names(expr))
        if from_certificate and _open_branch(expr, True) is not None:
            yield _warning(
                span,
                "identity-unverified",
                f"role `{name}` is granted by what the certificate says, without `trusted`, "
                f"a fingerprint pin or `proxy.verified`, and allow rule `{first}` admits a "
                "certificate from any issuer",
                f"add `and trusted` (or a pin, or `proxy.verified`) to role `{name}`",
            )


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
    if causes and source_named(source).renegotiates:  # the front end renegotiates
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


def _pin_and_substring_warnings(condition: ast.Expr) -> Iterator[Diagnostic]:
    yield from _pin_warnings(condition)
    yield from _substring_warnings(condition)


def _pin_warnings(condition: ast.Expr) -> Iterator[Diagnostic]:
    for literal in _sha1_pins(condition):
        yield _warning(
            literal.span,
            "sha1-pin",
            "a SHA-1 fingerprint pin",
            "pin the SHA-256 fingerprint instead (`policyengine inspect CERT` prints it)",
        )


def _substring_warnings(condition: ast.Expr) -> Iterator[Diagnostic]:
    for node, name in _dn_substrings(condition):
        yield _warning(
            node.span,
            "dn-substring",
            f"`{_clip(node.text)}` matches text anywhere in the whole {name} name: any "
            'of its attributes can carry that text, e.g. a CN of "x,OU=Payments"',
            'compare the attribute itself, e.g. `"Payments" in subject.OU` or '
            '`subject.O == "Contoso Ltd"`',
        )


def _rule_warnings(
    rule: LintRule, shadowing: Sequence[LintRule], roles: Mapping[str, ast.Expr]
) -> Iterator[Diagnostic]:
    written = rule.condition
    condition = _with_roles(written, roles)  # a role's condition judged in its place
    names = _names(condition)
    yield from _pin_warnings(written)
    if rule.effect == "allow" and not _without_certificate(written):
        if not names & _VALIDITY:
            yield _warning(
                rule.span,
                "no-validity",
                f"allow rule `{rule.id}` does not check that the certificate is valid",
                "add `valid` (or `trusted`, which checks validity along the whole chain)",
            )
        branch = _open_branch(condition, True)
        if branch is not None:
            yield _any_certificate(replace(rule, condition=condition), branch)
    yield from _substring_warnings(written)
    why = _never_holds(written)
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


_GUARDS = "`trusted`, a fingerprint pin or `proxy.verified`"


def _any_certificate(rule: LintRule, branch: list[tuple[ast.Expr, bool]]) -> Diagnostic:
    hint = (
        "anyone can make a certificate with any subject and issuer; add `trusted` with a "
        "trust: section, a `fingerprint in` pin, or `proxy.verified` behind a proxy that "
        "verifies client certificates"
    )
    if not _has_guard(rule.condition, True):
        return _warning(
            rule.span,
            "any-certificate",
            f"allow rule `{rule.id}` admits a certificate from any issuer: it has no "
            "fingerprint pin, no trust anchor and no proxy verification",
            hint,
        )
    text = " and ".join(_literal_text(atom, positive) for atom, positive in branch)
    return _warning(
        _branch_span(branch),
        "any-certificate",
        f"allow rule `{rule.id}` admits a certificate from any issuer through its branch "
        f"`{_clip(text)}`, which holds without {_GUARDS}",
        "anyone can make a certificate with any subject and issuer; give that branch "
        "`trusted` (with a trust: section), a `fingerprint in` pin, or `proxy.verified` "
        "behind a proxy that verifies client certificates",
    )


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _BRANCH_TEXT else text[: _BRANCH_TEXT - 1] + "…"


def _literal_text(atom: ast.Expr, positive: bool) -> str:
    text = " ".join(atom.text.split())
    return text if positive or isinstance(atom, ast.Not) else f"not {text}"


def _branch_span(branch: list[tuple[ast.Expr, bool]]) -> Span:
    """The branch's literals, from the first to the last when they share a line."""
    spans = [atom.span for atom, _ in branch]
    first = min(spans, key=lambda s: (s.line, s.column))
    if any(s.line != first.line or s.file != first.file for s in spans):
        return first
    end = max(s.column + s.length for s in spans)
    return Span(first.file, first.line, first.column, end - first.column, first.source)


def _open_branch(expr: ast.Expr, positive: bool) -> list[tuple[ast.Expr, bool]] | None:
    """One branch of ``expr`` (``not expr`` when not ``positive``) that can hold without a
    guard, as its literals; None when every branch has a guard or can never hold. A literal
    is ``(atom, positive)``, or ``(not_node, False)`` for a ``not atom`` as written.

    Exact for the question asked, without writing out the normal form: every branch of a
    conjunction is open only if each conjunct has an open branch; a disjunction has one if
    any of its parts has. Negations are pushed inwards (De Morgan, which holds in the
    language's three-valued logic too).
    """
    if isinstance(expr, ast.Not):
        operand = expr.operand
        if positive and not isinstance(operand, (ast.Not, ast.And, ast.Or)):
            # `not x` as written: the literal is shown with its `not`
            return None if _guards(operand, False) else [(expr, False)]
        return _open_branch(operand, not positive)
    if isinstance(expr, (ast.And, ast.Or)):
        if isinstance(expr, ast.And) == positive:  # a conjunction
            branch: list[tuple[ast.Expr, bool]] = []
            for operand in expr.operands:
                part = _open_branch(operand, positive)
                if part is None:
                    return None
                branch.extend(part)
            return branch
        for operand in expr.operands:
            part = _open_branch(operand, positive)
            if part is not None:
                return part
        return None
    return None if _guards(expr, positive) else [(expr, positive)]


def _has_guard(expr: ast.Expr, positive: bool) -> bool:
    """Whether some literal of ``expr`` is a guard (some branch is guarded)."""
    if isinstance(expr, ast.Not):
        return _has_guard(expr.operand, not positive)
    if isinstance(expr, (ast.And, ast.Or)):
        return any(_has_guard(operand, positive) for operand in expr.operands)
    return _guards(expr, positive) and not _never_true(expr, positive)


def _guards(atom: ast.Expr, positive: bool) -> bool:
    """Whether a branch holding this literal admits no self-made certificate: the literal
    is true only with a trusted chain, a pinned fingerprint or the proxy's verification, or
    only without a certificate, or never."""
    if _never_true(atom, positive):
        return True
    if "chain" in depends_of(_names(atom)):
        return True  # undefined, so never true, unless a trusted chain was built
    flag = _flag(atom)
    if flag is not None:
        name, value = flag
        holds = value == positive
        if name in ("trusted", "proxy.verified"):
            return holds
        if name == "present":
            return not holds  # `not present`: only requests without a certificate
        return False
    if isinstance(atom, ast.Compare) and isinstance(atom.left, ast.AttributeRef):
        if atom.left.attribute.type is not Type.FINGERPRINT:
            return False
        op = atom.op if positive else _NEGATED_OP.get(atom.op, "")
        constant = isinstance(atom.right, (ast.Literal, ast.ListLiteral, ast.SetRef))
        return op in ("==", "in") and constant
    return False


def _flag(atom: ast.Expr) -> tuple[str, bool] | None:
    """``(name, value)`` for a boolean attribute tested alone or against a constant:
    ``trusted`` is ``("trusted", True)``, ``present == false`` is ``("present", False)``."""
    if isinstance(atom, ast.AttributeRef):
        return atom.name, True
    if (
        isinstance(atom, ast.Compare)
        and atom.op in ("==", "!=")
        and isinstance(atom.left, ast.AttributeRef)
        and isinstance(atom.right, ast.Literal)
        and isinstance(atom.right.value, bool)
    ):
        return atom.left.name, atom.right.value == (atom.op == "==")
    return None


def _never_true(atom: ast.Expr, positive: bool) -> bool:
    """A literal that is never true: ``false``, ``not true``, ``path excluded``."""
    if isinstance(atom, ast.Literal) and isinstance(atom.value, bool):
        return atom.value != positive
    return isinstance(atom, ast.PathExcluded) and positive


def _dn_substrings(expr: ast.Expr) -> Iterator[tuple[ast.Compare, str]]:
    """Substring matches on a whole name string, each with which name it is (subject or
    issuer)."""
    for node in ast.walk(expr):
        if (
            isinstance(node, ast.Compare)
            and node.op in _SUBSTRING_OPS
            and isinstance(node.left, ast.AttributeRef)
            and node.left.name in _DN_STRINGS
        ):
            yield node, node.left.name.rsplit(".", 1)[-1]


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
