"""The ``trust:`` section end to end: chains, revocation, chain attributes, loading, caching.

Every PKI here is generated (root -> intermediate -> leaf, with ``make_certificate`` and
``cryptography``'s builders for name constraints and CRLs) and written to ``tmp_path`` next
to a policy whose ``trust:`` section names the files relative to itself. Every decision case
checks both the decision and the exact words the explain trace gives for ``trusted`` and
``revoked``.
"""

from __future__ import annotations

import base64
import textwrap
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

import pytest
from conftest import NOW, POLICIES
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from policyengine import Decision, Policy, load_policy, read_certificate
from policyengine.errors import PolicyCheckError, PolicyFileError, PolicySchemaError
from policyengine.evaluation.trace import TraceNode
from policyengine.request.trust import MAX_FORWARDED_CANDIDATES, TrustResult
from policyengine.testing import IssuedCertificate, make_certificate, make_name

START = datetime(2025, 1, 1, tzinfo=UTC)
FAR = datetime(2099, 12, 31, tzinfo=UTC)
VALID = {"not_before": START, "not_after": FAR}
T = TypeVar("T")
NO_FILES: Mapping[str, bytes] = MappingProxyType({})
PEER = "10.0.0.5"
"""Inside the header sources' default trusted proxies (private networks)."""

ROOT_NAME = "O=Test PKI,CN=Test Root CA"
ISSUING_NAME = "O=Test PKI,CN=Test Issuing CA"

RULES = """
rules:
  - id: revoked
    effect: deny
    when: revoked and trusted
  - id: trusted
    effect: allow
    when: trusted and not revoked
"""
"""Deny a revoked certificate, allow a trusted one: both predicates show in every trace."""


# -- the PKI ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    root: IssuedCertificate
    issuing: IssuedCertificate
    leaf: IssuedCertificate
    """O=Contoso Ltd,CN=orders-client, serial 0x1001, issued by the issuing CA."""
    other_root: IssuedCertificate
    other_issuing: IssuedCertificate
    stranger: IssuedCertificate
    """A client certificate from the other PKI, whose root is no anchor here."""


@pytest.fixture(scope="module")
def pki() -> Pki:
    root = make_certificate({"CN": "Test Root CA", "O": "Test PKI"}, ca=True, **VALID)
    issuing = make_certificate(
        {"CN": "Test Issuing CA", "O": "Test PKI"}, issuer=root, ca=True, serial=0x2001, **VALID
    )
    leaf = make_certificate(
        {"CN": "orders-client", "O": "Contoso Ltd"}, issuer=issuing, serial=0x1001, **VALID
    )
    other_root = make_certificate({"CN": "Other Root CA"}, ca=True, **VALID)
    other_issuing = make_certificate(
        {"CN": "Other Issuing CA"}, issuer=other_root, ca=True, **VALID
    )
    stranger = make_certificate({"CN": "orders-client"}, issuer=other_issuing, **VALID)
    return Pki(root, issuing, leaf, other_root, other_issuing, stranger)


def pem(*certificates: IssuedCertificate) -> bytes:
    return b"".join(c.pem for c in certificates)


def crl(
    issuer: IssuedCertificate,
    revoked: Sequence[int] = (),
    *,
    last_update: datetime = START,
    next_update: datetime = FAR,
    signer: IssuedCertificate | None = None,
    number: int | None = 1,
    number_critical: bool = False,
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
    entry_extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> bytes:
    """A PEM CRL naming ``issuer``, signed by ``signer`` (the issuer itself by default).

    It carries CRL number ``number`` (none when None), ``extensions`` as
    ``(value, critical)``, and ``entry_extensions`` on every entry.
    """
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(last_update)
        .next_update(next_update)
    )
    if number is not None:
        builder = builder.add_extension(x509.CRLNumber(number), critical=number_critical)
    for value, critical in extensions:
        builder = builder.add_extension(value, critical=critical)
    for serial in revoked:
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(datetime(2026, 6, 1, tzinfo=UTC))
        )
        for value, critical in entry_extensions:
            entry = entry.add_extension(value, critical=critical)
        builder = builder.add_revoked_certificate(entry.build())
    key = (signer or issuer).key
    signed = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
    return signed.public_bytes(serialization.Encoding.PEM)


def constrained_ca(
    issuer: IssuedCertificate,
    name: str,
    constraints: x509.NameConstraints,
    *,
    critical: bool = True,
    subject: Mapping[str, str] | None = None,
) -> IssuedCertificate:
    """A CA carrying a NameConstraints extension, critical unless asked (make_certificate
    has none); its subject is CN=``name`` unless ``subject`` says otherwise."""
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(make_name(subject or {"CN": name}))
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(START)
        .not_valid_after(FAR)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer.key.public_key()  # type: ignore[arg-type]
            ),
            critical=False,
        )
        .add_extension(constraints, critical=critical)
        .sign(issuer.key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return IssuedCertificate(certificate, key)


def client_with_san(
    issuer: IssuedCertificate, subject: Mapping[str, str], names: Sequence[x509.GeneralName]
) -> IssuedCertificate:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(make_name(subject))
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(START)
        .not_valid_after(FAR)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer.key.public_key()  # type: ignore[arg-type]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
        .sign(issuer.key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return IssuedCertificate(certificate, key)


def client_certificate(
    issuer: IssuedCertificate,
    subject: x509.Name,
    names: Sequence[x509.GeneralName] | None = None,
    *,
    san_critical: bool = False,
    eku_critical: bool = False,
) -> IssuedCertificate:
    """A clientAuth leaf with exactly the subject given (empty allowed), a SAN only when
    ``names`` is given, and the criticality of each extension as asked."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(START)
        .not_valid_after(FAR)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=eku_critical
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer.key.public_key()  # type: ignore[arg-type]
            ),
            critical=False,
        )
    )
    if names is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(list(names)), critical=san_critical
        )
    certificate = builder.sign(issuer.key, hashes.SHA256())  # type: ignore[arg-type]
    return IssuedCertificate(certificate, key)


# -- policies on disk ------------------------------------------------------------------------


def write_policy(
    folder: Path,
    trust: str,
    files: Mapping[str, bytes] = NO_FILES,
    *,
    rules: str = RULES,
    head: str = "",
) -> Path:
    """``folder/policy.yaml`` with ``trust`` as its trust: section; ``files`` beside it."""
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    text = "policy: trust-test\n" + textwrap.dedent(head).strip("\n")
    text += "\ntrust:\n" + textwrap.indent(textwrap.dedent(trust).strip("\n"), "  ")
    text += textwrap.dedent(rules)
    path = folder / "policy.yaml"
    path.write_text(text.replace("\n\n", "\n"))
    return path


def build(
    folder: Path,
    trust: str,
    files: Mapping[str, bytes] = NO_FILES,
    **options: str,
) -> Policy:
    return load_policy(write_policy(folder, trust, files, **options))


def decide(policy: Policy, cert: IssuedCertificate, at: datetime = NOW) -> Decision:
    return policy.evaluate(cert.pem, path="/orders", now=at, explain=True)


def outcome(decision: Decision) -> tuple[bool, str, str | None]:
    return decision.allowed, decision.reason, decision.rule


def nodes(decision: Decision, text: str) -> list[TraceNode]:
    """Every evaluated (not skipped) trace node whose text is ``text``, in rule order."""
    assert decision.trace is not None
    found: list[TraceNode] = []

    def walk(node: TraceNode) -> None:
        if node.text == text and node.outcome != "skipped":
            found.append(node)
        for child in node.children:
            walk(child)

    for rule in decision.trace.rules:
        walk(rule.node)
    return found


def said(decision: Decision, text: str) -> tuple[str, str]:
    """``(outcome, detail)`` of ``text`` in the trace; every evaluation of it agrees."""
    found = nodes(decision, text)
    assert found, f"{text} was not evaluated"
    assert len({(n.outcome, n.detail) for n in found}) == 1, found
    return found[0].outcome, found[0].detail


def chain_text(*members: tuple[str, IssuedCertificate | bytes]) -> str:
    """The ``trusted`` detail for a chain: ``chain: leaf … <- via … <- anchor …``."""
    parts = []
    for role, issued in members:
        summary = read_certificate(issued if isinstance(issued, bytes) else issued.der).summary()
        parts.append(
            f"{role} {summary['subject']} (sha256 {summary['fingerprint.sha256'][:16]}…, "
            f"valid {summary['not_before']}..{summary['not_after']})"
        )
    return "chain: " + " <- ".join(parts)


def good_chain(pki: Pki) -> str:
    return chain_text(("leaf", pki.leaf), ("via", pki.issuing), ("anchor", pki.root))


OFF = "revocation checking is off"


# -- encoders for forwarded chains ------------------------------------------------------------


def sf_binary(der: bytes) -> str:
    return ":" + base64.b64encode(der).decode() + ":"


def rfc9440_headers(leaf: bytes, chain: Sequence[bytes]) -> dict[str, str]:
    headers = {"Client-Cert": sf_binary(leaf)}
    if chain:
        headers["Client-Cert-Chain"] = ", ".join(sf_binary(d) for d in chain)
    return headers


def envoy_headers(leaf: bytes, chain: Sequence[bytes]) -> dict[str, str]:
    """Envoy's XFCC with Cert and Chain (PEM, newline/space/+/=// percent-encoded)."""

    def encode(ders: Sequence[bytes]) -> str:
        text = "".join(
            x509.load_der_x509_certificate(d).public_bytes(serialization.Encoding.PEM).decode()
            for d in ders
        )
        for raw, code in (("\n", "%0A"), (" ", "%20"), ("+", "%2B"), ("/", "%2F"), ("=", "%3D")):
            text = text.replace(raw, code)
        return text

    value = f'By=spiffe://edge;Cert="{encode([leaf])}";Chain="{encode([leaf, *chain])}"'
    return {"X-Forwarded-Client-Cert": value}


ENCODERS = {"rfc9440": rfc9440_headers, "envoy": envoy_headers}


# -- the good chain ---------------------------------------------------------------------------


def test_good_chain_with_the_intermediate_configured(tmp_path: Path, pki: Pki) -> None:
    policy = build(
        tmp_path,
        """
        anchors: [certs/root.pem]
        intermediates: [certs/issuing.pem]
        """,
        {"certs/root.pem": pki.root.pem, "certs/issuing.pem": pki.issuing.pem},
    )
    decision = decide(policy, pki.leaf)
    assert outcome(decision) == (True, "allowed_by_rule", "trusted")
    assert said(decision, "trusted") == ("true", good_chain(pki))
    assert said(decision, "revoked") == ("false", OFF)


@pytest.mark.parametrize("source", sorted(ENCODERS))
def test_intermediate_forwarded_by_the_proxy(tmp_path: Path, pki: Pki, source: str) -> None:
    files = {"root.pem": pki.root.pem}
    trusting = build(
        tmp_path,
        "anchors: [root.pem]\nheader_intermediates: true",
        files,
        head=f"""
        certificate:
          source: {source}
        """,
    )
    headers = ENCODERS[source](pki.leaf.der, [pki.issuing.der])
    decision = trusting.evaluate_request(
        headers=headers, remote_addr=PEER, path="/orders", now=NOW, explain=True
    )
    assert outcome(decision) == (True, "allowed_by_rule", "trusted")
    assert said(decision, "trusted") == ("true", good_chain(pki))
    assert said(decision, "revoked") == ("false", OFF)

    (tmp_path / "strict").mkdir()
    strict = build(
        tmp_path / "strict",
        "anchors: [../root.pem]\nheader_intermediates: false",
        head=f"""
        certificate:
          source: {source}
        """,
    )
    decision = strict.evaluate_request(
        headers=headers, remote_addr=PEER, path="/orders", now=NOW, explain=True
    )
    why = f"issuer {ISSUING_NAME} not found among anchors or intermediates"
    assert outcome(decision) == (False, "no_matching_rule", None)
    assert decision.closest_rule == "trusted"
    assert said(decision, "trusted") == ("false", why)
    assert said(decision, "revoked") == (
        "undefined",
        f"no trusted chain to check revocation against: {why}",
    )


def test_missing_intermediate_supplied_by_the_header(tmp_path: Path, pki: Pki) -> None:
    """root -> issuing (configured) -> team CA (only forwarded) -> leaf."""
    team = make_certificate({"CN": "Team CA"}, issuer=pki.issuing, ca=True, **VALID)
    leaf = make_certificate({"CN": "team-client"}, issuer=team, **VALID)
    policy = build(
        tmp_path,
        "anchors: [root.pem]\nintermediates: [issuing.pem]",
        {"root.pem": pki.root.pem, "issuing.pem": pki.issuing.pem},
        head="certificate:\n  source: rfc9440",
    )
    chain = chain_text(("leaf", leaf), ("via", team), ("via", pki.issuing), ("anchor", pki.root))

    def request(forwarded: Sequence[bytes]) -> Decision:
        return policy.evaluate_request(
            headers=rfc9440_headers(leaf.der, forwarded),
            remote_addr=PEER,
            path="/orders",
            now=NOW,
            explain=True,
        )

    decision = request([team.der])
    assert outcome(decision) == (True, "allowed_by_rule", "trusted")
    assert said(decision, "trusted") == ("true", chain)
    assert said(decision, "revoked") == ("false", OFF)

    decision = request([])
    why = "issuer CN=Team CA not found among anchors or intermediates"
    assert outcome(decision) == (False, "no_matching_rule", None)
    assert said(decision, "trusted") == ("false", why)
    assert said(decision, "revoked") == (
        "undefined",
        f"no trusted chain to check revocation against: {why}",
    )


# -- chains that do not verify ------------------------------------------------------------------


def refused(policy: Policy, cert: IssuedCertificate, why: str) -> None:
    """Not trusted: no allow rule holds, and both predicates say ``why``."""
    decision = decide(policy, cert)
    assert outcome(decision) == (False, "no_matching_rule", None)
    assert decision.closest_rule == "trusted"
    assert decision.failed_condition == "trusted"
    assert said(decision, "trusted") == ("false", why)
    assert said(decision, "revoked") == (
        "undefined",
        f"no trusted chain to check revocation against: {why}",
    )


def test_unknown_root(tmp_path: Path, pki: Pki) -> None:
    files = {"root.pem": pki.root.pem, "other.pem": pki.other_issuing.pem}
    policy = build(tmp_path, "anchors: [root.pem]\nintermediates: [other.pem]", files)
    refused(
        policy, pki.stranger, "issuer CN=Other Root CA not found among anchors or intermediates"
    )


def test_expired_intermediate(tmp_path: Path, pki: Pki) -> None:
    old = make_certificate(
        {"CN": "Old CA"},
        issuer=pki.root,
        ca=True,
        not_before=START,
        not_after=datetime(2026, 1, 1, tzinfo=UTC),
    )
    leaf = make_certificate({"CN": "c"}, issuer=old, **VALID)
    files = {"root.pem": pki.root.pem, "old.pem": old.pem}
    policy = build(tmp_path, "anchors: [root.pem]\nintermediates: [old.pem]", files)
    refused(policy, leaf, "intermediate CN=Old CA expired on 2026-01-01T00:00:00Z")


def test_not_yet_valid_intermediate(tmp_path: Path, pki: Pki) -> None:
    future = make_certificate(
        {"CN": "Future CA"},
        issuer=pki.root,
        ca=True,
        not_before=datetime(2027, 1, 1, tzinfo=UTC),
        not_after=FAR,
    )
    leaf = make_certificate({"CN": "c"}, issuer=future, **VALID)
    files = {"root.pem": pki.root.pem, "future.pem": future.pem}
    policy = build(tmp_path, "anchors: [root.pem]\nintermediates: [future.pem]", files)
    refused(policy, leaf, "intermediate CN=Future CA is not valid before 2027-01-01T00:00:00Z")


def test_revoked_intermediate(tmp_path: Path, pki: Pki) -> None:
    files = {
        "root.pem": pki.root.pem,
        "issuing.pem": pki.issuing.pem,
        "root.crl": crl(pki.root, [0x2001]),
    }
    policy = build(
        tmp_path,
        """
        anchors: [root.pem]
        intermediates: [issuing.pem]
        revocation:
          crls: [root.crl]
          mode: soft
        """,
        files,
    )
    decision = decide(policy, pki.leaf)
    assert outcome(decision) == (False, "denied_by_rule", "revoked")
    assert said(decision, "revoked") == (
        "true",
        f"intermediate {ISSUING_NAME}: serial 2001 revoked on 2026-06-01T00:00:00Z (CRL root.crl)",
    )
    assert said(decision, "trusted") == ("true", good_chain(pki))


@pytest.mark.parametrize("eku", ["required", "optional"])
def test_server_auth_only_leaf_fails_either_way(tmp_path: Path, pki: Pki, eku: str) -> None:
    server = make_certificate(
        {"CN": "www.contoso.com"},
        issuer=pki.issuing,
        extended_key_usage=[ExtendedKeyUsageOID.SERVER_AUTH],
        **VALID,
    )
    files = {"root.pem": pki.root.pem, "issuing.pem": pki.issuing.pem}
    trust = f"anchors: [root.pem]\nintermediates: [issuing.pem]\nclient_auth_eku: {eku}"
    policy = build(tmp_path, trust, files)
    refused(
        policy,
        server,
        "the certificate's extended key usage does not include clientAuth (it has serverAuth)",
    )


def test_leaf_without_eku(tmp_path: Path, pki: Pki) -> None:
    bare = make_certificate({"CN": "bare"}, issuer=pki.issuing, client_auth=False, **VALID)
    files = {"root.pem": pki.root.pem, "issuing.pem": pki.issuing.pem}
    base = "anchors: [root.pem]\nintermediates: [issuing.pem]\n"
    required = build(tmp_path, base + "client_auth_eku: required", files)
    refused(
        required,
        bare,
        "the certificate's extended key usage does not include clientAuth (it has none)",
    )
    optional = build(tmp_path, base + "client_auth_eku: optional", files)
    decision = decide(optional, bare)
    assert outcome(decision) == (True, "allowed_by_rule", "trusted")
    chain = chain_text(("leaf", bare), ("via", pki.issuing), ("anchor", pki.root))
    assert said(decision, "trusted") == ("true", chain)
    assert said(decision, "revoked") == ("false", OFF)


@pytest.mark.parametrize("eku", ["required", "optional"])
def test_a_critical_client_auth_eku_is_refused(tmp_path: Path, pki: Pki, eku: str) -> None:
    """cryptography's verifier refuses a critical extended key usage; policyengine used to
    accept one holding clientAuth, undocumented. Refused now, with either setting."""
    critical = client_certificate(pki.issuing, make_name({"CN": "critical-eku"}), eku_critical=True)
    files = {"root.pem": pki.root.pem, "issuing.pem": pki.issuing.pem}
    trust = f"anchors: [root.pem]\nintermediates: [issuing.pem]\nclient_auth_eku: {eku}"
    policy = build(tmp_path, trust, files)
    refused(
        policy,
        critical,
        "the certificate's extended key usage is marked critical, which is refused "
        "(as cryptography's verifier does)",
    )
    plain = client_certificate(pki.issuing, make_name({"CN": "plain-eku"}))
    assert outcome(decide(policy, plain)) == (True, "allowed_by_rule", "trusted")


def test_a_leaf_with_an_empty_subject_must_have_a_critical_san(tmp_path: Path, pki: Pki) -> None:
    """A SAN may be absent (client certificates often have none) or critical, but a leaf
    with an empty subject and no SAN names no one: it used to be trusted. With an empty
    subject, RFC 5280 wants the SAN present and critical."""
    files = {"root.pem": pki.root.pem, "issuing.pem": pki.issuing.pem}
    policy = build(tmp_path, "anchors: [root.pem]\nintermediates: [issuing.pem]", files)
    nobody = client_certificate(pki.issuing, x509.Name([]))
    refused(
        policy,
        nobody,
        "the certificate names no one: its subject is empty and it has no subject alternative name",
    )
    mail = [x509.RFC822Name("orders@contoso.com")]
    loose = client_certificate(pki.issuing, x509.Name([]), mail)
    refused(
        policy,
        loose,
        "the certificate's subject is empty, so its subject alternative name must be "
        "marked critical (RFC 5280 4.2.1.6), and it is not",
    )
    named = client_certificate(pki.issuing, x509.Name([]), mail, san_critical=True)
    decision = decide(policy, named)
    assert outcome(decision) == (True, "allowed_by_rule", "trusted")
    chain = chain_text(("leaf", named), ("via", pki.issuing), ("anchor", pki.root))
    assert said(decision, "trusted") == ("true", chain)
    # a subject without a SAN, and a SAN marked critical beside a subject, stay accepted
    for leaf in (
        client_certificate(pki.issuing, make_name({"CN": "no-san"})),
        client_certificate(pki.issuing, make_name({"CN": "critical-san"}), mail, san_critical=True),
    ):
        assert outcome(decide(policy, leaf)) == (True, "allowed_by_rule", "trusted")


def test_ca_certificate_as_the_leaf(tmp_path: Path, pki: Pki) -> None:
    ca_leaf = make_certificate(
        {"CN": "sneaky CA"},
        issuer=pki.issuing,
        ca=True,
        extended_key_usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
        **VALID,
    )
    files = {"root.pem": pki.root.pem, "issuing.pem": pki.issuing.pem}
    policy = build(tmp_path, "anchors: [root.pem]\nintermediates: [issuing.pem]", files)
    refused(policy, ca_leaf, "basicConstraints.cA must not be asserted in an EE certificate")


def test_path_length_violation(tmp_path: Path, pki: Pki) -> None:
    limited = make_certificate(
        {"CN": "Limited CA"}, issuer=pki.root, ca=True, path_length=0, **VALID
    )
    sub = make_certificate({"CN": "Sub CA"}, issuer=limited, ca=True, **VALID)
    leaf = make_certificate({"CN": "c"}, issuer=sub, **VALID)
    files = {"root.pem": pki.root.pem, "cas/limited.pem": limited.pem, "cas/sub.pem": sub.pem}
    policy = build(tmp_path, "anchors: [root.pem]\nintermediates: [cas/]", files)
    refused(
        policy,
        leaf,
        "no chain to an anchor could be built "
        "(candidates exhausted: path length constraint violated)",
    )


def test_name_constraints(tmp_path: Path, pki: Pki) -> None:
    """dNSName subtrees are enforced on a client certificate's SAN; a directoryName subtree
    is not supported by cryptography's verifier, so a critical one refuses every chain."""
    dns_ca = constrained_ca(
        pki.root,
        "Contoso Only CA",
        x509.NameConstraints(
            permitted_subtrees=[x509.DNSName("contoso.com")], excluded_subtrees=None
        ),
    )
    inside = client_with_san(dns_ca, {"CN": "inside"}, [x509.DNSName("api.contoso.com")])
    outside = client_with_san(dns_ca, {"CN": "outside"}, [x509.DNSName("api.fabrikam.com")])
    dn_ca = constrained_ca(
        pki.root,
        "Contoso DN CA",
        x509.NameConstraints(
            permitted_subtrees=[x509.DirectoryName(make_name({"O": "Contoso Ltd"}))],
            excluded_subtrees=None,
        ),
    )
    dn_inside = client_with_san(
        dn_ca, {"O": "Contoso Ltd", "CN": "dn-inside"}, [x509.DNSName("api.contoso.com")]
    )
    files = {"root.pem": pki.root.pem, "cas/dns.pem": dns_ca.pem, "cas/dn.pem": dn_ca.pem}
    policy = build(tmp_path, "anchors: [root.pem]\nintermediates: [cas]", files)

    decision = decide(policy, inside)
    assert outcome(decision) == (True, "allowed_by_rule", "trusted")
    chain = chain_text(("leaf", inside), ("via", dns_ca), ("anchor", pki.root))
    assert said(decision, "trusted") == ("true", chain)
    assert said(decision, "revoked") == ("false", OFF)

    refused(
        policy,
        outside,
        "no chain to an anchor could be built "
        "(candidates exhausted: no permitted name constraints matched SAN)",
    )
    refused(
        policy,
        dn_inside,
        "critical nameConstraints extension contains an unsupported directoryName constraint",
    )


def permitting(*names: x509.GeneralName) -> x509.NameConstraints:
    return x509.NameConstraints(permitted_subtrees=list(names), excluded_subtrees=None)


def excluding(*names: x509.GeneralName) -> x509.NameConstraints:
    return x509.NameConstraints(permitted_subtrees=None, excluded_subtrees=list(names))


def email_name(*addresses: str, cn: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else []
    attributes += [x509.NameAttribute(NameOID.EMAIL_ADDRESS, a) for a in addresses]
    return x509.Name(attributes)


def constrained_policy(folder: Path, pki: Pki, *cas: IssuedCertificate) -> Policy:
    files = {"root.pem": pki.root.pem, "cas.pem": pem(*cas)}
    return build(folder, "anchors: [root.pem]\nintermediates: [cas.pem]", files)


def test_a_san_less_leaf_is_bound_by_dns_name_constraints_through_its_cn(
    tmp_path: Path, pki: Pki
) -> None:
    """A CA constrained to contoso.com issued CN=www.evil.com without a SAN and it was
    trusted; the CN reads as a host name, so it is checked as OpenSSL does."""
    ca = constrained_ca(pki.root, "Contoso Only CA", permitting(x509.DNSName("contoso.com")))
    policy = constrained_policy(tmp_path, pki, ca)
    refused(
        policy,
        client_certificate(ca, make_name({"CN": "www.evil.com"})),
        "permitted subtree violation: the certificate's subject CN www.evil.com is outside "
        "the DNS name constraints of CN=Contoso Only CA (permitted: contoso.com)",
    )
    # a SAN without a dNSName leaves the CN as the host name: still checked
    mail = [x509.RFC822Name("orders@contoso.com")]
    refused(
        policy,
        client_certificate(ca, make_name({"CN": "www.evil.com"}), mail),
        "permitted subtree violation: the certificate's subject CN www.evil.com is outside "
        "the DNS name constraints of CN=Contoso Only CA (permitted: contoso.com)",
    )
    for trusted in (
        client_certificate(ca, make_name({"CN": "api.contoso.com"})),  # within
        client_certificate(ca, make_name({"CN": "Contoso.COM."})),  # the apex, any case
        client_certificate(ca, make_name({"CN": "orders client"})),  # not a host name
        client_certificate(ca, make_name({"CN": "orders-client"})),  # one label: no host
    ):
        decision = decide(policy, trusted)
        assert outcome(decision) == (True, "allowed_by_rule", "trusted"), trusted
        chain = chain_text(("leaf", trusted), ("via", ca), ("anchor", pki.root))
        assert said(decision, "trusted") == ("true", chain)

    (tmp_path / "excluded").mkdir()
    banned = constrained_ca(pki.root, "No Evil CA", excluding(x509.DNSName("evil.com")))
    policy = constrained_policy(tmp_path / "excluded", pki, banned)
    refused(
        policy,
        client_certificate(banned, make_name({"CN": "www.evil.com"})),
        "excluded subtree violation: the certificate's subject CN www.evil.com is within the "
        "excluded DNS name constraint evil.com of CN=No Evil CA",
    )
    ok = client_certificate(banned, make_name({"CN": "www.contoso.com"}))
    assert outcome(decide(policy, ok)) == (True, "allowed_by_rule", "trusted")


def test_a_cn_that_is_not_a_strict_host_name_or_sits_beside_a_dns_san_is_bound_too(
    tmp_path: Path, pki: Pki
) -> None:
    """A label of 64 characters or one that is not LDH kept a CN out of the check, and so
    did a dNSName SAN within the constraints beside a CN outside them; a rule on subject.CN
    reads the CN all the same, so it is checked (stricter than OpenSSL for the last two)."""
    ca = constrained_ca(pki.root, "Contoso Only CA", permitting(x509.DNSName("contoso.com")))
    policy = constrained_policy(tmp_path, pki, ca)
    inside = [x509.DNSName("api.contoso.com")]
    no_san: list[x509.GeneralName] | None = None
    for cn, sans in (
        ("a" * 64 + ".evil.com", no_san),
        ("büro.evil.com", no_san),
        ("www.evil.com", inside),
    ):
        # over 64 characters in all is against RFC 5280's upper bound, but it is written
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn, _validate=False)])
        refused(
            policy,
            client_certificate(ca, subject, sans),
            f"permitted subtree violation: the certificate's subject CN {cn} is outside "
            "the DNS name constraints of CN=Contoso Only CA (permitted: contoso.com)",
        )
    beside = client_certificate(ca, make_name({"CN": "api.contoso.com"}), inside)
    assert outcome(decide(policy, beside)) == (True, "allowed_by_rule", "trusted")


def test_a_subject_email_address_is_bound_by_email_name_constraints(
    tmp_path: Path, pki: Pki
) -> None:
    ca = constrained_ca(pki.root, "Contoso Mail CA", permitting(x509.RFC822Name("contoso.com")))
    policy = constrained_policy(tmp_path, pki, ca)
    refused(
        policy,
        client_certificate(ca, email_name("a@evil.com")),
        "permitted subtree violation: the certificate's subject emailAddress a@evil.com is "
        "outside the email name constraints of CN=Contoso Mail CA (permitted: contoso.com)",
    )
    # RFC 5280: a host constraint holds mailboxes at that host, not below it
    refused(
        policy,
        client_certificate(ca, email_name("a@mail.contoso.com")),
        "permitted subtree violation: the certificate's subject emailAddress "
        "a@mail.contoso.com is outside the email name constraints of CN=Contoso Mail CA "
        "(permitted: contoso.com)",
    )
    inside = client_certificate(ca, email_name("a@Contoso.com", cn="Alice"))
    assert outcome(decide(policy, inside)) == (True, "allowed_by_rule", "trusted")

    (tmp_path / "excluded").mkdir()
    banned = constrained_ca(pki.root, "No Evil Mail CA", excluding(x509.RFC822Name(".evil.com")))
    policy = constrained_policy(tmp_path / "excluded", pki, banned)
    refused(
        policy,
        client_certificate(banned, email_name("a@mail.evil.com")),
        "excluded subtree violation: the certificate's subject emailAddress a@mail.evil.com "
        "is within the excluded email name constraint .evil.com of CN=No Evil Mail CA",
    )
    ok = client_certificate(banned, email_name("a@evil.com"))  # the host, not below it
    assert outcome(decide(policy, ok)) == (True, "allowed_by_rule", "trusted")


def test_a_non_critical_directory_name_constraint_binds_every_subject(
    tmp_path: Path, pki: Pki
) -> None:
    """cryptography's verifier refuses a critical directoryName constraint and ignored a
    non-critical one: O=Fabrikam was trusted under a CA permitting only O=Contoso Ltd."""
    contoso = x509.DirectoryName(make_name({"O": "Contoso Ltd"}))
    ca = constrained_ca(
        pki.root,
        "Contoso DN CA",
        permitting(contoso),
        critical=False,
        subject={"O": "Contoso Ltd", "CN": "Contoso DN CA"},
    )
    policy = constrained_policy(tmp_path, pki, ca)
    outside = "permitted subtree violation: the certificate's subject CN=x,O=Fabrikam is outside"
    dn = "the directoryName name constraints of CN=Contoso DN CA,O=Contoso Ltd"
    refused(
        policy,
        client_certificate(ca, make_name({"O": "Fabrikam", "CN": "x"})),
        f"{outside} {dn} (permitted: O=Contoso Ltd)",
    )
    # a SAN does not exempt the subject
    with_san = client_certificate(
        ca, make_name({"O": "Fabrikam", "CN": "x"}), [x509.DNSName("api.contoso.com")]
    )
    refused(policy, with_san, f"{outside} {dn} (permitted: O=Contoso Ltd)")
    refused(
        policy,
        client_certificate(
            ca,
            make_name({"O": "Contoso Ltd", "CN": "y"}),
            [x509.DirectoryName(make_name({"O": "Fabrikam"}))],
        ),
        # a directoryName SAN under a directoryName constraint: the verifier refuses it
        "no chain to an anchor could be built (candidates exhausted: unsupported name constraint)",
    )
    for name in ({"O": "Contoso Ltd", "CN": "inside"}, {"O": "contoso  ltd", "CN": "spaced"}):
        inside = client_certificate(ca, make_name(name))
        assert outcome(decide(policy, inside)) == (True, "allowed_by_rule", "trusted"), name

    # the root's constraint binds the intermediate's subject too
    (tmp_path / "root").mkdir()
    root = constrained_ca(
        pki.root,
        "unused",
        excluding(x509.DirectoryName(make_name({"O": "Fabrikam"}))),
        critical=False,
        subject={"O": "Test PKI", "CN": "Constrained Root"},
    )
    fabrikam_ca = make_certificate(
        {"O": "Fabrikam", "CN": "Fabrikam CA"},
        issuer=root,
        ca=True,
        **VALID,
    )
    files = {"root.pem": root.pem, "ca.pem": fabrikam_ca.pem}
    policy = build(tmp_path / "root", "anchors: [root.pem]\nintermediates: [ca.pem]", files)
    refused(
        policy,
        make_certificate({"O": "Contoso Ltd", "CN": "z"}, issuer=fabrikam_ca, **VALID),
        "excluded subtree violation: intermediate CN=Fabrikam CA,O=Fabrikam's subject "
        "CN=Fabrikam CA,O=Fabrikam is within the excluded directoryName name constraint "
        "O=Fabrikam of CN=Constrained Root,O=Test PKI",
    )


def der_tlv(tag: int, body: bytes) -> bytes:
    size = len(body)
    if size < 128:
        return bytes([tag, size]) + body
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + body


def test_a_constrained_ca_whose_extensions_cannot_be_read_is_refused(
    tmp_path: Path, pki: Pki
) -> None:
    """The verifier accepts an AKI naming the issuer without its serial; cryptography's
    Python layer cannot represent it, so the CA's name constraints cannot be read back:
    the chain is refused rather than trusted unchecked."""
    key = ec.generate_private_key(ec.SECP256R1())
    key_id = x509.SubjectKeyIdentifier.from_public_key(
        pki.root.key.public_key()  # type: ignore[arg-type]
    ).digest
    issuer_only = der_tlv(
        0x30,
        der_tlv(0x80, key_id)
        + der_tlv(0xA1, der_tlv(0xA4, pki.root.certificate.subject.public_bytes())),
    )
    odd = (
        x509.CertificateBuilder()
        .subject_name(make_name({"CN": "Odd CA"}))
        .issuer_name(pki.root.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(START)
        .not_valid_after(FAR)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.UnrecognizedExtension(ExtensionOID.AUTHORITY_KEY_IDENTIFIER, issuer_only),
            critical=False,
        )
        .add_extension(permitting(x509.DNSName("contoso.com")), critical=True)
        .sign(pki.root.key, hashes.SHA256())  # type: ignore[arg-type]
    )
    ca = IssuedCertificate(odd, key)
    # configured, it is refused when the policy loads (a file read only in part)
    with pytest.raises(PolicyFileError, match="its extensions cannot be read"):
        constrained_policy(tmp_path, pki, ca)
    # forwarded in a header, it is no candidate issuer (its basic constraints cannot be
    # read back), and the chain through it is refused
    from policyengine.request.trust import TrustSettings, TrustStore

    (tmp_path / "anchor.pem").write_bytes(pki.root.pem)
    store = TrustStore.load(TrustSettings(anchors=(tmp_path / "anchor.pem",)))
    leaf = make_certificate({"CN": "www.evil.com"}, issuer=ca, **VALID)
    result = store.verify(read_certificate(leaf.der), [ca.der], NOW)
    assert not result.trusted
    assert result.reason == "issuer CN=Odd CA not found among anchors or intermediates"


def test_too_many_names_under_too_many_constraints_are_refused(tmp_path: Path, pki: Pki) -> None:
    """As OpenSSL bounds its check, so does policyengine: 300 names x 300 constraints."""
    ca = constrained_ca(
        pki.root,
        "Busy CA",
        permitting(*(x509.DNSName(f"d{n}.contoso.com") for n in range(300))),
    )
    crowded = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"unit {n}") for n in range(299)]
        + [x509.NameAttribute(NameOID.COMMON_NAME, "d1.contoso.com")]
    )
    policy = constrained_policy(tmp_path, pki, ca)
    leaf = client_certificate(ca, crowded)
    decision = within(10, lambda: decide(policy, leaf))
    why = (
        "the certificate has 300 names and CN=Busy CA has 300 name constraints: more than "
        "65536 checks, refused"
    )
    assert outcome(decision) == (False, "no_matching_rule", None)
    assert said(decision, "trusted") == ("false", why)
    few = client_certificate(ca, make_name({"OU": "unit", "CN": "d1.contoso.com"}))
    assert outcome(decide(policy, few)) == (True, "allowed_by_rule", "trusted")


def test_max_chain_depth(tmp_path: Path, pki: Pki) -> None:
    a = make_certificate({"CN": "A CA"}, issuer=pki.root, ca=True, **VALID)
    b = make_certificate({"CN": "B CA"}, issuer=a, ca=True, **VALID)
    c = make_certificate({"CN": "C CA"}, issuer=b, ca=True, **VALID)
    leaf = make_certificate({"CN": "deep"}, issuer=c, **VALID)
    files = {"root.pem": pki.root.pem, "cas.pem": pem(a, b, c)}
    shallow = build(
        tmp_path, "anchors: [root.pem]\nintermediates: [cas.pem]\nmax_chain_depth: 2", files
    )
    refused(
        shallow,
        leaf,
        "no chain to an anchor could be built "
        "(candidates exhausted: chain construction exceeds max depth)",
    )
    deep = build(
        tmp_path, "anchors: [root.pem]\nintermediates: [cas.pem]\nmax_chain_depth: 3", files
    )
    decision = decide(deep, leaf)
    assert outcome(decision) == (True, "allowed_by_rule", "trusted")
    chain = chain_text(("leaf", leaf), ("via", c), ("via", b), ("via", a), ("anchor", pki.root))
    assert said(decision, "trusted") == ("true", chain)


# -- revocation -------------------------------------------------------------------------------


def revocation_policy(
    folder: Path, pki: Pki, crl_data: bytes, mode: str, *, check: str | None = None
) -> Policy:
    """``crl_data`` as the issuing CA's CRL, beside a fresh root CRL that lists nothing
    (so that the intermediate is good); ``check: leaf`` has no root CRL."""
    files = {"root.pem": pki.root.pem, "issuing.pem": pki.issuing.pem, "issuing.crl": crl_data}
    crls = "[issuing.crl]"
    if check != "leaf":
        files["root.crl"] = crl(pki.root)
        crls = "[issuing.crl, root.crl]"
    return build(
        folder,
        f"""
        anchors: [root.pem]
        intermediates: [issuing.pem]
        revocation:
          crls: {crls}
          mode: {mode}
        """
        + (f"  check: {check}\n" if check else ""),
        files,
    )


INTERMEDIATE_GOOD = (
    f"; intermediate {ISSUING_NAME}: serial 2001 not listed in CRL root.crl, "
    "fresh until 2099-12-31T00:00:00Z"
)
"""What the trace adds for the intermediate, checked against the root CRL (check: chain)."""


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_crl_lists_the_leaf(tmp_path: Path, pki: Pki, mode: str) -> None:
    policy = revocation_policy(tmp_path, pki, crl(pki.issuing, [0x0BAD, 0x1001]), mode)
    decision = decide(policy, pki.leaf)
    assert outcome(decision) == (False, "denied_by_rule", "revoked")
    assert said(decision, "revoked") == (
        "true",
        "the certificate: serial 1001 revoked on 2026-06-01T00:00:00Z (CRL issuing.crl)",
    )
    assert said(decision, "trusted") == ("true", good_chain(pki))


@pytest.mark.parametrize("mode", ["soft", "hard"])
@pytest.mark.parametrize(("check", "also"), [(None, INTERMEDIATE_GOOD), ("leaf", "")])
def test_crl_does_not_list_the_leaf(
    tmp_path: Path, pki: Pki, mode: str, check: str | None, also: str
) -> None:
    policy = revocation_policy(tmp_path, pki, crl(pki.issuing, [0x0BAD]), mode, check=check)
    decision = decide(policy, pki.leaf)
    assert outcome(decision) == (True, "allowed_by_rule", "trusted")
    assert said(decision, "revoked") == (
        "false",
        "serial 1001 not listed in CRL issuing.crl, fresh until 2099-12-31T00:00:00Z" + also,
    )
    assert said(decision, "trusted") == ("true", good_chain(pki))


def test_expired_crl_soft_and_hard(tmp_path: Path, pki: Pki) -> None:
    stale = crl(pki.issuing, [0x2002], next_update=datetime(2026, 1, 1, tzinfo=UTC))
    why = "status unknown (CRL issuing.crl expired on 2026-01-01T00:00:00Z); "

    soft = revocation_policy(tmp_path, pki, stale, "soft")
    decision = decide(soft, pki.leaf)
    assert outcome(decision) == (True, "allowed_by_rule", "trusted")
    assert said(decision, "revoked") == ("false", why + "soft mode lets it pass")
    assert said(decision, "trusted") == ("true", good_chain(pki))

    hard = revocation_policy(tmp_path, pki, stale, "hard")
    decision = decide(hard, pki.leaf)
    assert outcome(decision) == (False, "denied_by_rule", "revoked")
    assert said(decision, "revoked") == ("true", why + "hard mode counts it as revoked")
    assert said(decision, "trusted") == ("true", good_chain(pki))


@pytest.mark.parametrize(
    ("mode", "expected", "verdict"),
    [
        ("soft", (True, "allowed_by_rule", "trusted"), ("false", "soft mode lets it pass")),
        ("hard", (False, "denied_by_rule", "revoked"), ("true", "hard mode counts it as revoked")),
    ],
)
def test_crl_signed_by_someone_else_is_ignored(
    tmp_path: Path,
    pki: Pki,
    mode: str,
    expected: tuple[bool, str, str | None],
    verdict: tuple[str, str],
) -> None:
    forged = crl(pki.issuing, [0x1001], signer=pki.other_issuing)
    policy = revocation_policy(tmp_path, pki, forged, mode)
    decision = decide(policy, pki.leaf)
    assert outcome(decision) == expected
    detail = f"status unknown (CRL issuing.crl is not signed by {ISSUING_NAME}); {verdict[1]}"
    assert said(decision, "revoked") == (verdict[0], detail)
    assert said(decision, "trusted") == ("true", good_chain(pki))


@pytest.mark.parametrize("written", ["off", '"off"', "'off'"])
def test_revocation_off(tmp_path: Path, pki: Pki, written: str) -> None:
    """Bare YAML ``off`` is read as false and accepted; the CRL is not consulted."""
    policy = revocation_policy(tmp_path, pki, crl(pki.issuing, [0x1001]), written)
    assert policy.trust is not None
    assert policy.trust.settings.revocation == "off"
    decision = decide(policy, pki.leaf)
    assert outcome(decision) == (True, "allowed_by_rule", "trusted")
    assert said(decision, "revoked") == ("false", OFF)
    assert said(decision, "trusted") == ("true", good_chain(pki))


def test_no_crl_for_the_issuer(tmp_path: Path, pki: Pki) -> None:
    """A CRL from the root covers the intermediate only: the leaf's status is unknown."""
    files = {
        "root.pem": pki.root.pem,
        "issuing.pem": pki.issuing.pem,
        "root.crl": crl(pki.root),
    }
    trust = """
        anchors: [root.pem]
        intermediates: [issuing.pem]
        revocation:
          crls: [root.crl]
          mode: hard
        """
    decision = decide(build(tmp_path, trust, files), pki.leaf)
    assert outcome(decision) == (False, "denied_by_rule", "revoked")
    assert said(decision, "revoked") == (
        "true",
        f"status unknown (no CRL from {ISSUING_NAME}); hard mode counts it as revoked",
    )
    assert said(decision, "trusted") == ("true", good_chain(pki))


# -- which CRL decides: the newest complete one of the issuer ----------------------------------


def issuer_crls_policy(
    folder: Path,
    pki: Pki,
    crls: Mapping[str, bytes],
    mode: str = "hard",
    *,
    issuing: IssuedCertificate | None = None,
    root_crl: bool = True,
) -> Policy:
    """``crls`` (name -> CRL) for the issuing CA, listed in that order, and a fresh root CRL
    that lists nothing; ``issuing`` replaces the issuing CA certificate."""
    files = {"root.pem": pki.root.pem, "issuing.pem": (issuing or pki.issuing).pem, **crls}
    names = list(crls)
    if root_crl:
        files["root.crl"] = crl(pki.root)
        names.append("root.crl")
    trust = f"""
        anchors: [root.pem]
        intermediates: [issuing.pem]
        revocation:
          crls: [{", ".join(names)}]
          mode: {mode}
        """
    return build(folder, trust, files)


REVOKED_1001 = "the certificate: serial 1001 revoked on 2026-06-01T00:00:00Z (CRL {name})"
HARD = "hard mode counts it as revoked"
SOFT = "soft mode lets it pass"


@pytest.mark.parametrize("mode", ["soft", "hard"])
@pytest.mark.parametrize("order", [("older", "newer"), ("newer", "older")])
def test_the_newest_crl_decides_whatever_the_order_they_are_listed_in(
    tmp_path: Path, pki: Pki, mode: str, order: tuple[str, str]
) -> None:
    """A CA publishes its next CRL before the current one's next_update: both are fresh.
    The leaf, revoked only in the newer one, is revoked (the first listed used to win)."""
    made = {
        "older": crl(pki.issuing, [0x0BAD], number=41),
        "newer": crl(
            pki.issuing, [0x0BAD, 0x1001], number=42, last_update=datetime(2026, 6, 2, tzinfo=UTC)
        ),
    }
    policy = issuer_crls_policy(tmp_path, pki, {f"{n}.crl": made[n] for n in order}, mode)
    decision = decide(policy, pki.leaf)
    assert outcome(decision) == (False, "denied_by_rule", "revoked")
    assert said(decision, "revoked") == ("true", REVOKED_1001.format(name="newer.crl"))
    assert said(decision, "trusted") == ("true", good_chain(pki))


def test_a_higher_crl_number_decides_over_a_later_this_update(tmp_path: Path, pki: Pki) -> None:
    numbered = {
        "later.crl": crl(pki.issuing, number=7, last_update=datetime(2026, 6, 2, tzinfo=UTC)),
        "higher.crl": crl(pki.issuing, [0x1001], number=8),
    }
    decision = decide(issuer_crls_policy(tmp_path, pki, numbered), pki.leaf)
    assert outcome(decision) == (False, "denied_by_rule", "revoked")
    assert said(decision, "revoked") == ("true", REVOKED_1001.format(name="higher.crl"))


def test_crls_with_the_same_number_are_ordered_by_this_update(tmp_path: Path, pki: Pki) -> None:
    same = {
        "earlier.crl": crl(pki.issuing, number=5),
        "later.crl": crl(
            pki.issuing, [0x1001], number=5, last_update=datetime(2026, 6, 2, tzinfo=UTC)
        ),
    }
    decision = decide(issuer_crls_policy(tmp_path, pki, same), pki.leaf)
    assert outcome(decision) == (False, "denied_by_rule", "revoked")
    assert said(decision, "revoked") == ("true", REVOKED_1001.format(name="later.crl"))


def test_a_crl_not_in_effect_yet_leaves_the_decision_to_the_current_one(
    tmp_path: Path, pki: Pki
) -> None:
    """The next CRL (this_update ahead of the evaluation time) is not consulted before its
    this_update; from then on it decides."""
    published = datetime(2026, 12, 1, tzinfo=UTC)
    both = {
        "current.crl": crl(pki.issuing, [0x1001], number=1),
        "next.crl": crl(pki.issuing, number=2, last_update=published),
    }
    policy = issuer_crls_policy(tmp_path, pki, both)
    decision = decide(policy, pki.leaf)
    assert outcome(decision) == (False, "denied_by_rule", "revoked")
    assert said(decision, "revoked") == ("true", REVOKED_1001.format(name="current.crl"))
    decision = decide(policy, pki.leaf, published)
    assert outcome(decision) == (True, "allowed_by_rule", "trusted")
    assert said(decision, "revoked") == (
        "false",
        "serial 1001 not listed in CRL next.crl, fresh until 2099-12-31T00:00:00Z"
        + INTERMEDIATE_GOOD,
    )


def test_the_newest_crl_decides_even_when_it_cannot_be_used(tmp_path: Path, pki: Pki) -> None:
    """An older usable CRL does not stand in for a newer one that is no evidence: it may
    lack the newest revocations."""
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00")
    both = {
        "older.crl": crl(pki.issuing, number=1),
        "newer.crl": crl(pki.issuing, number=2, extensions=[(unknown, True)]),
    }
    decision = decide(issuer_crls_policy(tmp_path, pki, both), pki.leaf)
    assert outcome(decision) == (False, "denied_by_rule", "revoked")
    assert said(decision, "revoked") == (
        "true",
        "status unknown (CRL newer.crl cannot be used: it carries a critical extension "
        f"policyengine does not process (1.3.6.1.4.1.55555.1)); {HARD}",
    )


# -- CRLs that are no evidence -----------------------------------------------------------------


def unusable_crl_case(
    tmp_path: Path, pki: Pki, data: bytes, reason: str, *, issuing: IssuedCertificate | None = None
) -> None:
    """``data`` as the issuing CA's only CRL, listing nothing: no evidence, so the leaf's
    status is unknown for ``reason``: hard mode denies, soft mode lets it pass (both used to
    allow it as good)."""
    for mode, expected, verdict in (
        ("hard", (False, "denied_by_rule", "revoked"), ("true", HARD)),
        ("soft", (True, "allowed_by_rule", "trusted"), ("false", SOFT)),
    ):
        folder = tmp_path / mode
        folder.mkdir()
        policy = issuer_crls_policy(folder, pki, {"issuing.crl": data}, mode, issuing=issuing)
        decision = decide(policy, pki.leaf)
        assert outcome(decision) == expected
        assert said(decision, "revoked") == (
            verdict[0],
            f"status unknown (CRL issuing.crl {reason}); {verdict[1]}",
        )


def test_a_crl_without_a_crl_number_is_no_evidence(tmp_path: Path, pki: Pki) -> None:
    unusable_crl_case(
        tmp_path,
        pki,
        crl(pki.issuing, number=None),
        "cannot be used: it has no CRL number (RFC 5280 requires one)",
    )


def test_a_crl_with_a_critical_crl_number_is_no_evidence(tmp_path: Path, pki: Pki) -> None:
    unusable_crl_case(
        tmp_path,
        pki,
        crl(pki.issuing, number_critical=True),
        "cannot be used: its CRL number extension is marked critical (RFC 5280 requires it "
        "non-critical)",
    )


def test_a_crl_with_an_unknown_critical_extension_is_no_evidence(tmp_path: Path, pki: Pki) -> None:
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00")
    unusable_crl_case(
        tmp_path,
        pki,
        crl(pki.issuing, extensions=[(unknown, True)]),
        "cannot be used: it carries a critical extension policyengine does not process "
        "(1.3.6.1.4.1.55555.1)",
    )


def test_a_crl_with_a_critical_freshest_crl_extension_is_no_evidence(
    tmp_path: Path, pki: Pki
) -> None:
    """A known extension that policyengine does not act on (freshest CRL: where the delta
    CRLs are) is "not processed" too when critical."""
    point = x509.DistributionPoint(
        [x509.UniformResourceIdentifier("http://pki.test/delta.crl")], None, None, None
    )
    unusable_crl_case(
        tmp_path,
        pki,
        crl(pki.issuing, extensions=[(x509.FreshestCRL([point]), True)]),
        "cannot be used: it carries a critical extension policyengine does not process "
        "(freshestCRL, 2.5.29.46)",
    )


def test_a_crl_entry_with_an_unknown_critical_extension_makes_the_crl_no_evidence(
    tmp_path: Path, pki: Pki
) -> None:
    """RFC 5280 5.3: a CRL with a critical entry extension not understood is not used for
    any certificate, not only the one the entry names."""
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.2"), b"\x05\x00")
    unusable_crl_case(
        tmp_path,
        pki,
        crl(pki.issuing, [0x0BAD], entry_extensions=[(unknown, True)]),
        "cannot be used: an entry carries a critical extension policyengine does not process "
        "(1.3.6.1.4.1.55555.2)",
    )


def test_an_indirect_crl_is_no_evidence(tmp_path: Path, pki: Pki) -> None:
    scope = x509.IssuingDistributionPoint(None, None, False, False, None, True, False)
    unusable_crl_case(
        tmp_path,
        pki,
        crl(pki.issuing, extensions=[(scope, True)]),
        "cannot be used: it is an indirect CRL (it may list other issuers' certificates), "
        "which policyengine does not use",
    )


def issuing_ca(root: IssuedCertificate, usage: x509.KeyUsage) -> IssuedCertificate:
    """Test Issuing CA again (same name and serial as the fixture's), with key ``usage``."""
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(make_name({"CN": "Test Issuing CA", "O": "Test PKI"}))
        .issuer_name(root.certificate.subject)
        .public_key(key.public_key())
        .serial_number(0x2001)
        .not_valid_before(START)
        .not_valid_after(FAR)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                root.key.public_key()  # type: ignore[arg-type]
            ),
            critical=False,
        )
        .sign(root.key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return IssuedCertificate(certificate, key)


def test_a_crl_from_an_issuer_without_crl_sign_is_no_evidence(tmp_path: Path, pki: Pki) -> None:
    cert_sign_only = issuing_ca(
        pki.root, x509.KeyUsage(False, False, False, False, False, True, False, False, False)
    )
    leaf = make_certificate(
        {"CN": "orders-client", "O": "Contoso Ltd"}, issuer=cert_sign_only, serial=0x1001, **VALID
    )
    signed = crl(cert_sign_only)
    for mode, expected, verdict in (
        ("hard", (False, "denied_by_rule", "revoked"), ("true", HARD)),
        ("soft", (True, "allowed_by_rule", "trusted"), ("false", SOFT)),
    ):
        folder = tmp_path / mode
        folder.mkdir()
        policy = issuer_crls_policy(
            folder, pki, {"issuing.crl": signed}, mode, issuing=cert_sign_only
        )
        decision = decide(policy, leaf)
        assert outcome(decision) == expected
        assert said(decision, "revoked") == (
            verdict[0],
            "status unknown (CRL issuing.crl cannot be used: the key usage of its issuer "
            f"{ISSUING_NAME} does not include cRLSign); {verdict[1]}",
        )


def test_a_ca_only_crl_does_not_cover_the_leaf(tmp_path: Path, pki: Pki) -> None:
    ca_only = x509.IssuingDistributionPoint(None, None, False, True, None, False, False)
    unusable_crl_case(
        tmp_path,
        pki,
        crl(pki.issuing, extensions=[(ca_only, True)]),
        "covers CA certificates only, and this is not a CA certificate",
    )


def test_a_user_only_crl_does_not_cover_an_intermediate(tmp_path: Path, pki: Pki) -> None:
    user_only = x509.IssuingDistributionPoint(None, None, True, False, None, False, False)
    files = {
        "root.pem": pki.root.pem,
        "issuing.pem": pki.issuing.pem,
        "issuing.crl": crl(pki.issuing),
        "root.crl": crl(pki.root, extensions=[(user_only, True)]),
    }
    trust = """
        anchors: [root.pem]
        intermediates: [issuing.pem]
        revocation:
          crls: [issuing.crl, root.crl]
          mode: hard
        """
    decision = decide(build(tmp_path, trust, files), pki.leaf)
    assert outcome(decision) == (False, "denied_by_rule", "revoked")
    assert said(decision, "revoked") == (
        "true",
        f"status unknown (intermediate {ISSUING_NAME}: CRL root.crl covers end-entity "
        f"certificates only, and this is a CA certificate); {HARD}",
    )


def test_a_user_only_crl_covers_the_leaf_beside_a_newer_ca_only_crl(
    tmp_path: Path, pki: Pki
) -> None:
    """Which CRLs cover the certificate is settled before the newest is chosen."""
    user_only = x509.IssuingDistributionPoint(None, None, True, False, None, False, False)
    ca_only = x509.IssuingDistributionPoint(None, None, False, True, None, False, False)
    both = {
        "users.crl": crl(pki.issuing, [0x1001], number=3, extensions=[(user_only, True)]),
        "cas.crl": crl(pki.issuing, number=4, extensions=[(ca_only, True)]),
    }
    decision = decide(issuer_crls_policy(tmp_path, pki, both), pki.leaf)
    assert outcome(decision) == (False, "denied_by_rule", "revoked")
    assert said(decision, "revoked") == ("true", REVOKED_1001.format(name="users.crl"))


def test_a_delta_crl_is_never_used_as_a_complete_crl(tmp_path: Path, pki: Pki) -> None:
    """Alone, a delta CRL says nothing about what its base lists: status unknown. Beside
    its base, the base decides what is good (``check`` warns about the delta)."""
    delta = crl(pki.issuing, number=2, extensions=[(x509.DeltaCRLIndicator(1), True)])
    unusable_crl_case(
        tmp_path,
        pki,
        delta,
        "is a delta CRL (deltaCRLIndicator): it never proves a certificate good, only a "
        "complete CRL does",
    )
    base = {"base.crl": crl(pki.issuing, number=1), "delta.crl": delta}
    policy = issuer_crls_policy(tmp_path, pki, base)
    decision = decide(policy, pki.leaf)
    assert outcome(decision) == (True, "allowed_by_rule", "trusted")
    assert said(decision, "revoked") == (
        "false",
        "serial 1001 not listed in CRL base.crl, fresh until 2099-12-31T00:00:00Z"
        + INTERMEDIATE_GOOD,
    )
    assert [w.message for w in policy.warnings if w.code == "trust-crl"] == [
        "CRL delta.crl is a delta CRL: it never proves a certificate good, and is consulted "
        "only for revocations newer than the complete CRL"
    ]


def leaf_with_distribution_point(issuer: IssuedCertificate, uri: str) -> IssuedCertificate:
    """orders-client, serial 0x1001, naming ``uri`` as its CRL distribution point."""
    key = ec.generate_private_key(ec.SECP256R1())
    point = x509.DistributionPoint([x509.UniformResourceIdentifier(uri)], None, None, None)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(make_name({"CN": "orders-client", "O": "Contoso Ltd"}))
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(0x1001)
        .not_valid_before(START)
        .not_valid_after(FAR)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer.key.public_key()  # type: ignore[arg-type]
            ),
            critical=False,
        )
        .add_extension(x509.CRLDistributionPoints([point]), critical=False)
        .sign(issuer.key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return IssuedCertificate(certificate, key)


def test_a_crl_of_another_distribution_point_does_not_cover_the_leaf(
    tmp_path: Path, pki: Pki
) -> None:
    """A CA that splits its certificates over several CRLs names each CRL's share in its
    issuing distribution point: a CRL for another share does not list the leaf, and is not
    evidence that it is good. A certificate naming no distribution point is not covered."""
    partition = x509.IssuingDistributionPoint(
        [x509.UniformResourceIdentifier("http://pki.test/part-1.crl")],
        None,
        False,
        False,
        None,
        False,
        False,
    )
    part_1 = crl(pki.issuing, extensions=[(partition, True)])
    policy = issuer_crls_policy(tmp_path, pki, {"part-1.crl": part_1})
    elsewhere = leaf_with_distribution_point(pki.issuing, "http://pki.test/part-2.crl")
    reason = (
        "CRL part-1.crl covers the certificates of another distribution point (its issuing "
        "distribution point names none of the certificate's CRL distribution points)"
    )
    for leaf in (elsewhere, pki.leaf):
        decision = decide(policy, leaf)
        assert outcome(decision) == (False, "denied_by_rule", "revoked")
        assert said(decision, "revoked") == ("true", f"status unknown ({reason}); {HARD}")
    covered = leaf_with_distribution_point(pki.issuing, "http://pki.test/part-1.crl")
    decision = decide(policy, covered)
    assert outcome(decision) == (True, "allowed_by_rule", "trusted")
    assert said(decision, "revoked") == (
        "false",
        "serial 1001 not listed in CRL part-1.crl, fresh until 2099-12-31T00:00:00Z"
        + INTERMEDIATE_GOOD,
    )


def test_check_warns_about_crls_that_cannot_be_used(tmp_path: Path, pki: Pki) -> None:
    cert_sign_only = issuing_ca(
        pki.root, x509.KeyUsage(False, False, False, False, False, True, False, False, False)
    )
    files = {
        "root.pem": pki.root.pem,
        "issuing.pem": pki.issuing.pem,
        "no-sign.pem": cert_sign_only.pem,
        "unnumbered.crl": crl(pki.issuing, number=None),
        "delta.crl": crl(pki.issuing, number=2, extensions=[(x509.DeltaCRLIndicator(1), True)]),
        "no-sign.crl": crl(cert_sign_only),
        "good.crl": crl(pki.issuing),
    }
    trust = """
        anchors: [root.pem]
        intermediates: [issuing.pem, no-sign.pem]
        revocation:
          mode: hard
          crls:
            - unnumbered.crl
            - delta.crl
            - no-sign.crl
            - good.crl
        """
    policy = build(tmp_path, trust, files, head="silence: [trusted-anywhere]")
    assert trust_warnings(policy) == [
        (
            "trust-crl",
            9,
            9,
            "CRL unnumbered.crl cannot be used: it has no CRL number (RFC 5280 requires one)",
        ),
        (
            "trust-crl",
            10,
            9,
            "CRL delta.crl is a delta CRL: it never proves a certificate good, and is consulted "
            "only for revocations newer than the complete CRL",
        ),
        (
            "trust-crl",
            11,
            9,
            f"CRL no-sign.crl cannot be used: the key usage of its issuer {ISSUING_NAME} does "
            "not include cRLSign",
        ),
    ]


# -- which certificates are checked: the chain, or the leaf --------------------------------------


def test_hard_mode_denies_an_intermediate_without_a_crl(tmp_path: Path, pki: Pki) -> None:
    """Every certificate below the anchor is checked (OpenSSL's -crl_check_all, nginx's
    ssl_crl): the intermediate has no CRL from the root. It used to be allowed."""
    policy = issuer_crls_policy(tmp_path, pki, {"issuing.crl": crl(pki.issuing)}, root_crl=False)
    decision = decide(policy, pki.leaf)
    assert outcome(decision) == (False, "denied_by_rule", "revoked")
    assert said(decision, "revoked") == (
        "true",
        f"status unknown (intermediate {ISSUING_NAME}: no CRL from {ROOT_NAME}); {HARD}",
    )
    assert said(decision, "trusted") == ("true", good_chain(pki))


def test_soft_mode_says_an_intermediate_has_no_crl(tmp_path: Path, pki: Pki) -> None:
    policy = issuer_crls_policy(
        tmp_path, pki, {"issuing.crl": crl(pki.issuing)}, "soft", root_crl=False
    )
    decision = decide(policy, pki.leaf)
    assert outcome(decision) == (True, "allowed_by_rule", "trusted")
    assert said(decision, "revoked") == (
        "false",
        f"status unknown (intermediate {ISSUING_NAME}: no CRL from {ROOT_NAME}); {SOFT}",
    )


def test_the_leaf_and_an_intermediate_both_unknown_are_both_named(tmp_path: Path, pki: Pki) -> None:
    files = {"root.pem": pki.root.pem, "issuing.pem": pki.issuing.pem}
    trust = """
        anchors: [root.pem]
        intermediates: [issuing.pem]
        revocation:
          mode: hard
        """
    decision = decide(build(tmp_path, trust, files), pki.leaf)
    assert outcome(decision) == (False, "denied_by_rule", "revoked")
    assert said(decision, "revoked") == (
        "true",
        f"status unknown (no CRL from {ISSUING_NAME}; intermediate {ISSUING_NAME}: no CRL "
        f"from {ROOT_NAME}); {HARD}",
    )


def test_check_leaf_checks_the_leaf_only(tmp_path: Path, pki: Pki) -> None:
    """``check: leaf`` (OpenSSL's -crl_check): the intermediate is not checked, neither for a
    missing CRL nor for being listed in the root's."""
    files = {
        "root.pem": pki.root.pem,
        "issuing.pem": pki.issuing.pem,
        "issuing.crl": crl(pki.issuing),
        "root.crl": crl(pki.root, [0x2001]),
    }
    for crls in ("[issuing.crl]", "[issuing.crl, root.crl]"):
        trust = f"""
            anchors: [root.pem]
            intermediates: [issuing.pem]
            revocation:
              crls: {crls}
              mode: hard
              check: leaf
            """
        policy = build(tmp_path, trust, files)
        assert policy.trust is not None and policy.trust.settings.revocation_check == "leaf"
        decision = decide(policy, pki.leaf)
        assert outcome(decision) == (True, "allowed_by_rule", "trusted")
        assert said(decision, "revoked") == (
            "false",
            "serial 1001 not listed in CRL issuing.crl, fresh until 2099-12-31T00:00:00Z",
        )
    chain = trust.replace("check: leaf", "check: chain")
    decision = decide(build(tmp_path, chain, files), pki.leaf)
    assert outcome(decision) == (False, "denied_by_rule", "revoked")
    assert said(decision, "revoked") == (
        "true",
        f"intermediate {ISSUING_NAME}: serial 2001 revoked on 2026-06-01T00:00:00Z (CRL root.crl)",
    )


def test_revocation_check_is_chain_or_leaf(tmp_path: Path, pki: Pki) -> None:
    files = {"root.pem": pki.root.pem}
    trust = """
        anchors: [root.pem]
        revocation:
          mode: hard
          check: all
        """
    with pytest.raises(PolicySchemaError) as raised:
        build(tmp_path, trust, files)
    assert (
        'policy.yaml:6:12: error: trust.revocation.check is "all"; it must be `chain` or `leaf`'
        in (str(raised.value))
    )


def test_a_leaf_that_is_its_own_anchor_is_checked_against_its_own_crl(tmp_path: Path) -> None:
    """A one-certificate chain: the leaf is the anchor, and the CRLs it signed speak for it
    (as OpenSSL does); without one its status is unknown."""
    alone = make_certificate({"CN": "pinned-client"}, serial=0x77, **VALID)
    files = {"alone.pem": alone.pem, "alone.crl": crl(alone)}
    trust = """
        anchors: [alone.pem]
        revocation:
          crls: [alone.crl]
          mode: hard
        """
    decision = decide(build(tmp_path, trust, files, head="silence: [trusted-anywhere]"), alone)
    assert outcome(decision) == (True, "allowed_by_rule", "trusted")
    assert said(decision, "revoked") == (
        "false",
        "serial 77 not listed in CRL alone.crl, fresh until 2099-12-31T00:00:00Z",
    )
    files["alone.crl"] = crl(alone, [0x77])
    decision = decide(build(tmp_path, trust, files, head="silence: [trusted-anywhere]"), alone)
    assert outcome(decision) == (False, "denied_by_rule", "revoked")
    assert said(decision, "revoked") == (
        "true",
        "the certificate: serial 77 revoked on 2026-06-01T00:00:00Z (CRL alone.crl)",
    )


# -- the chain as attributes -------------------------------------------------------------------


PROBES = """
  - id: probe-trusted
    effect: deny
    when: trusted and request.method == "PROBE"
  - id: probe-revoked
    effect: deny
    when: revoked and request.method == "PROBE"
"""
"""Deny rules that never hold (no method is given) but show both predicates in the trace."""


def test_chain_attributes(tmp_path: Path, pki: Pki) -> None:
    pins = [pki.root.sha1, "ab" * 32, pki.other_root.sha256, "cd" * 20]
    issuing_pin = f'chain.issuer.fingerprint.sha256 == "{pki.issuing.sha256}"'
    rules = f"""
sets:
  roots: [{", ".join(pins)}]
rules:{PROBES}
  - id: chained
    effect: allow
    when: |
      chain.length == 3
      and chain.root.fingerprint in roots
      and chain.root.subject.CN == "Test Root CA"
      and chain.issuer.subject.O == "Test PKI"
      and {issuing_pin}
"""
    files = {
        "root.pem": pki.root.pem,
        "issuing.pem": pki.issuing.pem,
        "other-root.pem": pki.other_root.pem,
        "other-issuing.pem": pki.other_issuing.pem,
    }
    both = "anchors: [root.pem, other-root.pem]\nintermediates: [issuing.pem, other-issuing.pem]"
    policy = build(tmp_path, both, files, rules=rules)

    # the test PKI: every attribute holds; the root is pinned by its SHA-1
    decision = decide(policy, pki.leaf)
    assert outcome(decision) == (True, "allowed_by_rule", "chained")
    assert said(decision, "trusted") == ("true", good_chain(pki))
    assert said(decision, "revoked") == ("false", OFF)
    assert said(decision, "chain.length == 3") == ("true", "got 3")
    assert said(decision, "chain.root.fingerprint in roots") == (
        "true",
        f"got sha1 {pki.root.sha1}, sha256 {pki.root.sha256}; in set roots (4 entries)",
    )
    assert said(decision, 'chain.root.subject.CN == "Test Root CA"') == (
        "true",
        'got "Test Root CA"',
    )
    assert said(decision, 'chain.issuer.subject.O == "Test PKI"') == ("true", 'got "Test PKI"')
    assert said(decision, issuing_pin) == ("true", f'got "{pki.issuing.sha256}"')

    # the other PKI: its root is pinned by SHA-256, but it is not the Test Root CA
    decision = decide(policy, pki.stranger)
    assert outcome(decision) == (False, "no_matching_rule", None)
    assert decision.failed_condition == 'chain.root.subject.CN == "Test Root CA"'
    chain = chain_text(
        ("leaf", pki.stranger), ("via", pki.other_issuing), ("anchor", pki.other_root)
    )
    assert said(decision, "trusted") == ("true", chain)
    assert said(decision, "chain.length == 3") == ("true", "got 3")
    assert said(decision, "chain.root.fingerprint in roots") == (
        "true",
        f"got sha1 {pki.other_root.sha1}, sha256 {pki.other_root.sha256}; in set roots (4 entries)",
    )
    assert said(decision, 'chain.root.subject.CN == "Test Root CA"') == (
        "false",
        'got "Other Root CA"',
    )

    # no trusted chain: every chain attribute is undefined, and says why
    (tmp_path / "root-only").mkdir()
    root_only = build(tmp_path / "root-only", "anchors: [../root.pem]", rules=rules)
    decision = decide(root_only, pki.leaf)
    assert outcome(decision) == (False, "no_matching_rule", None)
    assert decision.failed_condition == "chain.length == 3"
    why = f"issuer {ISSUING_NAME} not found among anchors or intermediates"
    assert said(decision, "trusted") == ("false", why)
    assert said(decision, "revoked") == (
        "undefined",
        f"no trusted chain to check revocation against: {why}",
    )
    for text in (
        "chain.length == 3",
        "chain.root.fingerprint in roots",
        'chain.root.subject.CN == "Test Root CA"',
        'chain.issuer.subject.O == "Test PKI"',
        issuing_pin,
    ):
        assert said(decision, text) == (
            "undefined",
            f"undefined: no trusted chain was built: {why}",
        )


def test_chain_issuer_of_a_leaf_that_is_its_own_anchor_is_undefined(tmp_path: Path) -> None:
    """A self-signed client certificate listed as an anchor verifies as a one-certificate
    chain: `chain.issuer.*` is undefined and says why (it used to be "tuple index out of
    range", an error in every rule that read it); `chain.root.*` is the leaf itself."""
    alone = make_certificate({"CN": "standalone", "O": "Contoso Ltd"}, **VALID)
    rules = """
rules:
  - id: by-issuer
    effect: allow
    when: trusted and chain.issuer.subject.O == "Contoso Ltd"
  - id: by-root
    effect: allow
    when: chain.length == 1 and chain.root.subject.CN == "standalone"
"""
    policy = build(tmp_path, "anchors: [alone.pem]", {"alone.pem": alone.pem}, rules=rules)
    decision = decide(policy, alone)
    assert outcome(decision) == (True, "allowed_by_rule", "by-root")
    assert decision.errors == ()
    assert said(decision, "trusted") == ("true", chain_text(("leaf and anchor", alone)))
    assert said(decision, 'chain.issuer.subject.O == "Contoso Ltd"') == (
        "undefined",
        "undefined: the trusted chain is the leaf alone (the leaf is itself a trust anchor), "
        "so nothing issued it",
    )
    assert said(decision, "chain.length == 1") == ("true", "got 1")
    assert said(decision, 'chain.root.subject.CN == "standalone"') == ("true", 'got "standalone"')
    by_issuer = next(r for r in decision.trace.rules if r.rule == "by-issuer")  # type: ignore[union-attr]
    assert by_issuer.outcome == "undefined"


# -- loading the trust: section -----------------------------------------------------------------


def test_trusted_without_a_trust_section(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "policy: no-anchors\n"
        "rules:\n"
        "  - id: a\n"
        "    effect: allow\n"
        '    when: subject.CN == "x" and trusted\n'
    )
    with pytest.raises(PolicyCheckError) as caught:
        load_policy(path)
    (diagnostic,) = caught.value.diagnostics
    assert (diagnostic.span.line, diagnostic.span.column, diagnostic.span.length) == (5, 33, 7)
    assert diagnostic.code == "no-trust"
    assert diagnostic.message == (
        "`trusted` needs trust anchors, and the policy has no `trust:` section"
    )
    assert diagnostic.hint == "add `trust:` with `anchors: [your-root-ca.pem]` (see docs/trust.md)"
    assert str(caught.value).startswith(f"{path}:5:33: error: `trusted` needs trust anchors")


@pytest.mark.parametrize("name", ["revoked", "chain.length", "chain.root.subject.CN"])
def test_other_trust_attributes_need_the_section_too(tmp_path: Path, name: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(f"policy: p\nrules:\n  - id: a\n    effect: deny\n    when: {name}\n")
    with pytest.raises(PolicyCheckError) as caught:
        load_policy(path)
    (diagnostic,) = caught.value.diagnostics
    assert (diagnostic.span.line, diagnostic.span.column) == (5, 11)
    assert diagnostic.message == (
        f"`{name}` needs trust anchors, and the policy has no `trust:` section"
    )


def unusable(folder: Path, trust: str, files: Mapping[str, bytes], line: int, column: int) -> str:
    """Loading fails with a PolicyFileError at ``line``:``column``; returns its message."""
    path = write_policy(folder, trust, files)
    with pytest.raises(PolicyFileError) as caught:
        load_policy(path)
    (diagnostic,) = caught.value.diagnostics
    assert (diagnostic.span.file, diagnostic.span.line, diagnostic.span.column) == (
        str(path),
        line,
        column,
    )
    assert diagnostic.code == "trust"
    assert diagnostic.hint == "check the path: it is relative to the policy file"
    assert str(caught.value).startswith(f"{path}:{line}:{column}: error: ")
    return diagnostic.message


def test_unreadable_anchor_file(tmp_path: Path, pki: Pki) -> None:
    trust = "anchors:\n  - root.pem\n  - missing.pem"
    message = unusable(tmp_path, trust, {"root.pem": pki.root.pem}, 5, 7)
    assert message == f"cannot read {tmp_path / 'missing.pem'}: No such file or directory"


def test_anchor_folder_without_certificates(tmp_path: Path, pki: Pki) -> None:
    (tmp_path / "roots").mkdir()
    (tmp_path / "roots" / "nested").mkdir()
    message = unusable(tmp_path, "anchors: [root.pem, roots/]", {"root.pem": pki.root.pem}, 3, 23)
    assert message == f"{tmp_path / 'roots'} holds no certificate files"


def test_anchor_that_is_not_a_certificate(tmp_path: Path, pki: Pki) -> None:
    files = {"root.pem": pki.root.pem, "roots/readme.txt": b"these are our roots\n"}
    message = unusable(tmp_path, "anchors: [root.pem]\nintermediates: [roots]", files, 4, 19)
    assert message.startswith(f"{tmp_path / 'roots' / 'readme.txt'} is not a certificate: ")


def test_intermediate_pem_that_is_broken(tmp_path: Path, pki: Pki) -> None:
    broken = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    files = {"root.pem": pki.root.pem, "issuing.pem": broken}
    message = unusable(tmp_path, "anchors: [root.pem]\nintermediates: [issuing.pem]", files, 4, 19)
    assert message.startswith(f"{tmp_path / 'issuing.pem'} is not a certificate: ")


def test_unreadable_crl(tmp_path: Path, pki: Pki) -> None:
    trust = """
        anchors: [root.pem]
        revocation:
          mode: hard
          crls:
            - issuing.crl
            - gone.crl
        """
    files = {"root.pem": pki.root.pem, "issuing.crl": crl(pki.issuing)}
    message = unusable(tmp_path, trust, files, 8, 9)
    assert message == f"cannot read {tmp_path / 'gone.crl'}: No such file or directory"


def test_crl_that_is_not_a_crl(tmp_path: Path, pki: Pki) -> None:
    trust = "anchors: [root.pem]\nrevocation:\n  crls: [root.pem]"
    message = unusable(tmp_path, trust, {"root.pem": pki.root.pem}, 5, 12)
    assert message.startswith(f"{tmp_path / 'root.pem'} is not a CRL: ")


def trust_warnings(policy: Policy) -> list[tuple[str, int, int, str]]:
    return [
        (w.code, w.span.line, w.span.column, w.message)
        for w in policy.warnings
        if w.code.startswith("trust-")
    ]


def test_check_warnings(tmp_path: Path, pki: Pki) -> None:
    not_ca = make_certificate({"CN": "Not A CA"}, **VALID)
    old_root = make_certificate(
        {"CN": "Old Root CA"},
        ca=True,
        not_before=datetime(2020, 1, 1, tzinfo=UTC),
        not_after=datetime(2024, 1, 1, tzinfo=UTC),
    )
    files = {
        "root.pem": pki.root.pem,
        "not-ca.pem": not_ca.pem,
        "old-root.pem": old_root.pem,
        "issuing.pem": pki.issuing.pem,
        "stale.crl": crl(
            pki.issuing,
            last_update=datetime(2024, 1, 1, tzinfo=UTC),
            next_update=datetime(2024, 6, 1, tzinfo=UTC),
        ),
        "forged.crl": crl(pki.issuing, signer=pki.other_root),
        "fresh.crl": crl(pki.issuing),
        "root.crl": crl(pki.root),
    }
    trust = """
        anchors:
          - root.pem
          - not-ca.pem
          - old-root.pem
        intermediates: [issuing.pem]
        revocation:
          mode: soft
          crls:
            - stale.crl
            - forged.crl
            - fresh.crl
            - root.crl
        """
    policy = build(tmp_path, trust, files, head="silence: [trusted-anywhere]")
    assert trust_warnings(policy) == [
        ("trust-anchor", 6, 7, "anchor CN=Not A CA is not a CA certificate"),
        ("trust-anchor", 7, 7, "anchor CN=Old Root CA expired on 2024-01-01T00:00:00Z"),
        ("trust-crl", 12, 9, "CRL stale.crl expired on 2024-06-01T00:00:00Z"),
        ("trust-crl", 13, 9, f"CRL forged.crl is not signed by a known CA ({ISSUING_NAME})"),
    ]
    assert [w.code for w in policy.warnings] == ["trust-anchor"] * 2 + ["trust-crl"] * 2
    assert {w.hint for w in policy.warnings} == {"replace it, or remove it from the policy"}
    assert {w.severity for w in policy.warnings} == {"warning"}
    # the warnings do not stop the policy from working
    decision = decide(policy, pki.leaf)
    assert outcome(decision) == (True, "allowed_by_rule", "trusted")
    assert said(decision, "trusted") == ("true", good_chain(pki))
    assert said(decision, "revoked") == (
        "false",
        "serial 1001 not listed in CRL fresh.crl, fresh until 2099-12-31T00:00:00Z"
        + INTERMEDIATE_GOOD,
    )

    quiet = build(tmp_path, trust, files, head="silence: [trusted-anywhere, trust-anchor]")
    assert [w.code for w in quiet.warnings] == ["trust-crl", "trust-crl"]
    silent = build(
        tmp_path, trust, files, head="silence: [trusted-anywhere, trust-anchor, trust-crl]"
    )
    assert silent.warnings == ()


@pytest.mark.parametrize("past", [timedelta(milliseconds=5), timedelta(microseconds=999_999)])
def test_a_fraction_of_a_second_past_not_after_is_not_trusted_and_expired_at_once(
    tmp_path: Path, pki: Pki, past: timedelta
) -> None:
    """The verifier compares whole seconds (X.509 times are whole seconds); `valid` and
    `expired` do too. 5 ms past notAfter, `trusted and expired` used to hold."""
    ends = datetime(2027, 6, 1, tzinfo=UTC)
    leaf = make_certificate(
        {"CN": "short-lived"}, issuer=pki.issuing, not_before=START, not_after=ends
    )
    rules = """
rules:
  - id: both
    effect: deny
    when: trusted and expired
  - id: fresh
    effect: allow
    when: valid and not expired and trusted
"""
    files = {"root.pem": pki.root.pem, "issuing.pem": pki.issuing.pem}
    policy = build(
        tmp_path, "anchors: [root.pem]\nintermediates: [issuing.pem]", files, rules=rules
    )
    inside = (
        "not_before 2025-01-01T00:00:00Z <= now 2027-06-01T00:00:00Z "
        "<= not_after 2027-06-01T00:00:00Z"
    )

    decision = decide(policy, leaf, ends + past)
    assert outcome(decision) == (True, "allowed_by_rule", "fresh")
    chain = chain_text(("leaf", leaf), ("via", pki.issuing), ("anchor", pki.root))
    assert said(decision, "trusted") == ("true", chain)
    assert said(decision, "expired") == ("false", inside)
    assert said(decision, "valid") == ("true", inside)
    # the same without a trace (the decision memo and the trust cache)
    assert policy.evaluate(leaf.pem, path="/orders", now=ends + past).rule == "fresh"

    later = ends + timedelta(seconds=1)
    decision = decide(policy, leaf, later)
    assert outcome(decision) == (False, "no_matching_rule", None)
    assert said(decision, "trusted") == ("false", "the certificate expired on 2027-06-01T00:00:00Z")
    assert said(decision, "valid") == (
        "false",
        "not_after 2027-06-01T00:00:00Z is before now 2027-06-01T00:00:01Z",
    )
    store = policy.trust
    assert store is not None
    facts = read_certificate(leaf.der)
    assert store.verify(facts, (), ends + past).trusted
    assert not store.verify(facts, (), later).trusted


# -- the verification cache ---------------------------------------------------------------------


def test_the_same_leaf_is_verified_once(tmp_path: Path, pki: Pki) -> None:
    files = {"root.pem": pki.root.pem, "issuing.pem": pki.issuing.pem}
    policy = build(tmp_path, "anchors: [root.pem]\nintermediates: [issuing.pem]", files)
    store = policy.trust
    assert store is not None
    facts = read_certificate(pki.leaf.der)
    first = store.verify(facts, (), NOW)
    assert isinstance(first, TrustResult) and first.trusted
    assert store.verify(facts, (), NOW) is first
    assert store.verify(read_certificate(pki.leaf.pem), (), NOW + timedelta(days=300)) is first
    # another forwarded chain is another entry
    assert store.verify(facts, (pki.issuing.der,), NOW) is not first
    # a failure is remembered for a minute
    stranger = read_certificate(pki.stranger.der)
    refusal = store.verify(stranger, (), NOW)
    assert not refusal.trusted
    assert store.verify(stranger, (), NOW + timedelta(seconds=59)) is refusal
    later = store.verify(stranger, (), NOW + timedelta(seconds=61))
    assert later is not refusal and later == refusal


def test_the_cache_ends_at_the_earliest_not_after(tmp_path: Path, pki: Pki) -> None:
    ends = datetime(2027, 6, 1, tzinfo=UTC)
    short = make_certificate(
        {"CN": "Short CA"}, issuer=pki.root, ca=True, not_before=START, not_after=ends
    )
    leaf = make_certificate({"CN": "long-lived"}, issuer=short, **VALID)
    files = {"root.pem": pki.root.pem, "short.pem": short.pem}
    policy = build(tmp_path, "anchors: [root.pem]\nintermediates: [short.pem]", files)
    store = policy.trust
    assert store is not None
    facts = read_certificate(leaf.der)
    first = store.verify(facts, (), NOW)
    assert first.trusted
    assert store.verify(facts, (), ends) is first
    after = store.verify(facts, (), ends + timedelta(seconds=1))
    assert not after.trusted
    assert after.reason == "intermediate CN=Short CA expired on 2027-06-01T00:00:00Z"

    fresh = build(tmp_path, "anchors: [root.pem]\nintermediates: [short.pem]", files)
    decision = decide(fresh, leaf)
    assert outcome(decision) == (True, "allowed_by_rule", "trusted")
    chain = chain_text(("leaf", leaf), ("via", short), ("anchor", pki.root))
    assert said(decision, "trusted") == ("true", chain)
    decision = decide(fresh, leaf, ends + timedelta(days=1))
    refusal = "intermediate CN=Short CA expired on 2027-06-01T00:00:00Z"
    assert outcome(decision) == (False, "no_matching_rule", None)
    assert said(decision, "trusted") == ("false", refusal)
    assert said(decision, "revoked") == (
        "undefined",
        f"no trusted chain to check revocation against: {refusal}",
    )


def test_a_crl_next_update_bounds_the_cache(tmp_path: Path, pki: Pki) -> None:
    """The answer changes at next_update, seen from either side: a "stale" answer cached
    after it must not be reused for an earlier evaluation time (it used to be)."""
    next_update = datetime(2026, 12, 15, tzinfo=UTC)
    policy = revocation_policy(
        tmp_path, pki, crl(pki.issuing, [0x0BAD], next_update=next_update), "hard"
    )
    store = policy.trust
    assert store is not None
    facts = read_certificate(pki.leaf.der)
    first = store.verify(facts, (), NOW)
    assert (first.trusted, first.revocation) == (True, "good")
    kept = store._cache.get((pki.leaf.der, ()))
    assert kept is not None and kept.valid_until == next_update
    assert store.verify(facts, (), next_update - timedelta(microseconds=1)) is first
    stale = store.verify(facts, (), next_update)
    assert (stale.trusted, stale.revocation) == (True, "unknown")
    assert stale.revocation_detail == "CRL issuing.crl expired on 2026-12-15T00:00:00Z"

    decision = decide(policy, pki.leaf, next_update - timedelta(hours=1))
    assert outcome(decision) == (True, "allowed_by_rule", "trusted")
    assert said(decision, "revoked") == (
        "false",
        "serial 1001 not listed in CRL issuing.crl, fresh until 2026-12-15T00:00:00Z"
        + INTERMEDIATE_GOOD,
    )
    decision = decide(policy, pki.leaf, next_update + timedelta(hours=1))
    assert outcome(decision) == (False, "denied_by_rule", "revoked")
    assert said(decision, "revoked") == (
        "true",
        "status unknown (CRL issuing.crl expired on 2026-12-15T00:00:00Z); "
        "hard mode counts it as revoked",
    )
    assert said(decision, "trusted") == ("true", good_chain(pki))


def test_a_crl_not_valid_yet_does_not_pin_the_cache(tmp_path: Path, pki: Pki) -> None:
    """A CRL whose last_update is ahead of the clock (skew) is unknown until then; the
    cached answer must not outlive that moment (it used to last until not_after)."""
    last_update = datetime(2026, 12, 1, tzinfo=UTC)
    early = crl(pki.issuing, [0x0BAD], last_update=last_update)
    policy = revocation_policy(tmp_path, pki, early, "hard")
    decision = decide(policy, pki.leaf)
    assert outcome(decision) == (False, "denied_by_rule", "revoked")
    assert said(decision, "revoked") == (
        "true",
        "status unknown (CRL issuing.crl is not valid before 2026-12-01T00:00:00Z); "
        "hard mode counts it as revoked",
    )
    assert said(decision, "trusted") == ("true", good_chain(pki))
    decision = decide(policy, pki.leaf, last_update)
    assert outcome(decision) == (True, "allowed_by_rule", "trusted")
    assert said(decision, "revoked") == (
        "false",
        "serial 1001 not listed in CRL issuing.crl, fresh until 2099-12-31T00:00:00Z"
        + INTERMEDIATE_GOOD,
    )
    assert said(decision, "trusted") == ("true", good_chain(pki))


# -- hostile chains -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    leaf: IssuedCertificate
    """Claims the Test Issuing CA as issuer; signed with the attacker's key."""
    forwarded: tuple[bytes, ...]
    """What the attacker forwards beside it, in order."""
    crafted: tuple[IssuedCertificate, ...]
    mid: IssuedCertificate


def hostile_chain(
    pki: Pki, crafted: int = 100, duplicates: int = 5, non_cas: int = 5, unrelated: int = 5
) -> Hostile:
    """``crafted`` CAs named like the Test Issuing CA, sharing the attacker's key, issued by
    an "Evil Mid CA" that claims the Test Root CA as issuer (signed by a fake root); plus
    copies of the first, non-CA certificates with the same name, and unrelated CAs."""
    attacker = ec.generate_private_key(ec.SECP256R1())
    fake_root = make_certificate(
        {"CN": "Test Root CA", "O": "Test PKI"}, ca=True, key=attacker, **VALID
    )
    mid = make_certificate({"CN": "Evil Mid CA"}, issuer=fake_root, ca=True, **VALID)
    issuing_name = {"CN": "Test Issuing CA", "O": "Test PKI"}
    lookalikes = tuple(
        make_certificate(
            issuing_name, issuer=mid, ca=True, key=attacker, serial=0x5000 + n, **VALID
        )
        for n in range(crafted)
    )
    leaf = make_certificate(
        {"CN": "orders-client", "O": "Contoso Ltd"},
        issuer=IssuedCertificate(lookalikes[0].certificate, attacker),
        **VALID,
    )
    forwarded = [c.der for c in lookalikes]
    forwarded += [lookalikes[0].der] * duplicates
    forwarded += [make_certificate(issuing_name, issuer=mid, **VALID).der for _ in range(non_cas)]
    forwarded += [
        make_certificate({"CN": f"Unrelated CA {n}"}, ca=True, **VALID).der
        for n in range(unrelated)
    ]
    forwarded.append(mid.der)
    forwarded.append(leaf.der)  # the leaf again: ignored
    return Hostile(leaf, tuple(forwarded), lookalikes, mid)


def within(seconds: float, work: Callable[[], T]) -> T:
    """Run ``work`` in a worker thread; fail if it has not finished after ``seconds``.

    A liveness guard against exponential path building, not a speed measurement
    (benchmarks/trust.py measures)."""
    box: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            box.append(work())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still deciding after {seconds} s"
    assert not errors, errors
    return box[0]


def test_hostile_forwarded_chain_is_cut_down(tmp_path: Path, pki: Pki) -> None:
    hostile = hostile_chain(pki)
    assert len(hostile.forwarded) == 100 + 5 + 5 + 5 + 1 + 1
    files = {"root.pem": pki.root.pem, "issuing.pem": pki.issuing.pem}
    policy = build(tmp_path, "anchors: [root.pem]\nintermediates: [issuing.pem]", files)
    store = policy.trust
    assert store is not None
    kept = store._candidates(hostile.leaf.certificate, hostile.leaf.der, hostile.forwarded)
    # the first 8 of the 100 look-alikes (same subject and key, each its own bytes); no
    # copy, no non-CA, no unrelated CA, not the leaf itself, and no room left for more
    assert MAX_FORWARDED_CANDIDATES == 8
    assert kept == [c.certificate for c in hostile.crafted[:8]]

    facts = read_certificate(hostile.leaf.der)
    result = within(10, lambda: store.verify(facts, hostile.forwarded, NOW))
    assert not result.trusted
    assert result.reason == (
        "no chain to an anchor could be built (candidates exhausted: signature does not match)"
    )


def test_hostile_chain_through_a_header(tmp_path: Path, pki: Pki) -> None:
    """The most a proxy source accepts (max_chain_length 32), decided in a worker thread."""
    hostile = hostile_chain(pki, crafted=20, duplicates=3, non_cas=3, unrelated=3)
    forwarded = hostile.forwarded[:-1]  # the leaf goes in Client-Cert
    assert len(forwarded) == 30
    files = {"root.pem": pki.root.pem, "issuing.pem": pki.issuing.pem}
    head = "certificate:\n  source: rfc9440\n  max_chain_length: 32\n  max_header_bytes: 65536"
    policy = build(tmp_path, "anchors: [root.pem]\nintermediates: [issuing.pem]", files, head=head)
    headers = rfc9440_headers(hostile.leaf.der, forwarded)
    decision = within(
        10,
        lambda: policy.evaluate_request(
            headers=headers, remote_addr=PEER, path="/orders", now=NOW, explain=True
        ),
    )
    why = "no chain to an anchor could be built (candidates exhausted: signature does not match)"
    assert outcome(decision) == (False, "no_matching_rule", None)
    assert said(decision, "trusted") == ("false", why)
    assert said(decision, "revoked") == (
        "undefined",
        f"no trusted chain to check revocation against: {why}",
    )


@dataclass(frozen=True)
class CrossSigned:
    """Root A (the anchor) cross-signs Root B twice, same subject and key: once expired,
    once renewed. Root B issues the intermediate that issues the leaf."""

    root_a: IssuedCertificate
    cross_expired: IssuedCertificate
    cross_renewed: IssuedCertificate
    inter: IssuedCertificate
    leaf: IssuedCertificate


@pytest.fixture(scope="module")
def cross_signed() -> CrossSigned:
    root_a = make_certificate({"CN": "Root A"}, ca=True, **VALID)
    root_b_key = ec.generate_private_key(ec.SECP256R1())
    cross_expired = make_certificate(
        {"CN": "Root B"},
        issuer=root_a,
        ca=True,
        key=root_b_key,
        not_before=START,
        not_after=datetime(2026, 1, 1, tzinfo=UTC),
    )
    cross_renewed = make_certificate(
        {"CN": "Root B"}, issuer=root_a, ca=True, key=root_b_key, **VALID
    )
    root_b = IssuedCertificate(cross_renewed.certificate, root_b_key)
    inter = make_certificate({"CN": "Issuing B"}, issuer=root_b, ca=True, **VALID)
    leaf = make_certificate({"CN": "cross-client"}, issuer=inter, **VALID)
    return CrossSigned(root_a, cross_expired, cross_renewed, inter, leaf)


@pytest.mark.parametrize("expired_first", [True, False], ids=["expired-first", "renewed-first"])
def test_forwarded_cross_certificates_with_the_same_subject_and_key_are_all_kept(
    tmp_path: Path, cross_signed: CrossSigned, expired_first: bool
) -> None:
    """[inter, cross_expired, cross_renewed] forwarded used to be denied ("intermediate
    CN=Root B expired"): the renewal, same subject and key, was dropped as a duplicate."""
    x = cross_signed
    crosses = [x.cross_expired.der, x.cross_renewed.der]
    forwarded = [x.inter.der, *(crosses if expired_first else reversed(crosses))]
    policy = build(
        tmp_path,
        "anchors: [root-a.pem]",
        {"root-a.pem": x.root_a.pem},
        head="certificate:\n  source: rfc9440",
    )
    decision = policy.evaluate_request(
        headers=rfc9440_headers(x.leaf.der, forwarded),
        remote_addr=PEER,
        path="/orders",
        now=NOW,
        explain=True,
    )
    assert outcome(decision) == (True, "allowed_by_rule", "trusted")
    chain = chain_text(
        ("leaf", x.leaf), ("via", x.inter), ("via", x.cross_renewed), ("anchor", x.root_a)
    )
    assert said(decision, "trusted") == ("true", chain)


def test_only_byte_identical_forwarded_duplicates_are_dropped(
    tmp_path: Path, cross_signed: CrossSigned
) -> None:
    x = cross_signed
    policy = build(tmp_path, "anchors: [root-a.pem]", {"root-a.pem": x.root_a.pem})
    store = policy.trust
    assert store is not None
    forwarded = (
        x.inter.der,
        x.inter.der,
        x.cross_expired.der,
        x.root_a.der,  # the anchor itself: the verifier has it already
        x.cross_renewed.der,
        x.cross_expired.der,
        x.leaf.der,
    )
    kept = store._candidates(x.leaf.certificate, x.leaf.der, forwarded)
    assert kept == [x.inter.certificate, x.cross_expired.certificate, x.cross_renewed.certificate]


def test_forwarded_candidates_are_capped(tmp_path: Path, pki: Pki) -> None:
    """A genuine-looking ladder of 12 CAs, each naming the next: 8 reach the verifier."""
    ladder = [make_certificate({"CN": "Rung 0"}, issuer=pki.root, ca=True, **VALID)]
    for n in range(1, 12):
        ladder.append(make_certificate({"CN": f"Rung {n}"}, issuer=ladder[-1], ca=True, **VALID))
    leaf = make_certificate({"CN": "climber"}, issuer=ladder[-1], **VALID)
    files = {"root.pem": pki.root.pem}
    policy = build(tmp_path, "anchors: [root.pem]\nmax_chain_depth: 16", files)
    store = policy.trust
    assert store is not None
    forwarded = tuple(c.der for c in reversed(ladder))
    kept = store._candidates(leaf.certificate, leaf.der, forwarded)
    assert MAX_FORWARDED_CANDIDATES == 8
    assert kept == [c.certificate for c in reversed(ladder)][:8]
    result = store.verify(read_certificate(leaf.der), forwarded, NOW)
    assert not result.trusted
    assert result.reason == "issuer CN=Rung 3 not found among anchors or intermediates"


# -- the shipped example -----------------------------------------------------------------------


def test_shipped_partner_pki_policy() -> None:
    policy = load_policy(POLICIES / "partner-pki.yaml")
    certs = POLICIES / "certs"
    root, issuing = (
        (certs / "partner-root.pem").read_bytes(),
        (certs / "partner-issuing.pem").read_bytes(),
    )
    root_der = read_certificate(root).der
    issuing_der = read_certificate(issuing).der

    def shipped(name: str) -> Decision:
        data = (certs / name).read_bytes()
        return policy.evaluate(data, path="/orders", now=NOW, explain=True)

    client = read_certificate((certs / "partner-client.pem").read_bytes())
    decision = shipped("partner-client.pem")
    assert outcome(decision) == (True, "allowed_by_rule", "partner")
    chain = chain_text(("leaf", client.der), ("via", issuing_der), ("anchor", root_der))
    assert said(decision, "trusted") == ("true", chain)
    issuing_serial = read_certificate(issuing).summary()["serial"]
    assert said(decision, "revoked") == (
        "false",
        f"serial {client.summary()['serial']} not listed in CRL partner-issuing.crl, "
        "fresh until 2099-12-31T00:00:00Z; intermediate O=Contoso Ltd,CN=Partner Issuing CA: "
        f"serial {issuing_serial} not listed in CRL partner-root.crl, "
        "fresh until 2099-12-31T00:00:00Z",
    )

    decision = shipped("partner-revoked.pem")
    assert outcome(decision) == (False, "denied_by_rule", "revoked")
    assert said(decision, "revoked") == (
        "true",
        "the certificate: serial BAD revoked on 2026-01-01T00:00:00Z (CRL partner-issuing.crl)",
    )
    assert nodes(decision, "trusted") == []  # the allow rule is not evaluated
    assert policy.trust is not None
    revoked = read_certificate((certs / "partner-revoked.pem").read_bytes())
    assert policy.trust.verify(revoked, (), NOW).trusted

    eku = "the certificate's extended key usage does not include clientAuth (it has serverAuth)"
    decision = shipped("partner-server-only.pem")
    assert outcome(decision) == (False, "no_matching_rule", None)
    assert decision.closest_rule == "partner"
    assert decision.failed_condition == "trusted"
    assert said(decision, "trusted") == ("false", eku)
    assert said(decision, "revoked") == (
        "undefined",
        f"no trusted chain to check revocation against: {eku}",
    )

    alone = "issuer O=Microsoft Corp,CN=nildevecc not found among anchors or intermediates"
    decision = shipped("partner.pem")
    assert outcome(decision) == (False, "no_matching_rule", None)
    assert decision.failed_condition == "trusted"
    assert said(decision, "trusted") == ("false", alone)
    assert said(decision, "revoked") == (
        "undefined",
        f"no trusted chain to check revocation against: {alone}",
    )


@pytest.mark.parametrize("mode", ["soft", "hard"])
@pytest.mark.parametrize(
    "defect",
    [
        {"next_update": datetime(2026, 1, 1, tzinfo=UTC)},
        {"number": None},
        {"number": 7, "number_critical": True},
    ],
    ids=["expired", "no CRL number", "critical CRL number"],
)
def test_a_revocation_the_issuer_signed_denies_even_from_a_crl_that_cannot_say_good(
    tmp_path: Path, pki: Pki, mode: str, defect: dict[str, object]
) -> None:
    """A CRL too old or too defective to prove a certificate good still carries the
    issuer's signed word that it is revoked: soft mode must not let the certificate back in
    (an outage of the CRL publisher would otherwise un-revoke it)."""
    listing = crl(pki.issuing, [0x1001], **defect)  # type: ignore[arg-type]
    decision = decide(revocation_policy(tmp_path, pki, listing, mode), pki.leaf)
    assert outcome(decision) == (False, "denied_by_rule", "revoked")
    verdict, detail = said(decision, "revoked")
    assert verdict == "true"
    assert "serial 1001 revoked on " in detail
    assert "CRL issuing.crl, signed by the issuer; no usable CRL says otherwise" in detail


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_a_revocation_published_in_a_delta_crl_after_its_base_denies(
    tmp_path: Path, pki: Pki, mode: str
) -> None:
    """A delta CRL is not applied as a complete CRL, but a revocation it adds after the base
    is not lost: the certificate is revoked. An older delta the base already covers, or one
    that only lifts a hold (removeFromCRL), revokes nothing."""
    base = crl(pki.issuing, number=5)
    newer_delta = crl(
        pki.issuing, [0x1001], number=6, extensions=[(x509.DeltaCRLIndicator(5), True)]
    )
    files = {"base.crl": base, "delta.crl": newer_delta}
    decision = decide(issuer_crls_policy(tmp_path, pki, files, mode=mode), pki.leaf)
    assert outcome(decision) == (False, "denied_by_rule", "revoked")
    assert "delta CRL delta.crl, newer than the complete CRL" in said(decision, "revoked")[1]

    older_delta = crl(
        pki.issuing, [0x1001], number=4, extensions=[(x509.DeltaCRLIndicator(3), True)]
    )
    files = {"base.crl": base, "delta.crl": older_delta}
    decision = decide(issuer_crls_policy(tmp_path / "old", pki, files, mode=mode), pki.leaf)
    assert outcome(decision) == (True, "allowed_by_rule", "trusted")


def test_a_forwarded_cross_certificate_above_a_configured_intermediate_is_kept(
    tmp_path: Path,
) -> None:
    """The configured intermediate I1 is issued by Root, and the proxy forwards Root
    cross-signed by the anchor: the forwarded certificate is on the way up from the leaf
    and must reach the verifier (it was thrown away: `issuer CN=Root not found`)."""
    from policyengine.request.trust import TrustSettings, TrustStore

    valid = {"not_before": START, "not_after": FAR}
    anchor = make_certificate({"CN": "Anchor"}, ca=True, **valid)
    root = make_certificate({"CN": "Root"}, ca=True, **valid)
    cross = make_certificate({"CN": "Root"}, ca=True, issuer=anchor, key=root.key, **valid)
    i1 = make_certificate({"CN": "I1"}, ca=True, issuer=root, **valid)
    leaf = make_certificate({"CN": "alice"}, issuer=i1, **valid)
    (tmp_path / "anchor.pem").write_bytes(anchor.pem)
    (tmp_path / "i1.pem").write_bytes(i1.pem)
    settings = TrustSettings(
        anchors=(tmp_path / "anchor.pem",), intermediates=(tmp_path / "i1.pem",)
    )
    result = TrustStore.load(settings).verify(read_certificate(leaf.der), [cross.der], NOW)
    assert result.trusted, result.reason
