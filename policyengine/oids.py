"""The X.509 object identifiers that both the language and the request side name.

A policy writes ``subject.CN`` and ``"clientAuth" in eku``; the certificate reader finds
the attribute ``2.5.4.3`` and the usage ``1.3.6.1.5.5.7.3.2``. The table of those names
lives here, below both: :mod:`policyengine.language.vocabulary` lists the attributes and
aliases a policy may write, :mod:`policyengine.request.certificate` reads them.

Plain data. Imports nothing: not ``cryptography``, nothing of ``policyengine``.
"""

from __future__ import annotations

__all__ = ["EKU_NAMES", "NAME_ATTRIBUTES"]

NAME_ATTRIBUTES: dict[str, str] = {
    "CN": "2.5.4.3",
    "SN": "2.5.4.4",
    "serialNumber": "2.5.4.5",
    "C": "2.5.4.6",
    "L": "2.5.4.7",
    "ST": "2.5.4.8",
    "street": "2.5.4.9",
    "O": "2.5.4.10",
    "OU": "2.5.4.11",
    "title": "2.5.4.12",
    "businessCategory": "2.5.4.15",
    "postalCode": "2.5.4.17",
    "name": "2.5.4.41",
    "givenName": "2.5.4.42",
    "initials": "2.5.4.43",
    "generationQualifier": "2.5.4.44",
    "dnQualifier": "2.5.4.46",
    "pseudonym": "2.5.4.65",
    "organizationIdentifier": "2.5.4.97",
    "DC": "0.9.2342.19200300.100.1.25",
    "UID": "0.9.2342.19200300.100.1.1",
    "emailAddress": "1.2.840.113549.1.9.1",
    "jurisdictionC": "1.3.6.1.4.1.311.60.2.1.3",
    "jurisdictionST": "1.3.6.1.4.1.311.60.2.1.2",
    "jurisdictionL": "1.3.6.1.4.1.311.60.2.1.1",
}
"""Distinguished-name attributes a policy can name as ``subject.X`` / ``issuer.X``, by OID.
Any other attribute is reachable by its dotted OID: ``subject.2.5.4.12``."""

EKU_NAMES: dict[str, str] = {
    "1.3.6.1.5.5.7.3.1": "serverAuth",
    "1.3.6.1.5.5.7.3.2": "clientAuth",
    "1.3.6.1.5.5.7.3.3": "codeSigning",
    "1.3.6.1.5.5.7.3.4": "emailProtection",
    "1.3.6.1.5.5.7.3.8": "timeStamping",
    "1.3.6.1.5.5.7.3.9": "OCSPSigning",
    "2.5.29.37.0": "anyExtendedKeyUsage",
    "1.3.6.1.4.1.311.20.2.2": "smartcardLogon",
    "1.3.6.1.5.2.3.5": "kdcAuth",
}
"""Extended key usages known by name; others are shown as dotted OIDs."""
