"""Certificate facts: what a policy can know about one client certificate.

:func:`read_certificate` turns what a caller hands the engine (PEM or DER, bytes or text,
or a ``cryptography`` certificate) into :class:`CertificateFacts`, or raises
:class:`CertificateError` with a message fit for a deny reason.

Facts are computed lazily, each on first use, and each accessor is guarded on its own: a
certificate whose issuer cannot be decoded still yields its fingerprint. An accessor that
cannot read its part raises :class:`~policyengine.values.FactError`, which the engine turns
into a deny for the rule that asked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from functools import cached_property

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from policyengine.values import FactError, Missing, fingerprint_token, format_serial, format_time

__all__ = ["MAX_CERTIFICATE_BYTES", "CertificateError", "CertificateFacts", "read_certificate"]

MAX_CERTIFICATE_BYTES = 64 * 1024
"""Anything larger is refused before parsing. Real client certificates are a few KiB."""

_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"
_PEM_END = b"-----END CERTIFICATE-----"


class CertificateError(ValueError):
    """The bytes given are not one readable X.509 certificate."""


def read_certificate(value: object) -> CertificateFacts:
    """Facts about one certificate given as PEM or DER (bytes or text) or a certificate object.

    Raises :class:`CertificateError` with a short, precise message on anything else.
    """
    if isinstance(value, x509.Certificate):
        try:
            der = value.public_bytes(serialization.Encoding.DER)
        except Exception as exc:
            raise CertificateError(f"the certificate cannot be encoded: {exc}") from None
        return CertificateFacts(value, der)
    if isinstance(value, str):
        try:
            data = value.encode("ascii")
        except UnicodeEncodeError:
            raise CertificateError(
                "the certificate text holds non-ASCII characters; give PEM or DER"
            ) from None
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    else:
        raise CertificateError(
            f"a certificate must be PEM or DER bytes or text, not {type(value).__name__}"
        )
    if len(data) > MAX_CERTIFICATE_BYTES:
        raise CertificateError(
            f"the certificate is {len(data)} bytes, over the {MAX_CERTIFICATE_BYTES}-byte limit"
        )
    if not data.strip():
        raise CertificateError("the certificate is empty")
    # DER starts with a SEQUENCE tag (0x30); its bytes may contain the PEM marker in a name
    is_pem = _PEM_BEGIN in data and not data.startswith(b"\x30")
    der = _pem_to_der(data) if is_pem else data
    try:
        cert = x509.load_der_x509_certificate(der)
    except Exception as exc:
        raise CertificateError(f"not a DER certificate: {_first_line(exc)}") from None
    return CertificateFacts(cert, der)


def _pem_to_der(data: bytes) -> bytes:
    start = data.find(_PEM_BEGIN)
    end = data.find(_PEM_END, start)
    if end < 0:
        raise CertificateError("the PEM certificate has no END CERTIFICATE line")
    if data[:start].strip():
        raise CertificateError("text before -----BEGIN CERTIFICATE-----")
    try:
        cert = x509.load_pem_x509_certificate(data[: end + len(_PEM_END)])
    except Exception as exc:
        raise CertificateError(f"not a PEM certificate: {_first_line(exc)}") from None
    return cert.public_bytes(serialization.Encoding.DER)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


_NAME_ATTRIBUTES: dict[str, x509.ObjectIdentifier] = {
    "CN": NameOID.COMMON_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "emailAddress": NameOID.EMAIL_ADDRESS,
    "serialNumber": NameOID.SERIAL_NUMBER,
    "DC": NameOID.DOMAIN_COMPONENT,
    "UID": NameOID.USER_ID,
}
"""The distinguished-name attributes a policy can name as ``subject.X`` / ``issuer.X``."""

NAME_ATTRIBUTES = tuple(_NAME_ATTRIBUTES)


class CertificateFacts:
    """Everything a policy can test about one certificate, each computed on first use."""

    def __init__(self, certificate: x509.Certificate, der: bytes) -> None:
        self.certificate = certificate
        self.der = der

    # -- names -------------------------------------------------------------------------

    def _name(self, which: str) -> x509.Name:
        try:
            return self.certificate.subject if which == "subject" else self.certificate.issuer
        except Exception as exc:
            raise FactError(f"the {which} name cannot be read: {_first_line(exc)}") from None

    @cached_property
    def subject(self) -> str:
        return self._rfc4514("subject")

    @cached_property
    def issuer(self) -> str:
        return self._rfc4514("issuer")

    def _rfc4514(self, which: str) -> str:
        try:
            return self._name(which).rfc4514_string()
        except FactError:
            raise
        except Exception as exc:
            raise FactError(f"the {which} name cannot be read: {_first_line(exc)}") from None

    @cached_property
    def subject_attributes(self) -> dict[str, tuple[str, ...]]:
        return self._attributes("subject")

    @cached_property
    def issuer_attributes(self) -> dict[str, tuple[str, ...]]:
        return self._attributes("issuer")

    def _attributes(self, which: str) -> dict[str, tuple[str, ...]]:
        name = self._name(which)
        values: dict[str, list[str]] = {key: [] for key in _NAME_ATTRIBUTES}
        by_oid = {oid: key for key, oid in _NAME_ATTRIBUTES.items()}
        try:
            for attribute in name:
                key = by_oid.get(attribute.oid)
                if key is None:
                    continue
                value = attribute.value
                if isinstance(value, bytes):
                    value = value.decode("utf-8", "replace")
                values[key].append(value)
        except Exception as exc:
            raise FactError(f"the {which} name cannot be read: {_first_line(exc)}") from None
        return {key: tuple(found) for key, found in values.items()}

    def name_values(self, which: str, key: str) -> tuple[str, ...]:
        """Every value of one attribute of the subject or issuer, in certificate order."""
        attributes = self.subject_attributes if which == "subject" else self.issuer_attributes
        return attributes[key]

    def name_value(self, which: str, key: str) -> str | Missing:
        """The one value of an attribute, or Missing when there are none or several."""
        found = self.name_values(which, key)
        if len(found) == 1:
            return found[0]
        if not found:
            return Missing(f"the {which} has no {key}")
        shown = ", ".join(repr(v) for v in found)
        return Missing(f"the {which} has {len(found)} {key} values ({shown}); ambiguous")

    # -- identity ----------------------------------------------------------------------

    @cached_property
    def serial(self) -> int:
        try:
            return self.certificate.serial_number
        except Exception as exc:
            raise FactError(f"the serial number cannot be read: {_first_line(exc)}") from None

    @cached_property
    def sha1(self) -> str:
        return hashlib.sha1(self.der).hexdigest()

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.der).hexdigest()

    @cached_property
    def sha1_token(self) -> bytes:
        return fingerprint_token(self.sha1)

    @cached_property
    def sha256_token(self) -> bytes:
        return fingerprint_token(self.sha256)

    # -- validity ----------------------------------------------------------------------

    @cached_property
    def not_before(self) -> datetime:
        try:
            return self.certificate.not_valid_before_utc
        except Exception as exc:
            raise FactError(f"notBefore cannot be read: {_first_line(exc)}") from None

    @cached_property
    def not_after(self) -> datetime:
        try:
            return self.certificate.not_valid_after_utc
        except Exception as exc:
            raise FactError(f"notAfter cannot be read: {_first_line(exc)}") from None

    @cached_property
    def self_signed(self) -> bool:
        """The subject equals the issuer and the certificate's own key verifies its signature."""
        if self._name("subject") != self._name("issuer"):
            return False
        try:
            self.certificate.verify_directly_issued_by(self.certificate)
        except Exception:
            return False
        return True

    def summary(self) -> dict[str, str]:
        """A few identifying facts, each read on its own so one broken part hides no other."""
        out: dict[str, str] = {}
        readers: dict[str, Callable[[], str]] = {
            "subject": lambda: self.subject,
            "issuer": lambda: self.issuer,
            "serial": lambda: format_serial(self.serial),
            "not_before": lambda: format_time(self.not_before),
            "not_after": lambda: format_time(self.not_after),
            "fingerprint.sha1": lambda: self.sha1,
            "fingerprint.sha256": lambda: self.sha256,
        }
        for key, read in readers.items():
            try:
                out[key] = read()
            except FactError as exc:
                out[key] = f"<{exc}>"
        return out
