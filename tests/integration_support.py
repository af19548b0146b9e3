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


def open_policy(path: Path, name: str = "partner") -> Path:
    """A lenient policy: /orders, /state, /admin, /partner and /status are exclusion paths, so a
    request there is allowed without a certificate (``excluded_path``)."""
    path.write_text(
        textwrap.dedent(
            f"""\
            policy: {name}
            mode: required
            exclusion_paths: /orders;/state;/admin;/partner;/status
            silence: [trusted-anywhere]
            rules:
              - id: nobody
                effect: allow
                when: subject.CN == "nobody"
            """
        )
    )
    return path


SECRET_CN = "s3cret-partner"
SECRET_ISSUER_O = "Hidden Issuer Org"
SECRET_PIN = "5E8A4F0B129CD37721AA906B3EF1C4580D2E79B6"
SECRET_POLICY = "hidden-policy-name"
SECRETS = (SECRET_CN, SECRET_ISSUER_O, SECRET_PIN, SECRET_POLICY, "secret-allow", "banned-cn")
"""What a refusal must never tell the client: the values the policy wants, its name, its
rule ids (each case-insensitively, the pin also in lower case)."""


def secret_policy(path: Path) -> Path:
    """A policy (azure source) whose refusal messages name a CN, an issuer, a pin, a rule
    and the policy itself: exactly what a client could forge if a refusal told it."""
    path.write_text(
        textwrap.dedent(
            f"""\
            policy: {SECRET_POLICY}
            mode: required
            silence: [trusted-anywhere]
            sets:
              pins: ["{SECRET_PIN}"]
            rules:
              - id: banned-cn
                effect: deny
                when: subject.CN == "banned-cn"
              - id: secret-allow
                effect: allow
                when: |
                  subject.CN == "{SECRET_CN}"
                  and issuer.O == "{SECRET_ISSUER_O}"
                  and fingerprint in pins
            """
        )
    )
    return path


def assert_tells_nothing(body: bytes | str, headers: Any = ()) -> None:
    """A refusal's body and headers name none of :data:`SECRETS`."""
    text = body.decode() if isinstance(body, bytes) else body
    items = headers.items() if hasattr(headers, "items") else headers
    seen = " ".join([text, *(f"{name}: {value}" for name, value in items)]).lower()
    for secret in SECRETS:
        assert secret.lower() not in seen, f"the refusal tells the client {secret!r}: {seen}"


def refusal_cases() -> list[tuple[dict[str, str], str, str]]:
    """Requests the secret policy refuses: ``(headers, reason, what the log explains)``."""
    from policyengine.testing import make_certificate

    outsider = make_certificate({"CN": "outsider", "O": "Elsewhere"}).pem
    banned = make_certificate({"CN": "banned-cn"}).pem
    return [
        ({}, "missing_certificate", f"policy {SECRET_POLICY} requires one"),
        (
            {"X-ARR-ClientCert": azure_header(outsider)},
            "no_matching_rule",
            f'where `subject.CN == "{SECRET_CN}"` is false',
        ),
        ({"X-ARR-ClientCert": azure_header(banned)}, "denied_by_rule", "rule banned-cn"),
    ]


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
