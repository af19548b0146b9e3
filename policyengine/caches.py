"""The one bounded cache every speed layer keeps its entries in.

Owns :class:`BoundedCache`: a mapping of at most ``size`` entries, the least recently used
going first, safe to share between threads, with admission on a key's second sighting as
an option. The facts cache, the header memo, the trust store's verifications, the DER name
reader's tables and the policy's decision memo are each one of these, so that every cache
is bounded, evicts and admits the same way, and frees what it lets go at once (an entry
refers to nothing that refers back to the cache: no cycle for the garbage collector).

It sits at the top of the package, beside ``span.py`` and ``values.py``, because both
``request/`` and ``evaluation/`` keep caches and ``request/`` may not import
``evaluation/``. Must not import anything of policyengine.

Only speed depends on a cache, never a decision: a race between threads may admit an entry
one sighting early or late, or evict one a little early, and that is all.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["BoundedCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """At most ``size`` entries, least recently used out first; ``size`` 0 keeps nothing.

    Reading takes no lock (each dictionary operation is atomic, and a lock taken on every
    request made eight threads slower together than one alone); storing takes one.
    :attr:`get` is the raw lookup, the bound ``get`` of the underlying dictionary, for the
    hottest paths: it does not mark the entry as used, so entries read only through it go
    in the order they were stored. :meth:`recall` marks it.

    With ``second_sighting``, a key is stored only when it was offered before: its first
    sighting notes its hash (in a set of at most ``size`` notes, emptied when full), the
    second stores it. A key seen once and never again (a scanner, an attacker minting a
    certificate per request) then costs no store and pushes out nothing that returns; the
    price is one more miss for a key that does return. A hash collision, or a note
    forgotten when the set is emptied, admits a key one sighting early or late.
    """

    __slots__ = ("_entries", "_lock", "_seen", "get", "size")

    def __init__(self, size: int, *, second_sighting: bool = False) -> None:
        if size < 0:
            raise ValueError("the cache size must be 0 or more")
        self.size = size
        """Entries kept at most."""
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()
        self._seen: set[int] | None = set() if second_sighting else None
        self.get: Callable[[K], V | None] = self._entries.get
        """The value kept for a key, or None; does not mark it as used (see above)."""

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def recall(self, key: K) -> V | None:
        """The value kept for ``key``, marked as the most recently used; or None."""
        entry = self._entries.get(key)
        if entry is not None:
            try:  # noqa: SIM105 -- contextlib.suppress costs a context manager per call
                self._entries.move_to_end(key)
            except KeyError:  # evicted by another thread meanwhile: still a good answer
                pass
        return entry

    def put(self, key: K, value: V) -> None:
        """Keep ``value`` for ``key`` (replacing what was kept), once admitted."""
        if self.size and (self._seen is None or self._admit(key)):
            with self._lock:
                entries = self._entries
                entries[key] = value
                entries.move_to_end(key)
                if len(entries) > self.size:
                    entries.popitem(last=False)

    def keep(self, key: K, value: V) -> V | None:
        """Keep ``value`` for ``key`` unless an entry is there already (another thread may
        have stored one meanwhile), once admitted: what is now kept for ``key``, or None
        when nothing is (the cache is off, or this is the key's first sighting)."""
        if not self.size or (self._seen is not None and not self._admit(key)):
            return None
        with self._lock:
            entries = self._entries
            value = entries.setdefault(key, value)
            entries.move_to_end(key)
            if len(entries) > self.size:
                entries.popitem(last=False)
        return value

    def _admit(self, key: K) -> bool:
        mark = hash(key)
        seen = self._seen
        assert seen is not None
        if mark in seen:
            return True
        if len(seen) >= self.size:
            seen.clear()
        seen.add(mark)
        return False
