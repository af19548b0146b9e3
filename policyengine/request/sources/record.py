"""The Source record: everything one proxy (or the TLS layer) means to this library.

A :class:`Source` is a frozen value: the header names the proxy uses, how it encodes the
certificate and the chain, how it says what it verified, which peers are believed by
default, and the notes and hints the rest of the library gives about it (lint's
renegotiation warning, the loader's "any peer" hint, what ``export`` knows of it). Each
proxy family's module builds its records; ``registry.py`` lists them; no other module
compares a source's name with a literal.

Also here: :class:`Forwarded` (what reading one request yields) and :class:`Limits`.

Must not import the proxy modules, ``registry``, ``config`` or ``read`` (they import
this), nor ``language/`` or ``evaluation/``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from policyengine.request.sources.config import SourceConfig

__all__ = [
    "ANY",
    "ANYWHERE",
    "BOOLEAN",
    "INTEGER",
    "PRIVATE_AND_LOOPBACK",
    "STATUS",
    "Decoded",
    "Forwarded",
    "Limits",
    "Source",
]

STATUS = "status"  # SUCCESS / FAILED:reason / NONE / GENEROUS (nginx, mod_ssl, App Gateway)
INTEGER = "integer"  # OpenSSL verify error number, 0 = OK (HAProxy ssl_c_verify)
BOOLEAN = "boolean"  # true / false (GCP client_cert_chain_verified, Cloudflare cf-cert-verified)
ANY = "any"  # auto: status words or booleans; a bare number is ambiguous and not read

PRIVATE_AND_LOOPBACK: tuple[str, ...] = (
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "::1/128",
    "fc00::/7",
)
ANYWHERE: tuple[str, ...] = ("0.0.0.0/0", "::/0")


class Limits(NamedTuple):
    max_header_bytes: int
    max_chain_length: int


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


Decoded = tuple[bytes | None, list[bytes]]
"""A decoded certificate header: the leaf (None when the value says there is none) and
the certificates after it."""

ValueDecoder = Callable[[str, Limits, list[str]], Decoded]
ChainDecoder = Callable[[str, Limits], list[bytes]]
DirectReader = Callable[["SourceConfig", Mapping[str, Any] | None], Forwarded]
ExtraNotes = Callable[[object, Limits, list[str]], None]


@dataclass(frozen=True, slots=True)
class Source:
    """One certificate source, as a deployment names it in ``certificate.source``.

    ``decode`` reads one certificate-header value; ``decode_chain`` the chain header when
    that has its own encoding (else ``decode`` reads it too). ``read_direct`` is set for
    the sources that read the server's own TLS state instead of headers (then no trusted
    proxy applies and ``reads_scope`` says whether the ASGI scope, not the WSGI environ,
    is what it reads).
    """

    name: str
    header: str | None
    """The certificate header read by default (None for direct-TLS sources)."""
    decode: ValueDecoder
    chain_header: str | None = None
    verify_header: str | None = None
    decode_chain: ChainDecoder | None = None
    verify_dialect: str = STATUS
    trusted_proxies: tuple[str, ...] = PRIVATE_AND_LOOPBACK
    """The peers believed when the config names none."""
    read_direct: DirectReader | None = None
    reads_scope: bool = False
    chain_instances_joined: bool = False
    """The chain header may occur several times, its field lines joined (RFC 9440)."""
    keep_whole: bool = True
    """Whether a request's whole result may be remembered (not when notes read other
    headers, as gcp's do)."""
    absent_note: str | None = None
    """Said when the certificate header is absent, after "no <header> header"."""
    leaf_from_chain: str | None = None
    """Without a certificate header, take the leaf from the chain header's head; the words
    in parentheses of the note saying so."""
    extra_notes: ExtraNotes | None = None
    """Notes read from other headers the proxy sends, given the request's headers."""
    anywhere_hint: str | None = None
    """The loader's hint when this source believes any peer by default."""
    renegotiates: bool = False
    """Optional certificates or exclusion paths make the front end renegotiate TLS (lint)."""
    native_to: frozenset[str] = frozenset()
    """The ``export`` target families whose own header this is, name and encoding:
    ``app-service`` (the azure-cli, bicep and arm targets), ``nginx``, ``caddy``,
    ``traefik`` and ``envoy`` (whose ext_authz check request the decision server then
    reads the XFCC header of, instead of the peer certificate)."""
    fed_by: frozenset[str] = frozenset()
    """The ``export`` targets whose certificate header this source reads as it is: nginx
    for the sources whose decoder reads ``$ssl_client_escaped_cert`` (percent-encoded
    PEM), so nginx can feed them without the policy changing. The others want base64 DER,
    RFC 9440 byte sequences or an XFCC element, which plain nginx has no variable for.
    ``caddy`` for the sources that read one base64 DER certificate (Caddy's
    ``{http.request.tls.client.certificate_der_base64}``), ``traefik`` for those that read
    Traefik's comma-joined base64 DER list (``passTLSClientCert`` with ``pem: true``)."""
    verify_fed_by: frozenset[str] = frozenset()
    """The ``export`` targets whose verify header this source reads as it is: nginx for
    the sources whose verify header reads ``SUCCESS`` / ``FAILED:…`` / ``NONE``, which is
    what ``$ssl_client_verify`` holds."""

    def context(
        self, environ: Mapping[str, Any] | None, scope: Mapping[str, Any] | None
    ) -> Mapping[str, Any] | None:
        """What :func:`read_forwarded` reads besides headers: the scope or the environ."""
        return scope if self.reads_scope else environ
