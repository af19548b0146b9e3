"""``policyengine explain --header`` and ``policyengine inspect``, run as subprocesses.

Forwarded-certificate headers on the command line: values that begin with '-', files and
stdin, ``--source`` and ``--peer``, the input errors around them, and every fact
``inspect`` prints for a certificate made with ``cryptography``.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import NOW_TEXT, POLICIES, ROOT, run_cli
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier
from test_sources import b64, nginx_escaped, rfc9440_list, xfcc_element

from policyengine.language.vocabulary import certificate_attributes
from policyengine.testing import make_certificate

AT = NOW_TEXT
NGINX_POLICY = str(POLICIES / "nginx-partner.yaml")
"""Source nginx, trusted_proxies [127.0.0.1, ::1, 10.0.0.0/8], pins certs/partner.pem."""
PARTNER_API = str(POLICIES / "partner-api.yaml")
"""Source azure (the default), pins certs/partner.pem among others."""
EXAMPLES = ROOT / "docs" / "examples"
NGINX_HEADER = (EXAMPLES / "partner-nginx-header.txt").read_text().strip()
AZURE_HEADER = (EXAMPLES / "partner-azure-header.txt").read_text().strip()
PARTNER_SHA256 = "e2d65529f91ba9fc8a79f24d2a7fc2138043fefe478b7036994564dd54872298"


cli = run_cli


def explain_json(*args: str, stdin: bytes | None = None) -> tuple[int, dict[str, Any]]:
    result = cli("explain", *args, "--at", AT, "--format", "json", stdin=stdin)
    assert result.stderr == ""
    payload = json.loads(result.stdout)
    assert isinstance(payload, dict)
    return result.returncode, payload


def steps(payload: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {s["step"]: (s["outcome"], s["detail"]) for s in payload["trace"]["steps"]}


def input_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"policyengine: {message}\n"


# -- explain --header ------------------------------------------------------------------


def test_header_beginning_with_a_dash_is_written_with_equals() -> None:
    assert NGINX_HEADER.startswith("-----BEGIN%20CERTIFICATE-----%0A")
    code, payload = explain_json(NGINX_POLICY, f"--header={NGINX_HEADER}", "--path", "/orders")
    assert code == 0
    assert (payload["decision"], payload["reason"], payload["rule"]) == (
        "allow",
        "allowed_by_rule",
        "partner",
    )
    assert payload["certificate"]["fingerprint.sha256"] == PARTNER_SHA256
    assert steps(payload)["source"] == (
        "pass",
        "nginx header given offline, taken as sent by a trusted proxy",
    )


def test_header_beginning_with_a_dash_without_equals_is_a_usage_error() -> None:
    result = cli("explain", NGINX_POLICY, "--header", NGINX_HEADER)
    assert (result.returncode, result.stdout) == (2, "")
    assert "error: argument --header: expected one argument" in result.stderr


def test_header_file_with_a_policy_of_another_source(tmp_path: Path) -> None:
    intermediate = make_certificate({"CN": "Mesh Intermediate"}, ca=True)
    workload = make_certificate({"CN": "payments"}, issuer=intermediate)
    policy = tmp_path / "mesh.yaml"
    policy.write_text(
        "policy: mesh\ncertificate:\n  source: envoy\n"
        f"sets:\n  workloads: [{workload.sha256}]\n"
        "rules:\n  - id: workload\n    effect: allow\n    when: fingerprint.sha256 in workloads\n"
    )
    header = tmp_path / "xfcc.txt"
    header.write_text(xfcc_element(workload.der, (intermediate.der,)) + "\n")
    code, payload = explain_json(str(policy), "--header-file", str(header))
    assert (code, payload["reason"], payload["rule"]) == (0, "allowed_by_rule", "workload")
    assert payload["certificate"]["subject"] == "CN=payments"
    assert steps(payload)["source"] == (
        "pass",
        "envoy header given offline, taken as sent by a trusted proxy",
    )


def test_header_file_from_stdin() -> None:
    stdin = (AZURE_HEADER + "\r\n").encode()
    code, payload = explain_json(
        PARTNER_API, "--header-file", "-", "--path", "/orders", stdin=stdin
    )
    assert (code, payload["reason"], payload["rule"]) == (0, "allowed_by_rule", "partner")
    assert payload["certificate"]["fingerprint.sha256"] == PARTNER_SHA256
    assert steps(payload)["source"][1] == (
        "azure header given offline, taken as sent by a trusted proxy"
    )


def test_source_overrides_the_policy_source() -> None:
    code, payload = explain_json(
        NGINX_POLICY, "--header", AZURE_HEADER, "--source", "azure", "--path", "/orders"
    )
    assert (code, payload["reason"]) == (0, "allowed_by_rule")
    assert steps(payload)["source"][1] == (
        "azure header given offline, taken as sent by a trusted proxy"
    )


def test_malformed_header_is_a_deny_not_an_input_error() -> None:
    # the azure value read as nginx sends it: base64 is not a PEM
    code, payload = explain_json(NGINX_POLICY, "--header", AZURE_HEADER, "--path", "/orders")
    assert code == 1
    assert (payload["decision"], payload["status"], payload["reason"]) == (
        "deny",
        403,
        "malformed_header",
    )
    detail = f"no -----BEGIN CERTIFICATE----- line (found {AZURE_HEADER[:40]!r}...)"
    assert payload["message"] == f"The forwarded certificate cannot be used: {detail}."
    assert steps(payload)["source"] == ("deny", detail)
    assert payload["certificate"] is None
    assert payload["trace"]["rules"] == []


def test_peer_is_checked_against_trusted_proxies() -> None:
    code, trusted = explain_json(
        NGINX_POLICY, f"--header={NGINX_HEADER}", "--peer", "10.1.2.3", "--path", "/orders"
    )
    assert (code, trusted["reason"]) == (0, "allowed_by_rule")
    assert steps(trusted)["source"] == ("pass", "peer 10.1.2.3 is a trusted proxy (10.0.0.0/8)")
    # --source keeps the policy's trusted_proxies: the override cannot widen trust
    code, ignored = explain_json(
        NGINX_POLICY,
        "--header",
        AZURE_HEADER,
        "--source",
        "azure",
        "--peer",
        "203.0.113.7",
        "--path",
        "/orders",
    )
    assert (code, ignored["reason"]) == (1, "missing_certificate")
    assert ignored["message"] == (
        "No client certificate was presented, and policy nginx-partner requires one "
        "(header ignored: peer 203.0.113.7 is not a trusted proxy)."
    )
    assert steps(ignored)["source"] == (
        "pass",
        "header ignored: peer 203.0.113.7 is not a trusted proxy\n"
        "ignored header(s) sent by that peer: X-ARR-ClientCert",
    )
    assert ignored["certificate"] is None


def test_cert_and_header_together_is_an_input_error() -> None:
    result = cli(
        "explain", NGINX_POLICY, "--cert", str(POLICIES / "certs" / "partner.pem"),
        f"--header={NGINX_HEADER}",
    )  # fmt: skip
    input_error(result, "give either --cert or --header, not both")


def test_header_and_header_file_together_is_an_input_error() -> None:
    result = cli(
        "explain", NGINX_POLICY, "--header", AZURE_HEADER,
        "--header-file", str(EXAMPLES / "partner-azure-header.txt"),
    )  # fmt: skip
    input_error(result, "give either --header or --header-file, not both")


def test_source_without_a_header_is_an_input_error() -> None:
    result = cli(
        "explain", NGINX_POLICY, "--cert", str(POLICIES / "certs" / "partner.pem"),
        "--source", "azure",
    )  # fmt: skip
    input_error(result, "--source and --peer go with --header or --header-file")


# -- inspect -----------------------------------------------------------------------------

CLIENT_KEY = ec.generate_private_key(ec.SECP384R1())
CA_KEY = ec.generate_private_key(ec.SECP256R1())
UPN = "alice@contoso.example"


def rich_certificate() -> x509.Certificate:
    """A leaf with every extension inspect reports: SANs of each kind, EKU, key usage…"""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Contoso Ltd"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Payments"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Platform"),
            x509.NameAttribute(NameOID.COMMON_NAME, "payments-client"),
        ]
    )
    issuer = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Contoso Ltd"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Contoso Issuing CA"),
        ]
    )
    upn = x509.OtherName(
        ObjectIdentifier("1.3.6.1.4.1.311.20.2.3"), b"\x0c" + bytes([len(UPN)]) + UPN.encode()
    )
    sans: list[x509.GeneralName] = [
        x509.DNSName("Api.Contoso.Example"),
        x509.DNSName("pay.contoso.example"),
        x509.UniformResourceIdentifier("spiffe://contoso.example/ns/payments/sa/api"),
        x509.RFC822Name("alice@contoso.example"),
        x509.IPAddress(ipaddress.ip_address("10.1.2.3")),
        x509.IPAddress(ipaddress.ip_address("2001:db8::1")),
        upn,
    ]
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=True,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    eku = [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(CLIENT_KEY.public_key())
        .serial_number(0x0ABCDEF)
        .not_valid_before(datetime(2026, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2027, 1, 1, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([*eku, ObjectIdentifier("1.2.3.4.5")]), critical=False)
        .add_extension(usage, critical=True)
        .add_extension(
            x509.CertificatePolicies(
                [x509.PolicyInformation(ObjectIdentifier("2.23.140.1.2.1"), None)]
            ),
            critical=False,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(CLIENT_KEY.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(CA_KEY.public_key()),
            critical=False,
        )
    )
    return builder.sign(CA_KEY, hashes.SHA384())


RICH = rich_certificate()
RICH_DER = RICH.public_bytes(serialization.Encoding.DER)
SKI = x509.SubjectKeyIdentifier.from_public_key(CLIENT_KEY.public_key()).digest.hex()
AKI = x509.AuthorityKeyIdentifier.from_issuer_public_key(CA_KEY.public_key()).key_identifier
assert AKI is not None

RICH_FACTS: dict[str, object] = {
    "present": True,
    "valid": True,
    "expired": False,
    "not_yet_valid": False,
    "self_signed": False,
    "not_before": "2026-01-01T00:00:00Z",
    "not_after": "2027-01-01T00:00:00Z",
    "serial": "ABCDEF",
    "fingerprint.sha1": RICH.fingerprint(hashes.SHA1()).hex(),
    "fingerprint.sha256": RICH.fingerprint(hashes.SHA256()).hex(),
    "subject": "CN=payments-client,OU=Platform,OU=Payments,O=Contoso Ltd,C=US",
    "subject.CN": ["payments-client"],
    "subject.C": ["US"],
    "subject.O": ["Contoso Ltd"],
    "subject.OU": ["Payments", "Platform"],
    "subject.L": [],
    "issuer": "CN=Contoso Issuing CA,O=Contoso Ltd",
    "issuer.CN": ["Contoso Issuing CA"],
    "issuer.O": ["Contoso Ltd"],
    "issuer.OU": [],
    "san.dns": ["api.contoso.example", "pay.contoso.example"],
    "san.uri": ["spiffe://contoso.example/ns/payments/sa/api"],
    "san.email": ["alice@contoso.example"],
    "san.ip": ["10.1.2.3", "2001:db8::1"],
    "san.upn": [UPN],
    "eku": ["clientAuth", "serverAuth", "1.2.3.4.5"],
    "key_usage": ["digitalSignature", "keyAgreement"],
    "certificate_policies": ["2.23.140.1.2.1"],
    "spiffe_id": "spiffe://contoso.example/ns/payments/sa/api",
    "version": 3,
    "lifetime": "365d",
    "key.type": "ec",
    "key.size": 384,
    "key.curve": "secp384r1",
    "signature.algorithm": "ecdsa-with-SHA384",
    "signature.hash": "sha384",
    "is_ca": False,
    "path_length": None,
    "subject_key_id": SKI,
    "authority_key_id": AKI.hex(),
}


@pytest.fixture
def rich_pem(tmp_path: Path) -> Path:
    path = tmp_path / "rich.pem"
    path.write_bytes(RICH.public_bytes(serialization.Encoding.PEM))
    return path


def test_inspect_json_has_every_attribute(rich_pem: Path) -> None:
    result = cli("inspect", str(rich_pem), "--at", AT, "--format", "json")
    assert (result.returncode, result.stderr) == (0, "")
    payload = json.loads(result.stdout)
    # the facts, then who the certificate names (the default principal)
    assert list(payload) == [a.name for a in certificate_attributes()] + ["principal"]
    assert payload["principal"] == "spiffe://contoso.example/ns/payments/sa/api"
    for name, value in RICH_FACTS.items():
        assert payload[name] == value, name


def test_inspect_text(rich_pem: Path) -> None:
    result = cli("inspect", str(rich_pem), "--at", AT)
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    rows = {line.split("  ", 1)[0]: line.split("  ", 1)[1].strip() for line in lines}
    # name attributes the certificate lacks are left out of the text
    assert "subject.L" not in rows and "issuer.OU" not in rows
    assert list(rows) == [
        a.name
        for a in certificate_attributes()
        if not (a.name.startswith(("subject.", "issuer.")) and RICH_FACTS.get(a.name, []) == [])
    ] + ["principal"]
    width = max(len(name) for name in rows) + 2
    assert all(line[width - 2 : width] == "  " for line in lines)
    assert rows["subject.OU"] == '["Payments", "Platform"]'
    assert rows["san.ip"] == '["10.1.2.3", "2001:db8::1"]'
    assert rows["san.upn"] == f'["{UPN}"]'
    assert rows["eku"] == '["clientAuth", "serverAuth", "1.2.3.4.5"]'
    assert rows["spiffe_id"] == '"spiffe://contoso.example/ns/payments/sa/api"'
    assert rows["serial"] == "ABCDEF"
    assert rows["lifetime"] == "365d"
    assert rows["valid"] == "true"
    assert rows["path_length"] == "undefined: the certificate sets no path length constraint"


def test_inspect_auto_rfc9440_list_reports_the_forwarded_chain() -> None:
    intermediate = make_certificate({"CN": "Forwarded Intermediate"}, ca=True)
    value = rfc9440_list((RICH_DER, intermediate.der))
    result = cli("inspect", "--header", value, "--source", "auto", "--at", AT, "--format", "json")
    assert (result.returncode, result.stderr) == (0, "")
    payload = json.loads(result.stdout)
    assert payload["fingerprint.sha256"] == RICH_FACTS["fingerprint.sha256"]
    assert payload["forwarded_chain"] == [
        {"subject": "CN=Forwarded Intermediate", "sha256": intermediate.sha256}
    ]


def test_inspect_auto_escaped_pem_and_comma_list_in_text() -> None:
    intermediate = make_certificate({"CN": "Forwarded Intermediate"}, ca=True)
    value = b64(RICH_DER) + "," + b64(intermediate.der)  # traefik's comma list
    result = cli("inspect", f"--header={nginx_escaped(RICH_DER)}", "--at", AT)
    assert (result.returncode, result.stderr) == (0, "")
    assert f'fingerprint.sha256    "{RICH_FACTS["fingerprint.sha256"]}"' in result.stdout
    assert "forwarded intermediate" not in result.stdout
    listed = cli("inspect", "--header", value, "--at", AT)
    assert (listed.returncode, listed.stderr) == (0, "")
    assert listed.stdout.endswith(
        f"forwarded intermediate 1: CN=Forwarded Intermediate (sha256 {intermediate.sha256})\n"
    )


def test_inspect_auto_xfcc_from_a_file(tmp_path: Path) -> None:
    header = tmp_path / "xfcc.txt"
    header.write_text(xfcc_element(RICH_DER) + "\n")
    result = cli("inspect", "--header-file", str(header), "--at", AT, "--format", "json")
    assert (result.returncode, result.stderr) == (0, "")
    payload = json.loads(result.stdout)
    assert payload["subject"] == RICH_FACTS["subject"]
    assert "forwarded_chain" not in payload


def test_inspect_garbage_file_exits_1(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"garbage\n")
    result = cli("inspect", str(garbage))
    assert (result.returncode, result.stderr) == (1, "")
    assert result.stdout.startswith("malformed_certificate: ")


def test_inspect_garbage_header_exits_1() -> None:
    result = cli("inspect", "--header", "garbage")
    assert (result.returncode, result.stderr) == (1, "")
    assert result.stdout == (
        "malformed_header: broken base64 in the value: length 7 is not a multiple of 4\n"
    )


def test_inspect_header_without_a_certificate_exits_1() -> None:
    result = cli("inspect", "--header", "(null)", "--source", "apache")
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "the header holds no certificate\n",
        "",
    )


def test_inspect_without_input_exits_2() -> None:
    input_error(cli("inspect"), "give a certificate file, or --header VALUE with --source")


def test_inspect_file_and_header_together_exits_2(rich_pem: Path) -> None:
    result = cli("inspect", str(rich_pem), "--header", AZURE_HEADER)
    input_error(result, "give either CERT or --header, not both")
