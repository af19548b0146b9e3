"""The header memo: what a peer address and a set of header values came to, remembered.

Owns :class:`HeaderMemo`, a bounded, thread-safe memory that lets a returning client (the
same trusted proxy, the same certificate header sent alone) skip the header scan and the
decoding; :meth:`HeaderMemo.recall` is the one-pass check the engine makes first.

Must not import ``read`` (it calls this), nor ``language/``. It still imports the
doorkeeper from ``evaluation/caches.py``; the caches rework moves that.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

from policyengine.evaluation.caches import Doorkeeper
from policyengine.request.sources.config import Plan, SourceConfig
from policyengine.request.sources.record import Forwarded

_CERTIFICATE, _OTHER = 1, 2


class HeaderMemo:
    """A bounded, thread-safe memory of decoded header values and peer verdicts.

    Decoding is a pure function of the header values (and the source's settings, so use
    one memo per SourceConfig), and trusting a peer a pure function of its address: both
    can be remembered. Refusals are remembered too, so a client repeating a hostile header
    costs a lookup. A value is kept from its second sighting on (a value seen once is
    never asked for again, and must not push out one that is); least recently used
    entries go first past ``size``.
    """

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, object] = OrderedDict()
        self._peers: OrderedDict[Hashable, object] = OrderedDict()
        """Peer verdicts apart: clients cycling through many certificates must not push
        out the verdict on the one proxy they all come through."""
        self._lock = threading.Lock()
        self._door = Doorkeeper(max(size, 1))
        self._kinds: dict[str, int] = {}
        """Header names by what they are to ``recall`` (see ``_kind``)."""

    def get(self, key: Hashable) -> object:
        return self._entries.get(key)

    def put(self, key: Hashable, value: object) -> None:
        """Keep ``value`` for ``key`` once ``key`` has been put before (see doorkeeper.py)."""
        if self._door.admit(key):
            self._put(self._entries, key, value)

    def peer(self, address: str) -> object:
        return self._peers.get(address)

    def put_peer(self, address: str, verdict: object) -> None:
        self._put(self._peers, address, verdict)

    def recall(
        self, config: SourceConfig, headers: object, remote_addr: object
    ) -> Forwarded | tuple[str, str] | None:
        """What :func:`read_forwarded` returns for a returning client, or None.

        When the request has the shape of a returning client's but its value is new, the
        peer's note and the value: ``read_forwarded(..., scanned=...)`` then goes on from
        there, without looking at the headers again.

        A returning client: a trusted peer already seen, the certificate header sent once
        and no other header the source reads (nor an underscore variant of one), the
        value already decoded into a whole result. Anything else, including anything odd
        about ``headers``, is None, and :func:`read_forwarded` reads the request as usual.
        One pass over the header names and two lookups, without the bookkeeping
        :func:`read_forwarded` needs for everything else.
        """
        plan = config._plan
        if not plan.whole or remote_addr.__class__ is not str:
            return None
        known = self._peers.get(remote_addr)
        if known is None or not known[0]:  # type: ignore[index]
            return None
        if headers.__class__ is dict:
            headers = headers.items()
        elif headers.__class__ is not list and headers.__class__ is not tuple:
            return None
        kinds = self._kinds
        value = None
        try:
            for name, sent in headers:
                kind = kinds.get(name)
                if kind is None:
                    kind = self._kind(plan, name)
                if kind:
                    if kind == _OTHER or value is not None:
                        return None
                    value = sent
        except Exception:  # not pairs: read_forwarded says what is wrong
            return None
        if value.__class__ is not str:
            return None
        note: str = known[1]  # type: ignore[index]
        whole = self._entries.get((note, "values", value, None, None))
        return whole if whole.__class__ is Forwarded else (note, value)

    def _kind(self, plan: Plan, name: object) -> int:
        """What a header name is to ``recall``, remembered: 0 unread, 1 the certificate
        header, 2 anything else the source reads (another of its headers, an underscore
        variant of one, a name that is not text)."""
        if name.__class__ is not str:
            return _OTHER
        low = name.lower()
        hit = plan.by_lower.get(low)
        if hit is not None:
            kind = _CERTIFICATE if hit == plan.names[0] else _OTHER
        else:
            kind = _OTHER if "_" in low and low.replace("_", "-") in plan.by_lower else 0
        if len(self._kinds) >= 1024:  # names are few; a client inventing them is not kept
            self._kinds.clear()
        self._kinds[name] = kind
        return kind

    def _put(self, entries: OrderedDict[Hashable, object], key: Hashable, value: object) -> None:
        if self.size <= 0:
            return
        with self._lock:
            entries[key] = value
            entries.move_to_end(key)
            while len(entries) > self.size:
                entries.popitem(last=False)
