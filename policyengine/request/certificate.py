"""Certificate facts: what a policy can know about one client certificate.

:func:`read_certificate` turns what a caller hands the engine (PEM or DER, bytes or text,
or a ``cryptography`` certificate) into :class:`CertificateFacts`, or raises
:class:`CertificateError` with a message fit for a deny reason.

Facts are computed lazily, each on first use, and each accessor is guarded on its own: a
certificate whose issuer cannot be decoded still yields its fingerprint. An accessor that
cannot read its part raises :class:`~policyengine.values.FactError`, which the engine turns
into a deny for the rule that asked.

This module owns reading a certificate, the facts object with its names, identity and
validity, and the facts cache. The key and signature facts are in
:mod:`policyengine.request.keys`, those read from extensions in
:mod:`policyengine.request.extensions` (bases of :class:`CertificateFacts`), the names a
policy writes for attributes and usages in :mod:`policyengine.oids`. Like all of
``request/``, it imports nothing of ``language/`` or ``evaluation/``; its cache is a
:class:`~policyengine.caches.BoundedCache`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import TypeGuard

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from policyengine.caches import BoundedCache
from policyengine.errors import CertificateError, FactError
from policyengine.oids import EKU_NAMES, NAME_ATTRIBUTES
from policyengine.request.der import (
    PEM_BEGIN,
    PlainName,
    der_utf8_string,
    pem_to_der,
    plain_names,
    values_by_oid,
)
from policyengine.request.extensions import UPN_OID, ExtensionFacts
from policyengine.request.keys import KeyFacts
from policyengine.request.lazy import fact as _fact
from policyengine.request.lazy import first_line as _first_line
from policyengine.request.lazy import once
from policyengine.values import Missing, digest_token, format_serial, format_time

__all__ = [
    "EKU_NAMES",
    "MAX_CERTIFICATE_BYTES",
    "NAME_ATTRIBUTES",
    "UPN_OID",
    "CertificateError",
    "CertificateFacts",
    "FactsCache",
    "first_unreadable",
    "parse_error_in_words",
    "read_certificate",
]

MAX_CERTIFICATE_BYTES = 64 * 1024
"""Anything larger is refused before parsing. Real client certificates are a few KiB."""


def read_certificate(value: object) -> CertificateFacts:
    """Facts about one certificate given as PEM or DER (bytes or text) or a certificate object.

    Raises :class:`CertificateError` with a short, precise message on anything else.
    """
    if value.__class__ is bytes and value[:1] == b"\x30":  # DER, the usual case
        _check_length(len(value))
        return _parse_der(value)
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
    _check_length(len(data))
    if not data.strip():
        raise CertificateError("the certificate is empty")
    # DER starts with a SEQUENCE tag (0x30); its bytes may contain the PEM marker in a name
    is_pem = PEM_BEGIN in data and not data.startswith(b"\x30")
    if not is_pem and not data.startswith(b"\x30"):
        raise CertificateError(
            "neither PEM (it has no -----BEGIN CERTIFICATE----- line) "
            "nor DER (which begins with byte 0x30)"
        )
    return _parse_der(pem_to_der(data) if is_pem else data)


def _check_length(length: int) -> None:
    if length > MAX_CERTIFICATE_BYTES:
        raise CertificateError(
            f"the certificate is {length} bytes, over the {MAX_CERTIFICATE_BYTES}-byte limit"
        )


def _parse_der(der: bytes) -> CertificateFacts:
    try:
        cert = x509.load_der_x509_certificate(der)
    except Exception as exc:
        raise CertificateError(f"not a DER certificate: {_in_words(exc, der)}") from None
    return CertificateFacts(cert, der)


_ASN1_PROBLEMS = {
    "ShortData": "the data ends before the certificate does (cut short?)",
    "ExtraData": "bytes follow the end of the certificate",
    "InvalidLength": "a length in its encoding is wrong",
    "UnexpectedTag": "a field is not of the type X.509 puts there",
    "InvalidValue": "a field holds a value X.509 does not allow",
    "EncodedDefault": "a field that holds its default value is written out (DER forbids it)",
    "IntegerOverflow": "a number is too large",
    "InvalidTag": "a tag in its encoding is malformed",
}


def _in_words(exc: BaseException, der: bytes) -> str:
    """cryptography's parse error, which names Rust types (``ParseError { kind: ShortData
    { needed: 114 } }``), said in words: what is wrong, and where."""
    if not der.startswith(b"\x30"):
        return (
            "it does not begin as one does (with a SEQUENCE, byte 0x30): it is another kind of data"
        )
    return parse_error_in_words(exc)


def parse_error_in_words(exc: BaseException) -> str:
    """cryptography's error in words when it is an ASN.1 parse error, else its first line."""
    text = _first_line(exc)
    kind = re.search(r"kind: (\w+)", text)
    if kind is None or kind.group(1) not in _ASN1_PROBLEMS:
        return text  # already words, e.g. "9 is not a valid X509 version"
    where = re.search(r"location: \[([^\]]*)\]", text)
    fields = re.findall(r"::(\w+)", where.group(1)) if where else []
    place = f" (in {' > '.join(fields)})" if fields else ""
    return _ASN1_PROBLEMS[kind.group(1)] + place


def first_unreadable(fields: Iterable[tuple[str, Callable[[], object]]], kind: str) -> str:
    """The first of ``(name, read)`` whose ``read()`` fails, in words, or "" when all can
    be read: cryptography parses a certificate's or a CRL's fields when they are first read,
    so a file that loads may still fail later (an invalid UTF-8 name, a string type a name
    may not have)."""
    for name, read in fields:
        try:
            read()
        except Exception as exc:  # cryptography raises ValueError, InvalidVersion, ...
            return (
                f"cryptography reads {kind} only in part; its {name} cannot be read "
                f"({parse_error_in_words(exc)})"
            )
    return ""


def _read_name(certificate: x509.Certificate, which: str) -> x509.Name:
    try:
        return certificate.subject if which == "subject" else certificate.issuer
    except Exception as exc:
        raise FactError(f"the {which} name cannot be read: {_first_line(exc)}") from None


# -- names read from the DER (see request/der.py), written as RFC 4514 -------------

# the labels RFC 4514 strings use, as cryptography writes them; other types by dotted OID
_RFC4514_LABELS = {
    "2.5.4.3": "CN",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.6": "C",
    "2.5.4.9": "STREET",
    "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
}
_RFC4514_ESCAPES = str.maketrans(
    {
        "\\": "\\\\",
        '"': '\\"',
        "+": "\\+",
        ",": "\\,",
        ";": "\\;",
        "<": "\\<",
        ">": "\\>",
        "\0": "\\00",
    }
)


def _rfc4514(pairs: Sequence[tuple[str, str]]) -> str:
    """The name as RFC 4514 writes it (last RDN first), as cryptography would."""
    parts = []
    for oid, value in reversed(pairs):
        text = value.translate(_RFC4514_ESCAPES)
        if text[-1:] == " ":
            text = text[:-1] + "\\ "
        if text[:1] in ("#", " "):
            text = "\\" + text
        parts.append(f"{_RFC4514_LABELS.get(oid, oid)}={text}")
    return ",".join(parts)


class CertificateFacts(KeyFacts, ExtensionFacts):
    """Everything a policy can test about one certificate, each computed on first use.

    Each fact is read on its own: a certificate whose issuer cannot be decoded still has a
    fingerprint, and one with a malformed extension still has names. Extensions are read
    together (``cryptography`` parses them as one list), so a malformed extension makes
    every extension fact raise FactError, while names, serial, validity, key and
    fingerprints still work. The key and signature facts are defined in
    :class:`~policyengine.request.keys.KeyFacts`, the extension facts but the UPN in
    :class:`~policyengine.request.extensions.ExtensionFacts`.
    """

    def __init__(self, certificate: x509.Certificate, der: bytes) -> None:
        self.certificate = certificate
        self.der = der

    # -- names -------------------------------------------------------------------------

    def _name(self, which: str) -> x509.Name:
        return self._subject_name if which == "subject" else self._issuer_name

    # cryptography parses a name anew on every `.subject` / `.issuer`: read each once
    @once
    def _subject_name(self) -> x509.Name:
        return _read_name(self.certificate, "subject")

    @once
    def _issuer_name(self) -> x509.Name:
        return _read_name(self.certificate, "issuer")

    @_fact("the subject name")
    def subject(self) -> str:
        return self._rfc4514("subject")

    @_fact("the issuer name")
    def issuer(self) -> str:
        return self._rfc4514("issuer")

    def _rfc4514(self, which: str) -> str:
        plain = self._names_from_der
        if plain is not None:
            return _rfc4514(plain[0 if which == "issuer" else 1].pairs)
        return self._name(which).rfc4514_string()

    @_fact("the subject name")
    def subject_attributes(self) -> dict[str, tuple[str, ...]]:
        """Every value of each subject attribute, by dotted OID. Read only."""
        plain = self._names_from_der
        return values_by_oid(plain[1]) if plain is not None else self._attributes("subject")

    @_fact("the issuer name")
    def issuer_attributes(self) -> dict[str, tuple[str, ...]]:
        """Every value of each issuer attribute, by dotted OID. Read only."""
        plain = self._names_from_der
        return values_by_oid(plain[0]) if plain is not None else self._attributes("issuer")

    @once
    def _names_from_der(self) -> tuple[PlainName, PlainName] | None:
        return plain_names(self.der)

    def _attributes(self, which: str) -> dict[str, tuple[str, ...]]:
        """The attributes as cryptography reads them (a name not read from the DER)."""
        values: dict[str, list[str]] = {}
        for attribute in self._name(which):
            value = attribute.value
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            values.setdefault(attribute.oid.dotted_string, []).append(value)
        return {oid: tuple(found) for oid, found in values.items()}

    @_fact("the subject name")
    def subject_single(self) -> dict[str, str]:
        """The subject's attributes that have exactly one value, by dotted OID. Read only."""
        plain = self._names_from_der
        if plain is not None:
            return plain[1].single
        return {oid: found[0] for oid, found in self.subject_attributes.items() if len(found) == 1}

    @_fact("the issuer name")
    def issuer_single(self) -> dict[str, str]:
        """The issuer's attributes that have exactly one value, by dotted OID. Read only."""
        plain = self._names_from_der
        if plain is not None:
            return plain[0].single
        return {oid: found[0] for oid, found in self.issuer_attributes.items() if len(found) == 1}

    def name_values(self, which: str, oid: str) -> tuple[str, ...]:
        """Every value of one attribute (by dotted OID) of the subject or issuer, in order."""
        attributes = self.subject_attributes if which == "subject" else self.issuer_attributes
        return attributes.get(oid, ())

    def name_value(self, which: str, oid: str, label: str) -> str | Missing:
        """The one value of an attribute, or Missing when there are none or several."""
        found = self.name_values(which, oid)
        if len(found) == 1:
            return found[0]
        if not found:
            return Missing(f"the {which} has no {label}")
        shown = ", ".join(repr(v) for v in found)
        return Missing(f"the {which} has {len(found)} {label} values ({shown}); ambiguous")

    @_fact("the subject and issuer names")
    def self_signed(self) -> bool:
        """The subject equals the issuer and the certificate's own key verifies its signature."""
        if self._name("subject") != self._name("issuer"):
            return False
        try:
            self.certificate.verify_directly_issued_by(self.certificate)
        except Exception:
            return False
        return True

    # -- identity ----------------------------------------------------------------------

    @_fact("the serial number")
    def serial(self) -> int:
        return self.certificate.serial_number

    @_fact("the version")
    def version(self) -> int:
        return self.certificate.version.value + 1

    @once
    def sha1(self) -> str:
        return self._sha1_digest.hex()

    @once
    def sha256(self) -> str:
        return self._sha256_digest.hex()

    @once
    def sha1_token(self) -> bytes:
        return digest_token(self._sha1_digest)

    @once
    def sha256_token(self) -> bytes:
        return digest_token(self._sha256_digest)

    @once
    def _sha1_digest(self) -> bytes:
        return hashlib.sha1(self.der).digest()

    @once
    def _sha256_digest(self) -> bytes:
        return hashlib.sha256(self.der).digest()

    # -- validity ----------------------------------------------------------------------

    @_fact("notBefore")
    def not_before(self) -> datetime:
        return self.certificate.not_valid_before_utc

    @_fact("notAfter")
    def not_after(self) -> datetime:
        return self.certificate.not_valid_after_utc

    @once
    def lifetime(self) -> timedelta:
        return self.not_after - self.not_before

    # -- the UPN (the other key, signature and extension facts: KeyFacts, ExtensionFacts) --

    @_fact("the UPN subject alternative names")
    def san_upn(self) -> tuple[str, ...]:
        san = self._san
        if san is None:
            return ()
        found = []
        for other in san.get_values_for_type(x509.OtherName):
            if other.type_id.dotted_string == UPN_OID:
                found.append(der_utf8_string(other.value))
        return tuple(found)

    @once
    def description(self) -> str:
        """Subject, issuer, serial and SHA-256 fingerprint, a line each (the explain trace)."""
        summary = self.summary()
        return (
            f"subject {summary['subject']}\nissuer  {summary['issuer']}\n"
            f"serial  {summary['serial']}\nsha256  {summary['fingerprint.sha256']}"
        )

    def summary(self) -> dict[str, str]:
        """A few identifying facts, each read on its own so one broken part hides no other."""
        return dict(self._summary)

    @once
    def _summary(self) -> dict[str, str]:
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


class FactsCache:
    """A bounded, thread-safe cache of certificate facts keyed by the exact bytes given.

    A client that sends the same certificate again costs a dictionary lookup: its facts
    (and every fact already computed on them) are reused. A certificate is kept from its
    second sighting on (a :class:`~policyengine.caches.BoundedCache` with second-sighting
    admission): one seen once is not stored, and does not push out one that returns.
    Least recently used entries go first once ``size`` certificates are held.

    ``second_sighting`` and ``der_names`` turn off that admission and the hand-written
    name reader (:func:`~policyengine.request.der.plain_names`), for the benchmark that
    measures what each buys (``benchmarks/layers.py``).
    """

    __slots__ = ("_der_names", "_entries", "get", "size")

    def __init__(
        self, size: int = 4096, *, second_sighting: bool = True, der_names: bool = True
    ) -> None:
        self._entries: BoundedCache[bytes | str, CertificateFacts] = BoundedCache(
            size, second_sighting=second_sighting
        )
        self.size = size
        self._der_names = der_names
        self.get: Callable[[bytes | str], CertificateFacts | None] = self._entries.recall
        """The facts kept for exactly these bytes (marked as used), or None."""

    def __len__(self) -> int:
        return len(self._entries)

    def keeps(self, value: object) -> TypeGuard[bytes | str]:
        """Whether :meth:`read` may keep the facts it reads for ``value``: bytes and text
        are kept (from their second sighting on), certificate objects never."""
        return self.size > 0 and isinstance(value, (bytes, str))

    def read(self, value: object) -> CertificateFacts:
        """Facts for a certificate given as read_certificate takes it, from the cache if seen."""
        return self.read_kept(value)[0]

    def read_kept(self, value: object) -> tuple[CertificateFacts, bool]:
        """:meth:`read`, and whether the facts are kept in the cache (so outlive the call).

        Bytes and text are kept from their second sighting on.
        """
        if not self.keeps(value):
            return self._read(value), False
        entry = self._entries.recall(value)
        if entry is not None:
            return entry, True
        facts = self._read(value)  # outside the cache's lock: parsing may be slow
        # another thread may have read the same bytes meanwhile: keep one facts object
        kept = self._entries.keep(value, facts)
        return (facts, False) if kept is None else (kept, True)

    def _read(self, value: object) -> CertificateFacts:
        facts = read_certificate(value)
        if not self._der_names:  # cryptography's names, as for a name the reader declines
            facts.__dict__["_names_from_der"] = None
        return facts
