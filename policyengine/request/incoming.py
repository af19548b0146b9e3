"""The request as every caller hands it to the engine: :class:`Request`.

``Policy.evaluate_request``, the integrations and the coming decision server all describe
one HTTP request the same way: the headers as received, the peer that sent them, the path,
method and host, the time of the decision, and the server's own view (a WSGI environ or an
ASGI scope) for the sources that read the TLS connection directly.

Owns: Request (plain data, nothing read or normalised here).
Must not import: anything of policyengine (it sits below language/ and evaluation/, and
the integrations import it without pulling the engine in).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["Request"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One request to decide. Every field is optional; what a policy's source does not
    read is ignored.

    ``headers`` is a mapping, or a list of ``(name, value)`` pairs (names
    case-insensitive), exactly as the server received them. ``peer`` is the address of the
    host that sent them (the remote address): the headers are believed only from a peer
    among the policy's trusted proxies. ``now`` defaults to the time of the decision; a
    naive datetime is taken as UTC. ``environ`` (WSGI) and ``scope`` (ASGI) are read by the
    ``wsgi-environ`` and ``asgi-tls`` sources.
    """

    headers: Mapping[Any, Any] | Iterable[Any] | None = None
    peer: str | None = None
    path: str | None = None
    method: str | None = None
    host: str | None = None
    now: datetime | None = None
    environ: Mapping[str, Any] | None = None
    scope: Mapping[str, Any] | None = None
