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
``request/``, it imports nothing of ``language/`` or ``evaluation/`` (but for the doorkeeper
of ``evaluation/caches.py``, until the caches get one owner).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple, TypeGuard

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from policyengine.errors import CertificateError, FactError
from policyengine.evaluation.caches import Doorkeeper
from policyengine.oids import EKU_NAMES, NAME_ATTRIBUTES
from policyengine.request.extensions import UPN_OID, ExtensionFacts
from policyengine.request.keys import KeyFacts
from policyengine.request.lazy import cached_property
from policyengine.request.lazy import fact as _fact
from policyengine.request.lazy import first_line as _first_line
from policyengine.values import Missing, digest_token, format_serial, format_time

__all__ = [
    "EKU_NAMES",
    "MAX_CERTIFICATE_BYTES",
    "NAME_ATTRIBUTES",
    "UPN_OID",
    "CertificateError",
    "CertificateFacts",
    "FactsCache",
    "parse_error_in_words",
    "read_certificate",
]

MAX_CERTIFICATE_BYTES = 64 * 1024
"""Anything larger is refused before parsing. Real client certificates are a few KiB."""

_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"
_PEM_END = b"-----END CERTIFICATE-----"


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
    is_pem = _PEM_BEGIN in data and not data.startswith(b"\x30")
    if not is_pem and not data.startswith(b"\x30"):
        raise CertificateError(
            "neither PEM (it has no -----BEGIN CERTIFICATE----- line) "
            "nor DER (which begins with byte 0x30)"
        )
    return _parse_der(_pem_to_der(data) if is_pem else data)


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


def _pem_to_der(data: bytes) -> bytes:
    """The DER inside the first PEM CERTIFICATE block, as written (not re-encoded)."""
    start = data.find(_PEM_BEGIN)
    end = data.find(_PEM_END, start)
    if end < 0:
        raise CertificateError("the PEM certificate has no END CERTIFICATE line")
    if data[:start].strip():
        raise CertificateError("text before -----BEGIN CERTIFICATE-----")
    body = b"".join(data[start + len(_PEM_BEGIN) : end].split())
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise CertificateError("the PEM certificate's base64 is broken") from None


def _read_name(certificate: x509.Certificate, which: str) -> x509.Name:
    try:
        return certificate.subject if which == "subject" else certificate.issuer
    except Exception as exc:
        raise FactError(f"the {which} name cannot be read: {_first_line(exc)}") from None


# -- names straight from the DER ---------------------------------------------------------
#
# cryptography builds a Python object for every name, RDN and attribute, which was half of
# deciding on a certificate never seen before. Most names are simple: one attribute per
# RDN, each a UTF8String, PrintableString or IA5String. Those are read here from the DER
# (which cryptography has already parsed once); anything else -- another string type, a
# multi-valued RDN, invalid text, a surprise in the encoding -- returns None, and the names
# are read through cryptography as before, with its errors.

_UTF8_STRING, _PRINTABLE_STRING, _IA5_STRING = 0x0C, 0x13, 0x16
_PRINTABLE = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?"
)
_OIDS: dict[bytes, str] = {}


def _element(data: bytes, pos: int, end: int) -> tuple[int, int, int] | None:
    """``(tag, content start, content end)`` of the DER element at ``pos``, or None."""
    if pos + 2 > end:
        return None
    tag, first = data[pos], data[pos + 1]
    if first < 0x80:
        start, length = pos + 2, first
    else:
        count = first & 0x7F
        if count == 0 or count > 3 or data[pos + 2] == 0:
            return None
        start = pos + 2 + count
        length = int.from_bytes(data[pos + 2 : start], "big")
    stop = start + length
    return (tag, start, stop) if stop <= end else None


def _oid(encoded: bytes) -> str | None:
    known = _OIDS.get(encoded)
    if known is not None:
        return known
    arcs: list[int] = []
    value = 0
    for i, byte in enumerate(encoded):
        if value == 0 and byte == 0x80:
            return None  # not minimal
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
        elif i == len(encoded) - 1:
            return None  # truncated
    if not arcs:
        return None
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    dotted = ".".join(str(arc) for arc in head + arcs[1:])
    if len(_OIDS) < 1024:
        _OIDS[encoded] = dotted
    return dotted


def _text(tag: int, raw: bytes) -> str | None:
    if tag == _UTF8_STRING:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if tag == _PRINTABLE_STRING and _PRINTABLE.issuperset(raw):
        return raw.decode("ascii")
    if tag == _IA5_STRING and raw.isascii():
        return raw.decode("ascii")
    return None


def _plain_name(der: bytes, start: int, end: int) -> list[tuple[str, str]] | None:
    """The name's ``(dotted OID, value)`` pairs in DER order, or None."""
    pairs: list[tuple[str, str]] = []
    pos = start
    while pos < end:
        # the usual RDN, read inline: every length one byte, one attribute, an OID already
        # seen; each test is one `_rdn` makes too, and whatever fails one is left to it
        size = der[pos + 1] if pos + 1 < end else 0x80
        stop = pos + 2 + size
        if der[pos] == 0x31 and 6 <= size < 0x80 and stop <= end:
            oid_end = pos + 6 + der[pos + 5]
            if (
                der[pos + 2] == 0x30
                and der[pos + 3] == size - 2
                and der[pos + 4] == 0x06
                and der[pos + 5] < 0x80
                and oid_end + 2 <= stop
                and der[oid_end + 1] < 0x80
                and oid_end + 2 + der[oid_end + 1] == stop
            ):
                dotted = _OIDS.get(der[pos + 6 : oid_end])
                text = _text(der[oid_end], der[oid_end + 2 : stop])
                if dotted is not None and text is not None:
                    pairs.append((dotted, text))
                    pos = stop
                    continue
        read = _rdn(der, pos, end)
        if read is None:
            return None
        pairs.append(read[0])
        pos = read[1]
    return pairs


def _rdn(der: bytes, pos: int, end: int) -> tuple[tuple[str, str], int] | None:
    """The one ``(dotted OID, value)`` of the RDN at ``pos`` and where it ends, or None."""
    rdn = _element(der, pos, end)
    if rdn is None or rdn[0] != 0x31:
        return None
    atv = _element(der, rdn[1], rdn[2])
    if atv is None or atv[0] != 0x30 or atv[2] != rdn[2]:
        return None  # not exactly one attribute in this RDN
    oid = _element(der, atv[1], atv[2])
    if oid is None or oid[0] != 0x06:
        return None
    value = _element(der, oid[2], atv[2])
    if value is None or value[2] != atv[2]:
        return None
    dotted = _oid(der[oid[1] : oid[2]])
    text = _text(value[0], der[value[1] : value[2]])
    if dotted is None or text is None:
        return None
    return (dotted, text), rdn[2]


def _by_oid(pairs: Iterable[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    values: dict[str, list[str]] = {}
    for oid, text in pairs:
        values.setdefault(oid, []).append(text)
    return {oid: tuple(found) for oid, found in values.items()}


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


class _PlainName(NamedTuple):
    """One name read from its DER, with the lookups the rules make, built once."""

    pairs: tuple[tuple[str, str], ...]
    """``(dotted OID, value)`` in DER order."""
    single: dict[str, str]
    """The attributes with exactly one value (what ``==`` reads). Shared by every
    certificate with this name: read only."""
    repeated: dict[str, tuple[str, ...]] | None
    """Every value of each attribute, when some attribute has several; None for the usual
    name, where :func:`_values_by_oid` builds it from ``pairs`` when asked. Read only."""


def _values_by_oid(name: _PlainName) -> dict[str, tuple[str, ...]]:
    """Every value of each attribute of ``name``, by dotted OID."""
    if name.repeated is not None:
        return name.repeated
    return {oid: (text,) for oid, text in name.pairs}


def _header(der: bytes, pos: int) -> tuple[int, int]:
    """``(content start, end)`` of the element at ``pos`` in DER cryptography has parsed."""
    first = der[pos + 1]
    if first < 0x80:
        return pos + 2, pos + 2 + first
    if first == 0x81:
        return pos + 3, pos + 3 + der[pos + 2]
    if first == 0x82:
        return pos + 4, pos + 4 + (der[pos + 2] << 8 | der[pos + 3])
    start = pos + 2 + (first & 0x7F)
    return start, start + int.from_bytes(der[pos + 2 : start], "big")


def _plain_names(der: bytes) -> tuple[_PlainName, _PlainName] | None:
    """The issuer and the subject read from the DER, or None (see above).

    ``der`` has been parsed by cryptography, so its framing is sound; the walk to the
    names trusts it and checks only the tags, and each name is read with every check.
    """
    parts: list[tuple[int, int]] = []
    try:
        pos, end = _header(der, _header(der, 0)[0])  # Certificate, tbsCertificate
        if der[pos] == 0xA0:  # [0] version
            pos = _header(der, pos)[1]
        # serialNumber, signature, issuer, validity, subject
        for tag in (0x02, 0x30, 0x30, 0x30, 0x30):
            if der[pos] != tag:
                return None
            first = der[pos + 1]
            if first < 0x80:  # these are short: their lengths are read here, as _header does
                start = pos + 2
                pos = start + first
            elif first == 0x81:
                start = pos + 3
                pos = start + der[pos + 2]
            else:
                start, pos = _header(der, pos)
            parts.append((start, pos))
    except IndexError:
        return None
    if pos > end:
        return None
    (issuer_start, issuer_end), (subject_start, subject_end) = parts[2], parts[4]
    # an issuer's name recurs in every certificate it signs; a subject's, hardly ever (a
    # returning client's facts are cached whole): kept, it would only churn the cache
    issuer = _cached_name(der[issuer_start:issuer_end])
    subject = _read_plain_name(der[subject_start:subject_end])
    if issuer is None or subject is None:
        return None
    return issuer, subject


_NAMES: dict[bytes, _PlainName | None] = {}
"""Issuer names already read, by their DER: a CA's name is the issuer of every certificate
it signed. Bounded: emptied when full."""


def _cached_name(encoded: bytes) -> _PlainName | None:
    try:
        return _NAMES[encoded]
    except KeyError:
        pass
    found = _read_plain_name(encoded)
    if len(_NAMES) >= 4096:
        _NAMES.clear()
    _NAMES[encoded] = found
    return found


def _read_plain_name(encoded: bytes) -> _PlainName | None:
    pairs = _plain_name(encoded, 0, len(encoded))
    if pairs is None:
        return None
    single = dict(pairs)
    if len(single) == len(pairs):  # the usual name: no attribute twice
        return _PlainName(tuple(pairs), single, None)
    by_oid = _by_oid(pairs)
    single = {oid: values[0] for oid, values in by_oid.items() if len(values) == 1}
    return _PlainName(tuple(pairs), single, by_oid)


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
        self.decisions: dict[object, Any] = {}
        """What policies decided on these facts, for as long as the time allows (the
        engine's own memo; see ``Policy._run``), and what a rule index found readable."""

    # -- names -------------------------------------------------------------------------

    def _name(self, which: str) -> x509.Name:
        return self._subject_name if which == "subject" else self._issuer_name

    # cryptography parses a name anew on every `.subject` / `.issuer`: read each once
    @cached_property
    def _subject_name(self) -> x509.Name:
        return _read_name(self.certificate, "subject")

    @cached_property
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
        return _values_by_oid(plain[1]) if plain is not None else self._attributes("subject")

    @_fact("the issuer name")
    def issuer_attributes(self) -> dict[str, tuple[str, ...]]:
        """Every value of each issuer attribute, by dotted OID. Read only."""
        plain = self._names_from_der
        return _values_by_oid(plain[0]) if plain is not None else self._attributes("issuer")

    @cached_property
    def _names_from_der(self) -> tuple[_PlainName, _PlainName] | None:
        return _plain_names(self.der)

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

    @cached_property
    def sha1(self) -> str:
        return self._sha1_digest.hex()

    @cached_property
    def sha256(self) -> str:
        return self._sha256_digest.hex()

    @cached_property
    def sha1_token(self) -> bytes:
        return digest_token(self._sha1_digest)

    @cached_property
    def sha256_token(self) -> bytes:
        return digest_token(self._sha256_digest)

    @cached_property
    def _sha1_digest(self) -> bytes:
        return hashlib.sha1(self.der).digest()

    @cached_property
    def _sha256_digest(self) -> bytes:
        return hashlib.sha256(self.der).digest()

    # -- validity ----------------------------------------------------------------------

    @_fact("notBefore")
    def not_before(self) -> datetime:
        return self.certificate.not_valid_before_utc

    @_fact("notAfter")
    def not_after(self) -> datetime:
        return self.certificate.not_valid_after_utc

    @cached_property
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
                found.append(_der_utf8_string(other.value))
        return tuple(found)

    @cached_property
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

    @cached_property
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


def _der_utf8_string(value: bytes) -> str:
    """The text of a DER UTF8String (the UPN other-name), framed by hand."""
    if len(value) < 2 or value[0] != 0x0C:
        raise FactError("the UPN is not a UTF8String")
    length, offset = value[1], 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 3 or len(value) < 2 + count:
            raise FactError("the UPN has a malformed length")
        length = int.from_bytes(value[2 : 2 + count], "big")
        offset = 2 + count
    if offset + length != len(value):
        raise FactError("the UPN's length does not match its content")
    try:
        return value[offset:].decode("utf-8")
    except UnicodeDecodeError:
        raise FactError("the UPN is not valid UTF-8") from None


class FactsCache:
    """A bounded, thread-safe cache of certificate facts keyed by the exact bytes given.

    A client that sends the same certificate again costs a dictionary lookup: its facts
    (and every fact already computed on them) are reused. A certificate is kept from its
    second sighting on (:mod:`policyengine.evaluation.caches`): one seen once is not stored, and
    does not push out one that returns. Least recently used entries go first once ``size``
    certificates are held.
    """

    def __init__(self, size: int = 4096) -> None:
        if size < 0:
            raise ValueError("the cache size must be 0 or more")
        self.size = size
        self._entries: OrderedDict[bytes | str, CertificateFacts] = OrderedDict()
        self._lock = threading.Lock()
        self._door = Doorkeeper(max(size, 1))

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, value: bytes | str) -> CertificateFacts | None:
        """The facts kept for exactly these bytes, or None."""
        # a hit takes no lock: each dictionary operation is atomic, and a lock taken on
        # every request made eight threads slower together than one alone (a convoy)
        entry = self._entries.get(value)
        if entry is not None:
            try:  # noqa: SIM105 -- contextlib.suppress costs a context manager per request
                self._entries.move_to_end(value)  # least recently *used* goes first
            except KeyError:  # evicted by another thread meanwhile: still a good answer
                pass
        return entry

    def keeps(self, value: object) -> TypeGuard[bytes | str]:
        """Whether :meth:`read` may keep the facts it reads for ``value``: bytes and text
        are kept (from their second sighting on), certificate objects never."""
        return self.size > 0 and isinstance(value, (bytes, str))

    def read(self, value: object) -> CertificateFacts:
        """Facts for a certificate given as read_certificate takes it, from the cache if seen."""
        return self.read_kept(value)[0]

    def read_kept(self, value: object) -> tuple[CertificateFacts, bool]:
        """:meth:`read`, and whether the facts are kept in the cache (so outlive the call).

        Bytes and text are kept from their second sighting on (see doorkeeper.py).
        """
        if not self.keeps(value):
            return read_certificate(value), False
        entry = self.get(value)
        if entry is not None:
            return entry, True
        facts = read_certificate(value)  # outside the lock: parsing may be slow
        if not self._door.admit(value):
            return facts, False
        with self._lock:
            # another thread may have read the same bytes meanwhile: keep one facts object
            facts = self._entries.setdefault(value, facts)
            self._entries.move_to_end(value)
            if len(self._entries) > self.size:
                _, evicted = self._entries.popitem(last=False)
                # a kept decision refers back to its facts (Decision.certificate): a cycle
                # only the garbage collector would free. Emptied, the facts go at once.
                evicted.decisions.clear()
        return facts, True
