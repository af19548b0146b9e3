"""Make the example certificates in this folder that are missing.

    python policies/certs/generate.py            # only the missing ones
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


def save(filename: str, issued: IssuedCertificate) -> None:
    path = HERE / filename
    if path.exists() and "--all" not in sys.argv:
        print(f"{filename:24} kept (pass --all to replace it)")
        return
    path.write_bytes(issued.pem)
    print(f"{filename:24} sha1 {issued.sha1.upper()}  sha256 {issued.sha256}")


def pki() -> None:
    """A partner PKI for partner-pki.yaml: root -> issuing CA -> clients, and a CRL.

    Made as a whole (the CA keys are not kept), so it is replaced as a whole or not at all.
    """
    if (HERE / "partner-root.pem").exists() and "--all" not in sys.argv:
        print("partner PKI              kept (pass --all to replace it)")
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
    save("partner-root.pem", root)
    save("partner-issuing.pem", issuing)
    save("partner-client.pem", client)
    save("partner-revoked.pem", revoked)
    save("partner-server-only.pem", server_only)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuing.certificate.subject)
        .last_update(START)
        .next_update(FAR)
        .add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(revoked.certificate.serial_number)
            .revocation_date(datetime(2026, 1, 1, tzinfo=UTC))
            .build()
        )
        .sign(issuing.key, hashes.SHA256())  # type: ignore[arg-type]
    )
    (HERE / "partner-issuing.crl").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    print("partner-issuing.crl      lists partner-revoked.pem")


if __name__ == "__main__":
    main()
