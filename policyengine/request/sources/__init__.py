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

The package: ``record.py`` (the :class:`Source` record, :class:`Forwarded`), one module per
proxy family (``azure``, ``nginx`` with Apache, ``envoy``, ``rfc9440`` with GCP, ``aws``,
``traefik``, ``haproxy``, ``cloudflare`` with Caddy, ``direct`` for ``wsgi-environ`` and
``asgi-tls``, ``auto``), ``registry.py`` (every record by name), ``config.py``
(:class:`SourceConfig`, trusted proxies), ``headers.py``, ``text.py`` and ``verify.py``
(what the decoders share), ``read.py`` (:func:`read_forwarded`) and ``memo.py``
(:class:`HeaderMemo`). Bytes are framed by ``request/der.py``; certificates are parsed
by ``certificate.py``, which receives the bytes this package returns.

Must not import ``language/`` or ``evaluation/``, nor cryptography.
"""

from __future__ import annotations

from policyengine.errors import (
    CHAIN_TOO_LONG,
    DUPLICATE_HEADER,
    HEADER_TOO_LARGE,
    MALFORMED_HEADER,
    SourceError,
)
from policyengine.errors import SOURCE_REASONS as REASONS
from policyengine.request.sources.config import SourceConfig, trusted_from_anywhere
from policyengine.request.sources.memo import HeaderMemo
from policyengine.request.sources.read import decode_header_value, read_forwarded
from policyengine.request.sources.record import Forwarded, Source
from policyengine.request.sources.registry import (
    SOURCES,
    default_header_names,
    default_trusted_proxies,
    source_named,
)

__all__ = [
    "CHAIN_TOO_LONG",
    "DUPLICATE_HEADER",
    "HEADER_TOO_LARGE",
    "MALFORMED_HEADER",
    "REASONS",
    "SOURCES",
    "Forwarded",
    "HeaderMemo",
    "Source",
    "SourceConfig",
    "SourceError",
    "decode_header_value",
    "default_header_names",
    "default_trusted_proxies",
    "read_forwarded",
    "source_named",
    "trusted_from_anywhere",
]
