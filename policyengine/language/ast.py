"""The syntax tree of a rule's condition.

Frozen dataclasses. Every node has a ``span`` (where it was written in the policy file) and
its source ``text``; neither takes part in equality, so two conditions written in different
places compare equal when they mean the same.

After checking, names are resolved: :class:`Name` nodes become :class:`AttributeRef` or
:class:`SetRef`, and literals carry the type they were checked against. An
:class:`AttributeRef` holds the vocabulary's static :class:`Attribute`, never its readers.

Must not import: ``cryptography``, anything of ``policyengine.request``, ``evaluation`` or
``load``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from policyengine.language.vocabulary import Attribute
from policyengine.span import Span

__all__ = [
    "And",
    "AttributeRef",
    "Compare",
    "ExpiresWithin",
    "Expr",
    "IdentityDecl",
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
    "children",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    span: Span = field(compare=False, repr=False)
    text: str = field(compare=False, repr=False)
    """The source text of this node, as written."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Literal(Node):
    value: object
    kind: str
    """``string``, ``int``, ``bool``, ``duration`` or ``timestamp``: how it was written."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ListLiteral(Node):
    items: tuple[Literal, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Name(Node):
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AttributeRef(Node):
    attribute: Attribute = field(compare=False)
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
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


@dataclass(frozen=True, slots=True)
class IdentityDecl:
    """The policy's ``identity:`` section as the checker takes it: the attribute names of
    the principal and the groups, and each role's parsed condition, with their places.
    ``declared``: whether the policy has the section (without it, the defaults)."""

    principal: tuple[tuple[str, Span], ...]
    groups: tuple[tuple[str, Span], ...] = ()
    roles: tuple[tuple[str, Span, Expr], ...] = ()
    declared: bool = True


Operand = Literal | ListLiteral | Name | AttributeRef | SetRef


@dataclass(frozen=True, slots=True, kw_only=True)
class Compare(Node):
    op: str
    left: Operand
    right: Operand


@dataclass(frozen=True, slots=True, kw_only=True)
class Quantified(Node):
    quantifier: str
    """``any`` or ``all``."""
    subject: Operand
    op: str
    right: Operand


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpiresWithin(Node):
    duration: Literal


@dataclass(frozen=True, slots=True, kw_only=True)
class PathExcluded(Node):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Not(Node):
    operand: Expr


@dataclass(frozen=True, slots=True, kw_only=True)
class And(Node):
    operands: tuple[Expr, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Or(Node):
    operands: tuple[Expr, ...]


Expr = Compare | Quantified | ExpiresWithin | PathExcluded | Not | And | Or | Operand


def walk(expr: object) -> Iterator[object]:
    """A node and every node below it, depth first."""
    yield expr
    for child in children(expr):
        yield from walk(child)


def children(expr: object) -> tuple[object, ...]:
    """The nodes directly below a node."""
    if isinstance(expr, (And, Or)):
        return expr.operands
    if isinstance(expr, Not):
        return (expr.operand,)
    if isinstance(expr, (Compare, Quantified)):
        return (expr.subject if isinstance(expr, Quantified) else expr.left, expr.right)
    if isinstance(expr, ListLiteral):
        return expr.items
    return ()
