"""Sources: from what a proxy (or the TLS layer) hands the app to certificate DER bytes.

This is the ``source`` arrow of the pipeline::

    request ──source──▶ certificate bytes ──facts──▶ CertificateFacts

A deployment names one *source*: the proxy in front of the app, which decides the header
name, the wire encoding, what the proxy says of its own verification, and which peers may
send the header at all. :func:`read_forwarded` applies that profile to one request and
returns a :class:`Forwarded` (leaf DER, intermediates, the proxy's verdict, notes for the
explain trace). :func:`decode_header_value` decodes one value on its own, for
``policyengine explain --header VALUE --source S``.

Why the rules are as strict as they are (see ``shared/reference/forwarded-client-certs.md``):

* A forwarded certificate header is only as trustworthy as the hop that set it. A header
  from a peer outside ``trusted_proxies`` is ignored, exactly as if no certificate had
  been sent: the request is then judged as anonymous, never as an error an attacker can
  provoke at will, and never as the certificate the attacker wrote.
* Two instances of the certificate header (or an ``X_SSL_Client_Cert`` alongside
  ``X-SSL-Client-Cert``, which WSGI servers fold into one variable) mean a client-sent copy
  got past the proxy: :data:`DUPLICATE_HEADER`, never "pick one".
* Every value is bounded (:data:`HEADER_TOO_LARGE`, checked before any decoding) and every
  decoder is linear in its input: ``str.find``/``split`` and a hand-written XFCC tokenizer,
  no regular expressions over header text (PEM-regex ReDoS is a known incident class).
* Decoding is exact, never forgiving in ways that change the bytes: ``unquote`` and never
  ``unquote_plus`` (AWS ALB leaves ``+`` literal), percent-decoding exactly once, strict
  base64 (the standard alphabet, ``=`` padding required except in an RFC 8941 byte
  sequence, where §4.2.7 lets it be left out; spaces and tabs dropped only where the table
  "Base64" in docs/sources.md says), PEM with nothing but whitespace around the armor,
  and a DER whose outer
  ``SEQUENCE`` length consumes exactly the bytes given. Anything else is
  :data:`MALFORMED_HEADER` with a message that says what and where.

This module frames DER itself and does not parse certificates: that is
``certificate.py``'s job, which receives the bytes this module returns.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar
from urllib.parse import unquote_to_bytes

from policyengine.errors import (
    CHAIN_TOO_LONG,
    DUPLICATE_HEADER,
    HEADER_TOO_LARGE,
    MALFORMED_HEADER,
    SourceError,
)
from policyengine.errors import SOURCE_REASONS as REASONS
from policyengine.evaluation.caches import Doorkeeper

__all__ = [
    "CHAIN_TOO_LONG",
    "DUPLICATE_HEADER",
    "HEADER_TOO_LARGE",
    "MALFORMED_HEADER",
    "REASONS",
    "SOURCES",
    "Forwarded",
    "HeaderMemo",
    "SourceConfig",
    "SourceError",
    "decode_header_value",
    "default_header_names",
    "default_trusted_proxies",
    "read_forwarded",
    "trusted_from_anywhere",
]


def _malformed(message: str) -> SourceError:
    return SourceError(MALFORMED_HEADER, message)


# -- sources and their profiles --------------------------------------------------------

SOURCES: tuple[str, ...] = (
    "azure",
    "nginx",
    "envoy",
    "rfc9440",
    "aws-alb",
    "gcp",
    "traefik",
    "haproxy",
    "apache",
    "cloudflare",
    "caddy",
    "wsgi-environ",
    "asgi-tls",
    "auto",
)

_DIRECT_SOURCES = frozenset({"wsgi-environ", "asgi-tls"})
"""Sources that read the server's own TLS state, not headers: no trusted proxy applies."""

_STATUS = "status"  # SUCCESS / FAILED:reason / NONE / GENEROUS (nginx, mod_ssl, App Gateway)
_INTEGER = "integer"  # OpenSSL verify error number, 0 = OK (HAProxy ssl_c_verify)
_BOOLEAN = "boolean"  # true / false (GCP client_cert_chain_verified, Cloudflare cf-cert-verified)
_ANY = "any"  # auto: status words or booleans; a bare number is ambiguous and not read


@dataclass(frozen=True, slots=True)
class _Profile:
    header: str | None
    chain_header: str | None
    verify_header: str | None
    verify_dialect: str


_PROFILES: Mapping[str, _Profile] = {
    "azure": _Profile("X-ARR-ClientCert", None, None, _STATUS),
    "nginx": _Profile("X-SSL-Client-Cert", None, "X-SSL-Client-Verify", _STATUS),
    "envoy": _Profile("X-Forwarded-Client-Cert", None, None, _STATUS),
    "rfc9440": _Profile("Client-Cert", "Client-Cert-Chain", None, _STATUS),
    "aws-alb": _Profile("X-Amzn-Mtls-Clientcert-Leaf", "X-Amzn-Mtls-Clientcert", None, _STATUS),
    "gcp": _Profile(
        "X-Client-Cert", "X-Client-Cert-Chain", "X-Client-Cert-Chain-Verified", _BOOLEAN
    ),
    "traefik": _Profile("X-Forwarded-Tls-Client-Cert", None, None, _STATUS),
    "haproxy": _Profile("X-SSL-Client-Cert", "X-SSL-Client-Chain", "X-SSL-Client-Verify", _INTEGER),
    "apache": _Profile("X-SSL-Client-Cert", None, "X-SSL-Client-Verify", _STATUS),
    "cloudflare": _Profile("Cf-Client-Cert-Der-Base64", None, "Cf-Cert-Verified", _BOOLEAN),
    "caddy": _Profile("X-Client-Cert", None, None, _STATUS),
    "auto": _Profile("X-Client-Cert", None, None, _ANY),
    "wsgi-environ": _Profile(None, None, None, _STATUS),
    "asgi-tls": _Profile(None, None, None, _STATUS),
}

_GCP_PRESENT_HEADER = "X-Client-Cert-Present"
_GCP_ERROR_HEADER = "X-Client-Cert-Error"
"""Read for notes only, under the names of Google's own example configuration."""

_PRIVATE_AND_LOOPBACK: tuple[str, ...] = (
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "::1/128",
    "fc00::/7",
)
_ANYWHERE: tuple[str, ...] = ("0.0.0.0/0", "::/0")
_UNIX = "unix"
"""A ``trusted_proxies`` entry that trusts peers without an address (a Unix socket)."""


def default_header_names(source: str) -> tuple[str | None, str | None, str | None]:
    """``(certificate header, chain header, verify header)`` a source reads by default.

    ==========  ===========================  ======================  ============================
    source      certificate                  chain                   verify
    ==========  ===========================  ======================  ============================
    azure       X-ARR-ClientCert             -                       -
    nginx       X-SSL-Client-Cert            -                       X-SSL-Client-Verify
    envoy       X-Forwarded-Client-Cert      (XFCC ``Chain=``)       -
    rfc9440     Client-Cert                  Client-Cert-Chain       -
    aws-alb     X-Amzn-Mtls-Clientcert-Leaf  X-Amzn-Mtls-Clientcert  -
    gcp         X-Client-Cert                X-Client-Cert-Chain     X-Client-Cert-Chain-Verified
    traefik     X-Forwarded-Tls-Client-Cert  (same header)           -
    haproxy     X-SSL-Client-Cert            X-SSL-Client-Chain      X-SSL-Client-Verify
    apache      X-SSL-Client-Cert            -                       X-SSL-Client-Verify
    cloudflare  Cf-Client-Cert-Der-Base64    -                       Cf-Cert-Verified
    caddy       X-Client-Cert                -                       -
    auto        X-Client-Cert                -                       -
    ==========  ===========================  ======================  ============================

    Where the vendor fixes the name (Azure App Service, Envoy, RFC 9440, AWS ALB,
    Traefik, Cloudflare Access) this is that name; where the admin chooses it (nginx,
    HAProxy, Apache, Caddy, GCP custom headers) it is the name the vendor's own examples
    use; ``auto`` uses ASP.NET Core's ``CertificateForwardingOptions`` default.
    ``X-SSL-Client-Chain`` for HAProxy is this library's choice (HAProxy has no example).
    """
    profile = _profile(source)
    return profile.header, profile.chain_header, profile.verify_header


def default_trusted_proxies(source: str) -> tuple[str, ...]:
    """The peers a source accepts forwarded headers from when the config names none.

    * Header sources except ``azure``: loopback and private ranges, ``127.0.0.0/8``,
      ``10.0.0.0/8``, ``172.16.0.0/12``, ``192.168.0.0/16``, ``::1/128``, ``fc00::/7``.
      A proxy on the same host, in the same VPC/VNet/pod network, reaches the app from
      these. A proxy that reaches the app from public addresses (Cloudflare without a
      tunnel, Google's global external load balancer) must be listed explicitly: with this
      default its headers are ignored, which fails closed.
    * ``azure``: ``0.0.0.0/0`` and ``::/0``, i.e. any peer. App Service terminates TLS in
      a front end whose addresses the app can neither list nor configure, and the app's
      own endpoint is only reachable through that front end, which sets
      ``X-ARR-ClientCert``. A narrower default would make the source useless out of the
      box; instead :func:`trusted_from_anywhere` flags it so ``policyengine check`` warns,
      and a deployment that is also reachable otherwise (VNet integration, a private
      endpoint, a container port) must set ``trusted_proxies``.
    * ``wsgi-environ`` and ``asgi-tls``: ``()``. They read the server's own TLS state,
      not headers, so no proxy is involved and the list is never consulted.

    A ``trusted_proxies`` entry ``"unix"`` (never a default) trusts a peer without an
    address, which is how servers report a Unix-socket connection from a local proxy.
    """
    _profile(source)
    if source in _DIRECT_SOURCES:
        return ()
    if source == "azure":
        return _ANYWHERE
    return _PRIVATE_AND_LOOPBACK


def _profile(source: str) -> _Profile:
    try:
        return _PROFILES[source]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown certificate source {source!r}; expected one of {', '.join(SOURCES)}"
        ) from None


_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """Where a deployment's client certificate comes from; validated when built.

    ``header``, ``chain_header`` and ``verify_header``: ``None`` takes the source's
    default (:func:`default_header_names`); ``""`` switches a default chain or verify
    header off. ``trusted_proxies``: addresses or CIDRs (``"10.0.0.0/8"``, ``"::1"``)
    plus optionally ``"unix"``; ``None`` takes :func:`default_trusted_proxies`.
    Raises ``ValueError`` on an unknown source, a bad network or a non-positive limit,
    so a wrong configuration fails at start-up rather than on the first request.
    """

    source: str = "azure"
    header: str | None = None
    trusted_proxies: tuple[str, ...] | None = None
    max_header_bytes: int = 16384
    max_chain_length: int = 8
    verify_header: str | None = None
    chain_header: str | None = None
    _networks: tuple[_Network, ...] = field(init=False, repr=False, compare=False)
    _trust_unix: bool = field(init=False, repr=False, compare=False)
    _any_peer: bool = field(init=False, repr=False, compare=False)
    _plan: _Plan = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _profile(self.source)
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
            entries = default_trusted_proxies(self.source)
        elif isinstance(entries, (str, bytes)) or not isinstance(entries, (tuple, list)):
            raise ValueError(f"trusted_proxies must be a tuple of addresses/CIDRs, not {entries!r}")
        if isinstance(self.trusted_proxies, list):
            object.__setattr__(self, "trusted_proxies", tuple(self.trusted_proxies))
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
        object.__setattr__(self, "_networks", tuple(networks))
        object.__setattr__(self, "_trust_unix", trust_unix)
        # every IPv4 and every IPv6 address: then a peer the server names by something
        # other than an address (Starlette's TestClient says "testclient") is trusted too
        whole = {network.version for network in networks if network.prefixlen == 0}
        object.__setattr__(self, "_any_peer", whole == {4, 6})
        header, chain, verify = self.header_name, self.chain_header_name, self.verify_header_name
        names = tuple(n for n in (header, chain, verify) if n)
        plan = _Plan(
            names,
            {n.lower(): n for n in names},
            _Limits(self.max_header_bytes, self.max_chain_length),
            # gcp's notes read other headers, so its results are not kept whole
            bool(names) and self.source not in ("gcp", "wsgi-environ", "asgi-tls"),
            header,
            chain,
            verify,
        )
        object.__setattr__(self, "_plan", plan)

    @property
    def header_name(self) -> str | None:
        """The certificate header this config reads (None for direct-TLS sources)."""
        return self.header or _PROFILES[self.source].header

    @property
    def chain_header_name(self) -> str | None:
        if self.chain_header is not None:
            return self.chain_header or None
        return _PROFILES[self.source].chain_header

    @property
    def verify_header_name(self) -> str | None:
        if self.verify_header is not None:
            return self.verify_header or None
        return _PROFILES[self.source].verify_header

    @property
    def effective_trusted_proxies(self) -> tuple[str, ...]:
        if self.trusted_proxies is not None:
            return tuple(self.trusted_proxies)
        return default_trusted_proxies(self.source)


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
    if config.source in _DIRECT_SOURCES:
        return False
    return any(network.prefixlen == 0 for network in config._networks)


# -- the result ------------------------------------------------------------------------


class Forwarded(NamedTuple):
    """What the source yielded for one request (a NamedTuple: one is built per request).

    ``leaf`` is the client certificate's DER, or None when none was forwarded (or the
    header was ignored). ``chain`` holds the intermediates the proxy forwarded, leaf
    excluded, in the order sent; they are candidates for path building, never trusted by
    themselves. ``proxy_verified`` is what the proxy says of its own verification
    (True / False / None when it says nothing) and ``proxy_verify`` the raw value it sent.
    ``notes`` are sentences for the explain trace.
    """

    leaf: bytes | None
    chain: tuple[bytes, ...]
    proxy_verified: bool | None
    proxy_verify: str | None
    notes: tuple[str, ...]


# -- reading one request ---------------------------------------------------------------


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

    def _kind(self, plan: _Plan, name: object) -> int:
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


def read_forwarded(
    config: SourceConfig,
    headers: Mapping[Any, Any] | Iterable[Any] | None,
    remote_addr: str | None,
    environ_or_scope: Mapping[str, Any] | None = None,
    *,
    memo: HeaderMemo | None = None,
    scanned: tuple[str, str] | None = None,
) -> Forwarded:
    """The certificate a request carries according to ``config``.

    ``headers``: a mapping (looked up case-insensitively here) or an iterable of
    ``(name, value)`` pairs, names and values ``str`` or ``bytes`` (latin-1, as HTTP
    servers hand them over); pairs keep duplicates visible, so pass raw pairs when you
    have them. ``remote_addr``: the immediate TCP peer (``REMOTE_ADDR``,
    ``scope["client"][0]``). ``environ_or_scope``: the WSGI environ or ASGI scope, read
    by the ``wsgi-environ`` and ``asgi-tls`` sources only.

    ``memo``: a :class:`HeaderMemo` that remembers what a peer address and a set of header
    values came to, so a client that sends the same certificate again skips decoding.
    ``scanned``: what :meth:`HeaderMemo.recall` found in these very headers (a trusted
    peer's note, and the certificate header's value, sent alone and once).

    Raises :class:`SourceError` and nothing else on anything a client or proxy sent.
    """
    if config.source == "wsgi-environ":
        return _read_wsgi(config, environ_or_scope)
    if config.source == "asgi-tls":
        return _read_asgi(config, environ_or_scope)

    plan = config._plan
    cert_name = plan.header
    assert cert_name is not None  # every header source has a default
    chain_name = plan.chain_header
    verify_name = plan.verify_header
    names = plan.names

    limits = plan.limits
    if scanned is not None:
        # recall has read the headers: a trusted peer, the certificate header once and
        # none of the source's other headers, so all _single_instance would check is size
        trust_note = scanned[0]
        cert_value: str | None = scanned[1]
        notes = [trust_note]
        _in_header(cert_name, _check_size, scanned[1], limits)
        chain_value = verify_value = None
    else:
        address = remote_addr if isinstance(remote_addr, str) else None
        known = memo.peer(address) if memo is not None and address is not None else None
        if isinstance(known, tuple):
            trusted, trust_note = known
        else:
            trusted, trust_note = _peer_trusted(config, remote_addr)
            if memo is not None and address is not None:
                memo.put_peer(address, (trusted, trust_note))
        found = _scan(headers, plan.by_lower)
        if trusted and memo is not None:
            # a returning client, the certificate header alone and once: one lookup
            values, variants = found[cert_name]
            others = len(names) > 1 and any(any(found[n]) for n in names[1:])
            if len(values) == 1 and not variants and not others:
                whole = memo.get((trust_note, "values", values[0], None, None))
                if whole.__class__ is Forwarded:
                    return whole
        if not trusted:
            notes = [trust_note]
            sent = [n for n in names if found[n][0]]
            if sent:
                notes.append(f"ignored header(s) sent by that peer: {', '.join(sent)}")
            return Forwarded(None, (), None, None, tuple(notes))

        notes = [trust_note]
        cert_value = _single_instance(found, cert_name, limits, notes)
        verify_value = _single_instance(found, verify_name, limits, notes) if verify_name else None
        if chain_name and config.source == "rfc9440":
            # RFC 9440: Client-Cert-Chain "MAY have a list of values or occur multiple times".
            chain_value = _joined_instances(found, chain_name, limits)
        elif chain_name:
            chain_value = _single_instance(found, chain_name, limits, notes)
        else:
            chain_value = None

    values_key = ("values", cert_value, chain_value, verify_value)
    use_memo = memo is not None and plan.whole
    # the whole result, when nothing but the peer's verdict is noted: a returning client
    # with the same certificate costs one lookup
    whole_key = (trust_note, *values_key) if use_memo and len(notes) == 1 else None
    if use_memo:
        assert memo is not None
        if whole_key is not None and scanned is None:  # recall has looked it up
            whole = memo.get(whole_key)
            if whole.__class__ is Forwarded:
                return whole
        hit = memo.get(values_key)
        if isinstance(hit, SourceError):
            raise hit
        if isinstance(hit, Forwarded):
            return Forwarded(
                hit.leaf, hit.chain, hit.proxy_verified, hit.proxy_verify, (*notes, *hit.notes)
            )
    try:
        decoded = _decode_values(
            config,
            cert_name,
            chain_name,
            verify_name,
            cert_value,
            chain_value,
            verify_value,
            limits,
            headers,
        )
    except SourceError as exc:
        if use_memo:
            assert memo is not None
            memo.put(values_key, exc)
        raise
    result = Forwarded(
        decoded.leaf,
        decoded.chain,
        decoded.proxy_verified,
        decoded.proxy_verify,
        (*notes, *decoded.notes),
    )
    if use_memo:
        assert memo is not None
        # the whole result alone when it can be kept: an entry for the values would serve
        # only the same value from another trusted proxy (decoded again then)
        if whole_key is not None:
            memo.put(whole_key, result)
        else:
            memo.put(values_key, decoded)
    return result


def _decode_values(
    config: SourceConfig,
    cert_name: str,
    chain_name: str | None,
    verify_name: str | None,
    cert_value: str | None,
    chain_value: str | None,
    verify_value: str | None,
    limits: _Limits,
    headers: object,
) -> Forwarded:
    """Decode the header values already picked out; the result's notes are only its own."""
    notes: list[str] = []
    leaf: bytes | None = None
    chain: list[bytes] = []
    if cert_value is None:
        notes.append(f"no {cert_name} header")
        if config.source == "cloudflare":
            notes.append(
                "Cloudflare forwards the certificate on the first request of a connection only"
            )
    elif not cert_value.strip(_HEADER_SPACE):
        notes.append(f"{cert_name} is empty: no certificate")
    else:
        leaf, chain = _in_header(cert_name, _decode, config.source, cert_value, limits, notes)

    if chain_value is not None and chain_name:
        extra = _in_header(chain_name, _decode_chain, config.source, chain_value, limits, notes)
        if leaf is None and config.source == "aws-alb" and extra:
            # Passthrough mode sends only the whole chain as presented, leaf first.
            leaf, extra = extra[0], extra[1:]
            notes.append(f"took the leaf from {chain_name} (ALB passthrough mode)")
        elif leaf is None and extra:
            notes.append(f"{chain_name} ignored: it came without a certificate")
            extra = []
        if extra and leaf is not None and extra[0] == leaf:
            extra = extra[1:]
            notes.append(f"dropped the leaf repeated at the head of {chain_name}")
        chain.extend(extra)

    _check_chain_length(len(chain), limits)
    if chain:
        notes.append(f"{len(chain)} intermediate certificate(s) forwarded")

    verified: bool | None = None
    verify_raw: str | None = None
    if verify_name and verify_value is not None:
        verify_raw = verify_value.strip(_HEADER_SPACE)
        _in_header(verify_name, _check_text, verify_raw)
        dialect = _PROFILES[config.source].verify_dialect
        verified = _interpret_verify(dialect, verify_raw, verify_name, notes)
    if config.source == "gcp":
        _gcp_notes(_normalise_headers(headers), limits, notes)
    return Forwarded(leaf, tuple(chain), verified, verify_raw, tuple(notes))


def decode_header_value(
    source: str,
    value: str | bytes,
    *,
    max_header_bytes: int = 16384,
    max_chain_length: int = 8,
) -> tuple[bytes | None, tuple[bytes, ...]]:
    """One certificate-header value as ``source`` encodes it -> ``(leaf DER, chain DER)``.

    For ``explain --header VALUE --source S``: no trusted-proxy check, no other headers.
    ``wsgi-environ`` and ``asgi-tls`` take PEM text, as those servers hold it. Raises
    :class:`SourceError` on a bad value, ``ValueError`` on an unknown source.
    """
    _profile(source)
    limits = _Limits(max_header_bytes, max_chain_length)
    text = _as_text(value, "header value")
    _check_size(text, limits)
    leaf, chain = _decode(source, text, limits, [])
    _check_chain_length(len(chain), limits)
    return leaf, tuple(chain)


# -- headers, duplicates, size ---------------------------------------------------------


class _Plan(NamedTuple):
    """What reading one request under a SourceConfig needs, worked out once."""

    names: tuple[str, ...]
    """The certificate, chain and verify header names the source reads."""
    by_lower: dict[str, str]
    limits: _Limits
    whole: bool
    """Whether a request's whole result may be kept (see ``HeaderMemo.recall``)."""
    header: str | None
    chain_header: str | None
    verify_header: str | None
    """The header names, as the properties of SourceConfig give them."""


class _Limits(NamedTuple):
    max_header_bytes: int
    max_chain_length: int


def _as_text(value: object, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        # latin-1 maps every byte to one character; non-ASCII is then refused as such.
        return bytes(value).decode("latin-1")
    raise _malformed(f"{what} must be text or bytes, not {type(value).__name__}")


def _normalise_headers(headers: object) -> list[tuple[str, str]]:
    """A list of ``(name, value)`` text pairs, duplicates kept."""
    try:
        return [
            (_as_text(name, "a header name"), _as_text(value, "a header value"))
            for name, value in _header_items(headers)
        ]
    except SourceError:
        raise
    except Exception as exc:
        raise _not_headers(exc) from None


def _same_header(name: str, wanted: str) -> bool:
    return name.lower() == wanted.lower()


_Found = dict[str, tuple[list[str], list[str]]]


def _scan(headers: object, by_lower: Mapping[str, str]) -> _Found:
    """For each wanted header (``by_lower``: lower-cased name -> name): its values, and the
    names of its underscore variants (``X_SSL_Client_Cert`` for ``X-SSL-Client-Cert``,
    which WSGI servers fold into the same variable). One pass over the headers, one
    lower-casing each; values of other headers are not looked at."""
    found: _Found = {name: ([], []) for name in by_lower.values()}
    wanted = by_lower.get
    try:
        for name, value in _header_items(headers):
            if name.__class__ is not str:
                name = _as_text(name, "a header name")
            hit = wanted(name.lower())
            if hit is not None:
                found[hit][0].append(
                    value if value.__class__ is str else _as_text(value, "a header value")
                )
            elif "_" in name:
                hit = wanted(name.lower().replace("_", "-"))
                if hit is not None:
                    found[hit][1].append(name)
    except SourceError:
        raise
    except Exception as exc:
        raise _not_headers(exc) from None
    return found


def _header_items(headers: object) -> Iterable[Any]:
    """The ``(name, value)`` items of a mapping or an iterable of pairs."""
    if headers is None:
        return ()
    if isinstance(headers, Mapping):
        return headers.items()
    if isinstance(headers, (str, bytes)):
        raise TypeError("a string is not a header collection")
    return headers  # type: ignore[return-value]


def _not_headers(exc: Exception) -> SourceError:
    return _malformed(f"headers must be a mapping or an iterable of (name, value) pairs: {exc}")


def _single_instance(found: _Found, wanted: str, limits: _Limits, notes: list[str]) -> str | None:
    exact, variants = found[wanted]
    if len(exact) > 1:
        raise SourceError(
            DUPLICATE_HEADER,
            f"{wanted}: sent {len(exact)} times; the proxy sets it once, so a client-sent "
            "copy got through",
        )
    if exact and variants:
        raise SourceError(
            DUPLICATE_HEADER,
            f"{wanted}: also sent as {variants[0]}, which WSGI servers merge into the same "
            "variable; a client-sent copy got through",
        )
    if variants:
        notes.append(f"ignored {variants[0]}: not the configured header {wanted}")
    if not exact:
        return None
    _in_header(wanted, _check_size, exact[0], limits)
    return exact[0]


def _joined_instances(found: _Found, wanted: str, limits: _Limits) -> str | None:
    exact, variants = found[wanted]
    if variants:
        raise SourceError(
            DUPLICATE_HEADER,
            f"{wanted}: also sent as {variants[0]}; a client-sent copy got through",
        )
    if not exact:
        return None
    total = sum(len(v) for v in exact) + 2 * (len(exact) - 1)
    if total > limits.max_header_bytes:
        raise SourceError(
            HEADER_TOO_LARGE,
            f"{wanted}: {total} bytes over {len(exact)} field line(s), over the "
            f"{limits.max_header_bytes}-byte limit",
        )
    return ", ".join(exact)


def _check_size(value: str, limits: _Limits) -> None:
    # Each character is at least one byte on the wire, so a character count over the
    # limit is over it in bytes too; non-ASCII is refused later anyway.
    if len(value) > limits.max_header_bytes:
        raise SourceError(
            HEADER_TOO_LARGE,
            f"{len(value)} bytes, over the {limits.max_header_bytes}-byte limit",
        )


def _bail_if_too_many(certificates: int, limits: _Limits) -> None:
    """Stop splitting early once a leaf plus ``max_chain_length`` is exceeded: bounded work."""
    if certificates > limits.max_chain_length + 1:
        raise SourceError(
            CHAIN_TOO_LONG,
            f"more than {limits.max_chain_length} intermediate certificates forwarded; at most "
            f"{limits.max_chain_length} are accepted",
        )


def _check_chain_length(count: int, limits: _Limits) -> None:
    if count > limits.max_chain_length:
        raise SourceError(
            CHAIN_TOO_LONG,
            f"{count} intermediate certificates forwarded; at most {limits.max_chain_length} "
            "are accepted",
        )


_R = TypeVar("_R")


def _in_header(name: str, work: Callable[..., _R], *args: Any) -> _R:
    """``work(*args)``, with any SourceError's message prefixed by the header name."""
    try:
        return work(*args)
    except SourceError as exc:
        raise SourceError(exc.reason, f"{name}: {exc.message}") from None


# -- trusted proxies -------------------------------------------------------------------


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


def _peer_trusted(config: SourceConfig, remote_addr: object) -> tuple[bool, str]:
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


# -- text hygiene ----------------------------------------------------------------------

_HEX = frozenset("0123456789abcdefABCDEF")
_HEADER_SPACE = " \t"
_DELETE = {_HEADER_SPACE: {ord(" "): None, ord("\t"): None}}
"""Translation tables that delete the header's whitespace, made once."""
_ANY_SPACE = " \t\r\n"


def _check_text(value: str, *, folded: bool = False) -> None:
    """Refuse non-ASCII and control characters; TAB is allowed, and LF only as nginx folds.

    ``folded``: nginx's legacy ``$ssl_client_cert`` puts a TAB after every LF (obsolete
    line folding); a stack that passes it through verbatim hands us ``\\n\\t``.
    """
    if not value.isascii():
        for offset, ch in enumerate(value):
            if not ch.isascii():
                raise _malformed(f"non-ASCII character U+{ord(ch):04X} at offset {offset}")
    probe = value
    if folded:
        probe = probe.replace("\r\n\t", "").replace("\n\t", "")
    if probe.replace("\t", "").isprintable():
        return
    for offset, ch in enumerate(value):
        if ch == "\t" or " " <= ch < "\x7f":
            continue
        if folded and ch == "\n" and value[offset + 1 : offset + 2] == "\t":
            continue
        if folded and ch == "\r" and value[offset + 1 : offset + 3] == "\n\t":
            continue
        raise _malformed(f"control character U+{ord(ch):04X} at offset {offset}")


def _percent_decode(value: str) -> str:
    """Decode ``%XX`` exactly once (``unquote``, never ``unquote_plus``: ``+`` stays ``+``)."""
    index = value.find("%")
    while index >= 0:
        pair = value[index + 1 : index + 3]
        if len(pair) != 2 or pair[0] not in _HEX or pair[1] not in _HEX:
            raise _malformed(
                f"broken percent-encoding at offset {index}: '%' must be followed by two hex "
                f"digits, found {pair!r}"
            )
        index = value.find("%", index + 3)
    try:
        decoded = unquote_to_bytes(value).decode("ascii")
    except UnicodeDecodeError:
        raise _malformed("percent-encoding decodes to non-ASCII bytes") from None
    if "%" in decoded:
        raise _malformed("still holds '%' after percent-decoding: encoded twice?")
    return decoded


def _b64decode(text: str, *, spaces: str, what: str) -> bytes:
    """Strict base64: whitespace in ``spaces`` is dropped, anything else must be the alphabet."""
    compact = text
    if spaces and any(ch in text for ch in spaces):
        compact = text.translate(_DELETE.get(spaces) or {ord(ch): None for ch in spaces})
    if not compact:
        raise _malformed(f"{what} is empty")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        bad = next((ch for ch in compact if not (ch.isalnum() or ch in "+/=")), None)
        if bad is not None:
            detail = f"character {bad!r} is not base64"
        elif len(compact) % 4:
            detail = f"length {len(compact)} is not a multiple of 4"
        else:
            detail = "misplaced '=' padding"
        raise _malformed(f"broken base64 in {what}: {detail}") from None


# -- DER framing -----------------------------------------------------------------------


def _read_tlv(data: bytes, pos: int, what: str, limit: int | None = None) -> tuple[int, int, int]:
    """``(tag, content start, end)`` of the DER element at ``pos``; definite lengths only.

    ``limit``: where the enclosing element ends (default: the end of ``data``).
    """
    limit = len(data) if limit is None else limit
    if pos + 2 > limit:
        raise _malformed(f"{what}: truncated DER at byte {pos}")
    tag = data[pos]
    first = data[pos + 1]
    if first < 0x80:
        start, length = pos + 2, first
    elif first == 0x82 and pos + 4 <= limit and data[pos + 2]:  # the usual long form
        start, length = pos + 4, data[pos + 2] << 8 | data[pos + 3]
    elif first == 0x80:
        raise _malformed(f"{what}: indefinite length at byte {pos} is not DER")
    else:
        count = first & 0x7F
        if count > 4:
            raise _malformed(f"{what}: length of {count} bytes at byte {pos} is not a certificate")
        start = pos + 2 + count
        if start > limit:
            raise _malformed(f"{what}: truncated DER length at byte {pos}")
        length = int.from_bytes(data[pos + 2 : start], "big")
        if data[pos + 2] == 0 or length < 0x80:
            raise _malformed(f"{what}: non-minimal DER length at byte {pos}")
    end = start + length
    if end > limit:
        raise _malformed(
            f"{what}: DER element at byte {pos} claims {length} bytes, {limit - start} remain"
        )
    return tag, start, end


def _frame_certificate(data: bytes, pos: int, what: str) -> int:
    """End of the certificate at ``pos``: SEQUENCE { SEQUENCE, SEQUENCE, BIT STRING }."""
    if pos < len(data) and data[pos] != 0x30:
        raise _malformed(
            f"{what}: not a DER certificate (byte {pos} is 0x{data[pos]:02x}, not SEQUENCE 0x30)"
        )
    _, start, end = _read_tlv(data, pos, what)
    inner = start
    for expected, part in (
        (0x30, "tbsCertificate"),
        (0x30, "signatureAlgorithm"),
        (0x03, "signature"),
    ):
        if inner >= end:
            raise _malformed(f"{what}: not an X.509 certificate: {part} is missing")
        part_tag, _, inner = _read_tlv(data, inner, what, end)
        if part_tag != expected:
            raise _malformed(f"{what}: not an X.509 certificate: {part} has tag 0x{part_tag:02x}")
    if inner != end:
        raise _malformed(f"{what}: not an X.509 certificate: {end - inner} extra bytes inside")
    return end


def _single_der(data: bytes, what: str) -> bytes:
    """``data``, when it is exactly one DER certificate; else the framing error."""
    # the usual certificate, its framing read inline: two-byte lengths for the whole and
    # the tbsCertificate, a short signatureAlgorithm, then the signature BIT STRING ending
    # exactly at the end. Each test is one _frame_certificate makes; whatever fails one
    # is read by it, which says what is wrong.
    size = len(data)
    if (
        size > 8
        and data[0] == 0x30
        and data[1] == 0x82
        and (data[2] << 8 | data[3]) + 4 == size
        and data[4] == 0x30
        and data[5] == 0x82
        and data[6]  # minimal: so the whole, which holds more, is minimal too
    ):
        algorithm = 8 + (data[6] << 8 | data[7])  # where the tbsCertificate ends
        if algorithm + 2 <= size and data[algorithm] == 0x30 and data[algorithm + 1] < 0x80:
            signature = algorithm + 2 + data[algorithm + 1]
            if signature + 2 <= size and data[signature] == 0x03:
                first = data[signature + 1]
                if first < 0x80:
                    end = signature + 2 + first
                elif first == 0x81 and signature + 3 <= size and data[signature + 2] >= 0x80:
                    end = signature + 3 + data[signature + 2]
                elif first == 0x82 and signature + 4 <= size and data[signature + 2]:
                    end = signature + 4 + (data[signature + 2] << 8 | data[signature + 3])
                else:
                    end = -1
                if end == size:
                    return data
    return _single_der_framed(data, what)


def _single_der_framed(data: bytes, what: str) -> bytes:
    end = _frame_certificate(data, 0, what)
    if end != len(data):
        raise _malformed(f"{what}: {len(data) - end} trailing bytes after the certificate")
    return data


def _split_ders(data: bytes, what: str, limits: _Limits) -> list[bytes]:
    """Concatenated DER certificates (HAProxy ``ssl_c_chain_der``), split by their framing."""
    if not data:
        raise _malformed(f"{what} is empty")
    found: list[bytes] = []
    pos = 0
    while pos < len(data):
        end = _frame_certificate(data, pos, what)
        found.append(data[pos:end])
        _bail_if_too_many(len(found), limits)
        pos = end
    return found


# -- PEM -------------------------------------------------------------------------------

_BEGIN = "-----BEGIN CERTIFICATE-----"
_END = "-----END CERTIFICATE-----"


def _pem_blocks(text: str, limits: _Limits, *, spaces: str = _ANY_SPACE) -> list[bytes]:
    """Every CERTIFICATE block, with nothing but whitespace before, between and after.

    Found with ``str.find`` (linear); a second BEGIN inside a block, another PEM type or
    stray text is refused rather than skipped.
    """
    blocks: list[bytes] = []
    pos = 0
    while True:
        begin = text.find(_BEGIN, pos)
        gap = text[pos:] if begin < 0 else text[pos:begin]
        if gap.strip(spaces):
            where = "before the first" if not blocks else "after a"
            if begin < 0 and blocks:
                where = "after the last"
            shown = gap.strip(spaces)[:40]
            if begin < 0 and not blocks:
                raise _malformed(f"no -----BEGIN CERTIFICATE----- line (found {shown!r}...)")
            raise _malformed(f"text {where} PEM certificate block: {shown!r}")
        if begin < 0:
            break
        _bail_if_too_many(len(blocks) + 1, limits)
        body_start = begin + len(_BEGIN)
        end = text.find(_END, body_start)
        if end < 0:
            raise _malformed(f"PEM block at offset {begin} has no -----END CERTIFICATE----- line")
        der = _b64decode(
            text[body_start:end], spaces=spaces, what=f"the PEM block at offset {begin}"
        )
        blocks.append(_single_der(der, f"the PEM block at offset {begin}"))
        pos = end + len(_END)
    if not blocks:
        raise _malformed("no -----BEGIN CERTIFICATE----- line")
    return blocks


def _percent_pem(value: str, limits: _Limits) -> list[bytes]:
    return _pem_blocks(_percent_decode(value), limits)


def _one(found: list[bytes], what: str) -> bytes:
    if len(found) != 1:
        raise _malformed(f"{what} carries {len(found)} certificates where the proxy sends one")
    return found[0]


# -- per-source value decoders ---------------------------------------------------------

_Decoded = tuple[bytes | None, list[bytes]]


def _decode(source: str, value: str, limits: _Limits, notes: list[str]) -> _Decoded:
    decoder = _DECODERS[source]
    return decoder(value, limits, notes)


def _leaf_and_rest(found: list[bytes]) -> _Decoded:
    return found[0], found[1:]


def _decode_base64_der(value: str, limits: _Limits, notes: list[str]) -> _Decoded:
    """Azure/Cloudflare/Caddy: base64 of one DER certificate."""
    text = value.strip(_HEADER_SPACE)
    if not text:
        return None, []
    try:  # the usual value: nothing but the alphabet, so none of the checks below can fail
        der = binascii.a2b_base64(text, strict_mode=True)
    except ValueError:  # binascii.Error too; the checks below say what is wrong
        der = b""
    if der:
        return _single_der(der, "the value"), []
    _check_text(text)
    if "," in text:
        raise _malformed(
            "holds a comma: one base64 certificate expected (two header instances joined?)"
        )
    return _single_der(_b64decode(text, spaces=_HEADER_SPACE, what="the value"), "the value"), []


def _decode_azure(value: str, limits: _Limits, notes: list[str]) -> _Decoded:
    """App Service: base64 DER.

    Also PEM and percent-encoded PEM, which an Application Gateway rewrite of
    ``{var_client_certificate}`` into ``X-ARR-ClientCert`` may produce (its wire form is
    undocumented); neither can be confused with base64, which has no ``-`` or ``%``.
    """
    text = value.strip(_HEADER_SPACE)
    if not (text.startswith("-----") or "%" in text):
        return _decode_base64_der(text, limits, notes)
    _check_text(text)
    if "%" in text:
        notes.append("read a percent-encoded PEM (Application Gateway?)")
        text = _percent_decode(text)
    return _one(_pem_blocks(text, limits), "the PEM"), []


def _decode_nginx(value: str, limits: _Limits, notes: list[str]) -> _Decoded:
    """``$ssl_client_escaped_cert`` (percent-encoded PEM) or legacy ``$ssl_client_cert``
    (PEM with LF+TAB folding, or with the folds turned into spaces by the HTTP stack)."""
    text = value.strip(_HEADER_SPACE)
    if not text:
        return None, []
    _check_text(text, folded=True)
    if "%" in text:
        return _one(_pem_blocks(_percent_decode(text), limits), "the PEM"), []
    notes.append("read the legacy $ssl_client_cert form (PEM with folded lines)")
    return _one(_pem_blocks(text, limits), "the PEM"), []


def _decode_apache(value: str, limits: _Limits, notes: list[str]) -> _Decoded:
    """mod_headers ``%{SSL_CLIENT_CERT}s``: PEM with CR/LF as spaces; ``(null)`` when absent."""
    text = value.strip(_HEADER_SPACE)
    if text == "(null)":
        notes.append("(null): Apache had no client certificate")
        return None, []
    if not text:
        return None, []
    _check_text(text)
    decoded = _percent_decode(text) if "%" in text else text
    return _one(_pem_blocks(decoded, limits), "the PEM"), []


def _decode_haproxy(value: str, limits: _Limits, notes: list[str]) -> _Decoded:
    """``%[ssl_c_der,base64]``; several DERs back to back are split by their framing."""
    text = value.strip(_HEADER_SPACE)
    if not text:
        return None, []
    _check_text(text)
    data = _b64decode(text, spaces=_HEADER_SPACE, what="the value")
    return _leaf_and_rest(_split_ders(data, "the value", limits))


def _decode_aws_alb(value: str, limits: _Limits, notes: list[str]) -> _Decoded:
    """URL-encoded PEM "with +=/ as safe characters": ``+`` is literal, so ``unquote`` only."""
    text = value.strip(_HEADER_SPACE)
    if not text:
        return None, []
    _check_text(text)
    return _leaf_and_rest(_pem_blocks(_percent_decode(text), limits))


def _decode_traefik(value: str, limits: _Limits, notes: list[str]) -> _Decoded:
    """Comma-joined base64 DER, leaf first; before v2.9.2 each item was also QueryEscaped."""
    text = value.strip(_HEADER_SPACE)
    if not text:
        return None, []
    _check_text(text)
    items = text.split(",")
    _bail_if_too_many(len(items), limits)
    found: list[bytes] = []
    for number, item in enumerate(items, 1):
        item = item.strip(_HEADER_SPACE)
        what = f"item {number}"
        if not item:
            raise _malformed(f"{what} of the comma-separated list is empty")
        if "%" in item:
            item = _percent_decode(item)
        found.append(_single_der(_b64decode(item, spaces="", what=what), what))
    return _leaf_and_rest(found)


def _sf_binary(member: str, what: str) -> bytes:
    """An RFC 8941 Byte Sequence ``:base64:`` (padding may be omitted, as §4.2.7 allows)."""
    text = member.strip(_HEADER_SPACE)
    if len(text) < 2 or text[0] != ":" or text[-1] != ":":
        raise _malformed(f"{what} is not an RFC 9440 byte sequence ':<base64 DER>:'")
    inner = text[1:-1]
    if ":" in inner:
        raise _malformed(f"{what}: ':' inside the byte sequence")
    if ";" in inner:
        raise _malformed(f"{what}: structured-field parameters are not accepted")
    if len(inner) % 4:
        inner += "=" * (-len(inner) % 4)
    return _single_der(_b64decode(inner, spaces="", what=what), what)


def _decode_rfc9440(value: str, limits: _Limits, notes: list[str]) -> _Decoded:
    """``Client-Cert``: a singleton byte sequence; a list means joined instances."""
    text = value.strip(_HEADER_SPACE)
    if not text:
        return None, []
    _check_text(text)
    if "," in text:
        raise _malformed("Client-Cert is a singleton and holds a list (two instances joined?)")
    return _sf_binary(text, "the value"), []


def _sf_list(value: str, limits: _Limits) -> list[bytes]:
    """An RFC 8941 List of Byte Sequences (``Client-Cert-Chain``)."""
    text = value.strip(_HEADER_SPACE)
    if not text:
        return []
    _check_text(text)
    members = text.split(",")
    _bail_if_too_many(len(members), limits)
    return [_sf_binary(m, f"list member {n}") for n, m in enumerate(members, 1)]


def _decode_direct_pem(value: str, limits: _Limits, notes: list[str]) -> _Decoded:
    """PEM text as a server holds it (WSGI environ, ASGI tls extension)."""
    if not value.strip(_ANY_SPACE):
        return None, []
    _check_text(value.replace("\n", "").replace("\r", ""))
    return _leaf_and_rest(_pem_blocks(value, limits))


# -- Envoy XFCC ------------------------------------------------------------------------

_XFCC_KEYS = frozenset({"by", "hash", "cert", "chain", "subject", "uri", "dns"})
_XFCC_SINGLE = frozenset({"hash", "cert", "chain", "subject"})
_XFCC_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def _parse_xfcc(value: str) -> list[list[tuple[str, str]]]:
    """Elements (``,``) of ``key=value`` pairs (``;``); keys lower-cased, quotes undone.

    One pass, index only moves forward. Quoted values may hold ``,;=``; ``\\"`` is a
    quote, ``\\\\`` a backslash, any other backslash pair is kept (RFC 2253 subjects).
    OWS around separators is tolerated; a quote in an unquoted value, an unterminated
    quote, an empty element or a pair without ``=`` is refused.
    """
    elements: list[list[tuple[str, str]]] = []
    pairs: list[tuple[str, str]] = []
    i, n = 0, len(value)
    while True:
        while i < n and value[i] in _HEADER_SPACE:
            i += 1
        start = i
        while i < n and value[i] not in '=;,"':
            i += 1
        key = value[start:i].strip(_HEADER_SPACE)
        if i >= n or value[i] != "=" or not key:
            what = "an empty XFCC element" if not key and (i >= n or value[i] in ",;") else None
            raise _malformed(what or f"XFCC: expected key=value at offset {start}")
        if not all(ch in _XFCC_KEY_CHARS for ch in key):
            raise _malformed(f"XFCC: bad key {key[:40]!r} at offset {start}")
        i += 1
        if i < n and value[i] == '"':
            opened = i
            i += 1
            parts: list[str] = []
            while True:
                if i >= n:
                    raise _malformed(f"XFCC: quoted value opened at offset {opened} never closes")
                ch = value[i]
                if ch == "\\":
                    if i + 1 >= n:
                        raise _malformed(
                            f"XFCC: quoted value opened at offset {opened} never closes"
                        )
                    following = value[i + 1]
                    parts.append(following if following in '"\\' else "\\" + following)
                    i += 2
                elif ch == '"':
                    i += 1
                    break
                else:
                    parts.append(ch)
                    i += 1
            text = "".join(parts)
            while i < n and value[i] in _HEADER_SPACE:
                i += 1
            if i < n and value[i] not in ";,":
                raise _malformed(f"XFCC: {value[i]!r} after a quoted value at offset {i}")
        else:
            start = i
            while i < n and value[i] not in ";,":
                if value[i] == '"':
                    raise _malformed(f"XFCC: double quote inside an unquoted value at offset {i}")
                i += 1
            text = value[start:i].strip(_HEADER_SPACE)
        pairs.append((key.lower(), text))
        if i >= n:
            elements.append(pairs)
            return elements
        if value[i] == ",":
            elements.append(pairs)
            pairs = []
        i += 1


def _decode_envoy(value: str, limits: _Limits, notes: list[str]) -> _Decoded:
    """XFCC: the whole header must parse; only the LAST element is used.

    With ``APPEND_FORWARD`` every element left of the last came from further away and may
    be client-written; the last one is the adjacent Envoy's. ``Cert``/``Chain`` are PEM
    with ``\\n``, space, ``+``, ``/``, ``=`` percent-encoded; ``Chain`` includes the leaf.
    """
    text = value.strip(_HEADER_SPACE)
    if not text:
        return None, []
    _check_text(text)
    elements = _parse_xfcc(text)
    if len(elements) > 1:
        notes.append(f"took the last of {len(elements)} XFCC elements (the nearest proxy's)")
    values: dict[str, str] = {}
    for key, item in elements[-1]:
        if key in _XFCC_SINGLE and key in values:
            raise _malformed(f"the last XFCC element has two {key.capitalize()} keys")
        values.setdefault(key, item)
    leaf: bytes | None = None
    chain: list[bytes] = []
    if "cert" in values:
        leaf = _one(_in_header("Cert", _percent_pem, values["cert"], limits), "Cert")
    if "chain" in values:
        chain = _in_header("Chain", _percent_pem, values["chain"], limits)
        if leaf is None:
            leaf = chain[0]
        elif chain[0] != leaf:
            raise _malformed("XFCC Chain does not start with the Cert certificate")
        chain = chain[1:]
    if leaf is None:
        present = sorted(k.capitalize() for k in values if k in _XFCC_KEYS) or ["no known key"]
        notes.append(
            f"the last XFCC element carries no Cert or Chain (only {', '.join(present)}); "
            "set Envoy's set_current_client_cert_details cert: true to forward the certificate"
        )
    return leaf, chain


def _looks_like_xfcc(text: str) -> bool:
    equals = text.find("=")
    return equals > 0 and text[:equals].strip(_HEADER_SPACE).lower() in _XFCC_KEYS


def _decode_auto(value: str, limits: _Limits, notes: list[str]) -> _Decoded:
    """Recognise the encoding of one value; each shape is unambiguous from its first bytes.

    ``:…:`` RFC 9440 (a list: leaf first), ``key=…`` XFCC, ``(null)`` Apache's absent,
    ``%`` percent-encoded PEM or old Traefik base64 (decoded once), ``-----BEGIN`` PEM,
    a comma list of base64 (Traefik), else base64 of one or more DERs.
    """
    text = value.strip(_HEADER_SPACE)
    if not text:
        return None, []
    if text == "(null)":
        return _decode_apache(text, limits, notes)
    if text.startswith("-----BEGIN") and "%" not in text:
        # A PEM pasted whole (``explain --header "$(cat cert.pem)"``) keeps its newlines.
        _check_text(text.replace("\r\n", "\n").replace("\n", "\n\t"), folded=True)
        notes.append("auto: PEM")
        return _leaf_and_rest(_pem_blocks(text, limits))
    _check_text(text, folded=True)
    if text.startswith(":"):
        notes.append("auto: RFC 9440 byte sequence(s)")
        return _leaf_and_rest(_sf_list(text, limits))
    if _looks_like_xfcc(text):
        notes.append("auto: Envoy XFCC")
        return _decode_envoy(text, limits, notes)
    if "%" in text and "-----BEGIN" in text:
        notes.append("auto: percent-encoded PEM")
        return _leaf_and_rest(_pem_blocks(_percent_decode(text), limits))
    if "," in text or "%" in text:
        notes.append("auto: comma-separated base64 certificates")
        return _decode_traefik(text, limits, notes)
    notes.append("auto: base64 DER")
    return _decode_haproxy(text, limits, notes)


def _decode_gcp(value: str, limits: _Limits, notes: list[str]) -> _Decoded:
    return _decode_rfc9440(value, limits, notes)


_DECODERS = {
    "azure": _decode_azure,
    "nginx": _decode_nginx,
    "envoy": _decode_envoy,
    "rfc9440": _decode_rfc9440,
    "aws-alb": _decode_aws_alb,
    "gcp": _decode_gcp,
    "traefik": _decode_traefik,
    "haproxy": _decode_haproxy,
    "apache": _decode_apache,
    "cloudflare": _decode_base64_der,
    "caddy": _decode_base64_der,
    "wsgi-environ": _decode_direct_pem,
    "asgi-tls": _decode_direct_pem,
    "auto": _decode_auto,
}


def _decode_chain(source: str, value: str, limits: _Limits, notes: list[str]) -> list[bytes]:
    """A chain header: an RFC 9440 list for rfc9440/gcp, else the source's own encoding."""
    _check_size(value, limits)
    if source in ("rfc9440", "gcp"):
        return _sf_list(value, limits)
    leaf, rest = _decode(source, value, limits, notes)
    return [] if leaf is None else [leaf, *rest]


# -- verify headers --------------------------------------------------------------------


_VERIFY_WORDS: Mapping[str, Mapping[str, bool | None]] = {
    # mod_ssl GENEROUS: accepted without a trusted CA (optional_no_ca), so not verified.
    _STATUS: {"SUCCESS": True, "NONE": None, "GENEROUS": False},
    _BOOLEAN: {"TRUE": True, "FALSE": False, "1": True, "0": False},
    _ANY: {"SUCCESS": True, "NONE": None, "GENEROUS": False, "TRUE": True, "FALSE": False},
    _INTEGER: {"": None},
}


def _interpret_verify(dialect: str, raw: str, name: str, notes: list[str]) -> bool | None:
    """The proxy's verdict; anything unrecognised is None (says nothing), never True."""
    upper = raw.upper()
    words = _VERIFY_WORDS[dialect]
    if upper in words:
        verdict = words[upper]
    elif dialect in (_STATUS, _ANY) and upper.startswith("FAILED"):
        verdict = False
    elif dialect == _INTEGER and raw.isascii() and raw.isdigit():
        verdict = int(raw) == 0  # OpenSSL's X509_V_OK
    else:
        notes.append(f"{name}: unrecognised value {raw[:80]!r}; taken as saying nothing")
        return None
    if raw:
        notes.append(f"{name} says {raw[:200]}")
    return verdict


def _gcp_notes(pairs: list[tuple[str, str]], limits: _Limits, notes: list[str]) -> None:
    for name in (_GCP_PRESENT_HEADER, _GCP_ERROR_HEADER):
        found = [v for n, v in pairs if _same_header(n, name)]
        if len(found) == 1 and len(found[0]) <= 512 and found[0].isprintable():
            notes.append(f"{name}: {found[0].strip()}")


# -- direct TLS: WSGI environ and ASGI scope -------------------------------------------


def _read_wsgi(config: SourceConfig, environ: Mapping[str, Any] | None) -> Forwarded:
    """mod_ssl's ``SSL_CLIENT_CERT`` (+ ``SSL_CLIENT_CERT_CHAIN_n``, ``SSL_CLIENT_VERIFY``).

    They are in the environ with ``SSLOptions +StdEnvVars +ExportCertData``; without them
    mod_wsgi's ``mod_ssl.var_lookup`` callable is asked for the same variables.
    """
    if environ is None:
        return Forwarded(None, (), None, None, ("no WSGI environ was given",))
    if not isinstance(environ, Mapping):
        raise _malformed(f"the WSGI environ must be a mapping, not {type(environ).__name__}")
    limits = _Limits(config.max_header_bytes, config.max_chain_length)
    lookup = environ.get("mod_ssl.var_lookup")
    use_lookup = "SSL_CLIENT_CERT" not in environ and callable(lookup)
    notes = ["read mod_ssl variables through mod_ssl.var_lookup"] if use_lookup else []

    def variable(name: str) -> str | None:
        if use_lookup:
            try:
                found = lookup(name)  # type: ignore[misc]
            except Exception as exc:
                raise _malformed(f"mod_ssl.var_lookup({name!r}) failed: {exc}") from None
        else:
            found = environ.get(name)
        if found is None or found == "":
            return None
        text = _in_header(name, _as_text, found, "the variable")
        _in_header(name, _check_size, text, limits)
        return text

    pem = variable("SSL_CLIENT_CERT")
    verify = variable("SSL_CLIENT_VERIFY")
    verified = None
    if verify is not None:
        verify = verify.strip()
        _in_header("SSL_CLIENT_VERIFY", _check_text, verify)
        verified = _interpret_verify(_STATUS, verify, "SSL_CLIENT_VERIFY", notes)
    if pem is None:
        notes.append("no SSL_CLIENT_CERT in the WSGI environ (SSLOptions +ExportCertData?)")
        return Forwarded(None, (), verified, verify, tuple(notes))
    leaf = _in_header("SSL_CLIENT_CERT", _one_pem, pem, limits)
    chain: list[bytes] = []
    for index in range(limits.max_chain_length + 2):
        name = f"SSL_CLIENT_CERT_CHAIN_{index}"
        item = variable(name)
        if item is None:
            break
        chain.append(_in_header(name, _one_pem, item, limits))
    if chain and chain[0] == leaf:
        chain = chain[1:]
        notes.append("dropped the leaf repeated as SSL_CLIENT_CERT_CHAIN_0")
    _check_chain_length(len(chain), limits)
    return Forwarded(leaf, tuple(chain), verified, verify, tuple(notes))


def _one_pem(text: str, limits: _Limits) -> bytes:
    _check_size(text, limits)
    return _one(_pem_blocks(text, limits), "the PEM")


def _read_asgi(config: SourceConfig, scope: Mapping[str, Any] | None) -> Forwarded:
    """The ASGI TLS extension: ``client_cert_chain`` (PEM, client first), ``client_cert_error``.

    The spec makes ``client_cert_error`` None when the chain verified or is absent, so a
    chain with no error is the server's "verified".
    """
    if scope is None:
        return Forwarded(None, (), None, None, ("no ASGI scope was given",))
    if not isinstance(scope, Mapping):
        raise _malformed(f"the ASGI scope must be a mapping, not {type(scope).__name__}")
    extensions = scope.get("extensions")
    tls = extensions.get("tls") if isinstance(extensions, Mapping) else None
    if not isinstance(tls, Mapping):
        note = (
            "the ASGI server provides no 'tls' extension (uvicorn, hypercorn and daphne do "
            "not); use a proxy source instead"
        )
        return Forwarded(None, (), None, None, (note,))
    limits = _Limits(config.max_header_bytes, config.max_chain_length)
    raw_chain = tls.get("client_cert_chain") or ()
    if isinstance(raw_chain, (str, bytes)):
        raise _malformed("tls client_cert_chain must be a list of PEM strings, not one string")
    pems: list[str] = []
    try:
        for item in raw_chain:
            pems.append(_as_text(item, "a client_cert_chain entry"))
            _bail_if_too_many(len(pems), limits)
    except SourceError:
        raise
    except Exception as exc:
        raise _malformed(f"tls client_cert_chain cannot be read: {exc}") from None
    error = tls.get("client_cert_error")
    raw_error = None if error is None else str(error)[:500]
    if not pems:
        note = "no client certificate in the TLS extension"
        return Forwarded(None, (), None, raw_error, (note,))
    ders = [
        _in_header(f"client_cert_chain[{number}]", _one_pem, pem, limits)
        for number, pem in enumerate(pems)
    ]
    chain = ders[1:]
    _check_chain_length(len(chain), limits)
    if raw_error is None:
        verified: bool | None = True
        note = "the ASGI server reports no client_cert_error: verified"
    else:
        verified = False
        note = f"the ASGI server reports client_cert_error {raw_error!r}"
    return Forwarded(ders[0], tuple(chain), verified, raw_error, (note,))
