"""Traefik (``traefik``): ``X-Forwarded-Tls-Client-Cert``, comma-joined base64 DER.

The leaf comes first and the chain follows in the same header; before v2.9.2 each item
was also QueryEscaped, which is decoded once.

Must not import ``registry``, ``config`` or ``read``, nor ``language/`` or ``evaluation/``.
"""

from __future__ import annotations

from policyengine.request.der import b64decode_strict, bail_if_too_many, single_der
from policyengine.request.sources.record import Decoded, Limits, Source
from policyengine.request.sources.text import (
    HEADER_SPACE,
    check_text,
    leaf_and_rest,
    malformed,
    percent_decode,
)


def decode_traefik(value: str, limits: Limits, notes: list[str]) -> Decoded:
    """Comma-joined base64 DER, leaf first; before v2.9.2 each item was also QueryEscaped."""
    text = value.strip(HEADER_SPACE)
    if not text:
        return None, []
    check_text(text)
    items = text.split(",")
    bail_if_too_many(len(items), limits)
    found: list[bytes] = []
    for number, item in enumerate(items, 1):
        item = item.strip(HEADER_SPACE)
        what = f"item {number}"
        if not item:
            raise malformed(f"{what} of the comma-separated list is empty")
        if "%" in item:
            item = percent_decode(item)
        found.append(single_der(b64decode_strict(item, spaces="", what=what), what))
    return leaf_and_rest(found)


TRAEFIK = Source(
    "traefik",
    "X-Forwarded-Tls-Client-Cert",
    decode_traefik,
    native_to=frozenset({"traefik"}),
    fed_by=frozenset({"traefik"}),
)
