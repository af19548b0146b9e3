"""The decision memo, and which speed layers a policy uses.

Owns :class:`SpeedLayers` (the switches ``compile_document`` hands a Policy) and
:class:`DecisionMemo`: a policy whose rules read only the certificate and the time decides
one certificate the same way until the time crosses one of its validity boundaries
(notBefore, notAfter, the opening of each `expires within` window), so its decision is
kept, by the certificate's facts (identity), with the span of time between the boundaries
around now, and returned while the time is within it. The memo is the Policy's, a
:class:`~policyengine.caches.BoundedCache`: nothing is stored on the facts, and nothing
refers back to the memo, so what it lets go is freed at once.

Must not import: ``engine`` (it builds one of these), ``load/``, ``integrations/``,
``tooling/``, ``cli/``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from policyengine.caches import BoundedCache
from policyengine.evaluation.decision import Decision
from policyengine.language import ast
from policyengine.language.vocabulary import depends_of

if TYPE_CHECKING:
    from policyengine.request.certificate import CertificateFacts

__all__ = ["DecisionMemo", "SpeedLayers", "memo_windows"]

_TICK = timedelta(seconds=1)
"""The evaluation time is compared with X.509 times (whole seconds) to the second: past
``not_after`` is ``now >= not_after + 1 s`` (see ``attributes._SECOND``)."""
_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class SpeedLayers:
    """Which speed layers a Policy uses: all of them, unless a test or a benchmark turns
    one off to compare it with the plain path (docs/performance.md, ``benchmarks/
    layers.py``). None changes a decision."""

    index: bool = True
    """The rule index (:mod:`policyengine.evaluation.index`)."""
    memo: bool = True
    """The decision memo; off, the recall lane is off too (it serves the memo)."""
    recall: bool = True
    """The header memo's returning-client lane (``HeaderMemo.recall``)."""
    second_sighting: bool = True
    """The facts cache and the header memo keep a certificate from its second sighting."""
    der_names: bool = True
    """Names read by the hand-written DER reader (else through cryptography's objects)."""


def memo_windows(
    rules: Iterable[tuple[frozenset[str], ast.Expr]],
) -> tuple[timedelta, ...] | None:
    """How far before notAfter each `expires within` window opens, for rules given as
    ``(attributes read, expression)``; None when a rule reads more than the certificate
    and the time (the request, the proxy, the chain): such a policy keeps no memo."""
    windows: set[timedelta] = set()
    for attributes, expression in rules:
        for name in attributes:
            if not depends_of(name) <= {"certificate", "time"}:
                return None
        windows.update(
            node.duration.value  # type: ignore[misc]
            for node in ast.walk(expression)
            if isinstance(node, ast.ExpiresWithin)
        )
    return tuple(sorted(windows))


class DecisionMemo:
    """Decisions by the facts they were made on, each with the span of time it holds for.

    :attr:`get` is the raw lookup (``(start, end, decision)`` or None), for the returning
    client's path: the caller checks ``start <= now < end``.
    """

    __slots__ = ("_kept", "get", "windows")

    def __init__(self, windows: tuple[timedelta, ...], size: int) -> None:
        self.windows = windows
        self._kept: BoundedCache[CertificateFacts, tuple[datetime, datetime, Decision]] = (
            BoundedCache(size)
        )
        self.get = self._kept.get

    def __contains__(self, facts: object) -> bool:
        return facts in self._kept

    def __len__(self) -> int:
        return len(self._kept)

    def keep(self, facts: CertificateFacts, now: datetime, decision: Decision) -> None:
        """Keep ``decision``, made at ``now`` on ``facts``, for the span it holds for."""
        windows = self.windows
        try:
            # every time predicate is a comparison of now with one of these instants, all
            # whole seconds (past notAfter is `now >= notAfter + 1 s`), so a time compared
            # with the span as given decides as its whole second does
            after = facts.not_after
            instants = [facts.not_before, after, after + _TICK]
            if windows:
                instants += [after - w for w in windows]
        except Exception:  # an unreadable validity, or an instant out of range: no memo
            return
        start, end = _EARLIEST, _LATEST
        for instant in instants:
            if instant <= now:
                if instant > start:
                    start = instant
            elif instant < end:
                end = instant
        self._kept.put(facts, (start, end, decision))
