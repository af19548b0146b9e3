"""Regenerate the example certificates in this folder.

    python policies/certs/generate.py

Prints each certificate's SHA-1 and SHA-256 fingerprint: the example policies pin these,
so after regenerating, update the pins in ../*.yaml (the tests will tell you which).
Private keys are not kept: the examples only need the certificates.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from policyengine.testing import make_certificate

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
        options.setdefault("not_before", START)
        options.setdefault("not_after", FAR)
        issued = make_certificate(**options)  # type: ignore[arg-type]
        (HERE / filename).write_bytes(issued.pem)
        print(f"{filename:14} sha1 {issued.sha1.upper()}  sha256 {issued.sha256}")


if __name__ == "__main__":
    main()
