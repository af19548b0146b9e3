"""RFC 9440 (``rfc9440``) and Google Cloud load balancers (``gcp``): byte sequences.

``Client-Cert`` is an RFC 8941 Byte Sequence ``:base64:``; ``Client-Cert-Chain`` a List of
them, which may arrive over several field lines (joined here). GCP's mTLS custom headers
use the same encoding, say ``X-Client-Cert-Chain-Verified`` as a boolean, and have two
more headers read for notes only (so a gcp result is never remembered whole).

Must not import ``registry``, ``config`` or ``read``, nor ``language/`` or ``evaluation/``.
"""

from __future__ import annotations

from policyengine.request.der import b64decode_strict, bail_if_too_many, single_der
from policyengine.request.sources.headers import normalise_headers, same_header
from policyengine.request.sources.record import BOOLEAN, Decoded, Limits, Source
from policyengine.request.sources.text import HEADER_SPACE, check_text, malformed

_GCP_PRESENT_HEADER = "X-Client-Cert-Present"
_GCP_ERROR_HEADER = "X-Client-Cert-Error"
"""Read for notes only, under the names of Google's own example configuration."""


def sf_binary(member: str, what: str) -> bytes:
    """An RFC 8941 Byte Sequence ``:base64:`` (padding may be omitted, as §4.2.7 allows)."""
    text = member.strip(HEADER_SPACE)
    if len(text) < 2 or text[0] != ":" or text[-1] != ":":
        raise malformed(f"{what} is not an RFC 9440 byte sequence ':<base64 DER>:'")
    inner = text[1:-1]
    if ":" in inner:
        raise malformed(f"{what}: ':' inside the byte sequence")
    if ";" in inner:
        raise malformed(f"{what}: structured-field parameters are not accepted")
    if len(inner) % 4:
        inner += "=" * (-len(inner) % 4)
    return single_der(b64decode_strict(inner, spaces="", what=what), what)


def decode_rfc9440(value: str, limits: Limits, notes: list[str]) -> Decoded:
    """``Client-Cert``: a singleton byte sequence; a list means joined instances."""
    text = value.strip(HEADER_SPACE)
    if not text:
        return None, []
    check_text(text)
    if "," in text:
        raise malformed("Client-Cert is a singleton and holds a list (two instances joined?)")
    return sf_binary(text, "the value"), []


def sf_list(value: str, limits: Limits) -> list[bytes]:
    """An RFC 8941 List of Byte Sequences (``Client-Cert-Chain``)."""
    text = value.strip(HEADER_SPACE)
    if not text:
        return []
    check_text(text)
    members = text.split(",")
    bail_if_too_many(len(members), limits)
    return [sf_binary(m, f"list member {n}") for n, m in enumerate(members, 1)]


def gcp_notes(headers: object, limits: Limits, notes: list[str]) -> None:
    pairs = normalise_headers(headers)
    for name in (_GCP_PRESENT_HEADER, _GCP_ERROR_HEADER):
        found = [v for n, v in pairs if same_header(n, name)]
        if len(found) == 1 and len(found[0]) <= 512 and found[0].isprintable():
            notes.append(f"{name}: {found[0].strip()}")


RFC9440 = Source(
    "rfc9440",
    "Client-Cert",
    decode_rfc9440,
    chain_header="Client-Cert-Chain",
    decode_chain=sf_list,
    # RFC 9440: Client-Cert-Chain "MAY have a list of values or occur multiple times".
    chain_instances_joined=True,
)

GCP = Source(
    "gcp",
    "X-Client-Cert",
    decode_rfc9440,
    chain_header="X-Client-Cert-Chain",
    verify_header="X-Client-Cert-Chain-Verified",
    decode_chain=sf_list,
    verify_dialect=BOOLEAN,
    keep_whole=False,  # gcp's notes read other headers, so its results are not kept whole
    extra_notes=gcp_notes,
)
