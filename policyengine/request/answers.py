"""Answers fetched over the network, kept until they end: the one cache OCSP responses
(:mod:`~policyengine.request.ocsp`) and CRLs from distribution points
(:mod:`~policyengine.request.distribution`) are kept in.

:class:`Answers` maps a key (an issuer and a serial number; a URL) to what was fetched for
it, a :class:`Held`: the value, and from when until when it holds. It

* asks once per key at a time (single flight): concurrent first sightings of a key wait
  for that one request, at most ``wait`` seconds, and then go without;
* keeps at most ``capacity`` answers, the oldest going first;
* renews an answer in the background once it is in the last tenth of its remaining life
  (at least :data:`RENEW_LEAST`, at most :data:`RENEW_MOST` before it ends) and someone
  still asks for it: the request that finds it so is answered from the cache at once, and
  the ones after the old answer ends find the new one, so a returning client waits for no
  fetch. A renewal that fails leaves the old answer standing; it is tried again
  :data:`RETRY` later, if the answer is still asked for. A failure is not renewed: it
  ends after :data:`RETRY`, and the next request asks again.

An answer someone relies on (a verification cached by the trust store) should be looked at
again at :meth:`Held.next_look`: its renewal time while that is ahead, then its end.

A coroutine (an ASGI middleware, the decision server) decides through :func:`off_the_loop`:
on the event loop while every answer it needs is kept, and in a worker thread when one must
be fetched (or is being fetched), so that the loop never waits for the network.

Times are the evaluation's (``now``), never the wall clock's, so a test moves them.
Owns Held, Answers, off_the_loop and issuer_id (the issuer part of the keys). Imports
cryptography and the standard library only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Hashable
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

__all__ = [
    "RENEW_LEAST",
    "RENEW_MOST",
    "RETRY",
    "Answers",
    "Floors",
    "Held",
    "WouldWait",
    "issuer_id",
    "off_the_loop",
]

RETRY = timedelta(seconds=10)
"""How long a failure stands before the network is asked again."""
RENEW_LEAST = timedelta(seconds=10)
"""An answer is renewed at least this long before it ends (one living less than twice
this is not renewed at all: it ends, and is fetched again)."""
RENEW_MOST = timedelta(hours=1)
"""An answer is renewed at most this long before it ends."""
SKEW = timedelta(minutes=1)
"""A server's clock may be this far ahead of ours."""

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T")

_ON_THE_LOOP: ContextVar[bool] = ContextVar("policyengine_on_the_loop", default=False)


class WouldWait(BaseException):
    """Raised by :meth:`Answers.get` instead of waiting for the network, when the decision
    runs on an event loop (:func:`off_the_loop`). A BaseException, so that no ``except
    Exception`` on the way (a rule that cannot be evaluated, an authorizer that fails
    closed) turns it into a decision: nothing was decided, and nothing kept."""


class Waiting:
    """What :func:`on_the_loop` returns for work that would wait for the network."""

    __slots__ = ()


WAITING = Waiting()


def on_the_loop(work: Callable[..., T], *args: Any) -> T | Waiting:
    """``work(*args)`` at once, on the event loop, or :data:`WAITING` when it would wait
    for an answer from the network (one not fetched yet, or being fetched by another
    request): the caller then runs it again from the start in a worker thread, as
    :func:`off_the_loop` does. For the hottest caller, the ASGI middleware, which would
    otherwise pay for a coroutine and a closure on every request."""
    token = _ON_THE_LOOP.set(True)
    try:
        return work(*args)
    except WouldWait:
        return WAITING
    finally:
        _ON_THE_LOOP.reset(token)


async def off_the_loop(work: Callable[[], T]) -> T:
    """``work()`` for a coroutine: at once, on the event loop, unless it would wait for an
    answer from the network (one not fetched yet, or being fetched by another request);
    then again from the start, in a worker thread (``asyncio.to_thread``), so that the
    loop goes on serving other requests meanwhile. ``work`` must do nothing it cannot do
    twice before it decides (the decision log and metrics come after the decision)."""
    done = on_the_loop(work)
    if isinstance(done, Waiting):
        return await asyncio.to_thread(work)
    return done


Ask = Callable[[datetime, "Held[V] | None"], "Held[V]"]
"""How an answer is fetched: ``ask(now, previous)``, where ``previous`` is the answer kept
for the key before (None when none; it may have ended): what a renewal would replace."""


@dataclass(frozen=True, slots=True)
class Held(Generic[V]):
    """One answer as kept: the value, and the time in which it holds."""

    value: V
    since: datetime
    """From when it holds (a response's thisUpdate; when a fetch was made, or failed)."""
    until: datetime
    """Until when it holds."""
    lasting: bool = True
    """False for a failure: it is not renewed, it ends, and a renewal that gives one
    leaves the answer it would have renewed standing."""
    size: int = 0
    """Bytes it holds, against the cache's ``budget``."""
    renew_by: datetime | None = None
    """Renewed from then at the latest, however long it holds (a CRL fetched again after
    ``max_age``, while it stays in force until its own next update)."""
    renew_at: datetime | None = None
    """From when a request that finds it starts its renewal (set by :class:`Answers`)."""

    def holds(self, now: datetime) -> bool:
        # a server's clock a little ahead of ours (and thisUpdate is whole seconds)
        return self.since - SKEW <= now < self.until

    def next_look(self, now: datetime) -> datetime:
        """When whoever relies on this answer should ask again: its renewal time while
        that is ahead (the request then starts the renewal), else its end."""
        if self.renew_at is not None and now < self.renew_at:
            return self.renew_at
        return self.until


class Answers(Generic[K, V]):
    """Answers per key, asked for once at a time, bounded, renewed before they end."""

    def __init__(self, *, capacity: int, wait: float, budget: int | None = None) -> None:
        self.capacity = capacity
        """Answers kept at most."""
        self.budget = budget
        """Bytes kept at most (the :attr:`Held.size` of every answer), when given."""
        self.wait = wait
        """Seconds a request waits for another's fetch of the same key."""
        self._kept: dict[K, Held[V]] = {}
        self._size = 0
        self._flights: dict[K, threading.Event] = {}
        self._renewing: dict[K, concurrent.futures.Future[None]] = {}
        self._lock = threading.Lock()
        self._renewals = concurrent.futures.ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="policyengine-renew"
        )

    def get(self, key: K, now: datetime, ask: Ask[V]) -> Held[V] | None:
        """The answer for ``key`` at ``now``: kept, or asked for with ``ask(now, previous)``
        (which must not raise). None when another request was asking and its answer did
        not come in time."""
        held = self._kept.get(key)
        if held is not None and held.holds(now):
            if held.renew_at is not None and now >= held.renew_at:
                self._renew(key, held, now, ask)
            return held
        if _ON_THE_LOOP.get():  # a fetch, or a wait for one: not on an event loop
            raise WouldWait
        with self._lock:
            held = self._kept.get(key)
            if held is not None and held.holds(now):  # came in meanwhile
                return held
            flight = self._flights.get(key)
            if flight is None:
                flight = self._flights[key] = threading.Event()
                owner = True
            else:
                owner = False
        if not owner:  # another request is asking right now: wait for its answer
            flight.wait(self.wait)
            held = self._kept.get(key)
            return held if held is not None and held.holds(now) else None
        # a renewal still queued or under way for an answer that has ended meanwhile is
        # not waited for: this request asks itself, and the renewal's answer, if it comes
        # later, is dropped (it renews an answer no longer kept)
        fresh: Held[V] | None = None
        try:
            fresh = ask(now, held)
        finally:
            with self._lock:
                current = self._kept.get(key)
                if current is not held and current is not None and current.holds(now):
                    fresh = current  # a renewal kept an answer meanwhile: it stands
                elif fresh is not None:
                    fresh = self._keep(key, fresh, now)
                del self._flights[key]
            flight.set()
        return fresh

    def settle(self, timeout: float = 10.0) -> None:
        """Wait for the fetches under way (renewals too) to end, at most ``timeout`` each."""
        with self._lock:
            flights = list(self._flights.values())
            renewals = list(self._renewing.values())
        for flight in flights:
            flight.wait(timeout)
        concurrent.futures.wait(renewals, timeout)

    def clear(self) -> None:
        """Forget every answer kept (a benchmark's first sightings)."""
        with self._lock:
            self._kept.clear()
            self._size = 0

    def __len__(self) -> int:
        return len(self._kept)

    # -- inside ------------------------------------------------------------------------

    def _renew(self, key: K, held: Held[V], now: datetime, ask: Ask[V]) -> None:
        with self._lock:
            if key in self._renewing or key in self._flights or self._kept.get(key) is not held:
                return  # renewed already, or being renewed
            try:
                future = self._renewals.submit(self._renewal, key, held, now, ask)
            except RuntimeError:  # shutting down: the old answer stands, and ends
                return
            self._renewing[key] = future

    def _renewal(self, key: K, held: Held[V], now: datetime, ask: Ask[V]) -> None:
        fresh: Held[V] | None = None
        try:
            fresh = ask(now, held)
        finally:
            with self._lock:
                del self._renewing[key]
                if self._kept.get(key) is held:  # still the answer it renews
                    if fresh is not None and fresh.lasting:
                        self._keep(key, fresh, now)
                    else:  # the old answer stands; tried again later
                        retry = min(held.until, now + RETRY)
                        self._kept[key] = replace(held, renew_at=retry)

    def _keep(self, key: K, fresh: Held[V], now: datetime) -> Held[V]:
        """Keep ``fresh`` (with its renewal time) as the answer for ``key``, the oldest
        answers going first past the capacity or the budget; under the lock."""
        previous = self._kept.pop(key, None)
        left = fresh.until - now
        renew_at = None
        if fresh.lasting and left >= 2 * RENEW_LEAST:  # in the last tenth of what is left
            renew_at = fresh.until - min(max(left / 10, RENEW_LEAST), RENEW_MOST)
        if fresh.lasting and fresh.renew_by is not None:
            renew_at = min(renew_at or fresh.renew_by, fresh.renew_by)
        fresh = replace(fresh, renew_at=renew_at)
        if previous is not None:
            self._size -= previous.size
        self._kept[key] = fresh
        self._size += fresh.size
        while len(self._kept) > self.capacity or (
            self.budget is not None and self._size > self.budget and len(self._kept) > 1
        ):
            oldest = next(iter(self._kept))
            self._size -= self._kept.pop(oldest).size
        return fresh


class Floors(Generic[K]):
    """The newest answer seen per key, as its issuer counts (an OCSP response's thisUpdate,
    a CRL's number and thisUpdate), so that an older one, replayed or from a copy behind,
    is refused. Kept apart from the answers (a mark is a few dozen bytes), so that an
    answer let go for room does not take its mark along; at most ``capacity`` marks, the
    oldest going first. Marks live as long as the process: after a restart, any answer
    still in force is believed again, as every CRL and OCSP client believes one."""

    def __init__(self, capacity: int = 1 << 16) -> None:
        self.capacity = capacity
        self._marks: dict[K, tuple[Any, ...]] = {}
        self._lock = threading.Lock()

    def admit(self, key: K, mark: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """Raise ``key``'s mark to ``mark`` and return None; or, when a newer mark was
        seen, return it and change nothing."""
        with self._lock:
            seen = self._marks.get(key)
            if seen is not None and mark < seen:
                return seen
            self._marks.pop(key, None)
            self._marks[key] = mark
            while len(self._marks) > self.capacity:
                del self._marks[next(iter(self._marks))]
            return None


def issuer_id(issuer: x509.Certificate) -> bytes:
    """An issuer as the caches of fetched evidence know it: SHA-256 of its name and its
    whole public key. Two CAs of one key under two names, or of one name under two keys,
    are two issuers (their certificates may share serial numbers, their CRLs a URL)."""
    digest = hashes.Hash(hashes.SHA256())
    for part in (
        issuer.subject.public_bytes(),
        issuer.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    ):
        digest.update(len(part).to_bytes(4, "big") + part)
    return digest.finalize()
