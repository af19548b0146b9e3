"""A deployment's source settings (:class:`SourceConfig`) and its trusted proxies.

Owns validating the settings once, when built (header names, limits, networks), the
reading plan worked out from them (:class:`Plan`), and whether a peer is a trusted proxy
(:func:`peer_trusted`, :func:`trusted_from_anywhere`). ``SourceConfig`` carries its
source's :class:`~policyengine.request.sources.record.Source` as ``record``, so callers
ask the record rather than compare names.

Must not import ``read`` or ``memo`` (they import this), nor ``language/`` or
``evaluation/``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import NamedTuple

from policyengine.request.sources.record import Limits, Source
from policyengine.request.sources.registry import source_named

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_UNIX = "unix"
"""A ``trusted_proxies`` entry that trusts peers without an address (a Unix socket)."""


class Plan(NamedTuple):
    """What reading one request under a SourceConfig needs, worked out once."""

    names: tuple[str, ...]
    """The certificate, chain and verify header names the source reads."""
    by_lower: dict[str, str]
    limits: Limits
    whole: bool
    """Whether a request's whole result may be kept (see ``HeaderMemo.recall``)."""
    header: str | None
    chain_header: str | None
    verify_header: str | None
    """The header names, as the properties of SourceConfig give them."""


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """Where a deployment's client certificate comes from; validated when built.

    ``header``, ``chain_header`` and ``verify_header``: ``None`` takes the source's
    default (:func:`default_header_names`); ``""`` switches a default chain or verify
    header off. ``trusted_proxies``: addresses or CIDRs (``"10.0.0.0/8"``, ``"::1"``)
    plus optionally ``"unix"``; ``None`` takes :func:`default_trusted_proxies`.
    Raises ``ValueError`` on an unknown source, a bad network or a non-positive limit,
    so a wrong configuration fails at start-up rather than on the first request.
    ``record`` is the source's :class:`Source` record.
    """

    source: str = "azure"
    header: str | None = None
    trusted_proxies: tuple[str, ...] | None = None
    max_header_bytes: int = 16384
    max_chain_length: int = 8
    verify_header: str | None = None
    chain_header: str | None = None
    record: Source = field(init=False, repr=False, compare=False)
    _networks: tuple[_Network, ...] = field(init=False, repr=False, compare=False)
    _trust_unix: bool = field(init=False, repr=False, compare=False)
    _any_peer: bool = field(init=False, repr=False, compare=False)
    _plan: Plan = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "record", source_named(self.source))
        if self.header is not None and not _is_token(self.header):
            raise ValueError(f"header must be an HTTP header name, not {self.header!r}")
        for name in ("verify_header", "chain_header"):
            value = getattr(self, name)
            if value is not None and value != "" and not _is_token(value):
                raise ValueError(f"{name} must be an HTTP header name or '', not {value!r}")
        for name in ("max_header_bytes", "max_chain_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
        if self.max_header_bytes == 0:
            raise ValueError("max_header_bytes must be positive")
        entries = self.trusted_proxies
        if entries is None:
            entries = self.record.trusted_proxies
        elif isinstance(entries, (str, bytes)) or not isinstance(entries, (tuple, list)):
            raise ValueError(f"trusted_proxies must be a tuple of addresses/CIDRs, not {entries!r}")
        if isinstance(self.trusted_proxies, list):
            object.__setattr__(self, "trusted_proxies", tuple(self.trusted_proxies))
        networks, trust_unix = _networks(entries)
        object.__setattr__(self, "_networks", networks)
        object.__setattr__(self, "_trust_unix", trust_unix)
        # every IPv4 and every IPv6 address: then a peer the server names by something
        # other than an address (Starlette's TestClient says "testclient") is trusted too
        whole = {network.version for network in networks if network.prefixlen == 0}
        object.__setattr__(self, "_any_peer", whole == {4, 6})
        object.__setattr__(self, "_plan", self._make_plan())

    def _make_plan(self) -> Plan:
        header, chain, verify = self.header_name, self.chain_header_name, self.verify_header_name
        names = tuple(n for n in (header, chain, verify) if n)
        return Plan(
            names,
            {n.lower(): n for n in names},
            Limits(self.max_header_bytes, self.max_chain_length),
            bool(names) and self.record.keep_whole,
            header,
            chain,
            verify,
        )

    @property
    def header_name(self) -> str | None:
        """The certificate header this config reads (None for direct-TLS sources)."""
        return self.header or self.record.header

    @property
    def chain_header_name(self) -> str | None:
        if self.chain_header is not None:
            return self.chain_header or None
        return self.record.chain_header

    @property
    def verify_header_name(self) -> str | None:
        if self.verify_header is not None:
            return self.verify_header or None
        return self.record.verify_header

    @property
    def effective_trusted_proxies(self) -> tuple[str, ...]:
        if self.trusted_proxies is not None:
            return tuple(self.trusted_proxies)
        return self.record.trusted_proxies

    def read_as(self, source: str) -> SourceConfig:
        """These settings, read as another source would send them (``explain --source``):
        the trusted proxies (this list, or its source's default) and the limits stay, so
        reading as another source never widens trust."""
        if source == self.source:
            return self
        return SourceConfig(
            source=source,
            trusted_proxies=self.effective_trusted_proxies,
            max_header_bytes=self.max_header_bytes,
            max_chain_length=self.max_chain_length,
        )


def _networks(entries: tuple[str, ...] | list[str]) -> tuple[tuple[_Network, ...], bool]:
    """The networks of a ``trusted_proxies`` list, and whether it holds ``"unix"``."""
    networks: list[_Network] = []
    trust_unix = False
    for entry in entries:
        if entry == _UNIX:
            trust_unix = True
            continue
        try:
            networks.append(ipaddress.ip_network(entry))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"trusted_proxies entry {entry!r}: {exc}") from None
    return tuple(networks), trust_unix


_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def _is_token(name: object) -> bool:
    return isinstance(name, str) and bool(name) and all(ch in _TOKEN_CHARS for ch in name)


def trusted_from_anywhere(config: SourceConfig) -> bool:
    """True when any peer on the Internet may set the certificate header (``/0`` trusted).

    For ``policyengine check`` to warn: such a deployment is safe only if nothing but the
    proxy can reach the app. Direct-TLS sources are never "trusted from anywhere".
    """
    if config.record.read_direct is not None:
        return False
    return any(network.prefixlen == 0 for network in config._networks)


def _parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if len(text) > 100:
        return None
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def peer_trusted(config: SourceConfig, remote_addr: object) -> tuple[bool, str]:
    """Whether ``remote_addr`` may set the source's headers, and the note saying why."""
    if remote_addr is None or (isinstance(remote_addr, str) and not remote_addr.strip()):
        if config._trust_unix:
            return True, "peer has no address (a Unix socket); trusted because of 'unix'"
        return False, "header ignored: peer <unknown> is not a trusted proxy (no peer address)"
    shown = repr(remote_addr)[:80] if not isinstance(remote_addr, str) else remote_addr[:80]
    address = _parse_address(remote_addr) if isinstance(remote_addr, str) else None
    if address is None:
        if config._any_peer and isinstance(remote_addr, str):
            return True, (
                f"peer {shown} is not an IP address; trusted because trusted_proxies "
                "holds 0.0.0.0/0 and ::/0, i.e. any peer"
            )
        return False, f"header ignored: peer {shown} is not a trusted proxy (not an IP address)"
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    for network in config._networks:
        for candidate in candidates:
            if candidate.version == network.version and candidate in network:
                anyone = ", i.e. any peer" if network.prefixlen == 0 else ""
                return True, f"peer {shown} is a trusted proxy ({network}{anyone})"
    return False, f"header ignored: peer {shown} is not a trusted proxy"
