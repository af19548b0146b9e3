"""The syntax tree of a rule's condition.

Frozen dataclasses. Every node has a ``span`` (where it was written in the policy file) and
its source ``text``; neither takes part in equality, so two conditions written in different
places compare equal when they mean the same.

After checking, names are resolved: :class:`Name` nodes become :class:`AttributeRef` or
:class:`SetRef`, and literals carry the type they were checked against.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from policyengine.language.catalog import Attribute
from policyengine.span import Span

__all__ = [
    "And",
    "AttributeRef",
    "Compare",
    "ExpiresWithin",
    "Expr",
    "ListLiteral",
    "Literal",
    "Name",
    "NamedSet",
    "Not",
    "Or",
    "PathExcluded",
    "Quantified",
    "SetEntry",
    "SetRef",
]

_node = dataclass(frozen=True, slots=True, kw_only=True)


@_node
class Node:
    span: Span = field(compare=False, repr=False)
    text: str = field(compare=False, repr=False)
    """The source text of this node, as written."""


@_node
class Literal(Node):
    value: object
    kind: str
    """``string``, ``int``, ``bool``, ``duration`` or ``timestamp``: how it was written."""


@_node
class ListLiteral(Node):
    items: tuple[Literal, ...]


@_node
class Name(Node):
    name: str


@_node
class AttributeRef(Node):
    attribute: Attribute = field(compare=False)
    name: str


@_node
class SetRef(Node):
    name: str
    values: tuple[object, ...] = field(default=(), compare=False)
    """After checking: the set's entries, normalised for the type they are compared with."""


@dataclass(frozen=True, slots=True)
class SetEntry:
    """One entry of a named set, as written in the policy file."""

    value: object
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class NamedSet:
    """A set from the policy's ``sets:`` section."""

    name: str
    entries: tuple[SetEntry, ...]
    span: Span = field(compare=False)


Operand = Union[Literal, ListLiteral, Name, AttributeRef, SetRef]


@_node
class Compare(Node):
    op: str
    left: Operand
    right: Operand


@_node
class Quantified(Node):
    quantifier: str
    """``any`` or ``all``."""
    subject: Operand
    op: str
    right: Operand


@_node
class ExpiresWithin(Node):
    duration: Literal


@_node
class PathExcluded(Node):
    pass


@_node
class Not(Node):
    operand: Expr


@_node
class And(Node):
    operands: tuple[Expr, ...]


@_node
class Or(Node):
    operands: tuple[Expr, ...]


Expr = Union[Compare, Quantified, ExpiresWithin, PathExcluded, Not, And, Or, Operand]

