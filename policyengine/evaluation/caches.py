"""Admission to the request-path caches on a second sighting.

The facts cache and the header memo keep what a returning client sent, so its next request
costs a few lookups. A certificate seen once and never again (a scanner, a client that
calls once a day, an attacker sending a fresh certificate with every request) gains
nothing from being kept, and storing it has costs: the store itself, on the cold path,
and the returning client it pushes out of a full cache. So a cache asks its doorkeeper
first: the first sighting of a key is only noted (its hash, in a bounded set), the second
is let in. A returning client pays the cold path twice instead of once; a flood of
one-off certificates no longer flushes the clients that do return.

Only caching depends on it, never a decision: a hash collision, or a note forgotten when
the set is emptied, lets a key in one sighting early or late, and that is all.
"""

from __future__ import annotations

from collections.abc import Hashable

__all__ = ["Doorkeeper"]


class Doorkeeper:
    """Says whether a key has been seen before (recently); notes it if not.

    Thread-safe as far as it needs to be: each set operation is atomic, and a race only
    admits a key one sighting early or late.
    """

    __slots__ = ("_seen", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        """Notes kept at most; the set is emptied when it is full."""
        self._seen: set[int] = set()

    def admit(self, key: Hashable) -> bool:
        """True when ``key`` was noted before (and so may be cached); else note it."""
        mark = hash(key)
        seen = self._seen
        if mark in seen:
            return True
        if len(seen) >= self.size:
            seen.clear()
        seen.add(mark)
        return False
