"""Make the example certificates in this folder that are missing.

    python policies/certs/generate.py            # only the missing ones
    python policies/certs/generate.py --pki      # the partner PKI and its CRLs anew
    python policies/certs/generate.py --all      # every one, new keys and fingerprints

Prints each certificate's SHA-1 and SHA-256 fingerprint: the example policies pin these,
so after regenerating, update the pins in ../*.yaml (the tests will tell you which).
Private keys are not kept: the examples only need the certificates.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from policyengine.testing import IssuedCertificate, make_certificate

HERE = Path(__file__).resolve().parent
FAR = datetime(2099, 12, 31, tzinfo=UTC)
START = datetime(2025, 1, 1, tzinfo=UTC)

EXAMPLES = {
    # The App Service article's sample client: self-signed, CN=nildevecc, O=Microsoft Corp.
    "partner.pem": dict(subject={"CN": "nildevecc", "O": "Microsoft Corp"}),
    # Same CN, another organization: what a split-on-commas validator must not let in.
    "fabrikam.pem": dict(subject={"CN": "nildevecc", "O": "Fabrikam"}),
    # The partner's previous certificate, expired.
    "expired.pem": dict(
        subject={"CN": "nildevecc", "O": "Microsoft Corp"},
        not_before=datetime(2023, 1, 1, tzinfo=UTC),
        not_after=datetime(2024, 1, 1, tzinfo=UTC),
    ),
}


def main() -> None:
    for filename, options in EXAMPLES.items():
        if (HERE / filename).exists() and "--all" not in sys.argv:
            print(f"{filename:24} kept (pass --all to replace it)")
            continue
        options.setdefault("not_before", START)
        options.setdefault("not_after", FAR)
        issued = make_certificate(**options)  # type: ignore[arg-type]
        save(filename, issued)
    pki()


def save(filename: str, issued: IssuedCertificate, *, replace: bool = False) -> None:
    path = HERE / filename
    if path.exists() and not replace and "--all" not in sys.argv:
        print(f"{filename:24} kept (pass --all to replace it)")
        return
    path.write_bytes(issued.pem)
    print(f"{filename:24} sha1 {issued.sha1.upper()}  sha256 {issued.sha256}")


PKI_FILES = (
    "partner-root.pem",
    "partner-issuing.pem",
    "partner-client.pem",
    "partner-revoked.pem",
    "partner-server-only.pem",
    "partner-issuing.crl",
    "partner-root.crl",
)


def pki() -> None:
    """A partner PKI for partner-pki.yaml: root -> issuing CA -> clients, and both CAs' CRLs.

    Made as a whole (the CA keys are not kept), so it is replaced as a whole or not at all.
    The policy checks revocation in hard mode for the whole chain, so each CA publishes a
    CRL (with the CRL number RFC 5280 requires): the issuing CA's lists partner-revoked.pem,
    the root's lists nothing.
    """
    wanted = "--all" in sys.argv or "--pki" in sys.argv
    if all((HERE / name).exists() for name in PKI_FILES) and not wanted:
        print("partner PKI              kept (pass --pki or --all to replace it)")
        return
    dates = {"not_before": START, "not_after": FAR}
    root = make_certificate({"CN": "Partner Root CA", "O": "Contoso Ltd"}, ca=True, **dates)
    issuing = make_certificate(
        {"CN": "Partner Issuing CA", "O": "Contoso Ltd"}, issuer=root, ca=True, **dates
    )
    client = make_certificate({"CN": "orders-client", "O": "Contoso Ltd"}, issuer=issuing, **dates)
    revoked = make_certificate(
        {"CN": "old-orders-client", "O": "Contoso Ltd"}, issuer=issuing, serial=0x0BAD, **dates
    )
    server_only = make_certificate(
        {"CN": "www.contoso.com", "O": "Contoso Ltd"},
        issuer=issuing,
        extended_key_usage=[ExtendedKeyUsageOID.SERVER_AUTH],
        **dates,
    )
    save("partner-root.pem", root, replace=True)
    save("partner-issuing.pem", issuing, replace=True)
    save("partner-client.pem", client, replace=True)
    save("partner-revoked.pem", revoked, replace=True)
    save("partner-server-only.pem", server_only, replace=True)
    write_crl("partner-issuing.crl", issuing, [revoked])
    print("partner-issuing.crl      lists partner-revoked.pem")
    write_crl("partner-root.crl", root, [])
    print("partner-root.crl         lists nothing (the issuing CA is good)")


def write_crl(filename: str, issuer: IssuedCertificate, revoked: list[IssuedCertificate]) -> None:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(START)
        .next_update(FAR)
        .add_extension(x509.CRLNumber(1), critical=False)
    )
    for certificate in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(certificate.certificate.serial_number)
            .revocation_date(datetime(2026, 1, 1, tzinfo=UTC))
            .build()
        )
    crl = builder.sign(issuer.key, hashes.SHA256())  # type: ignore[arg-type]
    (HERE / filename).write_bytes(crl.public_bytes(serialization.Encoding.PEM))


if __name__ == "__main__":
    main()
