"""The predicates of a condition -> a plain test and a probe, each a closure over its reader.

Owns :func:`predicate`: a comparison, a membership, a quantifier, a boolean attribute, a
literal, ``expires within`` or ``path_excluded``, compiled to ``test(ctx)`` (``True``,
``False`` or ``None`` for undefined) and ``probe(ctx)`` (what the test saw, written for a
trace). Names are resolved to readers (``readers_for``), constants normalised and sets
hashed here, once: a request pays only for reading facts and comparing. The junctions
(``and``, ``or``, ``not``) and the traced forms are :mod:`policyengine.evaluation.compiler`'s.
Must not import: ``compiler``, ``load``, ``integrations``, ``tooling``, ``cli``, nor the
request side.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from policyengine.evaluation.attributes import READERS, readers_for
from policyengine.evaluation.context import Context
from policyengine.evaluation.trace import format_value
from policyengine.language import ast
from policyengine.language.glob import compile_glob
from policyengine.language.vocabulary import VOCABULARY, Attribute, Type
from policyengine.values import (
    FINGERPRINT_LENGTHS,
    Missing,
    fingerprint_token,
    fingerprints_equal,
    format_duration,
    format_time,
)

__all__ = ["Probe", "Test", "predicate"]

Test = Callable[[Context], "bool | None"]
Probe = Callable[[Context], str]


def predicate(expr: Any) -> tuple[Test, Probe]:
    if isinstance(expr, ast.AttributeRef):
        return _boolean_attribute(expr.attribute)
    if isinstance(expr, ast.Literal):
        constant = bool(expr.value)
        return (lambda ctx: constant), (lambda ctx: "constant")
    if isinstance(expr, ast.ExpiresWithin):
        return _expires_within(expr.duration.value)  # type: ignore[arg-type]
    if isinstance(expr, ast.PathExcluded):
        return _path_excluded()
    if isinstance(expr, ast.Compare):
        if expr.op in ("in", "not in"):
            return _membership(expr)
        return _comparison(expr)
    if isinstance(expr, ast.Quantified):
        return _quantified(expr)
    raise TypeError(f"cannot compile {type(expr).__name__}; was the policy checked?")


def _boolean_attribute(attribute: Attribute) -> tuple[Test, Probe]:
    read = readers_for(attribute).read

    def test(ctx: Context) -> bool | None:
        v = read(ctx)
        return None if v.__class__ is Missing else v  # type: ignore[return-value]

    why = readers_for(attribute).why

    def probe(ctx: Context) -> str:
        if why is not None:
            return why(ctx)
        return format_value(read(ctx), attribute.type)

    return test, probe


def _expires_within(window: timedelta) -> tuple[Test, Probe]:
    read_after = READERS["not_after"].read

    def test(ctx: Context) -> bool | None:
        after = read_after(ctx)
        if after.__class__ is Missing:
            return None
        return ctx.now < after <= ctx.now + window  # type: ignore[operator]

    def probe(ctx: Context) -> str:
        after = read_after(ctx)
        if isinstance(after, Missing):
            return f"undefined: {after.reason}"
        left = after - ctx.now  # type: ignore[operator]
        if left <= timedelta(0):
            return f"not_after {format_time(after)} has passed"
        return (
            f"not_after {format_time(after)} is {format_duration(_round(left))} "
            f"from now (window {format_duration(window)})"
        )

    return test, probe


def _round(value: timedelta) -> timedelta:
    if value >= timedelta(days=2):
        return timedelta(days=value.days)
    return timedelta(seconds=int(value.total_seconds()) // 60 * 60)


def _path_excluded() -> tuple[Test, Probe]:
    def test(ctx: Context) -> bool | None:
        return ctx.excluded

    def probe(ctx: Context) -> str:
        state = "matches" if ctx.excluded else "matches no"
        return f"path {format_value(ctx.path)} {state} exclusion path"

    return test, probe


_ORDER = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _value_test(attribute: Attribute, op: str, constant: Any) -> Callable[[Any], bool]:
    """A test of one value of ``attribute`` against a normalised constant."""
    if attribute.type is Type.FINGERPRINT:
        text = str(constant)
        if op == "==":
            return lambda v: fingerprints_equal(v, text)
        return lambda v: not fingerprints_equal(v, text)
    if op == "==":
        return lambda v: v == constant
    if op == "!=":
        return lambda v: v != constant
    if op in _ORDER:
        order = _ORDER[op]
        return lambda v: bool(order(v, constant))
    if op == "startswith":
        return lambda v: bool(v.startswith(constant))
    if op == "endswith":
        return lambda v: bool(v.endswith(constant))
    if op == "contains":
        return lambda v: constant in v
    if op == "matches":
        return compile_glob(str(constant))
    raise ValueError(f"unknown operator {op}")


def _fingerprint_attribute(attribute: Attribute, constant: object) -> Attribute:
    """``fingerprint`` compared with a digest means the digest of that length."""
    if attribute.algorithm is not None:
        return attribute
    algorithm = FINGERPRINT_LENGTHS[len(str(constant))]
    return VOCABULARY[f"{attribute.prefix}fingerprint.{algorithm}"]


def _comparison(expr: ast.Compare) -> tuple[Test, Probe]:
    assert isinstance(expr.left, ast.AttributeRef)
    attribute = expr.left.attribute
    right = expr.right
    if isinstance(right, ast.AttributeRef):
        return _attribute_pair(attribute, expr.op, right.attribute)
    assert isinstance(right, ast.Literal)
    constant = right.value
    if attribute.type is Type.FINGERPRINT:
        attribute = _fingerprint_attribute(attribute, constant)
    read = readers_for(attribute).read
    op = expr.op
    if op == "==" and attribute.type is not Type.FINGERPRINT:

        def test(ctx: Context) -> bool | None:
            v = read(ctx)
            if v.__class__ is Missing:
                return None
            return bool(v == constant)

    else:
        check = _value_test(attribute, op, constant)

        def test(ctx: Context) -> bool | None:
            v = read(ctx)
            if v.__class__ is Missing:
                return None
            return check(v)

    return test, _probe_got(attribute)


def _probe_got(attribute: Attribute) -> Probe:
    read = readers_for(attribute).read

    def probe(ctx: Context) -> str:
        v = read(ctx)
        if isinstance(v, Missing):
            return f"undefined: {v.reason}"
        return f"got {format_value(v, attribute.type)}"

    return probe


def _attribute_pair(left: Attribute, op: str, right: Attribute) -> tuple[Test, Probe]:
    read_left, read_right = readers_for(left).read, readers_for(right).read
    if left.type is Type.FINGERPRINT:
        same = fingerprints_equal
        compare: Callable[[Any, Any], bool] = same if op == "==" else (lambda a, b: not same(a, b))
    else:
        compare = {
            "==": operator.eq,
            "!=": operator.ne,
            "startswith": lambda a, b: a.startswith(b),
            "endswith": lambda a, b: a.endswith(b),
            "contains": lambda a, b: b in a,
            **_ORDER,
        }[op]

    def test(ctx: Context) -> bool | None:
        a = read_left(ctx)
        if a.__class__ is Missing:
            return None
        b = read_right(ctx)
        if b.__class__ is Missing:
            return None
        return bool(compare(a, b))

    def probe(ctx: Context) -> str:
        a, b = read_left(ctx), read_right(ctx)
        return (
            f"{left.name} {format_value(a, left.type)}, {right.name} {format_value(b, right.type)}"
        )

    return test, probe


def _membership(expr: ast.Compare) -> tuple[Test, Probe]:
    negate = expr.op == "not in"
    left, right = expr.left, expr.right
    if isinstance(right, ast.AttributeRef):
        return _member_of_attribute(left, right.attribute, negate)
    assert isinstance(left, ast.AttributeRef)
    attribute = left.attribute
    if isinstance(right, ast.SetRef):
        values, label = right.values, f"set {right.name}"
    else:
        assert isinstance(right, ast.ListLiteral)
        values, label = tuple(i.value for i in right.items), "the list"
    contains, what = _container(attribute, values)
    size = len(set(values))
    noun = "entry" if size == 1 else "entries"

    def test(ctx: Context) -> bool | None:
        r = contains(ctx)
        if r is None:
            return None
        return not r if negate else r

    def probe(ctx: Context) -> str:
        found = contains(ctx)
        seen = what(ctx)
        if found is None:
            return seen
        where = "in" if found else "not in"
        return f"got {seen}; {where} {label} ({size} {noun})"

    return test, probe


def _container(
    attribute: Attribute, values: tuple[object, ...]
) -> tuple[Callable[[Context], bool | None], Probe]:
    """Membership of the attribute's value in constant values, and a probe of the value."""
    if attribute.type is Type.FINGERPRINT:
        by_algorithm: dict[str, frozenset[bytes]] = {}
        for algorithm in ("sha1", "sha256"):
            if attribute.algorithm in (None, algorithm):
                tokens = frozenset(
                    fingerprint_token(str(v))
                    for v in values
                    if FINGERPRINT_LENGTHS[len(str(v))] == algorithm
                )
                by_algorithm[algorithm] = tokens
        readers: list[tuple[Callable[[Context], bytes | Missing], frozenset[bytes]]] = []
        for alg, tokens in by_algorithm.items():
            read_token = READERS[f"{attribute.prefix}fingerprint.{alg}"].read_token
            assert read_token is not None
            if tokens or attribute.algorithm is not None:
                readers.append((read_token, tokens))

        def contains(ctx: Context) -> bool | None:
            for read, tokens in readers:
                token = read(ctx)
                if token.__class__ is Missing:
                    return None
                if token in tokens:
                    return True
            return False

        read_all = readers_for(attribute).read

        def what(ctx: Context) -> str:
            value = read_all(ctx)
            if isinstance(value, Missing) or attribute.algorithm is not None:
                return format_value(value, attribute.type)
            return str(value)

        return contains, what

    members = frozenset(values)
    read = readers_for(attribute).read

    def contains_value(ctx: Context) -> bool | None:
        v = read(ctx)
        if v.__class__ is Missing:
            return None
        return v in members

    def show(ctx: Context) -> str:
        return format_value(read(ctx), attribute.type)

    return contains_value, show


def _member_of_attribute(
    left: ast.Operand, attribute: Attribute, negate: bool
) -> tuple[Test, Probe]:
    read_all = readers_for(attribute).read_all
    assert read_all is not None
    element: Callable[[Context], object]
    if isinstance(left, ast.Literal):
        constant = left.value

        def element(ctx: Context) -> object:
            return constant

    else:
        assert isinstance(left, ast.AttributeRef)
        element = readers_for(left.attribute).read

    def test(ctx: Context) -> bool | None:
        values = read_all(ctx)
        if values.__class__ is Missing:
            return None
        v = element(ctx)
        if v.__class__ is Missing:
            return None
        found = v in values  # type: ignore[operator]
        return not found if negate else found

    def probe(ctx: Context) -> str:
        return f"{attribute.name} is {format_value(read_all(ctx), attribute.type)}"

    return test, probe


def _quantified(expr: ast.Quantified) -> tuple[Test, Probe]:
    assert isinstance(expr.subject, ast.AttributeRef)
    attribute = expr.subject.attribute
    read_all = readers_for(attribute).read_all
    assert read_all is not None
    right = expr.right
    check: Callable[[Any], bool]
    if expr.op in ("in", "not in"):
        if isinstance(right, ast.SetRef):
            members = frozenset(right.values)
        else:
            assert isinstance(right, ast.ListLiteral)
            members = frozenset(i.value for i in right.items)
        check = (lambda v: v not in members) if expr.op == "not in" else members.__contains__
    else:
        assert isinstance(right, ast.Literal)
        check = _value_test(attribute, expr.op, right.value)
    every = expr.quantifier == "all"

    def test(ctx: Context) -> bool | None:
        values = read_all(ctx)
        if values.__class__ is Missing:
            return None
        if every:
            if not values:
                return None
            return all(check(v) for v in values)  # type: ignore[union-attr]
        return any(check(v) for v in values)  # type: ignore[union-attr]

    def probe(ctx: Context) -> str:
        values = read_all(ctx)
        if isinstance(values, Missing):
            return f"undefined: {values.reason}"
        if every and not values:
            return f"undefined: {attribute.name} has no values, and `all` needs at least one"
        return f"values {format_value(values, attribute.type)}"

    return test, probe
