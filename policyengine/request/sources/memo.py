"""The header memo: what a peer address and a set of header values came to, remembered.

Owns :class:`HeaderMemo`, a bounded, thread-safe memory that lets a returning client (the
same trusted proxy, the same certificate header sent alone) skip the header scan and the
decoding; :meth:`HeaderMemo.recall` is the one-pass check the engine makes first. Each
of its tables is a :class:`~policyengine.caches.BoundedCache`, and each kind of key is
built in one method here, of the values themselves (no note, no text of ours).

Must not import ``read`` (it calls this), nor ``language/`` or ``evaluation/``.
"""

from __future__ import annotations

from policyengine.caches import BoundedCache
from policyengine.errors import SourceError
from policyengine.request.sources.config import Plan, SourceConfig
from policyengine.request.sources.record import Forwarded

_CERTIFICATE, _OTHER = 1, 2


class HeaderMemo:
    """A bounded, thread-safe memory of decoded header values and peer verdicts.

    Decoding is a pure function of the header values (and the source's settings, so use
    one memo per SourceConfig), and trusting a peer a pure function of its address: both
    can be remembered. Refusals are remembered too, so a client repeating a hostile header
    costs a lookup. A value is kept from its second sighting on (a value seen once is
    never asked for again, and must not push out one that is); least recently stored
    entries go first past ``size``. ``second_sighting`` turns that admission off (for
    ``benchmarks/layers.py``).
    """

    __slots__ = ("_decoded", "_kinds", "_peers", "_whole", "size")

    def __init__(self, size: int = 4096, *, second_sighting: bool = True) -> None:
        self.size = size
        self._whole: BoundedCache[tuple[str, str | None, str | None, str | None], Forwarded] = (
            BoundedCache(size, second_sighting=second_sighting)
        )
        """A request's whole result, when the peer's verdict is its only note, by the peer
        address and the certificate, chain and verify values."""
        self._decoded: BoundedCache[
            tuple[str | None, str | None, str | None], Forwarded | SourceError
        ] = BoundedCache(size, second_sighting=second_sighting)
        """What the certificate, chain and verify values decode to (or why not), by those
        values: the notes of their decoding only."""
        self._peers: BoundedCache[str, tuple[bool, str]] = BoundedCache(size)
        """Peer verdicts apart: clients cycling through many certificates must not push
        out the verdict on the one proxy they all come through."""
        self._kinds: BoundedCache[object, int] = BoundedCache(1024)
        """Header names by what they are to ``recall`` (see ``_kind``): names are few, and
        a client inventing them pushes out only its own inventions."""

    def whole(
        self, peer: str, cert: str | None, chain: str | None = None, verify: str | None = None
    ) -> Forwarded | None:
        """The whole result kept for these header values from the trusted ``peer``."""
        return self._whole.get((peer, cert, chain, verify))

    def put_whole(
        self,
        peer: str,
        cert: str | None,
        chain: str | None,
        verify: str | None,
        result: Forwarded,
    ) -> None:
        self._whole.put((peer, cert, chain, verify), result)

    def decoded(
        self, cert: str | None, chain: str | None, verify: str | None
    ) -> Forwarded | SourceError | None:
        """What these header values decoded to, or the refusal they met, or None."""
        return self._decoded.get((cert, chain, verify))

    def put_decoded(
        self,
        cert: str | None,
        chain: str | None,
        verify: str | None,
        result: Forwarded | SourceError,
    ) -> None:
        self._decoded.put((cert, chain, verify), result)

    def peer(self, address: str) -> tuple[bool, str] | None:
        return self._peers.get(address)

    def put_peer(self, address: str, verdict: tuple[bool, str]) -> None:
        self._peers.put(address, verdict)

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
        if known is None or not known[0]:
            return None
        if headers.__class__ is dict:
            headers = headers.items()
        elif headers.__class__ is not list and headers.__class__ is not tuple:
            return None
        kind_of = self._kinds.get
        value = None
        try:
            for name, sent in headers:
                kind = kind_of(name)
                if kind is None:
                    kind = self._kind(plan, name)
                if kind:
                    if kind == _OTHER or value is not None:
                        return None
                    value = sent
        except Exception:  # not pairs: read_forwarded says what is wrong
            return None
        if value.__class__ is bytes:  # as an ASGI server hands it over: latin-1, as read
            value = value.decode("latin-1")
        elif value.__class__ is not str:
            return None
        whole = self._whole.get((remote_addr, value, None, None))
        return whole if whole is not None else (known[1], value)

    def _kind(self, plan: Plan, name: object) -> int:
        """What a header name (text, or bytes read as latin-1) is to ``recall``,
        remembered: 0 unread, 1 the certificate header, 2 anything else the source reads
        (another of its headers, an underscore variant of one, a name of another type)."""
        if name.__class__ is bytes:  # an ASGI header name: read as latin-1, as elsewhere
            low = name.decode("latin-1").lower()
        elif name.__class__ is str:
            low = name.lower()
        else:
            return _OTHER
        hit = plan.by_lower.get(low)
        if hit is not None:
            kind = _CERTIFICATE if hit == plan.names[0] else _OTHER
        else:
            kind = _OTHER if "_" in low and low.replace("_", "-") in plan.by_lower else 0
        self._kinds.put(name, kind)
        return kind
