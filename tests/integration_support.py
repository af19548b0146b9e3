"""What the framework integration tests share: certificates as each proxy forwards them, the
shipped policies, and a WSGI input stream that fails the test if anything reads it."""

from __future__ import annotations

import base64
import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
PARTNER_API = POLICIES / "partner-api.yaml"
"""azure source: X-ARR-ClientCert, base64 DER, believed from any peer."""
NGINX_PARTNER = POLICIES / "nginx-partner.yaml"
"""nginx source: X-SSL-Client-Cert, percent-encoded PEM, from 127.0.0.1, ::1, 10.0.0.0/8."""

PARTNER_PEM = (POLICIES / "certs" / "partner.pem").read_bytes()
"""Allowed by both shipped partner policies."""
FABRIKAM_PEM = (POLICIES / "certs" / "fabrikam.pem").read_bytes()
"""Same CN as the partner, another organization: denied (no_matching_rule)."""


def azure_header(pem: bytes) -> str:
    """X-ARR-ClientCert as App Service sends it: base64 of the DER."""
    der = x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
    return base64.b64encode(der).decode()


def nginx_header(pem: bytes) -> str:
    """X-SSL-Client-Cert as nginx's $ssl_client_escaped_cert: percent-encoded PEM."""
    return quote(pem.decode(), safe="")


def cn_policy(path: Path, *common_names: str, name: str = "cn-policy") -> Path:
    """Write a policy allowing certificates whose subject CN is one of ``common_names``
    (azure source, so any peer is believed), with ``/health`` excluded."""
    listed = ", ".join(f'"{cn}"' for cn in common_names)
    path.write_text(
        textwrap.dedent(
            f"""\
            policy: {name}
            mode: required
            exclusion_paths: /health
            silence: [trusted-anywhere]
            rules:
              - id: known-client
                effect: allow
                when: subject.CN in [{listed}]
            """
        )
    )
    return path


class UnreadableInput:
    """A ``wsgi.input`` that fails the test if read: a refusal must not touch the body."""

    def __init__(self) -> None:
        self.touched = False

    def _fail(self, *args: Any, **kwargs: Any) -> bytes:
        self.touched = True
        raise AssertionError("the request body was read before the decision")

    read = readline = readlines = _fail

    def __iter__(self) -> Any:
        self._fail()
