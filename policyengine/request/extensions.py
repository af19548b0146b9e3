"""The facts a certificate's extensions hold: subject alternative names, key usages,
basic constraints, policies, key identifiers.

Owns :class:`ExtensionFacts`, the part of
:class:`~policyengine.request.certificate.CertificateFacts` read from the extensions; each
fact is computed on first read and kept. ``cryptography`` parses the extensions as one
list, so a malformed extension makes every fact here raise FactError while names, serial,
validity, key and fingerprints still read. Also :func:`is_ca`, the basic-constraints test
the chain builder and the revocation check make on certificates that are not facts.
Imports cryptography, the tables of ``policyengine.oids`` and the request side's own
modules, never ``language/`` or ``evaluation/``.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509

from policyengine.oids import EKU_NAMES
from policyengine.request.lazy import fact, once
from policyengine.values import Missing

__all__ = ["KEY_USAGES", "UPN_OID", "ExtensionFacts", "is_ca"]

UPN_OID = "1.3.6.1.4.1.311.20.2.3"
"""The Microsoft user principal name other-name in a subject alternative name."""

_KEY_USAGE_FIELDS = {
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

KEY_USAGES = tuple(_KEY_USAGE_FIELDS)


class ExtensionFacts:
    """The extension facts; a base of CertificateFacts, which sets ``certificate``.

    The UPN (``san_upn``) is read in certificate.py, beside the DER string reader it uses.
    """

    certificate: x509.Certificate

    @fact("the certificate's extensions")
    def _extensions(self) -> x509.Extensions:
        return self.certificate.extensions

    def _extension(self, kind: type[x509.ExtensionType]) -> Any:
        try:
            return self._extensions.get_extension_for_class(kind).value
        except x509.ExtensionNotFound:
            return None

    @fact("the subject alternative names")
    def _san(self) -> x509.SubjectAlternativeName | None:
        value: x509.SubjectAlternativeName | None = self._extension(x509.SubjectAlternativeName)
        return value

    def _san_values(self, kind: type[x509.GeneralName]) -> tuple[str, ...]:
        san = self._san
        if san is None:
            return ()
        return tuple(str(v) for v in san.get_values_for_type(kind))  # type: ignore[arg-type]

    @fact("the DNS subject alternative names")
    def san_dns(self) -> tuple[str, ...]:
        return tuple(name.lower() for name in self._san_values(x509.DNSName))

    @fact("the URI subject alternative names")
    def san_uri(self) -> tuple[str, ...]:
        return self._san_values(x509.UniformResourceIdentifier)

    @fact("the email subject alternative names")
    def san_email(self) -> tuple[str, ...]:
        return self._san_values(x509.RFC822Name)

    @fact("the IP address subject alternative names")
    def san_ip(self) -> tuple[str, ...]:
        return self._san_values(x509.IPAddress)

    @fact("the SPIFFE ID")
    def spiffe_id(self) -> str | Missing:
        found = [uri for uri in self.san_uri if uri.lower().startswith("spiffe://")]
        if len(found) == 1:
            return found[0]
        if not found:
            return Missing("the certificate has no spiffe:// URI SAN")
        return Missing(f"the certificate has {len(found)} spiffe:// URI SANs; ambiguous")

    @fact("the extended key usage")
    def eku(self) -> tuple[str, ...]:
        usage = self._extension(x509.ExtendedKeyUsage)
        if usage is None:
            return ()
        return tuple(EKU_NAMES.get(oid.dotted_string, oid.dotted_string) for oid in usage)

    @fact("the key usage")
    def key_usage(self) -> tuple[str, ...]:
        usage = self._extension(x509.KeyUsage)
        if usage is None:
            return ()
        found = []
        for flag in KEY_USAGES:
            if flag in ("encipherOnly", "decipherOnly") and not usage.key_agreement:
                continue  # cryptography refuses to read these unless keyAgreement is set
            if getattr(usage, _KEY_USAGE_FIELDS[flag]):
                found.append(flag)
        return tuple(found)

    @fact("the basic constraints")
    def _basic_constraints(self) -> x509.BasicConstraints | None:
        value: x509.BasicConstraints | None = self._extension(x509.BasicConstraints)
        return value

    @once
    def is_ca(self) -> bool:
        constraints = self._basic_constraints
        return bool(constraints is not None and constraints.ca)

    @once
    def path_length(self) -> int | Missing:
        constraints = self._basic_constraints
        if constraints is None or constraints.path_length is None:
            return Missing("the certificate sets no path length constraint")
        return constraints.path_length

    @fact("the certificate policies")
    def certificate_policies(self) -> tuple[str, ...]:
        policies = self._extension(x509.CertificatePolicies)
        if policies is None:
            return ()
        return tuple(p.policy_identifier.dotted_string for p in policies)

    @fact("the subject key identifier")
    def subject_key_id(self) -> str | Missing:
        ski = self._extension(x509.SubjectKeyIdentifier)
        if ski is None:
            return Missing("the certificate has no subject key identifier")
        return bytes(ski.digest).hex()

    @fact("the authority key identifier")
    def authority_key_id(self) -> str | Missing:
        aki = self._extension(x509.AuthorityKeyIdentifier)
        if aki is None or aki.key_identifier is None:
            return Missing("the certificate has no authority key identifier")
        return bytes(aki.key_identifier).hex()


def is_ca(cert: x509.Certificate) -> bool:
    """Whether the certificate's basic constraints say CA (False when absent or unreadable)."""
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except Exception:
        return False
    return bool(constraints.ca)
