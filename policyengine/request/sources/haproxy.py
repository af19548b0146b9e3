"""HAProxy (``haproxy``): ``%[ssl_c_der,base64]``, the chain as DERs back to back.

``X-SSL-Client-Verify`` carries ``ssl_c_verify``, OpenSSL's verify error number (0: OK).
``X-SSL-Client-Chain`` is this library's choice of name (HAProxy has no example).

Must not import ``registry``, ``config`` or ``read``, nor ``language/`` or ``evaluation/``.
"""

from __future__ import annotations

from policyengine.request.der import b64decode_strict, split_ders
from policyengine.request.sources.record import INTEGER, Decoded, Limits, Source
from policyengine.request.sources.text import HEADER_SPACE, check_text, leaf_and_rest


def decode_haproxy(value: str, limits: Limits, notes: list[str]) -> Decoded:
    """``%[ssl_c_der,base64]``; several DERs back to back are split by their framing."""
    text = value.strip(HEADER_SPACE)
    if not text:
        return None, []
    check_text(text)
    data = b64decode_strict(text, spaces=HEADER_SPACE, what="the value")
    return leaf_and_rest(split_ders(data, "the value", limits))


HAPROXY = Source(
    "haproxy",
    "X-SSL-Client-Cert",
    decode_haproxy,
    chain_header="X-SSL-Client-Chain",
    verify_header="X-SSL-Client-Verify",
    verify_dialect=INTEGER,
    fed_by=frozenset({"caddy"}),
)
