"""The public key and signature facts of a certificate: ``key.type``, ``key.size``, ...

Owns :class:`KeyFacts`, the part of
:class:`~policyengine.request.certificate.CertificateFacts` that describes the subject's
public key and the issuer's signature; each fact is computed on first read and kept.
Imports cryptography and the request side's own modules, never ``language/`` or
``evaluation/``.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from policyengine.errors import FactError
from policyengine.request.lazy import fact
from policyengine.values import Missing

__all__ = ["KeyFacts"]

_HASH_BY_SIGNATURE_OID = {
    "1.2.840.113549.1.1.2": "md2",
    "1.2.840.113549.1.1.3": "md4",
    "1.2.840.113549.1.1.4": "md5",
    "1.2.840.113549.1.1.5": "sha1",
    "1.2.840.10040.4.3": "sha1",
    "1.2.840.10045.4.1": "sha1",
}
"""Signature algorithms whose hash cryptography cannot name (it refuses MD2 and MD4)."""


class KeyFacts:
    """The key and signature facts; a base of CertificateFacts, which sets ``certificate``."""

    certificate: x509.Certificate

    @fact("the public key")
    def _key(self) -> object:
        return self.certificate.public_key()

    @fact("the public key")
    def key_type(self) -> str:
        key = self._key
        if isinstance(key, rsa.RSAPublicKey):
            return "rsa"
        if isinstance(key, ec.EllipticCurvePublicKey):
            return "ec"
        if isinstance(key, ed25519.Ed25519PublicKey):
            return "ed25519"
        if isinstance(key, ed448.Ed448PublicKey):
            return "ed448"
        # DSAPublicKey -> dsa, X25519PublicKey -> x25519: named by the class, because touching
        # cryptography's dsa module warns (DSA is deprecated) on every certificate
        return type(key).__name__.removesuffix("PublicKey").lower()

    @fact("the public key")
    def key_size(self) -> int:
        key = self._key
        if isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
            return key.key_size
        if self.key_type == "dsa":
            # named by its class: touching cryptography's dsa module warns (DSA is deprecated)
            return int(getattr(key, "key_size"))  # noqa: B009
        if isinstance(key, ed25519.Ed25519PublicKey):
            return 256
        if isinstance(key, ed448.Ed448PublicKey):
            return 456
        raise FactError(f"the size of a {self.key_type} key is not known")

    @fact("the public key")
    def key_curve(self) -> str | Missing:
        key = self._key
        if isinstance(key, ec.EllipticCurvePublicKey):
            return key.curve.name
        return Missing(f"a {self.key_type} key has no curve")

    @fact("the signature algorithm")
    def signature_algorithm(self) -> str:
        oid = self.certificate.signature_algorithm_oid
        name = getattr(oid, "_name", "")
        return name if name and name != "Unknown OID" else oid.dotted_string

    @fact("the signature algorithm")
    def signature_hash(self) -> str | Missing:
        oid = self.certificate.signature_algorithm_oid.dotted_string
        if oid in _HASH_BY_SIGNATURE_OID:
            return _HASH_BY_SIGNATURE_OID[oid]
        algorithm = self.certificate.signature_hash_algorithm
        if algorithm is None:
            return Missing(f"{self.signature_algorithm} signs without a separate hash")
        return algorithm.name
