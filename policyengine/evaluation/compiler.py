"""Checked syntax tree -> Python closures, once per policy.

Each condition compiles twice (the second time when it is first explained):

- ``test(ctx)``: the plain closure, returning ``True``, ``False`` or ``None`` (undefined)
  and raising :class:`~policyengine.values.FactError` when it reads a broken part of the
  certificate. Its predicates are :mod:`policyengine.evaluation.predicates`' (readers resolved,
  constants normalised and sets hashed when compiling); here are the junctions.
- ``trace(ctx)``: the same logic, returning a :class:`~policyengine.evaluation.trace.TraceNode` tree
  that records each test's outcome and the values it saw. Chosen when compiling, so the
  plain closures pay nothing for tracing.

Logic is three-valued (Kleene): ``and`` is false if any side is false, ``or`` true if any
side is true, ``not`` keeps undefined undefined. Evaluation short-circuits left to right.
Must not import: ``load``, ``integrations``, ``tooling``, ``cli``, nor the request side.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from policyengine.evaluation.context import Context
from policyengine.evaluation.predicates import Probe, Test, predicate
from policyengine.evaluation.trace import TraceNode, skipped
from policyengine.language import ast

__all__ = ["CompiledCondition", "attributes_read", "compile_condition"]

Traced = Callable[[Context], TraceNode]


class CompiledCondition:
    """A condition's plain closure, its traced form, and what reports read of it.

    The traced form is compiled when the condition is first explained, not when the policy
    loads: most decisions are never explained, and the traced closures (with the skipped
    nodes they hold ready) were a fifth of the time a large generated policy took to load,
    and as many long-lived objects for the garbage collector to walk. Two threads
    explaining the same condition for the first time may both compile it; either result
    is the same.
    """

    __slots__ = ("_expr", "_traced", "attributes", "conjuncts", "test")

    def __init__(
        self,
        expr: ast.Expr,
        test: Test,
        conjuncts: tuple[tuple[str, Test], ...],
        attributes: frozenset[str],
    ) -> None:
        self._expr = expr
        self._traced: Traced | None = None
        self.test = test
        self.conjuncts = conjuncts
        """The top-level ``and`` operands with their source text, for "closest rule"
        reports."""
        self.attributes = attributes
        """Every attribute the condition reads."""

    def trace(self, ctx: Context) -> TraceNode:
        """The condition evaluated as ``test`` does, as a tree of what each part saw."""
        traced = self._traced
        if traced is None:
            traced = self._traced = _compile(self._expr)[1]
        return traced(ctx)


def compile_condition(expr: ast.Expr) -> CompiledCondition:
    if isinstance(expr, ast.And):  # its operands' closures serve the conjuncts too
        tests = [_test(e) for e in expr.operands]
        test = _and_pair(*tests) if len(tests) == 2 else _and_all(tuple(tests))
        conjuncts = tuple((e.text, part) for e, part in zip(expr.operands, tests, strict=True))
    else:
        test = _test(expr)
        conjuncts = ((expr.text, test),)
    return CompiledCondition(expr, test, conjuncts, frozenset(attributes_read(expr)))


def attributes_read(expr: Any) -> set[str]:
    """Every attribute name an expression reads."""
    found: set[str] = set()
    if isinstance(expr, ast.AttributeRef):
        found.add(expr.name)
    elif isinstance(expr, (ast.And, ast.Or)):
        for e in expr.operands:
            found |= attributes_read(e)
    elif isinstance(expr, ast.Not):
        found |= attributes_read(expr.operand)
    elif isinstance(expr, ast.Compare):
        found |= attributes_read(expr.left) | attributes_read(expr.right)
    elif isinstance(expr, ast.Quantified):
        found |= attributes_read(expr.subject) | attributes_read(expr.right)
    elif isinstance(expr, ast.ExpiresWithin):
        found.add("not_after")
    elif isinstance(expr, ast.PathExcluded):
        found.add("request.path")
    return found


# -- compiling ----------------------------------------------------------------------------------


def _test(expr: Any) -> Test:
    """The plain closure alone (the traced form waits for an explanation)."""
    if isinstance(expr, ast.And):
        tests = tuple(_test(e) for e in expr.operands)
        return _and_pair(*tests) if len(tests) == 2 else _and_all(tests)
    if isinstance(expr, ast.Or):
        return _any_of(tuple(_test(e) for e in expr.operands))
    if isinstance(expr, ast.Not):
        return _negation(_test(expr.operand))
    return predicate(expr)[0]


def _compile(expr: Any) -> tuple[Test, Traced]:
    """The plain closure and the traced form, sharing the predicates' tests."""
    if isinstance(expr, ast.And):
        return _and(expr)
    if isinstance(expr, ast.Or):
        return _or(expr)
    if isinstance(expr, ast.Not):
        return _not(expr)
    test, probe = predicate(expr)
    return test, _traced_leaf(expr, test, probe)


def _traced_leaf(expr: Any, test: Test, probe: Probe) -> Traced:
    text, span = expr.text, expr.span

    def traced(ctx: Context) -> TraceNode:
        try:
            result = test(ctx)
        except Exception as exc:
            return TraceNode("test", text, "error", str(exc), (), span)
        # what the test saw is written when the trace is read (the context is kept)
        outcome = "true" if result is True else "false" if result is False else "undefined"
        return TraceNode("test", text, outcome, probe, (), span, ctx)

    return traced


def _static(expr: Any) -> TraceNode:
    """A node for a part that was not evaluated, with the shape of the source."""
    if isinstance(expr, (ast.And, ast.Or)):
        kind = "and" if isinstance(expr, ast.And) else "or"
        children = tuple(_static(e) for e in expr.operands)
        return TraceNode(kind, expr.text, "skipped", "", children, expr.span)
    if isinstance(expr, ast.Not):
        return TraceNode("not", expr.text, "skipped", "", (_static(expr.operand),), expr.span)
    return TraceNode("test", expr.text, "skipped", "", (), expr.span)


def _junction(
    kind: str,
    expr: ast.And | ast.Or,
    traces: tuple[Traced, ...],
    statics: tuple[TraceNode, ...],
    *,
    settles: str,
) -> Traced:
    """The traced form of ``and`` (settled by a false part) or ``or`` (by a true one):
    the parts in order up to the one that settles it or fails, the rest marked skipped."""
    text, span = expr.text, expr.span
    otherwise = "true" if settles == "false" else "false"

    def traced(ctx: Context) -> TraceNode:
        children: list[TraceNode] = []
        outcome = otherwise
        for t in traces:
            node = t(ctx)
            children.append(node)
            seen = node.outcome
            if seen == settles or seen == "error":
                outcome = seen
                children.extend(statics[len(children) :])
                break
            if seen == "undefined":
                outcome = "undefined"
        return TraceNode(kind, text, outcome, "", tuple(children), span)

    return traced


def _and(expr: ast.And) -> tuple[Test, Traced]:
    parts = [_compile(e) for e in expr.operands]
    tests = tuple(p[0] for p in parts)
    traces = tuple(p[1] for p in parts)
    statics = tuple(skipped(_static(e)) for e in expr.operands)
    test = _and_pair(*tests) if len(tests) == 2 else _and_all(tests)
    return test, _junction("and", expr, traces, statics, settles="false")


def _and_all(tests: tuple[Test, ...]) -> Test:
    def test(ctx: Context) -> bool | None:
        result: bool | None = True
        for t in tests:
            r = t(ctx)
            if r is False:
                return False
            if r is None:
                result = None
        return result

    return test


def _and_pair(first: Test, second: Test) -> Test:
    def test(ctx: Context) -> bool | None:
        a = first(ctx)
        if a is False:
            return False
        b = second(ctx)
        if b is False:
            return False
        return True if a is True and b is True else None

    return test


def _or(expr: ast.Or) -> tuple[Test, Traced]:
    parts = [_compile(e) for e in expr.operands]
    tests = tuple(p[0] for p in parts)
    traces = tuple(p[1] for p in parts)
    statics = tuple(skipped(_static(e)) for e in expr.operands)
    return _any_of(tests), _junction("or", expr, traces, statics, settles="true")


def _any_of(tests: tuple[Test, ...]) -> Test:
    def test(ctx: Context) -> bool | None:
        result: bool | None = False
        for t in tests:
            r = t(ctx)
            if r is True:
                return True
            if r is None:
                result = None
        return result

    return test


def _not(expr: ast.Not) -> tuple[Test, Traced]:
    inner, inner_traced = _compile(expr.operand)
    flip = {"true": "false", "false": "true"}

    def traced(ctx: Context) -> TraceNode:
        child = inner_traced(ctx)
        outcome = flip.get(child.outcome, child.outcome)
        return TraceNode("not", expr.text, outcome, "", (child,), expr.span)

    return _negation(inner), traced


def _negation(inner: Test) -> Test:
    def test(ctx: Context) -> bool | None:
        r = inner(ctx)
        return None if r is None else not r

    return test
