"""Certificate facts: every attribute read from real certificates, laziness, the facts
cache, and a corpus of hostile certificates (tests/hostile.py) run against every attribute.

Values are checked twice: through a compiled policy evaluated at a fixed time (the decision
and the explain trace's detail text) and directly on :class:`CertificateFacts`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import hostile
import pytest
from conftest import NOW
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given, settings
from hypothesis import strategies as st

from policyengine import Decision, Policy, policy_from_text
from policyengine.errors import CertificateError, FactError
from policyengine.evaluation.attributes import READERS
from policyengine.evaluation.trace import TraceNode
from policyengine.language.vocabulary import IDENTITY_NAMES, VOCABULARY, Type, lookup
from policyengine.request.certificate import (
    EKU_NAMES,
    NAME_ATTRIBUTES,
    UPN_OID,
    CertificateFacts,
    FactsCache,
    read_certificate,
)
from policyengine.request.der import PlainName as _PlainName
from policyengine.request.der import values_by_oid as _values_by_oid
from policyengine.testing import make_certificate
from policyengine.values import Missing, format_duration, format_time

START = datetime(2025, 1, 1, tzinfo=UTC)
END = datetime(2027, 1, 1, tzinfo=UTC)

# -- helpers -----------------------------------------------------------------------------------


def policy(*rules: tuple[str, str, str], sets: dict[str, list[str]] | None = None) -> Policy:
    """A policy from (id, effect, when) triples; ``when`` goes in a YAML block scalar."""
    lines = ["policy: facts", "mode: required"]
    # only the sets some rule names: an unused set draws a warning
    text = " ".join(when for _, _, when in rules)
    used = {k: v for k, v in (sets or {}).items() if re.search(rf"\b{k}\b", text)}
    if used:
        lines.append("sets:")
        for set_name, entries in used.items():
            lines.append(f"  {set_name}:")
            lines.extend(f'    - "{entry}"' for entry in entries)
    lines.append("rules:")
    for rule_id, effect, when in rules:
        lines += [f"  - id: {rule_id}", f"    effect: {effect}", "    when: |"]
        lines += ["      " + line for line in when.splitlines()]
    return policy_from_text("\n".join(lines) + "\n", "facts.yaml")


def decide(policy: Policy, cert: object, **kwargs: object) -> Decision:
    """Plain and explained evaluation at NOW, which must agree; the explained decision."""
    kwargs.setdefault("now", NOW)
    kwargs.setdefault("path", "/orders")
    plain = policy.evaluate(cert, **kwargs)  # type: ignore[arg-type]
    explained = policy.evaluate(cert, explain=True, **kwargs)  # type: ignore[arg-type]
    assert plain == explained
    assert explained.trace is not None
    return explained


def probe(cert: object, when: str) -> tuple[Decision, TraceNode]:
    """Evaluate one allow rule ``when``; the decision and the rule's trace node."""
    decision = decide(policy(("probe", "allow", when)), cert)
    assert decision.trace is not None
    (rule,) = decision.trace.rules
    return decision, rule.node


def holds(cert: object, when: str, detail: str | None = None) -> None:
    """``when`` holds for ``cert`` (the request is allowed), with this trace detail."""
    decision, node = probe(cert, when)
    assert decision.reason == "allowed_by_rule", (when, decision.message, node.detail)
    assert decision.allowed
    assert node.outcome == "true"
    if detail is not None:
        assert node.detail == detail


def fails(cert: object, when: str, outcome: str = "false", detail: str | None = None) -> None:
    """``when`` does not hold (``false`` or ``undefined``), so the request is denied."""
    decision, node = probe(cert, when)
    assert decision.reason == "no_matching_rule", (when, decision.message)
    assert not decision.allowed
    assert decision.errors == ()
    assert node.outcome == outcome, (when, node.detail)
    if detail is not None:
        assert node.detail == detail


def facts_of(cert: IssuedLike) -> CertificateFacts:
    return read_certificate(cert.der)


@dataclass(frozen=True)
class IssuedLike:
    certificate: x509.Certificate

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


Key = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
    | dsa.DSAPrivateKey
)


def oid_name(pairs: list[tuple[str, str]]) -> x509.Name:
    """A Name from (dotted OID, value) pairs, in order."""
    return x509.Name([x509.NameAttribute(x509.ObjectIdentifier(o), v) for o, v in pairs])


def simple_name(**labels: str) -> x509.Name:
    return oid_name([(NAME_ATTRIBUTES[label], value) for label, value in labels.items()])


def build(
    *,
    subject: x509.Name | None = None,
    issuer: x509.Name | None = None,
    key: Key | None = None,
    signing_key: Key | None = None,
    extensions: list[x509.ExtensionType] = (),  # type: ignore[assignment]
    serial: int = 0x1A2B3C,
    not_before: datetime = START,
    not_after: datetime = END,
    algorithm: hashes.HashAlgorithm | str | None = "default",
) -> IssuedLike:
    """A certificate made with cryptography's builder; self-signed unless told otherwise."""
    key = key or ec_key()
    subject = subject or simple_name(CN="client")
    signer = signing_key or key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer or subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    if algorithm == "default":
        edwards = (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)
        algorithm = None if isinstance(signer, edwards) else hashes.SHA256()
    return IssuedLike(builder.sign(signer, algorithm))  # type: ignore[arg-type]


_EC_KEY = ec.generate_private_key(ec.SECP256R1())


def ec_key() -> ec.EllipticCurvePrivateKey:
    return _EC_KEY


# -- the vocabulary: what reads the certificate --------------------------------------------------

REQUEST_ATTRIBUTES = {"request.path", "request.method", "request.host"}
CONTEXT_ATTRIBUTES = {
    n
    for n in VOCABULARY
    if n.startswith(("request.", "proxy.", "chain.")) or n in ("trusted", "revoked")
}
"""What the request, the proxy and chain validation say; the rest is read from the leaf."""
TRUST_ATTRIBUTES = {n for n in VOCABULARY if n.startswith("chain.") or n in ("trusted", "revoked")}
"""These need a policy with a ``trust:`` section; the trust tests cover them."""
IDENTITY_ATTRIBUTES = set(IDENTITY_NAMES)
"""Worked out from other attributes by the policy's identity section (test_identity.py)."""
CERTIFICATE_ATTRIBUTES = sorted(set(VOCABULARY) - CONTEXT_ATTRIBUTES - IDENTITY_ATTRIBUTES)


def test_the_catalog_is_what_these_tests_expect() -> None:
    names = {f"{w}.{label}" for w in ("subject", "issuer") for label in NAME_ATTRIBUTES}
    others = set(VOCABULARY) - names - CONTEXT_ATTRIBUTES - IDENTITY_ATTRIBUTES
    assert others == set(RICH_EXPECTATIONS) - names, "a new attribute needs a facts test"


def test_every_attribute_has_readers_and_says_what_it_depends_on() -> None:
    assert set(READERS) == set(VOCABULARY), "each vocabulary name needs its readers"
    for name, attribute in VOCABULARY.items():
        assert attribute.multi == (READERS[name].read_all is not None), name
    beyond = {n for n, a in VOCABULARY.items() if not a.depends <= {"certificate", "time"}}
    assert beyond == CONTEXT_ATTRIBUTES
    assert {n for n, a in VOCABULARY.items() if "trust" in a.depends} == TRUST_ATTRIBUTES
    assert {n for n, a in VOCABULARY.items() if "request" in a.depends} == REQUEST_ATTRIBUTES


# -- names ---------------------------------------------------------------------------------------

SUBJECT_VALUES = {label: f"s-{label}" for label in NAME_ATTRIBUTES}
SUBJECT_VALUES.update(
    C="US", jurisdictionC="US", CN="api-client", O="Contoso, Ltd", OU="Payments", DC="contoso"
)
ISSUER_VALUES = {label: f"i-{label}" for label in NAME_ATTRIBUTES}
ISSUER_VALUES.update(C="GB", jurisdictionC="DE", CN="Contoso Issuing CA", O="Contoso CA")


@pytest.fixture(scope="module")
def ca_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rich(ca_key: rsa.RSAPrivateKey) -> IssuedLike:
    """A leaf with every name attribute (and 1.2.3.4), every SAN kind and every extension,
    issued by an RSA CA with a different name."""
    subject = oid_name(
        [(NAME_ATTRIBUTES[label], SUBJECT_VALUES[label]) for label in NAME_ATTRIBUTES]
        + [("1.2.3.4", "custom")]
    )
    issuer = oid_name([(NAME_ATTRIBUTES[label], ISSUER_VALUES[label]) for label in NAME_ATTRIBUTES])
    key = ec_key()
    return build(
        subject=subject,
        issuer=issuer,
        key=key,
        signing_key=ca_key,
        extensions=[
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("API.contoso.com"),
                    x509.UniformResourceIdentifier("spiffe://contoso.com/ns/payments/sa/api"),
                    x509.RFC822Name("api@contoso.com"),
                    x509.IPAddress(ipaddress.ip_address("10.1.2.3")),
                    x509.OtherName(x509.ObjectIdentifier(UPN_OID), hostile.utf8("api@corp.com")),
                ]
            ),
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            x509.BasicConstraints(ca=False, path_length=None),
            x509.CertificatePolicies(
                [x509.PolicyInformation(x509.ObjectIdentifier("2.5.29.32.0"), None)]
            ),
            x509.SubjectKeyIdentifier(bytes(range(20))),
            x509.AuthorityKeyIdentifier(bytes(range(100, 120)), None, None),
        ],
    )


def _colon_hex(data: bytes) -> str:
    return ":".join(f"{b:02X}" for b in data)


RICH_EXPECTATIONS: dict[str, tuple[str, str]] = {
    "present": ("present", "a certificate was presented"),
    "valid": (
        "valid",
        "not_before 2025-01-01T00:00:00Z <= now 2026-11-28T10:00:00Z "
        "<= not_after 2027-01-01T00:00:00Z",
    ),
    "expired": ("not expired", ""),
    "not_yet_valid": ("not not_yet_valid", ""),
    "self_signed": ("not self_signed", ""),
    "not_before": ("not_before == 2025-01-01T00:00:00Z", "got 2025-01-01T00:00:00Z"),
    "not_after": ("not_after == 2027-01-01", "got 2027-01-01T00:00:00Z"),
    "lifetime": ("lifetime == 730d", "got 730d"),
    "serial": ('serial == "1a:2b:3c"', "got 1A2B3C"),
    "version": ("version == 3", "got 3"),
    "fingerprint": ("", ""),  # by digest: test_fingerprints
    "fingerprint.sha1": ("", ""),
    "fingerprint.sha256": ("", ""),
    "subject": ("", ""),  # test_whole_names
    "issuer": ("", ""),
    "san.dns": ('san.dns == "api.contoso.com"', 'got "api.contoso.com"'),
    "san.uri": (
        '"spiffe://contoso.com/ns/payments/sa/api" in san.uri',
        'san.uri is ["spiffe://contoso.com/ns/payments/sa/api"]',
    ),
    "san.email": ('san.email endswith "@contoso.com"', 'got "api@contoso.com"'),
    "san.ip": ('"10.1.2.3" in san.ip', 'san.ip is ["10.1.2.3"]'),
    "san.upn": ('san.upn == "api@corp.com"', 'got "api@corp.com"'),
    "spiffe_id": (
        'spiffe_id startswith "spiffe://contoso.com/ns/payments/"',
        'got "spiffe://contoso.com/ns/payments/sa/api"',
    ),
    "eku": ('"clientAuth" in eku', 'eku is ["clientAuth"]'),
    "key_usage": (
        '"keyAgreement" in key_usage',
        'key_usage is ["digitalSignature", "keyAgreement"]',
    ),
    "is_ca": ("not is_ca", ""),
    "path_length": ("", ""),  # test_basic_constraints
    "certificate_policies": (
        'certificate_policies == "2.5.29.32.0"',
        'got "2.5.29.32.0"',
    ),
    "subject_key_id": (
        f'subject_key_id == "{_colon_hex(bytes(range(20)))}"',
        f'got "{bytes(range(20)).hex()}"',
    ),
    "authority_key_id": (
        f'authority_key_id == "{_colon_hex(bytes(range(100, 120)))}"',
        f'got "{bytes(range(100, 120)).hex()}"',
    ),
    "key.type": ('key.type == "ec"', 'got "ec"'),
    "key.size": ("key.size == 256", "got 256"),
    "key.curve": ('key.curve == "secp256r1"', 'got "secp256r1"'),
    "signature.algorithm": (
        'signature.algorithm == "sha256WithRSAEncryption"',
        'got "sha256WithRSAEncryption"',
    ),
    "signature.hash": ('signature.hash == "sha256"', 'got "sha256"'),
}
for _which, _values in (("subject", SUBJECT_VALUES), ("issuer", ISSUER_VALUES)):
    for _label in NAME_ATTRIBUTES:
        _value = _values[_label]
        RICH_EXPECTATIONS[f"{_which}.{_label}"] = (
            f'{_which}.{_label} == "{_value}"',
            f'got "{_value}"',
        )


@pytest.mark.parametrize(
    "name", [n for n in CERTIFICATE_ATTRIBUTES if RICH_EXPECTATIONS.get(n, ("",))[0]]
)
def test_every_attribute_reads_the_rich_certificate(rich: IssuedLike, name: str) -> None:
    when, detail = RICH_EXPECTATIONS[name]
    assert name in policy(("probe", "allow", when)).attributes
    holds(rich.pem, when)
    _, node = probe(rich.der, when)
    if detail:
        (leaf,) = node.children if node.kind == "not" else (node,)
        assert leaf.detail == detail


@pytest.mark.parametrize("label", list(NAME_ATTRIBUTES))
def test_name_attributes_by_label_and_by_oid(rich: IssuedLike, label: str) -> None:
    facts = facts_of(rich)
    dotted = NAME_ATTRIBUTES[label]
    for which, values in (("subject", SUBJECT_VALUES), ("issuer", ISSUER_VALUES)):
        value = values[label]
        assert facts.name_values(which, dotted) == (value,)
        assert facts.name_value(which, dotted, label) == value
        by_oid = lookup(f"{which}.{dotted}")
        assert by_oid is not None and by_oid.type is Type.STRING and by_oid.multi
        holds(rich.der, f'{which}.{dotted} == "{value}"', f'got "{value}"')
        holds(rich.der, f'"{value}" in {which}.{label}')
        fails(rich.der, f'{which}.{label} == "{value}x"', detail=f'got "{value}"')
    fails(rich.der, f'subject.{label} == "{ISSUER_VALUES[label]}"')


def test_an_arbitrary_oid(rich: IssuedLike) -> None:
    attribute = lookup("subject.1.2.3.4")
    assert attribute is not None and attribute.name == "subject.1.2.3.4"
    assert lookup("subject.1.2.x") is None
    holds(rich.der, 'subject.1.2.3.4 == "custom"', 'got "custom"')
    fails(
        rich.der, 'issuer.1.2.3.4 == "custom"', "undefined", "undefined: the issuer has no 1.2.3.4"
    )
    assert facts_of(rich).name_values("subject", "1.2.3.4") == ("custom",)


def test_whole_names(rich: IssuedLike) -> None:
    facts = facts_of(rich)
    assert facts.subject == rich.certificate.subject.rfc4514_string()
    assert facts.issuer == rich.certificate.issuer.rfc4514_string()
    assert "O=Contoso\\, Ltd" in facts.subject
    holds(rich.der, f'subject == "{facts.subject.replace(chr(92), chr(92) * 2)}"')
    holds(rich.der, 'subject contains "CN=api-client"')
    holds(rich.der, 'issuer contains "CN=Contoso Issuing CA"')
    fails(rich.der, 'issuer contains "CN=api-client"')


def test_a_comma_in_the_organization() -> None:
    cert = build(subject=simple_name(CN="api-client", O="Contoso, Ltd", C="US"))
    holds(cert.der, 'subject.O == "Contoso, Ltd"', 'got "Contoso, Ltd"')
    fails(cert.der, 'subject.O == "Contoso"')
    fails(cert.der, 'subject.O == "Ltd"')
    # the whole name escapes the comma, so a split at commas can never be fooled
    assert facts_of(cert).subject == "C=US,O=Contoso\\, Ltd,CN=api-client"
    holds(cert.der, 'subject == "C=US,O=Contoso\\\\, Ltd,CN=api-client"')


def test_non_ascii_names() -> None:
    cert = build(subject=simple_name(CN="José", O="中文 Ltd", L="Zürich"))
    holds(cert.der, 'subject.CN == "José"', 'got "José"')
    holds(cert.der, 'subject.CN == "Jos\\u00e9"')
    holds(cert.der, 'subject.O == "中文 Ltd"', 'got "中文 Ltd"')
    holds(cert.der, 'subject.L startswith "Zü"')
    fails(cert.der, 'subject.CN == "Jose"')
    facts = facts_of(cert)
    assert facts.name_value("subject", NAME_ATTRIBUTES["O"], "O") == "中文 Ltd"
    assert facts.subject == "L=Zürich,O=中文 Ltd,CN=José"


def test_a_500_character_subject() -> None:
    units = [f"Unit {i} " + "u" * 150 for i in range(4)]
    subject = oid_name(
        [(NAME_ATTRIBUTES["OU"], unit) for unit in units] + [(NAME_ATTRIBUTES["CN"], "long")]
    )
    cert = build(subject=subject)
    facts = facts_of(cert)
    assert len(facts.subject) > 500
    assert facts.name_values("subject", NAME_ATTRIBUTES["OU"]) == tuple(units)
    holds(cert.der, f'"{units[2]}" in subject.OU')
    holds(cert.der, 'all subject.OU startswith "Unit "')
    holds(cert.der, 'subject.CN == "long"')
    shown = ", ".join(repr(u) for u in units)
    fails(
        cert.der,
        f'subject.OU == "{units[0]}"',
        "undefined",
        f"undefined: the subject has 4 OU values ({shown}); ambiguous",
    )


# -- identity, validity, fingerprints -------------------------------------------------------------


def test_serial_and_version(rich: IssuedLike) -> None:
    facts = facts_of(rich)
    assert facts.serial == 0x1A2B3C
    assert facts.version == 3
    holds(rich.der, 'serial == "0x1A2B3C"')
    holds(rich.der, "serial == 1715004")
    holds(rich.der, 'serial in ["0xBAD", "1A:2B:3C"]')
    fails(rich.der, 'serial == "0x1A2B3D"', detail="got 1A2B3C")


def test_validity_at_a_fixed_time(rich: IssuedLike) -> None:
    facts = facts_of(rich)
    assert (facts.not_before, facts.not_after) == (START, END)
    assert facts.lifetime == timedelta(days=730)
    holds(rich.der, "lifetime > 398d", "got 730d")
    holds(rich.der, "not_after >= 2026-12-31T23:59:59Z")
    expired = build(
        not_before=datetime(2020, 1, 1, tzinfo=UTC), not_after=datetime(2021, 1, 1, tzinfo=UTC)
    )
    holds(
        expired.der, "expired", "not_after 2021-01-01T00:00:00Z is before now 2026-11-28T10:00:00Z"
    )
    fails(expired.der, "valid")
    early = build(
        not_before=datetime(2030, 1, 1, tzinfo=UTC), not_after=datetime(2031, 1, 1, tzinfo=UTC)
    )
    holds(
        early.der,
        "not_yet_valid",
        "not_before 2030-01-01T00:00:00Z is after now 2026-11-28T10:00:00Z",
    )
    fails(early.der, "valid")
    fails(early.der, "expired")


def test_fingerprints(rich: IssuedLike) -> None:
    facts = facts_of(rich)
    sha1 = rich.certificate.fingerprint(hashes.SHA1()).hex()
    sha256 = rich.certificate.fingerprint(hashes.SHA256()).hex()
    assert (facts.sha1, facts.sha256) == (sha1, sha256)
    pin1 = ":".join(sha1[i : i + 2] for i in range(0, 40, 2)).upper()
    holds(rich.der, f'fingerprint == "{pin1}"')
    holds(rich.der, f'fingerprint == "{sha256.upper()}"')
    holds(rich.der, f'fingerprint.sha1 == "{sha1}"', f'got "{sha1}"')
    holds(rich.der, f'fingerprint.sha256 == "{sha256}"', f'got "{sha256}"')
    fails(rich.der, f'fingerprint.sha256 == "{"0" * 64}"')
    # the PEM and the DER of one certificate are one certificate
    holds(rich.pem, f'fingerprint.sha256 == "{sha256}"')


def test_self_signed(ca_key: rsa.RSAPrivateKey, rich: IssuedLike) -> None:
    own = build(key=ca_key)
    assert facts_of(own).self_signed is True
    holds(
        own.der,
        "self_signed",
        "subject equals issuer and the certificate's own key verifies its signature",
    )
    holds(rich.der, "not self_signed")
    assert facts_of(rich).self_signed is False
    # the same name, but signed by another key
    forged = build(key=ec_key(), signing_key=ca_key)
    fails(
        forged.der,
        "self_signed",
        detail="subject equals issuer but the certificate's own key does not verify its signature",
    )


# -- subject alternative names ---------------------------------------------------------------------


def test_every_kind_of_subject_alternative_name() -> None:
    cert = build(
        extensions=[
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("API.Contoso.com"),
                    x509.DNSName("b.contoso.com"),
                    x509.UniformResourceIdentifier("https://contoso.com/payments"),
                    x509.RFC822Name("ops@contoso.com"),
                    x509.IPAddress(ipaddress.ip_address("10.1.2.3")),
                    x509.IPAddress(ipaddress.ip_address("2001:db8::1")),
                    x509.OtherName(x509.ObjectIdentifier(UPN_OID), hostile.utf8("ada@corp.com")),
                    x509.OtherName(x509.ObjectIdentifier("1.2.3.4.5"), hostile.utf8("other")),
                ]
            )
        ]
    )
    facts = facts_of(cert)
    assert facts.san_dns == ("api.contoso.com", "b.contoso.com")
    assert facts.san_uri == ("https://contoso.com/payments",)
    assert facts.san_email == ("ops@contoso.com",)
    assert facts.san_ip == ("10.1.2.3", "2001:db8::1")
    assert facts.san_upn == ("ada@corp.com",)
    holds(cert.der, '"api.contoso.com" in san.dns')
    holds(cert.der, 'all san.dns matches "*.contoso.com"')
    fails(
        cert.der,
        'san.dns == "api.contoso.com"',
        "undefined",
        "undefined: the certificate has 2 DNS SAN values "
        "('api.contoso.com', 'b.contoso.com'); ambiguous",
    )
    holds(cert.der, 'san.uri == "https://contoso.com/payments"')
    holds(cert.der, 'san.email == "ops@contoso.com"')
    holds(cert.der, '"2001:db8::1" in san.ip')
    holds(cert.der, '"10.1.2.3" in san.ip', 'san.ip is ["10.1.2.3", "2001:db8::1"]')
    holds(cert.der, 'san.upn == "ada@corp.com"', 'got "ada@corp.com"')
    fails(
        cert.der,
        'spiffe_id == "spiffe://x"',
        "undefined",
        "undefined: the certificate has no spiffe:// URI SAN",
    )


def test_a_certificate_without_alternative_names() -> None:
    cert = build()
    facts = facts_of(cert)
    every_kind = (facts.san_dns, facts.san_uri, facts.san_email, facts.san_ip, facts.san_upn)
    assert every_kind == ((),) * 5
    fails(cert.der, 'san.dns == "a"', "undefined", "undefined: the certificate has no DNS SAN")
    fails(cert.der, '"a" in san.dns')
    fails(cert.der, 'san.upn == "a"', "undefined", "undefined: the certificate has no UPN SAN")


def _uris(*uris: str) -> IssuedLike:
    return build(
        extensions=[x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris])]
    )


def test_spiffe_id_one_none_two() -> None:
    one = _uris("https://contoso.com", "spiffe://contoso.com/ns/a/sa/b")
    assert facts_of(one).spiffe_id == "spiffe://contoso.com/ns/a/sa/b"
    holds(one.der, 'spiffe_id == "spiffe://contoso.com/ns/a/sa/b"')
    none = _uris("https://contoso.com")
    assert isinstance(facts_of(none).spiffe_id, Missing)
    fails(none.der, 'spiffe_id startswith "spiffe://"', "undefined")
    two = _uris("spiffe://contoso.com/a", "spiffe://contoso.com/b")
    missing = facts_of(two).spiffe_id
    assert isinstance(missing, Missing)
    assert missing.reason == "the certificate has 2 spiffe:// URI SANs; ambiguous"
    fails(
        two.der,
        'spiffe_id startswith "spiffe://contoso.com/"',
        "undefined",
        "undefined: the certificate has 2 spiffe:// URI SANs; ambiguous",
    )
    holds(two.der, '"spiffe://contoso.com/b" in san.uri')


# -- extended key usage, key usage, basic constraints, policies, key identifiers -------------------


def test_extended_key_usage_by_name_and_by_oid() -> None:
    unknown = "1.3.6.1.4.1.99999.7"
    usages = [x509.ObjectIdentifier(dotted) for dotted in EKU_NAMES]
    cert = build(extensions=[x509.ExtendedKeyUsage([*usages, x509.ObjectIdentifier(unknown)])])
    facts = facts_of(cert)
    assert facts.eku == (*EKU_NAMES.values(), unknown)
    for dotted, label in EKU_NAMES.items():
        holds(cert.der, f'"{label}" in eku')
        holds(cert.der, f'"{dotted}" in eku')
    holds(cert.der, f'"{unknown}" in eku')
    holds(cert.der, 'any eku == "1.3.6.1.5.5.7.3.2"')
    client_only = build(extensions=[x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])])
    holds(client_only.der, 'eku == "1.3.6.1.5.5.7.3.2"', 'got "clientAuth"')
    fails(client_only.der, '"serverAuth" in eku', detail='eku is ["clientAuth"]')
    fails(client_only.der, '"1.3.6.1.5.5.7.3.1" in eku')
    fails(build().der, '"clientAuth" in eku', detail="eku is []")


def _key_usage(**set_bits: bool) -> x509.KeyUsage:
    bits = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    bits.update(set_bits)
    return x509.KeyUsage(**bits)


def test_key_usage_bits() -> None:
    every = build(
        extensions=[
            _key_usage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=True,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=True,
            )
        ]
    )
    assert facts_of(every).key_usage == (
        "digitalSignature",
        "contentCommitment",
        "keyEncipherment",
        "dataEncipherment",
        "keyAgreement",
        "keyCertSign",
        "cRLSign",
        "encipherOnly",
    )
    holds(every.der, '"encipherOnly" in key_usage')
    fails(every.der, '"decipherOnly" in key_usage')
    holds(every.der, '"nonRepudiation" in key_usage')  # the old name of contentCommitment
    holds(every.der, '"contentCommitment" in key_usage')
    decipher = build(extensions=[_key_usage(key_agreement=True, decipher_only=True)])
    assert facts_of(decipher).key_usage == ("keyAgreement", "decipherOnly")
    holds(decipher.der, '"decipherOnly" in key_usage')
    fails(decipher.der, '"encipherOnly" in key_usage')
    signing = build(extensions=[_key_usage(digital_signature=True)])
    holds(signing.der, 'key_usage == "digitalSignature"')
    fails(signing.der, '"nonRepudiation" in key_usage', detail='key_usage is ["digitalSignature"]')
    assert facts_of(build()).key_usage == ()


def test_basic_constraints() -> None:
    ca = build(extensions=[x509.BasicConstraints(ca=True, path_length=2)])
    holds(ca.der, "is_ca", "true")
    holds(ca.der, "path_length == 2", "got 2")
    holds(ca.der, "path_length > 1")
    unbounded = build(extensions=[x509.BasicConstraints(ca=True, path_length=None)])
    holds(unbounded.der, "is_ca")
    fails(
        unbounded.der,
        "path_length == 0",
        "undefined",
        "undefined: the certificate sets no path length constraint",
    )
    leaf = build(extensions=[x509.BasicConstraints(ca=False, path_length=None)])
    holds(leaf.der, "not is_ca")
    fails(leaf.der, "is_ca")
    holds(build().der, "not is_ca")  # without the extension
    assert (facts_of(ca).is_ca, facts_of(ca).path_length) == (True, 2)
    assert isinstance(facts_of(leaf).path_length, Missing)


def test_certificate_policies() -> None:
    oids = ["2.23.140.1.2.1", "1.3.6.1.4.1.311.21.8.1"]
    cert = build(
        extensions=[
            x509.CertificatePolicies(
                [
                    x509.PolicyInformation(x509.ObjectIdentifier(oids[0]), None),
                    x509.PolicyInformation(
                        x509.ObjectIdentifier(oids[1]), ["https://contoso.com/cps"]
                    ),
                ]
            )
        ]
    )
    assert facts_of(cert).certificate_policies == tuple(oids)
    holds(cert.der, '"2.23.140.1.2.1" in certificate_policies')
    holds(cert.der, 'any certificate_policies startswith "1.3.6.1.4.1.311."')
    fails(cert.der, '"2.23.140.1.2.2" in certificate_policies')
    fails(build().der, '"2.23.140.1.2.1" in certificate_policies')


def test_key_identifiers(ca_key: rsa.RSAPrivateKey) -> None:
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    leaf_key = ec_key()
    leaf_ski = x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key())
    cert = build(
        key=leaf_key,
        signing_key=ca_key,
        issuer=simple_name(CN="CA"),
        extensions=[
            leaf_ski,
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
        ],
    )
    facts = facts_of(cert)
    assert facts.subject_key_id == leaf_ski.digest.hex()
    assert facts.authority_key_id == ca_ski.digest.hex()
    holds(cert.der, f'subject_key_id == "{_colon_hex(leaf_ski.digest)}"')
    holds(cert.der, f'subject_key_id == "{leaf_ski.digest.hex().upper()}"')
    holds(cert.der, f'authority_key_id == "{_colon_hex(ca_ski.digest).lower()}"')
    fails(cert.der, f'authority_key_id == "{_colon_hex(leaf_ski.digest)}"')
    bare = build()
    fails(
        bare.der,
        'subject_key_id == "00"',
        "undefined",
        "undefined: the certificate has no subject key identifier",
    )
    fails(
        bare.der,
        'authority_key_id == "00"',
        "undefined",
        "undefined: the certificate has no authority key identifier",
    )


# -- keys and signatures ---------------------------------------------------------------------------

KEYS: dict[str, tuple[Callable[[], Key], str, int, str | None]] = {
    "rsa-2048": (lambda: rsa.generate_private_key(65537, 2048), "rsa", 2048, None),
    "rsa-3072": (lambda: rsa.generate_private_key(65537, 3072), "rsa", 3072, None),
    "ec-p256": (lambda: ec.generate_private_key(ec.SECP256R1()), "ec", 256, "secp256r1"),
    "ec-p384": (lambda: ec.generate_private_key(ec.SECP384R1()), "ec", 384, "secp384r1"),
    "ed25519": (ed25519.Ed25519PrivateKey.generate, "ed25519", 256, None),
    "ed448": (ed448.Ed448PrivateKey.generate, "ed448", 456, None),
    "dsa-2048": (lambda: dsa.generate_private_key(2048), "dsa", 2048, None),
}


@pytest.mark.parametrize("kind", list(KEYS))
def test_key_type_size_and_curve(ca_key: rsa.RSAPrivateKey, kind: str) -> None:
    make, key_type, size, curve = KEYS[kind]
    cert = build(key=make(), signing_key=ca_key, issuer=simple_name(CN="CA"))
    facts = facts_of(cert)
    assert (facts.key_type, facts.key_size) == (key_type, size)
    holds(cert.der, f'key.type == "{key_type}"', f'got "{key_type}"')
    holds(cert.der, f"key.size == {size}", f"got {size}")
    if curve is None:
        assert isinstance(facts.key_curve, Missing)
        fails(
            cert.der,
            'key.curve == "secp256r1"',
            "undefined",
            f"undefined: a {key_type} key has no curve",
        )
    else:
        assert facts.key_curve == curve
        holds(cert.der, f'key.curve == "{curve}"')
    weak = key_type in ("rsa", "dsa") and size < 3072
    documented = 'key.size >= 3072 or key.type not in ["rsa", "dsa"]'
    (fails if weak else holds)(cert.der, documented)


SIGNERS: dict[str, tuple[Callable[[], Key], hashes.HashAlgorithm | None, str, str | None]] = {
    "rsa-sha256": (
        lambda: rsa.generate_private_key(65537, 2048),
        hashes.SHA256(),
        "sha256WithRSAEncryption",
        "sha256",
    ),
    "ecdsa-sha384": (
        lambda: ec.generate_private_key(ec.SECP384R1()),
        hashes.SHA384(),
        "ecdsa-with-SHA384",
        "sha384",
    ),
    "ed25519": (ed25519.Ed25519PrivateKey.generate, None, "ed25519", None),
    "ed448": (ed448.Ed448PrivateKey.generate, None, "ed448", None),
}


@pytest.mark.parametrize("kind", list(SIGNERS))
def test_signature_algorithm_and_hash(kind: str) -> None:
    make, algorithm, name, digest = SIGNERS[kind]
    key = make()
    cert = build(key=key, algorithm=algorithm)
    facts = facts_of(cert)
    assert facts.signature_algorithm == name
    assert facts.self_signed is True
    holds(cert.der, f'signature.algorithm == "{name}"', f'got "{name}"')
    if digest is None:
        assert isinstance(facts.signature_hash, Missing)
        fails(
            cert.der,
            'signature.hash == "sha256"',
            "undefined",
            f"undefined: {name} signs without a separate hash",
        )
        # undefined, not false: a rule that bans weak hashes does not pass by accident...
        fails(cert.der, 'signature.hash not in ["md2", "md5", "sha1"]', "undefined")
        # ...so a policy says what it means
        holds(cert.der, 'key.type in ["ed25519", "ed448"] or signature.hash == "sha256"')
    else:
        assert facts.signature_hash == digest
        holds(cert.der, f'signature.hash == "{digest}"', f'got "{digest}"')
        holds(cert.der, 'signature.hash not in ["md2", "md5", "sha1"]')


def test_an_x25519_key_is_named_plainly(ca_key: rsa.RSAPrivateKey) -> None:
    from cryptography.hazmat.primitives.asymmetric import x25519

    # X25519 cannot sign, so it only appears in certificates issued for key agreement
    public = x25519.X25519PrivateKey.generate().public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(simple_name(CN="kex"))
        .issuer_name(simple_name(CN="CA"))
        .public_key(public)
        .serial_number(1)
        .not_valid_before(START)
        .not_valid_after(END)
    )
    cert = IssuedLike(builder.sign(ca_key, hashes.SHA256()))
    assert facts_of(cert).key_type == "x25519"
    holds(cert.der, 'key.type == "x25519"')


# -- laziness --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def undecodable_subject() -> bytes:
    member = hostile.invalid_utf8_subject()
    cert = x509.load_der_x509_certificate(member.der)
    with pytest.raises(ValueError):
        _ = cert.subject
    return member.der


def test_a_fingerprint_rule_never_reads_the_subject(undecodable_subject: bytes) -> None:
    sha256 = read_certificate(undecodable_subject).sha256
    pinned = policy(("pinned", "allow", f'fingerprint == "{sha256}"'))
    decision = decide(pinned, undecodable_subject)
    assert decision.reason == "allowed_by_rule" and decision.rule == "pinned"
    assert decision.errors == ()
    # explaining describes the certificate, and says the subject is unreadable
    assert decision.trace is not None
    certificate_step = decision.trace.steps[1]
    assert certificate_step.name == "certificate" and certificate_step.outcome == "pass"
    assert certificate_step.detail.startswith("subject <the subject name cannot be read: ")
    # a rule reading the subject errors; the fingerprint rule still allows
    both = policy(
        ("by-name", "allow", 'subject.CN == "hostile"'),
        ("pinned", "allow", f'fingerprint == "{sha256}"'),
    )
    decision = decide(both, undecodable_subject)
    assert decision.reason == "allowed_by_rule" and decision.rule == "pinned"
    assert len(decision.errors) == 1
    assert decision.errors[0].startswith("rule by-name: the subject name cannot be read: ")


def test_only_the_facts_a_rule_reads_are_computed(rich: IssuedLike) -> None:
    sha256 = facts_of(rich).sha256
    pinned = policy(("pinned", "allow", f'fingerprint.sha256 == "{sha256}"'))
    facts = read_certificate(rich.der)
    assert vars(facts).keys() == {"certificate", "der"}
    decision = pinned.evaluate(facts, path="/orders", now=NOW)
    assert decision.allowed
    # the validity is read for the decision memo's time signature
    computed = {"certificate", "der", "not_before", "not_after"}
    assert vars(facts).keys() == {*computed, "sha256", "_sha256_digest"}
    by_name = policy(("by-name", "allow", 'subject.CN == "api-client"'))
    assert by_name.evaluate(facts, path="/orders", now=NOW).allowed
    # both names are read from the DER at once (no cryptography Name objects for plain
    # names); and the attributes with one value, which is what `==` reads
    read = {"sha256", "_sha256_digest", "subject_single", "_names_from_der"}
    assert vars(facts).keys() == {*computed, *read}


# -- the facts cache -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def many() -> list[IssuedLike]:
    """Twenty small, distinct certificates (one key, twenty names)."""
    return [build(subject=simple_name(CN=f"client-{i}"), serial=1000 + i) for i in range(20)]


def _kept(cache: FactsCache, value: bytes | str) -> CertificateFacts:
    """Facts the cache keeps: read twice, as a returning client's are."""
    cache.read(value)
    facts, kept = cache.read_kept(value)
    assert kept
    return facts


def test_the_cache_returns_the_same_facts_for_the_same_bytes(many: list[IssuedLike]) -> None:
    cache = FactsCache(8)
    seen_once, kept = cache.read_kept(many[0].der)
    assert not kept and len(cache) == 0  # the first sighting is only noted
    first = cache.read(many[0].der)
    assert first is not seen_once and first.sha256 == seen_once.sha256
    assert cache.read(many[0].der) is first
    assert cache.read(bytes(many[0].der)) is first  # equal bytes, another object
    assert _kept(cache, many[1].der) is not first
    pem = _kept(cache, many[0].pem)
    assert pem is not first and pem.sha256 == first.sha256
    assert _kept(cache, many[0].pem.decode()) is not pem  # text and bytes are cached apart
    assert len(cache) == 4


def test_the_cache_evicts_the_least_recently_used(many: list[IssuedLike]) -> None:
    cache = FactsCache(2)
    a, b, c = (m.der for m in many[:3])
    facts_a = _kept(cache, a)
    facts_b = _kept(cache, b)
    assert cache.read(a) is facts_a  # a is now the most recently used
    _kept(cache, c)  # so b goes
    assert len(cache) == 2
    assert cache.read(a) is facts_a
    assert cache.read(b) is not facts_b


def test_certificates_seen_once_do_not_push_out_one_that_returns(
    many: list[IssuedLike],
) -> None:
    """A flood of one-off certificates (a scanner, an attacker) passes through the cache
    without evicting the client that keeps coming back."""
    cache = FactsCache(2)
    returning = _kept(cache, many[0].der)
    for other in many[1:]:
        assert cache.read_kept(other.der)[1] is False
        assert cache.read(many[0].der) is returning
    assert len(cache) == 1


def test_the_cache_can_be_off_and_refuses_a_negative_size(many: list[IssuedLike]) -> None:
    cache = FactsCache(0)
    assert cache.read(many[0].der) is not cache.read(many[0].der)
    assert len(cache) == 0
    with pytest.raises(ValueError, match="0 or more"):
        FactsCache(-1)


def test_the_cache_does_not_keep_failures(many: list[IssuedLike]) -> None:
    cache = FactsCache(4)
    with pytest.raises(CertificateError):
        cache.read(b"\x30\x00")
    assert len(cache) == 0
    facts = CertificateFacts(many[0].certificate, many[0].der)
    assert cache.read(many[0].certificate).sha256 == facts.sha256  # objects are not cached
    assert len(cache) == 0


@pytest.mark.parametrize("size", [5, 64])
def test_the_cache_under_eight_threads(many: list[IssuedLike], size: int) -> None:
    cache = FactsCache(size)
    expected = {
        m.der: (m.certificate.fingerprint(hashes.SHA256()).hex(), i) for i, m in enumerate(many)
    }
    ders = list(expected)
    errors: list[BaseException] = []
    seen: list[dict[bytes, set[int]]] = []
    start = threading.Barrier(8)

    def hammer(thread: int) -> None:
        mine: dict[bytes, set[int]] = {}
        seen.append(mine)
        try:
            start.wait()
            for step in range(400):
                der = ders[(step * (thread + 3) + thread) % len(ders)]
                facts = cache.read(der)
                sha256, index = expected[der]
                assert facts.sha256 == sha256
                assert facts.name_values("subject", NAME_ATTRIBUTES["CN"]) == (f"client-{index}",)
                mine.setdefault(der, set()).add(id(facts))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    for der in ders:  # each seen once before: from now on, each is kept
        cache.read(der)
    threads = [threading.Thread(target=hammer, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(cache) <= size
    if size >= len(ders):
        # nothing was evicted, so every thread got the one facts object for each certificate
        for der in ders:
            ids = set().union(*(mine.get(der, set()) for mine in seen))
            assert len(ids) == 1


# -- the hostile corpus: every member against every attribute --------------------------------------

OID_NAMES = ["subject.2.5.4.3", "issuer.2.5.4.10", "subject.1.2.3.4", "issuer.1.2.3.4"]
EXTENSION_ATTRIBUTES = {
    "san.dns",
    "san.uri",
    "san.email",
    "san.ip",
    "san.upn",
    "spiffe_id",
    "eku",
    "key_usage",
    "is_ca",
    "path_length",
    "certificate_policies",
    "subject_key_id",
    "authority_key_id",
}
ERRORS_BY_PART = {
    "subject": "the subject name cannot be read: ",
    "issuer": "the issuer name cannot be read: ",
    "extensions": "the certificate's extensions cannot be read: ",
    "key": "the public key cannot be read: ",
    "signature.hash": "the signature algorithm cannot be read: ",
}


def parts_read_by(name: str) -> tuple[str, ...]:
    """The parts of a certificate an attribute reads, in the order it reads them."""
    if name == "self_signed":
        return ("subject", "issuer")
    if name in EXTENSION_ATTRIBUTES:  # before the names: subject_key_id is no subject name
        return ("extensions",)
    if name.startswith(("subject", "issuer")):
        return (name.split(".")[0],)
    if name.startswith("key."):
        return ("key",)
    if name == "signature.hash":
        return ("signature.hash",)
    return ()


def _literal(name: str, value: object) -> str:
    """``value`` written in a policy as a constant of ``name``'s type."""
    attribute = lookup(name)
    assert attribute is not None
    if attribute.type is Type.SERIAL:
        assert isinstance(value, int)
        return f'"-0x{-value:X}"' if value < 0 else f'"0x{value:X}"'
    if attribute.type is Type.HEX:
        assert isinstance(value, str)
        return '"' + _colon_hex(bytes.fromhex(value)) + '"'
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, timedelta):
        return format_duration(value)
    return str(value)


@dataclass(frozen=True)
class Probe:
    """One condition on one attribute, and how to tell its outcome from a true value."""

    attribute: str
    when: str
    outcome: Callable[[object], str]


def _equals(expected: object) -> Callable[[object], str]:
    def outcome(truth: object) -> str:
        if truth is None:
            return "undefined"
        if isinstance(truth, tuple):  # a multi-valued attribute used as one value
            if len(truth) != 1:
                return "undefined"
            truth = truth[0]
        return "true" if truth == expected else "false"

    return outcome


def _contains(expected: object) -> Callable[[object], str]:
    def outcome(truth: object) -> str:
        assert isinstance(truth, tuple)
        return "true" if expected in truth else "false"

    return outcome


def _boolean(truth: object) -> str:
    return {True: "true", False: "false", None: "undefined"}[truth]  # type: ignore[index]


def probes_for(name: str, truth: object) -> list[Probe]:
    """Type-correct conditions on ``name`` built from one true value of it."""
    attribute = lookup(name)
    assert attribute is not None
    if name in CONTEXT_ATTRIBUTES - REQUEST_ATTRIBUTES:
        # no proxy and no trust store in these evaluations: never true, whatever the leaf
        example = {Type.INT: 7, Type.STRING: "x", Type.HEX: "00", Type.SERIAL: 7}.get(
            attribute.type, START
        )
        when = f"{name} == {_literal(name, example)}" if attribute.type is not Type.BOOL else name
        if attribute.type is Type.FINGERPRINT:
            when = f"{name} in pins"
        return [Probe(name, when, lambda truth: "false|undefined")]
    if attribute.type is Type.BOOL:
        return [Probe(name, name, _boolean)]
    if attribute.type is Type.FINGERPRINT:
        pins = "pins_sha1" if name == "fingerprint.sha1" else "pins"
        return [Probe(name, f"{name} in {pins}", lambda truth: "true")]
    if name in REQUEST_ATTRIBUTES:
        value = {"request.path": "/orders", "request.method": "GET", "request.host": "api.x"}[name]
        return [Probe(name, f'{name} == "{value}"', lambda truth: "true")]
    if isinstance(truth, tuple):
        first = truth[0] if truth else "absent"
        probes = [Probe(name, f"{name} == {_literal(name, first)}", _equals(first))]
        label = name.partition(".")[2]
        if not name.startswith(("subject.", "issuer.")) or label in ("CN", "O", "OU", "1.2.3.4"):
            # `in` reads every value the way `==` reads the only one: a few names will do
            probes.append(Probe(name, f"{_literal(name, first)} in {name}", _contains(first)))
        return probes
    if truth is None:  # nothing true to compare with: any value of the right type
        example = {Type.INT: 7, Type.STRING: "secp256r1", Type.HEX: "00"}[attribute.type]
        return [Probe(name, f"{name} == {_literal(name, example)}", _equals(example))]
    return [Probe(name, f"{name} == {_literal(name, truth)}", _equals(truth))]


MATRIX_ATTRIBUTES = sorted(set(VOCABULARY) - TRUST_ATTRIBUTES - IDENTITY_ATTRIBUTES) + OID_NAMES
BASE_TRUTH = hostile.base_truth()
BASE_PROBES = [p for name in MATRIX_ATTRIBUTES for p in probes_for(name, BASE_TRUTH.get(name))]


@pytest.fixture(scope="module")
def pins() -> dict[str, list[str]]:
    readable = [read_certificate(m.der) for m in hostile.corpus() if m.readable]
    return {"pins": [f.sha256 for f in readable], "pins_sha1": [f.sha1 for f in readable]}


@dataclass(frozen=True)
class Compiled:
    probe: Probe
    allow: Policy
    """One allow rule, ``probe``."""
    deny: Policy
    """A deny rule ``probe``, and an allow rule ``pinned`` reading only the fingerprint."""
    either: Policy | None
    """Allow rules ``probe`` and then ``pinned``: a broken part does not stop the second."""


def compile_probe(probe: Probe, pins: dict[str, list[str]], either: bool = True) -> Compiled:
    pinned = ("pinned", "allow", "fingerprint.sha256 in pins")
    return Compiled(
        probe,
        policy(("probe", "allow", probe.when), sets=pins),
        policy(("probe", "deny", probe.when), pinned, sets=pins),
        policy(("probe", "allow", probe.when), pinned, sets=pins) if either else None,
    )


@pytest.fixture(scope="module")
def compiled(pins: dict[str, list[str]]) -> list[Compiled]:
    # the two-allow-rule policy once per attribute: it tests the engine more than the probe
    first = {p.attribute: p for p in reversed(BASE_PROBES)}
    return [compile_probe(p, pins, either=first[p.attribute] is p) for p in BASE_PROBES]


def test_the_matrix_covers_every_attribute() -> None:
    matrix = set(VOCABULARY) - TRUST_ATTRIBUTES - IDENTITY_ATTRIBUTES  # those: test_identity.py
    assert {p.attribute for p in BASE_PROBES} == matrix | set(OID_NAMES)
    assert len(hostile.corpus()) >= 20


def _evaluate(policy: Policy, der: bytes) -> Iterator[Decision]:
    """The plain and the explained decision, which must be equal."""
    kwargs = {"path": "/orders", "method": "get", "host": "API.x:443", "now": NOW}
    plain = policy.evaluate(der, **kwargs)  # type: ignore[arg-type]
    explained = policy.evaluate(der, explain=True, **kwargs)  # type: ignore[arg-type]
    assert plain == explained
    assert explained.trace is not None
    yield plain
    yield explained


def check_member(member: hostile.Hostile, entries: list[Compiled]) -> list[str]:
    """Every way ``member`` is decided wrongly by the probes in ``entries`` (empty: none)."""
    problems: list[str] = []
    truth = hostile.truth_of(member)
    for entry in entries:
        probe = entry.probe
        where = f"{member.name} / {probe.when}"
        broken = next((p for p in parts_read_by(probe.attribute) if p in member.broken), None)
        expected = "error" if broken else probe.outcome(truth.get(probe.attribute))
        allow_decisions = list(_evaluate(entry.allow, member.der))
        deny_decisions = list(_evaluate(entry.deny, member.der))
        either = [] if entry.either is None else list(_evaluate(entry.either, member.der))
        if not member.readable:
            for decision in allow_decisions + deny_decisions + either:
                if decision.reason != "malformed_certificate" or decision.allowed:
                    problems.append(f"{where}: {decision.reason}, expected malformed_certificate")
            continue
        if "|" in expected:  # no truth to compare with: only never allowed, never crashing
            for decision in allow_decisions:
                outcome = decision.trace.rules[0].outcome if decision.trace else "false"
                if decision.allowed or outcome not in ("false", "undefined", "error"):
                    problems.append(f"{where}: allow rule gave {decision.reason} ({outcome})")
            for decision in deny_decisions:
                if decision.reason not in ("allowed_by_rule", "rule_error"):
                    problems.append(f"{where}: deny rule gave {decision.reason}")
            continue
        for decision in allow_decisions:
            wanted = "allowed_by_rule" if expected == "true" else "no_matching_rule"
            if decision.reason != wanted or decision.allowed != (expected == "true"):
                problems.append(f"{where}: allow rule gave {decision.reason}, expected {wanted}")
            if broken:
                error = ERRORS_BY_PART[broken]
                if len(decision.errors) != 1 or not decision.errors[0].startswith(
                    f"rule probe: {error}"
                ):
                    problems.append(f"{where}: errors {decision.errors}, expected {error}…")
            elif decision.errors:
                problems.append(f"{where}: unexpected errors {decision.errors}")
            if decision.trace is not None and decision.trace.rules[0].outcome != expected:
                got = decision.trace.rules[0].outcome
                problems.append(f"{where}: traced {got}, expected {expected}")
        for decision in deny_decisions:
            wanted = {"error": "rule_error", "true": "denied_by_rule"}.get(
                expected, "allowed_by_rule"
            )
            if decision.reason != wanted:
                problems.append(f"{where}: deny rule gave {decision.reason}, expected {wanted}")
            if decision.reason == "allowed_by_rule" and decision.rule != "pinned":
                problems.append(f"{where}: allowed by {decision.rule}")
            if broken and not (
                decision.errors
                and decision.errors[0].startswith(f"rule probe: {ERRORS_BY_PART[broken]}")
            ):
                problems.append(f"{where}: deny-rule errors {decision.errors}")
        for decision in either:
            # the fingerprint rule decides whenever the probe does not hold, broken or not
            wanted_rule = "probe" if expected == "true" else "pinned"
            if not decision.allowed or decision.rule != wanted_rule:
                problems.append(f"{where}: two allow rules gave {decision.reason} {decision.rule}")
            if bool(decision.errors) != bool(broken):
                problems.append(f"{where}: two allow rules recorded errors {decision.errors}")
    return problems


@pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")
@pytest.mark.parametrize("member", hostile.corpus(), ids=lambda m: m.name)
def test_every_attribute_of_every_hostile_certificate(
    member: hostile.Hostile, compiled: list[Compiled]
) -> None:
    assert check_member(member, compiled) == []


@pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")
@pytest.mark.parametrize(
    "member", [m for m in hostile.corpus() if m.readable and m.truth], ids=lambda m: m.name
)
def test_what_differs_in_a_hostile_certificate_reads_as_it_is(
    member: hostile.Hostile, pins: dict[str, list[str]]
) -> None:
    """Probes built from the member's own true values, for every attribute that differs."""
    truth = hostile.truth_of(member)
    # absent values (an empty tuple, None) are covered by the matrix above
    names = sorted(n for n, value in member.truth.items() if value not in ((), None))
    entries = [compile_probe(p, pins) for n in names for p in probes_for(n, truth[n])]
    assert entries
    assert check_member(member, entries) == []


def _member(label: str) -> hostile.Hostile:
    (found,) = (m for m in hostile.corpus() if m.name == label)
    return found


@pytest.mark.parametrize(("label", "digest"), [("MD5 signature", "md5"), ("MD2 signature", "md2")])
def test_weak_signature_hashes_are_named_and_refused(label: str, digest: str) -> None:
    der = _member(label).der
    facts = read_certificate(der)
    assert facts.signature_hash == digest
    holds(der, f'signature.hash == "{digest}"', f'got "{digest}"')
    strong = policy(("strong", "allow", 'signature.hash not in ["md2", "md5", "sha1"]'))
    decision = decide(strong, der)
    assert decision.reason == "no_matching_rule" and not decision.allowed
    banned = policy(
        ("weak", "deny", 'signature.hash in ["md2", "md5", "sha1"]'), ("all", "allow", "present")
    )
    assert decide(banned, der).reason == "denied_by_rule"
    # the untouched certificate passes both
    assert decide(strong, hostile.base_certificate()).allowed
    assert decide(banned, hostile.base_certificate()).allowed


def test_serials_that_rfc_5280_forbids_still_read() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        negative = read_certificate(_member("negative serial").der)
        assert negative.serial == -0x1A2B3C
        assert negative.summary()["serial"] == "-1A2B3C"
        holds(_member("negative serial").der, 'serial == "-0x1A2B3C"', "got -1A2B3C")
        assert read_certificate(_member("zero serial").der).serial == 0
    long = _member("22-byte serial").der
    assert read_certificate(long).serial == hostile.LONG_SERIAL
    assert hostile.LONG_SERIAL.bit_length() > 20 * 8
    holds(long, f'serial == "{hostile.LONG_SERIAL:x}"')


def test_broken_parts_raise_fact_errors_and_leave_the_rest() -> None:
    subject = read_certificate(_member("invalid UTF-8 in the subject CN").der)
    with pytest.raises(FactError, match=r"^the subject name cannot be read: "):
        _ = subject.subject
    with pytest.raises(FactError, match=r"^the subject name cannot be read: "):
        subject.name_values("subject", NAME_ATTRIBUTES["CN"])
    assert subject.issuer and subject.serial == hostile.SERIAL and subject.eku
    extensions = read_certificate(_member("duplicate SAN extensions").der)
    with pytest.raises(FactError, match=r"Duplicate 2\.5\.29\.17 extension"):
        _ = extensions.san_dns
    for name in ("eku", "key_usage", "is_ca", "path_length", "subject_key_id", "spiffe_id"):
        with pytest.raises(FactError, match=r"^the certificate's extensions cannot be read: "):
            getattr(extensions, name)
    assert extensions.key_type == "rsa" and extensions.subject
    key = read_certificate(_member("unknown public key algorithm").der)
    with pytest.raises(FactError, match=r"^the public key cannot be read: "):
        _ = key.key_size
    assert key.self_signed is False and key.signature_hash == "sha256"


@pytest.mark.parametrize("label", ["trailing garbage", "truncated DER", "empty SEQUENCE"])
def test_unreadable_bytes_are_malformed(label: str) -> None:
    der = _member(label).der
    with pytest.raises(CertificateError, match=r"^not a DER certificate: "):
        read_certificate(der)
    decision = decide(policy(("all", "allow", "present")), der)
    assert decision.reason == "malformed_certificate" and not decision.allowed


def test_the_corpus_helpers_round_trip() -> None:
    base = hostile.base_certificate()
    assert hostile.Certificate.parse(base).der == base
    assert hostile.integer(-1) == b"\x02\x01\xff"
    assert hostile.integer(128) == b"\x02\x02\x00\x80"
    assert hostile.integer(-129) == b"\x02\x02\xff\x7f"
    assert hostile.oid("1.2.840.113549.1.1.4") == bytes.fromhex("06092a864886f70d010104")
    assert hostile.encode_length(300) == b"\x82\x01\x2c"
    assert (
        x509.load_der_x509_certificate(hostile.base_certificate()).serial_number == hostile.SERIAL
    )
    assert len(read_certificate(_member("a 500-character subject").der).subject) >= 500


# -- names read straight from the DER agree with cryptography -----------------------------------


def _same_strings_as_cryptography(der: bytes) -> None:
    certificate = x509.load_der_x509_certificate(der)
    facts = read_certificate(der)
    assert facts.subject == certificate.subject.rfc4514_string()
    assert facts.issuer == certificate.issuer.rfc4514_string()


def _names_by_cryptography(der: bytes) -> tuple[dict[str, tuple[str, ...]], ...]:
    certificate = x509.load_der_x509_certificate(der)
    out = []
    for name in (certificate.issuer, certificate.subject):
        values: dict[str, list[str]] = {}
        for attribute in name:
            assert isinstance(attribute.value, str)
            values.setdefault(attribute.oid.dotted_string, []).append(attribute.value)
        out.append({oid: tuple(found) for oid, found in values.items()})
    return tuple(out)


def _singles_agree(plain: tuple[_PlainName, _PlainName]) -> None:
    """The attributes with one value, kept beside the others, are exactly those."""
    for name in plain:
        values = _values_by_oid(name)
        assert name.single == {o: vs[0] for o, vs in values.items() if len(vs) == 1}
        assert (name.repeated is None) == all(len(vs) == 1 for vs in values.values())
        assert [o for o, _ in name.pairs if o in name.single] == list(name.single)


@pytest.mark.parametrize(
    "member", [m for m in hostile.corpus() if m.readable], ids=lambda m: m.name
)
def test_names_from_the_der_equal_cryptographys_or_are_left_to_it(member: hostile.Hostile) -> None:
    from policyengine.request.der import plain_names as _plain_names

    plain = _plain_names(member.der)
    if plain is None:
        return  # read through cryptography, as the corpus tests above check
    assert tuple(_values_by_oid(p) for p in plain) == _names_by_cryptography(member.der)
    _singles_agree(plain)
    _same_strings_as_cryptography(member.der)


@pytest.mark.parametrize(
    "subject",
    [
        [("CN", "api-client"), ("O", "Contoso Ltd"), ("OU", "a"), ("OU", "b")],
        [("CN", "hôstile 😀"), ("C", "US"), ("emailAddress", "x@contoso.com")],
        [("DC", "com"), ("DC", "contoso"), ("UID", "svc-1"), ("serialNumber", "0042")],
        [("CN", "x" * 64), ("ST", "Washington"), ("L", "Redmond")],
        # every character RFC 4514 escapes, where it escapes them
        [("CN", ' #lead, "q" +p;s<a>b\\c trail '), ("O", "#hash"), ("OU", "nul\x00in")],
        [("CN", " "), ("O", "a"), ("OU", "x y")],
    ],
)
def test_plain_names_from_the_der(subject: list[tuple[str, str]]) -> None:
    from policyengine.request.der import plain_names as _plain_names

    der = make_certificate(subject).der
    plain = _plain_names(der)
    assert plain is not None
    assert tuple(_values_by_oid(p) for p in plain) == _names_by_cryptography(der)
    _singles_agree(plain)
    _same_strings_as_cryptography(der)


def test_a_multi_valued_rdn_is_left_to_cryptography() -> None:
    from policyengine.request.der import plain_names as _plain_names

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.RelativeDistinguishedName(
                [
                    x509.NameAttribute(x509.NameOID.COMMON_NAME, "a"),
                    x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "b"),
                ]
            )
        ]
    )
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    der = certificate.public_bytes(serialization.Encoding.DER)
    assert _plain_names(der) is None
    facts = read_certificate(der)
    assert facts.subject_attributes == {"2.5.4.3": ("a",), "2.5.4.10": ("b",)}


def _name_der(pairs: list[tuple[str, str]]) -> bytes:
    """The DER of a name, its outer SEQUENCE stripped (what ``_plain_name`` reads)."""
    from policyengine.request.der import element as _element
    from policyengine.testing import make_name

    der = make_name(pairs).public_bytes()
    outer = _element(der, 0, len(der))
    assert outer is not None
    return der[outer[1] : outer[2]]


def _by_rdn(der: bytes) -> list[tuple[str, str]] | None:
    """The reference reading: every RDN through ``_rdn``, with no inline shortcut."""
    from policyengine.request.der import rdn as _rdn

    pairs, pos = [], 0
    while pos < len(der):
        read = _rdn(der, pos, len(der))
        if read is None:
            return None
        pairs.append(read[0])
        pos = read[1]
    return pairs


def _subjects(
    labels: list[str], alphabet: str, longest: int, most: int
) -> st.SearchStrategy[list[tuple[str, str]]]:
    """Subject names: 1 to ``most`` attributes, values of 1 to ``longest`` characters."""
    value = st.text(alphabet=alphabet, min_size=1, max_size=longest)
    ascii_value = st.text(
        alphabet=alphabet.encode("ascii", "ignore").decode(), min_size=1, max_size=longest
    )
    # emailAddress and DC are IA5Strings: cryptography refuses to write anything but ASCII
    pair = st.sampled_from(labels).flatmap(
        lambda label: st.tuples(
            st.just(label), ascii_value if label in {"emailAddress", "DC"} else value
        )
    )
    return st.lists(pair, min_size=1, max_size=most)


@settings(max_examples=300, deadline=None)
@given(
    _subjects(["CN", "O", "OU", "L", "emailAddress"], "abcXYZ09 -é😀", 140, 4),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=3),
    st.integers(0, 8),
)
def test_the_inline_rdn_reading_equals_the_general_one(
    subject: list[tuple[str, str]], flips: list[tuple[int, int]], cut: int
) -> None:
    """Short and long lengths, then bytes changed and the end cut: both readings agree."""
    from policyengine.request.der import plain_name as _plain_name

    der = bytearray(_name_der(subject))
    _by_rdn(bytes(der))  # the OIDs are now known, so the inline reading is taken
    assert _plain_name(bytes(der), 0, len(der)) == _by_rdn(bytes(der))
    for position, byte in flips:
        der[position % len(der)] = byte
    mutated = bytes(der[: len(der) - cut])
    assert _plain_name(mutated, 0, len(mutated)) == _by_rdn(mutated)


@settings(max_examples=60, deadline=None)
@given(_subjects(["CN", "O", "OU", "L", "DC"], ' #,+;<>"\\=abcXYZ09-.é😀\x00', 20, 5))
def test_names_written_from_the_der_equal_cryptographys(subject: list[tuple[str, str]]) -> None:
    _same_strings_as_cryptography(make_certificate(subject).der)


def test_a_certificates_token_is_its_pins_token() -> None:
    """The token a certificate's digest gives is the one its pin, written as hex, gives;
    another certificate's, or text that is not hex, gives another."""
    from policyengine.values import digest_token, fingerprint_token

    one, other = (read_certificate(make_certificate({"CN": n}).der) for n in ("a", "b"))
    assert one.sha1_token == fingerprint_token(one.sha1) == digest_token(bytes.fromhex(one.sha1))
    assert one.sha256_token == fingerprint_token(one.sha256)
    assert len({one.sha1_token, one.sha256_token, other.sha1_token, other.sha256_token}) == 4
    assert fingerprint_token("zz" * 20) not in {one.sha1_token, fingerprint_token("00" * 20)}
    assert one.sha1 == hashlib.sha1(one.der).hexdigest()
    assert one.sha256 == hashlib.sha256(one.der).hexdigest()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda der: der[:50], "not a DER certificate: the data ends before the certificate does"),
        (
            lambda der: der + b"\x00",
            "not a DER certificate: bytes follow the end of the certificate",
        ),
        (
            lambda der: der[:1] + b"\x85" + der[2:],
            "not a DER certificate: a length in its encoding",
        ),
        (
            lambda der: der[:4] + b"\x05" + der[5:],
            "not a DER certificate: a field is not of the type X.509 puts there (in tbs_cert)",
        ),
        (
            lambda der: b"hello\n",
            "neither PEM (it has no -----BEGIN CERTIFICATE----- line) nor DER",
        ),
    ],
    ids=["cut short", "extra bytes", "bad length", "wrong tag inside", "not a certificate"],
)
def test_an_unreadable_certificate_is_said_in_words(
    damage: Callable[[bytes], bytes], message: str
) -> None:
    """Not cryptography's internal debug text (`ParseError { kind: ShortData ... }`)."""
    with pytest.raises(CertificateError) as error:
        read_certificate(damage(make_certificate().der))
    assert str(error.value).startswith(message)
    assert "ParseError" not in str(error.value) and "kind:" not in str(error.value)
