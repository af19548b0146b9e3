"""The names a policy writes for parts of a certificate, and the OIDs they stand for.

Owns the tables: distinguished-name attributes (``subject.CN``), extended key usages
(``clientAuth``) and key usage bits (``keyCertSign``). Plain data that any stage may read:
it imports nothing, neither cryptography nor any other policyengine module.
"""

from __future__ import annotations

__all__ = ["EKU_NAMES", "KEY_USAGES", "KEY_USAGE_FIELDS", "NAME_ATTRIBUTES", "UPN_OID"]

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

UPN_OID = "1.3.6.1.4.1.311.20.2.3"
"""The Microsoft user principal name other-name in a subject alternative name."""

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

KEY_USAGE_FIELDS = {
    "digitalSignature": "digital_signature",
    "contentCommitment": "content_commitment",
    "keyEncipherment": "key_encipherment",
    "dataEncipherment": "data_encipherment",
    "keyAgreement": "key_agreement",
    "keyCertSign": "key_cert_sign",
    "cRLSign": "crl_sign",
    "encipherOnly": "encipher_only",
    "decipherOnly": "decipher_only",
}
"""Each key usage bit by its RFC 5280 name, and the attribute cryptography reads it by
(``cRLSign`` is ``crl_sign``, not what a camel-to-snake rule would make of it)."""

KEY_USAGES = tuple(KEY_USAGE_FIELDS)
