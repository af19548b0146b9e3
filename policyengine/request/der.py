"""The one DER, PEM and base64 reader of the request side.

Owns the byte-level framing every other module relies on: strict base64
(:func:`b64decode_strict`), DER element framing (:func:`read_tlv`,
:func:`frame_certificate`, :func:`single_der` with its inline fast path for the usual
certificate, :func:`split_ders`), PEM blocks as headers carry them (:func:`pem_blocks`,
strict) and as files hold them (:func:`pem_to_der`, :func:`pem_certificate_blocks`), and
the hand-written reader of simple X.509 names (:func:`plain_names`), a speed layer over
cryptography's name objects, plus the UPN's UTF8String (:func:`der_utf8_string`).

The readers differ where their callers differ: a forwarded header is refused on any
surprise (:class:`~policyengine.errors.SourceError`, reason ``malformed_header``); a
certificate file is read as ``openssl`` would (:class:`~policyengine.errors.CertificateError`);
the name reader walks DER cryptography has already parsed and answers None, never an
error, on anything it does not expect, so the caller falls back to cryptography.

Must not import cryptography, nor anything of policyengine but ``errors`` and ``caches``
(the name reader's two tables are :class:`~policyengine.caches.BoundedCache`): it sits
below ``sources/``, ``certificate.py`` and ``trust.py``, which all read bytes through it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import NamedTuple, Protocol

from policyengine.caches import BoundedCache
from policyengine.errors import (
    CHAIN_TOO_LONG,
    MALFORMED_HEADER,
    CertificateError,
    FactError,
    SourceError,
)

__all__ = [
    "ANY_SPACE",
    "PEM_BEGIN",
    "PEM_END",
    "Bounds",
    "PlainName",
    "b64decode_strict",
    "bail_if_too_many",
    "der_utf8_string",
    "element",
    "frame_certificate",
    "pem_blocks",
    "pem_certificate_blocks",
    "pem_to_der",
    "plain_name",
    "plain_names",
    "rdn",
    "read_tlv",
    "single_der",
    "single_der_framed",
    "split_ders",
    "values_by_oid",
]

PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"
PEM_END = b"-----END CERTIFICATE-----"
_PEM_BEGIN_TEXT = PEM_BEGIN.decode("ascii")
_PEM_END_TEXT = PEM_END.decode("ascii")

ANY_SPACE = " \t\r\n"
_DELETE = {" \t": {ord(" "): None, ord("\t"): None}}
"""Translation tables that delete a header's whitespace, made once."""


class Bounds(Protocol):
    """What bounds the work on one header: the sources' limits satisfy it."""

    @property
    def max_chain_length(self) -> int: ...


def _malformed(message: str) -> SourceError:
    return SourceError(MALFORMED_HEADER, message)


def bail_if_too_many(certificates: int, limits: Bounds) -> None:
    """Stop splitting early once a leaf plus ``max_chain_length`` is exceeded: bounded work."""
    if certificates > limits.max_chain_length + 1:
        raise SourceError(
            CHAIN_TOO_LONG,
            f"more than {limits.max_chain_length} intermediate certificates forwarded; at most "
            f"{limits.max_chain_length} are accepted",
        )


# -- base64 ----------------------------------------------------------------------------


def b64decode_strict(text: str, *, spaces: str, what: str) -> bytes:
    """Strict base64: whitespace in ``spaces`` is dropped, anything else must be the alphabet."""
    compact = text
    if spaces and any(ch in text for ch in spaces):
        compact = text.translate(_DELETE.get(spaces) or {ord(ch): None for ch in spaces})
    if not compact:
        raise _malformed(f"{what} is empty")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        bad = next((ch for ch in compact if not (ch.isalnum() or ch in "+/=")), None)
        if bad is not None:
            detail = f"character {bad!r} is not base64"
        elif len(compact) % 4:
            detail = f"length {len(compact)} is not a multiple of 4"
        else:
            detail = "misplaced '=' padding"
        raise _malformed(f"broken base64 in {what}: {detail}") from None


# -- DER framing -----------------------------------------------------------------------


def read_tlv(data: bytes, pos: int, what: str, limit: int | None = None) -> tuple[int, int, int]:
    """``(tag, content start, end)`` of the DER element at ``pos``; definite lengths only.

    ``limit``: where the enclosing element ends (default: the end of ``data``).
    """
    limit = len(data) if limit is None else limit
    if pos + 2 > limit:
        raise _malformed(f"{what}: truncated DER at byte {pos}")
    tag = data[pos]
    first = data[pos + 1]
    if first < 0x80:
        start, length = pos + 2, first
    elif first == 0x82 and pos + 4 <= limit and data[pos + 2]:  # the usual long form
        start, length = pos + 4, data[pos + 2] << 8 | data[pos + 3]
    elif first == 0x80:
        raise _malformed(f"{what}: indefinite length at byte {pos} is not DER")
    else:
        count = first & 0x7F
        if count > 4:
            raise _malformed(f"{what}: length of {count} bytes at byte {pos} is not a certificate")
        start = pos + 2 + count
        if start > limit:
            raise _malformed(f"{what}: truncated DER length at byte {pos}")
        length = int.from_bytes(data[pos + 2 : start], "big")
        if data[pos + 2] == 0 or length < 0x80:
            raise _malformed(f"{what}: non-minimal DER length at byte {pos}")
    end = start + length
    if end > limit:
        raise _malformed(
            f"{what}: DER element at byte {pos} claims {length} bytes, {limit - start} remain"
        )
    return tag, start, end


def frame_certificate(data: bytes, pos: int, what: str) -> int:
    """End of the certificate at ``pos``: SEQUENCE { SEQUENCE, SEQUENCE, BIT STRING }."""
    if pos < len(data) and data[pos] != 0x30:
        raise _malformed(
            f"{what}: not a DER certificate (byte {pos} is 0x{data[pos]:02x}, not SEQUENCE 0x30)"
        )
    _, start, end = read_tlv(data, pos, what)
    inner = start
    for expected, part in (
        (0x30, "tbsCertificate"),
        (0x30, "signatureAlgorithm"),
        (0x03, "signature"),
    ):
        if inner >= end:
            raise _malformed(f"{what}: not an X.509 certificate: {part} is missing")
        part_tag, _, inner = read_tlv(data, inner, what, end)
        if part_tag != expected:
            raise _malformed(f"{what}: not an X.509 certificate: {part} has tag 0x{part_tag:02x}")
    if inner != end:
        raise _malformed(f"{what}: not an X.509 certificate: {end - inner} extra bytes inside")
    return end


def single_der(data: bytes, what: str) -> bytes:
    """``data``, when it is exactly one DER certificate; else the framing error."""
    # the usual certificate, its framing read inline: two-byte lengths for the whole and
    # the tbsCertificate, a short signatureAlgorithm, then the signature BIT STRING ending
    # exactly at the end. Each test is one frame_certificate makes; whatever fails one
    # is read by it, which says what is wrong.
    size = len(data)
    if (
        size > 8
        and data[0] == 0x30
        and data[1] == 0x82
        and (data[2] << 8 | data[3]) + 4 == size
        and data[4] == 0x30
        and data[5] == 0x82
        and data[6]  # minimal: so the whole, which holds more, is minimal too
    ):
        algorithm = 8 + (data[6] << 8 | data[7])  # where the tbsCertificate ends
        if algorithm + 2 <= size and data[algorithm] == 0x30 and data[algorithm + 1] < 0x80:
            signature = algorithm + 2 + data[algorithm + 1]
            if signature + 2 <= size and data[signature] == 0x03:
                first = data[signature + 1]
                if first < 0x80:
                    end = signature + 2 + first
                elif first == 0x81 and signature + 3 <= size and data[signature + 2] >= 0x80:
                    end = signature + 3 + data[signature + 2]
                elif first == 0x82 and signature + 4 <= size and data[signature + 2]:
                    end = signature + 4 + (data[signature + 2] << 8 | data[signature + 3])
                else:
                    end = -1
                if end == size:
                    return data
    return single_der_framed(data, what)


def single_der_framed(data: bytes, what: str) -> bytes:
    end = frame_certificate(data, 0, what)
    if end != len(data):
        raise _malformed(f"{what}: {len(data) - end} trailing bytes after the certificate")
    return data


def split_ders(data: bytes, what: str, limits: Bounds) -> list[bytes]:
    """Concatenated DER certificates (HAProxy ``ssl_c_chain_der``), split by their framing."""
    if not data:
        raise _malformed(f"{what} is empty")
    found: list[bytes] = []
    pos = 0
    while pos < len(data):
        end = frame_certificate(data, pos, what)
        found.append(data[pos:end])
        bail_if_too_many(len(found), limits)
        pos = end
    return found


# -- PEM (text, as headers carry it) ------------------------------------------------


def pem_blocks(text: str, limits: Bounds, *, spaces: str = ANY_SPACE) -> list[bytes]:
    """Every CERTIFICATE block, with nothing but whitespace before, between and after.

    Found with ``str.find`` (linear); a second BEGIN inside a block, another PEM type or
    stray text is refused rather than skipped.
    """
    blocks: list[bytes] = []
    pos = 0
    while True:
        begin = text.find(_PEM_BEGIN_TEXT, pos)
        gap = text[pos:] if begin < 0 else text[pos:begin]
        if gap.strip(spaces):
            where = "before the first" if not blocks else "after a"
            if begin < 0 and blocks:
                where = "after the last"
            shown = gap.strip(spaces)[:40]
            if begin < 0 and not blocks:
                raise _malformed(f"no -----BEGIN CERTIFICATE----- line (found {shown!r}...)")
            raise _malformed(f"text {where} PEM certificate block: {shown!r}")
        if begin < 0:
            break
        bail_if_too_many(len(blocks) + 1, limits)
        body_start = begin + len(_PEM_BEGIN_TEXT)
        end = text.find(_PEM_END_TEXT, body_start)
        if end < 0:
            raise _malformed(f"PEM block at offset {begin} has no -----END CERTIFICATE----- line")
        der = b64decode_strict(
            text[body_start:end], spaces=spaces, what=f"the PEM block at offset {begin}"
        )
        blocks.append(single_der(der, f"the PEM block at offset {begin}"))
        pos = end + len(_PEM_END_TEXT)
    if not blocks:
        raise _malformed("no -----BEGIN CERTIFICATE----- line")
    return blocks


# -- PEM (bytes, as files hold them) ---------------------------------------------------


def pem_to_der(data: bytes) -> bytes:
    """The DER inside the first PEM CERTIFICATE block, as written (not re-encoded)."""
    start = data.find(PEM_BEGIN)
    end = data.find(PEM_END, start)
    if end < 0:
        raise CertificateError("the PEM certificate has no END CERTIFICATE line")
    if data[:start].strip():
        raise CertificateError("text before -----BEGIN CERTIFICATE-----")
    body = b"".join(data[start + len(PEM_BEGIN) : end].split())
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise CertificateError("the PEM certificate's base64 is broken") from None


def pem_certificate_blocks(data: bytes) -> list[bytes] | None:
    """The PEM CERTIFICATE blocks of a file, or None when it is not PEM (DER, garbage).

    Other PEM blocks (a private key next to the certificate) and text between blocks are
    skipped, as ``openssl`` does with a bundle.
    """
    # DER starts with a SEQUENCE tag; its bytes may contain the PEM marker in a name
    if data.startswith(b"\x30") or b"-----BEGIN" not in data:
        return None
    blocks: list[bytes] = []
    start = data.find(PEM_BEGIN)
    while start >= 0:
        end = data.find(PEM_END, start)
        if end < 0:
            blocks.append(data[start:])  # read_certificate says what is missing
            break
        end += len(PEM_END)
        blocks.append(data[start:end])
        start = data.find(PEM_BEGIN, end)
    return blocks


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
_OIDS: BoundedCache[bytes, str] = BoundedCache(1024, second_sighting=True)
"""Dotted OIDs already read, by their encoding: a name's attribute types are few."""
_known_oid = _OIDS.get


def element(data: bytes, pos: int, end: int) -> tuple[int, int, int] | None:
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
    known = _known_oid(encoded)
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
    _OIDS.put(encoded, dotted)
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


def plain_name(der: bytes, start: int, end: int) -> list[tuple[str, str]] | None:
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
                dotted = _known_oid(der[pos + 6 : oid_end])
                text = _text(der[oid_end], der[oid_end + 2 : stop])
                if dotted is not None and text is not None:
                    pairs.append((dotted, text))
                    pos = stop
                    continue
        read = rdn(der, pos, end)
        if read is None:
            return None
        pairs.append(read[0])
        pos = read[1]
    return pairs


def rdn(der: bytes, pos: int, end: int) -> tuple[tuple[str, str], int] | None:
    """The one ``(dotted OID, value)`` of the RDN at ``pos`` and where it ends, or None."""
    rdn = element(der, pos, end)
    if rdn is None or rdn[0] != 0x31:
        return None
    atv = element(der, rdn[1], rdn[2])
    if atv is None or atv[0] != 0x30 or atv[2] != rdn[2]:
        return None  # not exactly one attribute in this RDN
    oid = element(der, atv[1], atv[2])
    if oid is None or oid[0] != 0x06:
        return None
    value = element(der, oid[2], atv[2])
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


class PlainName(NamedTuple):
    """One name read from its DER, with the lookups the rules make, built once."""

    pairs: tuple[tuple[str, str], ...]
    """``(dotted OID, value)`` in DER order."""
    single: dict[str, str]
    """The attributes with exactly one value (what ``==`` reads). Shared by every
    certificate with this name: read only."""
    repeated: dict[str, tuple[str, ...]] | None
    """Every value of each attribute, when some attribute has several; None for the usual
    name, where :func:`values_by_oid` builds it from ``pairs`` when asked. Read only."""


_new_tuple = tuple.__new__


def values_by_oid(name: PlainName) -> dict[str, tuple[str, ...]]:
    """Every value of each attribute of ``name``, by dotted OID."""
    if name.repeated is not None:
        return name.repeated
    return {oid: (text,) for oid, text in name.pairs}


def _framed(der: bytes, pos: int) -> tuple[int, int]:
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


def plain_names(der: bytes) -> tuple[PlainName, PlainName] | None:
    """The issuer and the subject read from the DER, or None (see above).

    ``der`` has been parsed by cryptography, so its framing is sound; the walk to the
    names trusts it and checks only the tags, and each name is read with every check.
    """
    parts: list[tuple[int, int]] = []
    try:
        pos, end = _framed(der, _framed(der, 0)[0])  # Certificate, tbsCertificate
        if der[pos] == 0xA0:  # [0] version
            pos = _framed(der, pos)[1]
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
                start, pos = _framed(der, pos)
            parts.append((start, pos))
    except IndexError:
        return None
    if pos > end:
        return None
    (issuer_start, issuer_end), (subject_start, subject_end) = parts[2], parts[4]
    # an issuer's name recurs in every certificate it signs; a subject's, hardly ever (a
    # returning client's facts are cached whole): kept, it would only churn the cache
    issuer = _cached_name(der[issuer_start:issuer_end])
    subject = _readplain_name(der[subject_start:subject_end])
    if issuer is None or subject is None:
        return None
    return issuer, subject


_NAMES: BoundedCache[bytes, PlainName] = BoundedCache(4096, second_sighting=True)
"""Issuer names already read, by their DER: a CA's name is the issuer of every certificate
it signed. A name the reader declines is not kept (cryptography reads it, at far more
cost than trying again)."""
_known_name = _NAMES.get


def _cached_name(encoded: bytes) -> PlainName | None:
    found = _known_name(encoded)
    if found is None:
        found = _readplain_name(encoded)
        if found is not None:
            _NAMES.put(encoded, found)
    return found


def _readplain_name(encoded: bytes) -> PlainName | None:
    pairs = plain_name(encoded, 0, len(encoded))
    if pairs is None:
        return None
    single = dict(pairs)
    if len(single) == len(pairs):  # the usual name: no attribute twice
        # tuple.__new__, not PlainName(...): a named tuple's own __new__ costs a third more
        return _new_tuple(PlainName, (tuple(pairs), single, None))
    by_oid = _by_oid(pairs)
    single = {oid: values[0] for oid, values in by_oid.items() if len(values) == 1}
    return PlainName(tuple(pairs), single, by_oid)


def der_utf8_string(value: bytes) -> str:
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
