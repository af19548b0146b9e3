"""Rule indexing: which rules of a long list can hold for one request, found in O(1).

A policy with thousands of rules, each pinning a different CN or fingerprint, should not
test every rule on every request. When a policy is compiled, each rule whose condition has
a top-level part (its *key*) of one of these shapes is filed under what it names:

- ``attribute == constant``, ``attribute in set`` or ``in [list]``: under each value;
- ``attribute startswith "p"``, and ``attribute matches "p*..."`` (a glob with a literal
  start): under the prefix ``p``; ``endswith "s"``, and a glob with a literal end only
  (``*.contoso.com``): under the suffix ``s``;
- ``A or B or ...`` whose every branch is one of these, or a conjunction with one of these
  among its parts (``(valid and A) or B``): under each branch's key.

At evaluation, the key attributes are read once; an exact key is one lookup, a prefix or
suffix key one lookup per length of the prefixes (suffixes) filed. Only the rules filed
under what was read, plus the rules without a key, are tested, in their original order.
A prefix or a glob's literal start narrows the rules to test; the rule's own test decides.

This must never change a decision. A rule left out is one whose key is false or undefined,
so its condition cannot be true, and the ``and`` stops there or goes on without making it
true. What it could still do is *fail*: a part read before the key (or after an undefined
key) could raise :class:`~policyengine.values.FactError`, which a linear scan reports (a
deny rule that cannot be evaluated denies; an allow rule's error is listed). So before the
index is used, every attribute any indexed rule reads is read once; if one of them cannot
be read, the index answers "test every rule", the linear scan. The same reasoning gives
the closest rule of a refusal exactly (:meth:`RuleIndex.closest_candidates`).

Only the plain evaluation uses the index; ``explain`` always scans linearly, since its
trace shows every rule. The test suite checks indexed and linear decisions agree on
generated policies and certificates. Which attributes may be keys, and which are read
from the certificate alone (checked once per facts), is asked of the vocabulary.

Must not import: ``load``, ``integrations``, ``tooling``, ``cli``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from policyengine.caches import BoundedCache
from policyengine.evaluation.attributes import READERS, readers_for
from policyengine.evaluation.compiler import attributes_read
from policyengine.evaluation.context import Context
from policyengine.language import ast
from policyengine.language.glob import literal_ends
from policyengine.language.vocabulary import Attribute, Dependency, Type, lookup
from policyengine.values import FINGERPRINT_LENGTHS, Missing, fingerprint_token

if TYPE_CHECKING:
    from policyengine.request.certificate import CertificateFacts

__all__ = ["INDEX_THRESHOLD", "RuleIndex"]

INDEX_THRESHOLD = 8
"""Fewer keyed rules than this are scanned: below it, the scan costs less than the index."""

_NOT_KEYS: frozenset[Dependency] = frozenset({"trust", "proxy"})
"""What a key attribute must not depend on: keys are read before any rule runs, and reading
these verifies a chain (``trusted``, ``revoked``, ``chain.*``) or is undefined without a
proxy (``proxy.*``)."""

Reader = Callable[[Context], object]


@dataclass(frozen=True, slots=True)
class _Key:
    """One way a rule can be looked up: the reader of a value and the values that file it
    (``exact``), or the prefixes (``prefix``) or suffixes (``suffix``) the value must have."""

    group: str
    read: Reader
    values: tuple[Hashable, ...]
    kind: str = "exact"


Finder = Callable[[object], Iterable[tuple[int, ...]]]
"""The positions filed under what a value is, or starts or ends with."""


def _finder(kind: str, table: dict[Hashable, tuple[int, ...]]) -> Finder:
    """How one group's table is searched for a value read."""
    if kind == "exact":
        get = table.get
        return lambda value: (found,) if (found := get(value)) else ()
    lengths = sorted({len(str(affix)) for affix in table})
    if kind == "prefix":
        return lambda value: [
            table[value[:n]]
            for n in lengths
            if isinstance(value, str) and len(value) >= n and value[:n] in table
        ]
    return lambda value: [
        table[value[-n:]]
        for n in lengths
        if isinstance(value, str) and len(value) >= n and value[-n:] in table
    ]


class RuleIndex:
    """Rules of one effect, in order, indexed by their key parts."""

    def __init__(self, conditions: Sequence[ast.Expr]) -> None:
        self.size = len(conditions)
        self._readable: BoundedCache[bytes, CertificateFacts] = BoundedCache(
            4096, second_sighting=True
        )
        """Facts whose certificate attributes (those the indexed rules read) have all been
        read once without an error, by their DER; a mark holds for that very facts object
        only. Kept from the DER's second sighting on: facts read for one decision are
        never asked again, and must not be kept alive by a mark."""
        self._read_before = self._readable.get
        tables: dict[str, dict[Hashable, list[int]]] = {}
        readers: dict[str, tuple[Reader, str]] = {}
        always: list[int] = []
        reads: dict[str, Attribute] = {}
        prefixes: dict[tuple[str, ...], list[int]] = {}
        for position, expr in enumerate(conditions):
            parts = expr.operands if isinstance(expr, ast.And) else (expr,)
            found = _first_key(parts)
            if found is None:
                always.append(position)
                continue
            at, keys = found
            for key in keys:
                readers[key.group] = (key.read, key.kind)
                table = tables.setdefault(key.group, {})
                for value in key.values:
                    filed = table.setdefault(value, [])
                    if not filed or filed[-1] != position:
                        filed.append(position)
            reads.update(_read_by(expr))
            prefixes.setdefault(tuple(p.text for p in parts[:at]), []).append(position)
        self.keyed = self.size - len(always)
        self._always = tuple(always)
        frozen = {group: {v: tuple(p) for v, p in table.items()} for group, table in tables.items()}
        self._groups = tuple(
            (readers[group][0], _finder(readers[group][1], table))
            for group, table in frozen.items()
        )
        own = [a for a in reads.values() if _of_certificate(a)]
        self._certificate_reads = _prereads(own)
        self._other_reads = _prereads(a for a in reads.values() if not _of_certificate(a))
        self._prefixes = tuple(tuple(group) for group in prefixes.values())
        # one key attribute and few unkeyed rules (the common shape): each value's
        # candidates, merged with the unkeyed rules and sorted, made once
        self._merged: dict[Hashable, tuple[int, ...]] | None = None
        self._merged_find: Finder | None = None
        if len(frozen) == 1 and len(always) <= 16:
            [(group, only)] = frozen.items()
            merged = {v: tuple(sorted({*p, *always})) for v, p in only.items()}
            if readers[group][1] == "exact":
                self._merged = merged
            else:  # a prefix or suffix: usually one affix of the value is filed
                self._merged_find = _finder(readers[group][1], merged)

    @classmethod
    def build(cls, conditions: Sequence[ast.Expr]) -> RuleIndex | None:
        """An index, or None when too few rules have a key for one to pay."""
        index = cls(conditions)
        return index if index.keyed >= INDEX_THRESHOLD else None

    def candidates(self, ctx: Context) -> tuple[int, ...] | None:
        """Positions of the rules that can hold, in order; None means "test them all"."""
        merged, find = self._merged, self._merged_find
        if merged is not None or find is not None:  # one key attribute: merged already
            try:
                self._check_readable(ctx)
                value = self._groups[0][0](ctx)
            except Exception:
                return None
            if value.__class__ is Missing:
                return self._always
            if merged is not None:
                return merged.get(value, self._always)
            assert find is not None
            found: list[tuple[int, ...]] = list(find(value))
            if len(found) == 1:  # usually one affix of the value is filed
                return found[0]
            return tuple(sorted(set().union(*found))) if found else self._always
        hits = self._hits(ctx)
        if hits is None:
            return None
        if not hits:
            return self._always
        return tuple(sorted(hits.union(self._always)))

    def closest_candidates(self, ctx: Context) -> tuple[int, ...] | None:
        """Positions of the rules that can be the closest (see ``Policy._closest``).

        A rule left out scores at most the number of parts before its key (the key part is
        not true), and rules with the same parts before their key score the same, so of
        each such family only the first rule not already a candidate can be the closest.
        """
        hits = self._hits(ctx, note=False)  # candidates() has noted these facts already
        if hits is None:
            return None
        chosen = set(self._always) | hits
        for family in self._prefixes:
            for position in family:
                if position not in hits:
                    chosen.add(position)
                    break
        return tuple(sorted(chosen))

    def _check_readable(self, ctx: Context, note: bool = True) -> None:
        """Read every attribute the indexed rules read; raises if one cannot be read.

        ``note``: mark the facts as checked (a sighting: once per request, not per call).
        """
        facts = ctx.facts
        soft = ctx.soft  # a read of ``revoked`` here is no rule's: it says nothing of it
        # what the certificate holds reads the same every time: checked once per facts
        if facts is None or self._read_before(facts.der) is not facts:
            for read in self._certificate_reads:
                read(ctx)
            if facts is not None and note:
                self._readable.put(facts.der, facts)
        for read in self._other_reads:
            read(ctx)
        ctx.soft = soft

    def _hits(self, ctx: Context, note: bool = True) -> set[int] | None:
        try:
            self._check_readable(ctx, note)
            hits: set[int] = set()
            for read, find in self._groups:
                value = read(ctx)
                if value.__class__ is Missing:
                    continue
                for found in find(value):
                    hits.update(found)
        except Exception:
            return None
        return hits


def _first_key(parts: Sequence[ast.Expr]) -> tuple[int, tuple[_Key, ...]] | None:
    for at, part in enumerate(parts):
        keys = _keys(part)
        if keys is not None:
            return at, keys
    return None


def _keys(part: ast.Expr) -> tuple[_Key, ...] | None:
    """How a part files its rule: one of the shapes of the module's docstring, or None."""
    if isinstance(part, ast.Or):  # true only where a branch is: filed under each
        found: list[_Key] = []
        for branch in part.operands:
            keys = _keys(branch)
            if keys is None:
                return None
            found.extend(keys)
        return tuple(found)
    if isinstance(part, ast.And):  # a branch ``x and key``: true only where its key is
        first = _first_key(part.operands)
        return first[1] if first is not None else None
    if not isinstance(part, ast.Compare) or part.op not in ("==", "in", *_AFFIXES):
        return None
    left, right = part.left, part.right
    if not isinstance(left, ast.AttributeRef):
        return None
    attribute = left.attribute
    if not attribute.depends.isdisjoint(_NOT_KEYS):
        return None
    if part.op in _AFFIXES:
        return _affix_keys(attribute, part.op, right)
    if part.op == "==":
        if not isinstance(right, ast.Literal):
            return None
        values: tuple[object, ...] = (right.value,)
    elif isinstance(right, ast.SetRef):
        values = right.values
    elif isinstance(right, ast.ListLiteral):
        values = tuple(item.value for item in right.items)
    else:
        return None
    if attribute.type is Type.FINGERPRINT:
        return _fingerprint_keys(attribute, values)
    if not all(isinstance(v, Hashable) for v in values):
        return None
    return (_Key(attribute.name, readers_for(attribute).read, values),)


_AFFIXES = ("startswith", "endswith", "matches")


def _affix_keys(attribute: Attribute, op: str, right: object) -> tuple[_Key, ...] | None:
    """A string attribute's ``startswith``, ``endswith`` or ``matches`` a constant, by the
    literal text a value must start or end with (none: not a key)."""
    if attribute.type is not Type.STRING or not isinstance(right, ast.Literal):
        return None
    if not isinstance(right.value, str):
        return None
    if op == "matches":
        head, tail = literal_ends(right.value)
    else:
        head, tail = (right.value, "") if op == "startswith" else ("", right.value)
    read = readers_for(attribute).read
    if head:
        return (_Key(f"{attribute.name} startswith", read, (head,), "prefix"),)
    if tail:
        return (_Key(f"{attribute.name} endswith", read, (tail,), "suffix"),)
    return None


def _fingerprint_keys(attribute: Attribute, values: tuple[object, ...]) -> tuple[_Key, ...]:
    """Fingerprints are filed by their keyed token, as set membership compares them."""
    keys = []
    for algorithm in ("sha1", "sha256"):
        if attribute.algorithm not in (None, algorithm):
            continue
        tokens = tuple(
            fingerprint_token(str(v))
            for v in values
            if FINGERPRINT_LENGTHS.get(len(str(v))) == algorithm
        )
        if tokens:
            name = f"fingerprint.{algorithm}"
            read_token = READERS[name].read_token
            assert read_token is not None
            keys.append(_Key(name, read_token, tokens))
    return tuple(keys)


def _read_by(expr: ast.Expr) -> dict[str, Attribute]:
    """The attributes ``expr`` reads, as the checker resolved them: ``roles`` depends on
    what this policy's role conditions read, not on the certificate alone."""
    resolved = {n.name: n.attribute for n in ast.walk(expr) if isinstance(n, ast.AttributeRef)}
    found: dict[str, Attribute] = {}
    for name in attributes_read(expr):
        attribute = resolved.get(name) or lookup(name)
        if attribute is not None:
            found[name] = attribute
    return found


def _of_certificate(attribute: Attribute) -> bool:
    """Read from the certificate alone (not the request, the proxy, the chain or the time)."""
    return attribute.depends <= {"certificate"}


def _prereads(attributes: Iterable[Attribute]) -> tuple[Reader, ...]:
    readers: list[Reader] = []
    for attribute in attributes:
        found = readers_for(attribute)
        readers.append(found.read)
        if found.read_all is not None:
            readers.append(found.read_all)
        if found.read_token is not None:
            readers.append(found.read_token)
    return tuple(readers)
