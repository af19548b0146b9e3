"""Cloudflare Access (``cloudflare``) and Caddy (``caddy``): base64 of one DER certificate.

Cloudflare sends ``Cf-Client-Cert-Der-Base64`` and says ``Cf-Cert-Verified`` (a boolean),
and forwards the certificate on a connection's first request only (the absent note says
so). Caddy's ``X-Client-Cert`` is what its own examples set.

Must not import ``registry``, ``config`` or ``read``, nor ``language/`` or ``evaluation/``.
"""

from __future__ import annotations

from policyengine.request.sources.azure import decode_base64_der
from policyengine.request.sources.record import BOOLEAN, Source

CLOUDFLARE = Source(
    "cloudflare",
    "Cf-Client-Cert-Der-Base64",
    decode_base64_der,
    verify_header="Cf-Cert-Verified",
    verify_dialect=BOOLEAN,
    absent_note="Cloudflare forwards the certificate on the first request of a connection only",
    fed_by=frozenset({"caddy"}),
)

CADDY = Source(
    "caddy",
    "X-Client-Cert",
    decode_base64_der,
    native_to=frozenset({"caddy"}),
    fed_by=frozenset({"caddy"}),
)
