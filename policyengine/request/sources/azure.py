"""Azure App Service (``azure``): ``X-ARR-ClientCert``, base64 of one DER certificate.

Owns the base64-DER decoder that Cloudflare and Caddy share, and the ``azure`` record:
any peer believed by default (App Service's front end has addresses the app cannot list),
with the loader's hint saying so, and lint's renegotiation note.

Must not import ``registry``, ``config`` or ``read``, nor ``language/`` or ``evaluation/``.
"""

from __future__ import annotations

import binascii

from policyengine.request.der import b64decode_strict, pem_blocks, single_der
from policyengine.request.sources.record import ANYWHERE, Decoded, Limits, Source
from policyengine.request.sources.text import (
    HEADER_SPACE,
    check_text,
    malformed,
    one,
    percent_decode,
)


def decode_base64_der(value: str, limits: Limits, notes: list[str]) -> Decoded:
    """Azure/Cloudflare/Caddy: base64 of one DER certificate."""
    text = value.strip(HEADER_SPACE)
    if not text:
        return None, []
    try:  # the usual value: nothing but the alphabet, so none of the checks below can fail
        der = binascii.a2b_base64(text, strict_mode=True)
    except ValueError:  # binascii.Error too; the checks below say what is wrong
        der = b""
    if der:
        return single_der(der, "the value"), []
    check_text(text)
    if "," in text:
        raise malformed(
            "holds a comma: one base64 certificate expected (two header instances joined?)"
        )
    return single_der(
        b64decode_strict(text, spaces=HEADER_SPACE, what="the value"), "the value"
    ), []


def decode_azure(value: str, limits: Limits, notes: list[str]) -> Decoded:
    """App Service: base64 DER.

    Also PEM and percent-encoded PEM, which an Application Gateway rewrite of
    ``{var_client_certificate}`` into ``X-ARR-ClientCert`` may produce (its wire form is
    undocumented); neither can be confused with base64, which has no ``-`` or ``%``.
    """
    text = value.strip(HEADER_SPACE)
    try:  # the usual value, base64 alone: PEM's dashes and percent-encoding are not base64
        der = binascii.a2b_base64(text, strict_mode=True)
    except ValueError:
        der = b""
    if der:
        return single_der(der, "the value"), []
    if not (text.startswith("-----") or "%" in text):
        return decode_base64_der(text, limits, notes)  # says what is wrong with it
    check_text(text)
    if "%" in text:
        notes.append("read a percent-encoded PEM (Application Gateway?)")
        text = percent_decode(text)
    return one(pem_blocks(text, limits), "the PEM"), []


AZURE = Source(
    "azure",
    "X-ARR-ClientCert",
    decode_azure,
    trusted_proxies=ANYWHERE,
    anywhere_hint=(
        "App Service's front end can be anywhere, so this is the azure default: make sure "
        "the app is reachable only through App Service (no private endpoint, VNet route "
        "or open container port that skips it)"
    ),
    renegotiates=True,  # App Service's front end is what renegotiates
    native_to=frozenset({"app-service"}),
    fed_by=frozenset({"nginx", "caddy"}),
)
