"""``auto``: recognise the encoding of one value from its first bytes.

For ``explain``/``inspect --header`` and deployments that do not know their proxy: each
shape is unambiguous from its start (RFC 9440 byte sequences, XFCC, Apache's ``(null)``,
percent-encoded PEM, PEM, Traefik's comma list, base64 DER). The header is ASP.NET Core's
``CertificateForwardingOptions`` default, ``X-Client-Cert``.

Must not import ``registry``, ``config`` or ``read``, nor ``language/`` or ``evaluation/``.
"""

from __future__ import annotations

from policyengine.request.der import pem_blocks
from policyengine.request.sources.envoy import decode_envoy, looks_like_xfcc
from policyengine.request.sources.haproxy import decode_haproxy
from policyengine.request.sources.nginx import decode_apache
from policyengine.request.sources.record import ANY, Decoded, Limits, Source
from policyengine.request.sources.rfc9440 import sf_list
from policyengine.request.sources.text import (
    HEADER_SPACE,
    check_text,
    leaf_and_rest,
    percent_decode,
)
from policyengine.request.sources.traefik import decode_traefik


def decode_auto(value: str, limits: Limits, notes: list[str]) -> Decoded:
    """Recognise the encoding of one value; each shape is unambiguous from its first bytes.

    ``:…:`` RFC 9440 (a list: leaf first), ``key=…`` XFCC, ``(null)`` Apache's absent,
    ``%`` percent-encoded PEM or old Traefik base64 (decoded once), ``-----BEGIN`` PEM,
    a comma list of base64 (Traefik), else base64 of one or more DERs.
    """
    text = value.strip(HEADER_SPACE)
    if not text:
        return None, []
    if text == "(null)":
        return decode_apache(text, limits, notes)
    if text.startswith("-----BEGIN") and "%" not in text:
        # A PEM pasted whole (``explain --header "$(cat cert.pem)"``) keeps its newlines.
        check_text(text.replace("\r\n", "\n").replace("\n", "\n\t"), folded=True)
        notes.append("auto: PEM")
        return leaf_and_rest(pem_blocks(text, limits))
    check_text(text, folded=True)
    if text.startswith(":"):
        notes.append("auto: RFC 9440 byte sequence(s)")
        return leaf_and_rest(sf_list(text, limits))
    if looks_like_xfcc(text):
        notes.append("auto: Envoy XFCC")
        return decode_envoy(text, limits, notes)
    if "%" in text and "-----BEGIN" in text:
        notes.append("auto: percent-encoded PEM")
        return leaf_and_rest(pem_blocks(percent_decode(text), limits))
    if "," in text or "%" in text:
        notes.append("auto: comma-separated base64 certificates")
        return decode_traefik(text, limits, notes)
    notes.append("auto: base64 DER")
    return decode_haproxy(text, limits, notes)


AUTO = Source(
    "auto",
    "X-Client-Cert",
    decode_auto,
    verify_dialect=ANY,
    fed_by=frozenset({"nginx", "caddy", "traefik"}),
)
