"""nginx (``nginx``) and Apache mod_ssl/mod_headers (``apache``): PEM in a header.

nginx sends ``$ssl_client_escaped_cert`` (percent-encoded PEM) or the legacy
``$ssl_client_cert`` (PEM with folded lines); Apache ``%{SSL_CLIENT_CERT}s`` (PEM with
CR/LF as spaces, ``(null)`` when absent). Both say ``SUCCESS``/``FAILED:…``/``NONE`` in
``X-SSL-Client-Verify``, which is what ``export``'s nginx lines fill.

Must not import ``registry``, ``config`` or ``read``, nor ``language/`` or ``evaluation/``.
"""

from __future__ import annotations

from policyengine.request.der import pem_blocks
from policyengine.request.sources.record import Decoded, Limits, Source
from policyengine.request.sources.text import HEADER_SPACE, check_text, one, percent_decode


def decode_nginx(value: str, limits: Limits, notes: list[str]) -> Decoded:
    """``$ssl_client_escaped_cert`` (percent-encoded PEM) or legacy ``$ssl_client_cert``
    (PEM with LF+TAB folding, or with the folds turned into spaces by the HTTP stack)."""
    text = value.strip(HEADER_SPACE)
    if not text:
        return None, []
    check_text(text, folded=True)
    if "%" in text:
        return one(pem_blocks(percent_decode(text), limits), "the PEM"), []
    notes.append("read the legacy $ssl_client_cert form (PEM with folded lines)")
    return one(pem_blocks(text, limits), "the PEM"), []


def decode_apache(value: str, limits: Limits, notes: list[str]) -> Decoded:
    """mod_headers ``%{SSL_CLIENT_CERT}s``: PEM with CR/LF as spaces; ``(null)`` when absent."""
    text = value.strip(HEADER_SPACE)
    if text == "(null)":
        notes.append("(null): Apache had no client certificate")
        return None, []
    if not text:
        return None, []
    check_text(text)
    decoded = percent_decode(text) if "%" in text else text
    return one(pem_blocks(decoded, limits), "the PEM"), []


_NGINX = frozenset({"nginx"})

NGINX = Source(
    "nginx",
    "X-SSL-Client-Cert",
    decode_nginx,
    verify_header="X-SSL-Client-Verify",
    native_to=_NGINX,
    fed_by=_NGINX,
    verify_fed_by=_NGINX,
)

APACHE = Source(
    "apache",
    "X-SSL-Client-Cert",
    decode_apache,
    verify_header="X-SSL-Client-Verify",
    fed_by=_NGINX,
    verify_fed_by=_NGINX,
)
