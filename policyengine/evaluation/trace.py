"""The explain trace: what was evaluated, what it saw, and its outcome; and its renderers.

A trace is data, recorded apart from rendering (the recording is
:mod:`policyengine.evaluation.recording`'s). Its vocabulary is closed:

- a :class:`Step` for each stage of the decision procedure before the rules (``path``,
  ``certificate``, ``mode``), with an outcome ``pass``, ``allow`` or ``deny``;
- a :class:`RuleTrace` for each rule, whose ``node`` is a tree of :class:`TraceNode`
  following the rule's condition. A node's outcome is one of ``true``, ``false``,
  ``undefined`` (a value was absent or ambiguous: never read as false), ``error`` (a part
  of the certificate could not be read) or ``skipped`` (not evaluated: short-circuited, or
  the decision was already made).

:func:`render_text` and :func:`to_json` are pure functions of a trace.

Steps, rule traces and traces stay NamedTuples, built by their own constructors: an
explained decision builds several (a step per stage, a rule trace per rule), and a frozen
dataclass costs three times as much to build, which would make explaining a third dearer
for the integrations' ``expose_trace`` and the decision log's traces; being tuples, they
also unpack (``name, outcome, detail = step``) as they always have.

Owns: TraceNode, Step, RuleTrace, Trace, and their renderers.
Must not import: anything of policyengine but span.py, values.py and the vocabulary's types.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any, NamedTuple

from policyengine.language.vocabulary import Type
from policyengine.span import Span
from policyengine.values import Missing, format_duration, format_serial, format_time

__all__ = [
    "OUTCOMES",
    "RuleTrace",
    "Step",
    "Trace",
    "TraceNode",
    "format_value",
    "render_text",
    "to_json",
]

OUTCOMES = ("true", "false", "undefined", "error", "skipped")


class TraceNode:
    """One part of a rule's condition: its outcome and what it saw.

    Immutable once built. ``detail`` may be given as a function that writes it: the
    sentence is then written on first read, so an explained decision costs little more
    than a plain one until someone looks at its trace (and never more than once).
    """

    __slots__ = ("_detail", "_seen", "children", "kind", "outcome", "span", "text")

    def __init__(
        self,
        kind: str,
        text: str,
        outcome: str,
        detail: str | Callable[[Any], str] = "",
        children: tuple[TraceNode, ...] = (),
        span: Span | None = None,
        seen: Any = None,
    ) -> None:
        """``detail`` is the sentence, or a function that writes it from ``seen`` (what the
        test saw: the evaluation's context) when it is first read."""
        self.kind = kind
        """``and``, ``or``, ``not`` or ``test``."""
        self.text = text
        self.outcome = outcome
        self._detail = detail
        self.children = children
        self.span = span
        self._seen = seen

    @property
    def detail(self) -> str:
        detail = self._detail
        if not isinstance(detail, str):
            try:
                detail = detail(self._seen)
            except Exception as exc:  # a probe that cannot read its fact says why
                detail = str(exc)
            self._detail = detail
            self._seen = None
        return detail

    def _key(self) -> tuple[object, ...]:
        return (self.kind, self.text, self.outcome, self.detail, self.children)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TraceNode):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"TraceNode(kind={self.kind!r}, text={self.text!r}, outcome={self.outcome!r}, "
            f"detail={self.detail!r}, children={self.children!r})"
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "text": self.text, "outcome": self.outcome}
        if self.detail:
            out["detail"] = self.detail
        if self.span is not None:
            out["line"] = self.span.line
            out["column"] = self.span.column
        if self.children:
            out["children"] = [c.to_dict() for c in self.children]
        return out


class Step(NamedTuple):
    name: str
    outcome: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.name, "outcome": self.outcome, "detail": self.detail}


class RuleTrace(NamedTuple):
    rule: str
    effect: str
    outcome: str
    """``true`` (the rule holds), ``false``, ``undefined``, ``error`` or ``skipped``."""
    node: TraceNode
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule": self.rule,
            "effect": self.effect,
            "outcome": self.outcome,
            "condition": self.node.to_dict(),
        }
        if self.error:
            out["error"] = self.error
        return out


class Trace(NamedTuple):
    steps: tuple[Step, ...]
    rules: tuple[RuleTrace, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": [s.to_dict() for s in self.steps],
            "rules": [r.to_dict() for r in self.rules],
        }


def skipped(node: TraceNode) -> TraceNode:
    """The same tree, every node marked not evaluated."""
    return TraceNode(
        node.kind, node.text, "skipped", "", tuple(skipped(c) for c in node.children), node.span
    )


# -- rendering --------------------------------------------------------------------------------

_MARKS = {
    "true": "✓",
    "false": "✗",
    "undefined": "?",
    "error": "!",
    "skipped": "·",
    "pass": "✓",
    "allow": "✓",
    "deny": "✗",
}
_COLOURS = {
    "true": "32",
    "false": "31",
    "undefined": "33",
    "error": "35",
    "skipped": "2",
    "pass": "32",
    "allow": "32",
    "deny": "31",
}
_RULE_WORDS = {
    "true": "holds",
    "false": "does not hold",
    "undefined": "does not hold (undefined)",
    "error": "error",
    "skipped": "not evaluated",
}


def _paint(text: str, outcome: str, colour: bool) -> str:
    if not colour:
        return text
    return f"\x1b[{_COLOURS.get(outcome, '0')}m{text}\x1b[0m"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _node_lines(node: TraceNode, depth: int, colour: bool, out: list[str]) -> None:
    indent = "    " + "  " * depth
    mark = _paint(_MARKS[node.outcome], node.outcome, colour)
    label = _one_line(node.text) if node.kind == "test" else node.kind
    detail = "not evaluated" if node.outcome == "skipped" else node.detail
    line = f"{indent}{label}  {mark}"
    if detail:
        line += f"  {detail}"
    out.append(line)
    for child in node.children:
        _node_lines(child, depth + 1, colour, out)


def render_text(trace: Trace, *, colour: bool = False) -> str:
    """The trace as indented text; ``colour`` adds ANSI colours (for terminals only)."""
    out: list[str] = []
    for step in trace.steps:
        mark = _paint(_MARKS.get(step.outcome, "·"), step.outcome, colour)
        detail = step.detail.replace("\n", "\n" + " " * 17)
        out.append(f"  {step.name:<12}{mark}  {detail}")
    for rule in trace.rules:
        word = _RULE_WORDS[rule.outcome]
        mark = _paint(_MARKS[rule.outcome], rule.outcome, colour)
        head = f"  rule {rule.rule} ({rule.effect})  {mark} {word}"
        if rule.error:
            head += f": {rule.error}"
        out.append(head)
        if rule.outcome != "skipped":
            _node_lines(rule.node, 0, colour, out)
    return "\n".join(out)


def to_json(trace: Trace) -> str:
    return json.dumps(trace.to_dict(), indent=2, ensure_ascii=False)


def format_value(value: object, t: Type | None = None) -> str:
    """A value as the trace and the CLI show it."""
    if isinstance(value, Missing):
        return f"undefined: {value.reason}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if t is Type.SERIAL and isinstance(value, int):
        return format_serial(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, timedelta):
        return format_duration(value)
    if hasattr(value, "strftime"):
        return format_time(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(format_value(v, t) for v in value) + "]"
    return str(value)
