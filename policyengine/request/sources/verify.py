"""What a proxy says of its own verification, read in the source's dialect.

Owns :func:`interpret_verify`: status words (nginx, mod_ssl, App Gateway), OpenSSL's
verify number (HAProxy), booleans (GCP, Cloudflare), or either for ``auto``. Anything
unrecognised says nothing (None), never True.

Must not import the proxy modules, ``registry``, ``config`` or ``read``, nor
``language/`` or ``evaluation/``.
"""

from __future__ import annotations

from collections.abc import Mapping

from policyengine.request.sources.record import ANY, BOOLEAN, INTEGER, STATUS

_VERIFY_WORDS: Mapping[str, Mapping[str, bool | None]] = {
    # mod_ssl GENEROUS: accepted without a trusted CA (optional_no_ca), so not verified.
    STATUS: {"SUCCESS": True, "NONE": None, "GENEROUS": False},
    BOOLEAN: {"TRUE": True, "FALSE": False, "1": True, "0": False},
    ANY: {"SUCCESS": True, "NONE": None, "GENEROUS": False, "TRUE": True, "FALSE": False},
    INTEGER: {"": None},
}


def interpret_verify(dialect: str, raw: str, name: str, notes: list[str]) -> bool | None:
    """The proxy's verdict; anything unrecognised is None (says nothing), never True."""
    upper = raw.upper()
    words = _VERIFY_WORDS[dialect]
    if upper in words:
        verdict = words[upper]
    elif dialect in (STATUS, ANY) and upper.startswith("FAILED"):
        verdict = False
    elif dialect == INTEGER and raw.isascii() and raw.isdigit():
        verdict = int(raw) == 0  # OpenSSL's X509_V_OK
    else:
        notes.append(f"{name}: unrecognised value {raw[:80]!r}; taken as saying nothing")
        return None
    if raw:
        notes.append(f"{name} says {raw[:200]}")
    return verdict
