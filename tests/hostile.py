"""A corpus of hostile and odd certificates, and the DER helpers that build it.

Every member starts from one well-formed, self-signed RSA certificate made with
``cryptography`` (:func:`base_certificate`) and is changed by editing its DER: a field of
the to-be-signed part is swapped for hand-encoded bytes and the lengths around it are
re-encoded. Nothing is re-signed: facts do not verify signatures (except ``self_signed``,
which is then simply false).

Each :class:`Hostile` member says what a reader should find in it: which parts cannot be
read at all (``broken``), and the true value of every attribute that differs from the base
certificate (``truth``). Tests compare the engine's decisions with that truth.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from policyengine.request.certificate import NAME_ATTRIBUTES, UPN_OID

# -- DER, by hand ---------------------------------------------------------------------------

SEQUENCE = 0x30
SET = 0x31
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
NULL = 0x05
OBJECT_IDENTIFIER = 0x06
UTF8_STRING = 0x0C
PRINTABLE_STRING = 0x13
TELETEX_STRING = 0x14
IA5_STRING = 0x16
UNIVERSAL_STRING = 0x1C
BMP_STRING = 0x1E


def encode_length(length: int) -> bytes:
    """A DER length: short form below 128, else 0x80|count followed by big-endian bytes."""
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, content: bytes) -> bytes:
    """One DER element: tag, length, content."""
    return bytes([tag]) + encode_length(len(content)) + content


def sequence(*items: bytes) -> bytes:
    return tlv(SEQUENCE, b"".join(items))


def der_set(*items: bytes) -> bytes:
    return tlv(SET, b"".join(items))


def explicit(number: int, content: bytes) -> bytes:
    """A context-specific constructed tag ``[number]`` around ``content``."""
    return tlv(0xA0 | number, content)


def integer(value: int) -> bytes:
    """A DER INTEGER in minimal two's complement (so -1 is ``02 01 FF``)."""
    size = max(1, (value + (value < 0)).bit_length() // 8 + 1)
    return tlv(INTEGER, value.to_bytes(size, "big", signed=True))


def oid(dotted: str) -> bytes:
    """An OBJECT IDENTIFIER from its dotted text."""
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return tlv(OBJECT_IDENTIFIER, bytes(body))


def utf8(text: str) -> bytes:
    return tlv(UTF8_STRING, text.encode("utf-8"))


def printable(text: str) -> bytes:
    return tlv(PRINTABLE_STRING, text.encode("ascii"))


def bmp(text: str) -> bytes:
    return tlv(BMP_STRING, text.encode("utf-16-be"))


def universal(text: str) -> bytes:
    return tlv(UNIVERSAL_STRING, text.encode("utf-32-be"))


def teletex(raw: bytes) -> bytes:
    return tlv(TELETEX_STRING, raw)


def octet_string(content: bytes) -> bytes:
    return tlv(OCTET_STRING, content)


def read_element(data: bytes, offset: int = 0) -> tuple[int, int, int]:
    """The element at ``offset``: (tag, start of content, end). Single-byte tags only."""
    tag = data[offset]
    first = data[offset + 1]
    if first < 0x80:
        return tag, offset + 2, offset + 2 + first
    count = first & 0x7F
    length = int.from_bytes(data[offset + 2 : offset + 2 + count], "big")
    start = offset + 2 + count
    return tag, start, start + length


def elements(content: bytes) -> list[bytes]:
    """The complete elements, as raw bytes, that make up a constructed value's content."""
    found = []
    offset = 0
    while offset < len(content):
        _, _, end = read_element(content, offset)
        found.append(content[offset:end])
        offset = end
    return found


def inner(element: bytes) -> bytes:
    """The content of one element (which must span all of ``element``)."""
    _, start, end = read_element(element)
    assert end == len(element), "trailing bytes after the element"
    return element[start:end]


def name(*attributes: tuple[str, bytes]) -> bytes:
    """A Name: one RDN per (OID, encoded string value), in the order given."""
    return sequence(*(der_set(sequence(oid(dotted), value)) for dotted, value in attributes))


def extension(dotted: str, value: bytes, critical: bool = False) -> bytes:
    """An Extension whose extnValue wraps ``value`` (the DER of the extension's own type)."""
    flag = tlv(0x01, b"\xff") if critical else b""
    return sequence(oid(dotted), flag, octet_string(value))


# -- certificates, field by field -----------------------------------------------------------


@dataclass
class Certificate:
    """A certificate split into its to-be-signed fields, to edit one and put it together.

    ``fields`` are named as RFC 5280 names them; ``version``, ``issuerUniqueID``,
    ``subjectUniqueID`` and ``extensions`` are absent (None) when the DER lacks them.
    """

    fields: dict[str, bytes | None]
    signature_algorithm: bytes
    signature: bytes

    ORDER = (
        "version",
        "serialNumber",
        "signature",
        "issuer",
        "validity",
        "subject",
        "subjectPublicKeyInfo",
        "issuerUniqueID",
        "subjectUniqueID",
        "extensions",
    )

    @classmethod
    def parse(cls, der: bytes) -> Certificate:
        tbs, algorithm, signature = elements(inner(der))
        parts = elements(inner(tbs))
        fields: dict[str, bytes | None] = dict.fromkeys(cls.ORDER)
        if parts[0][0] == 0xA0:
            fields["version"] = parts.pop(0)
        for key, part in zip(cls.ORDER[1:7], parts[:6], strict=True):
            fields[key] = part
        optional = {0xA1: "issuerUniqueID", 0xA2: "subjectUniqueID", 0xA3: "extensions"}
        for part in parts[6:]:
            fields[optional[part[0]]] = part
        return cls(fields, algorithm, signature)

    def replace(self, **fields: bytes | None) -> Certificate:
        unknown = set(fields) - set(self.ORDER)
        assert not unknown, f"no such field: {unknown}"
        return Certificate({**self.fields, **fields}, self.signature_algorithm, self.signature)

    @property
    def tbs(self) -> bytes:
        return sequence(*(self.fields[key] or b"" for key in self.ORDER))

    @property
    def der(self) -> bytes:
        return sequence(self.tbs, self.signature_algorithm, self.signature)

    @property
    def extensions(self) -> list[bytes]:
        wrapped = self.fields["extensions"]
        return [] if wrapped is None else elements(inner(inner(wrapped)))

    def with_extensions(self, extensions: list[bytes]) -> Certificate:
        return self.replace(extensions=explicit(3, sequence(*extensions)))

    def replace_extension(self, dotted: str, value: bytes) -> Certificate:
        """The certificate with the extension ``dotted`` now wrapping ``value``."""
        target = oid(dotted)
        replaced = []
        for ext in self.extensions:
            parts = elements(inner(ext))
            if parts[0] == target:
                ext = sequence(*parts[:-1], octet_string(value))
            replaced.append(ext)
        assert replaced != self.extensions, f"the certificate has no extension {dotted}"
        return self.with_extensions(replaced)

    def extension_value(self, dotted: str) -> bytes:
        target = oid(dotted)
        for ext in self.extensions:
            parts = elements(inner(ext))
            if parts[0] == target:
                return inner(parts[-1])
        raise KeyError(dotted)


# -- the base certificate ---------------------------------------------------------------------

NOT_BEFORE = datetime(2025, 1, 1, tzinfo=UTC)
NOT_AFTER = datetime(2027, 1, 1, tzinfo=UTC)
SERIAL = 0x1A2B3C
CUSTOM_OID = "1.2.3.4"
"""An attribute no catalog knows, reachable only as ``subject.1.2.3.4``."""

NAME_VALUES: dict[str, str] = {key: f"v-{key}" for key in NAME_ATTRIBUTES}
"""The base certificate's value for every named attribute (subject and issuer alike)."""
NAME_VALUES.update(C="US", jurisdictionC="US", CN="hostile", O="Contoso, Ltd")

SAN_DNS = ("api.contoso.com", "API2.Contoso.com")
SAN_URI = ("spiffe://contoso.com/ns/payments/sa/api", "https://contoso.com/payments")
SAN_EMAIL = ("api@contoso.com",)
SAN_IP = ("10.1.2.3", "2001:db8::1")
SAN_UPN = ("api@corp.contoso.com",)
UNKNOWN_EKU = "1.3.6.1.4.1.99999.1"
POLICY_OIDS = ("2.23.140.1.2.1", "1.3.6.1.4.1.99999.2")
AKI = bytes.fromhex("0102030405060708090a0b0c0d0e0f1011121314")


def base_name() -> x509.Name:
    attributes = [
        x509.NameAttribute(x509.ObjectIdentifier(dotted), NAME_VALUES[key])
        for key, dotted in NAME_ATTRIBUTES.items()
    ]
    attributes.append(x509.NameAttribute(x509.ObjectIdentifier(CUSTOM_OID), "custom"))
    return x509.Name(attributes)


def upn(text: str) -> x509.OtherName:
    return x509.OtherName(x509.ObjectIdentifier(UPN_OID), utf8(text))


@functools.cache
def base_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def base_certificate() -> bytes:
    """A self-signed RSA-2048 CA (path length 0) with every extension the catalog reads."""
    key = base_key()
    subject = base_name()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(SERIAL)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    *(x509.DNSName(n) for n in SAN_DNS),
                    *(x509.UniformResourceIdentifier(u) for u in SAN_URI),
                    *(x509.RFC822Name(e) for e in SAN_EMAIL),
                    *(x509.IPAddress(ipaddress.ip_address(a)) for a in SAN_IP),
                    *(upn(u) for u in SAN_UPN),
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH, x509.ObjectIdentifier(UNKNOWN_EKU)]
            ),
            critical=False,
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.CertificatePolicies(
                [x509.PolicyInformation(x509.ObjectIdentifier(p), None) for p in POLICY_OIDS]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(x509.AuthorityKeyIdentifier(AKI, None, None), critical=False)
    )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def base_truth() -> dict[str, object]:
    """The true value of every certificate attribute of the base certificate.

    Multi-valued attributes map to a tuple of all their values; single ones to the value,
    or None when the attribute has no value.
    """
    der = base_certificate()
    cert = x509.load_der_x509_certificate(der)
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    truth: dict[str, object] = {
        "present": True,
        "valid": True,
        "expired": False,
        "not_yet_valid": False,
        "self_signed": True,
        "not_before": NOT_BEFORE,
        "not_after": NOT_AFTER,
        "lifetime": NOT_AFTER - NOT_BEFORE,
        "serial": SERIAL,
        "version": 3,
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "san.dns": tuple(n.lower() for n in SAN_DNS),
        "san.uri": SAN_URI,
        "san.email": SAN_EMAIL,
        "san.ip": SAN_IP,
        "san.upn": SAN_UPN,
        "spiffe_id": SAN_URI[0],
        "eku": ("clientAuth", UNKNOWN_EKU),
        "key_usage": ("digitalSignature", "contentCommitment", "keyCertSign"),
        "is_ca": True,
        "path_length": 0,
        "certificate_policies": POLICY_OIDS,
        "subject_key_id": ski.hex(),
        "authority_key_id": AKI.hex(),
        "key.type": "rsa",
        "key.size": 2048,
        "key.curve": None,
        "signature.algorithm": "sha256WithRSAEncryption",
        "signature.hash": "sha256",
    }
    for which in ("subject", "issuer"):
        for key, dotted in NAME_ATTRIBUTES.items():
            truth[f"{which}.{key}"] = (NAME_VALUES[key],)
            truth[f"{which}.{dotted}"] = (NAME_VALUES[key],)
        truth[f"{which}.{CUSTOM_OID}"] = ("custom",)
    return truth


# -- the corpus -------------------------------------------------------------------------------

SUBJECT = frozenset({"subject"})
ISSUER = frozenset({"issuer"})
EXTENSIONS = frozenset({"extensions"})
KEY = frozenset({"key"})


@dataclass(frozen=True)
class Hostile:
    """One corpus member: its bytes, the parts that cannot be read, and what differs."""

    name: str
    der: bytes
    broken: frozenset[str] = frozenset()
    """Parts whose every attribute must fail to read: subject, issuer, extensions, key."""
    truth: Mapping[str, object] = field(default_factory=dict)
    """True values that differ from :func:`base_truth` (name attributes by their label)."""
    readable: bool = True
    """False when the bytes are not one certificate at all (malformed_certificate)."""


def _edited(**fields: bytes | None) -> bytes:
    return Certificate.parse(base_certificate()).replace(**fields).der


def _name_truth(which: str, values: Mapping[str, tuple[str, ...]]) -> dict[str, object]:
    """Truth for a rewritten name: every label absent except ``values`` (label -> values)."""
    truth: dict[str, object] = {}
    for key, dotted in NAME_ATTRIBUTES.items():
        found = values.get(key, ())
        truth[f"{which}.{key}"] = found
        truth[f"{which}.{dotted}"] = found
    truth[f"{which}.{CUSTOM_OID}"] = values.get(CUSTOM_OID, ())
    return truth


CN = NAME_ATTRIBUTES["CN"]
O = NAME_ATTRIBUTES["O"]  # noqa: E741
OU = NAME_ATTRIBUTES["OU"]
C = NAME_ATTRIBUTES["C"]


def _renamed(name_der: bytes, rfc4514: str, values: Mapping[str, tuple[str, ...]]) -> Hostile:
    """The base certificate with a new subject; it is no longer self-signed."""
    return Hostile(
        "",
        _edited(subject=name_der),
        truth={"subject": rfc4514, "self_signed": False, **_name_truth("subject", values)},
    )


def _named(member: Hostile, label: str) -> Hostile:
    return Hostile(label, member.der, member.broken, member.truth, member.readable)


def negative_serial() -> Hostile:
    return Hostile(
        "negative serial",
        _edited(serialNumber=integer(-0x1A2B3C)),
        truth={"serial": -0x1A2B3C, "self_signed": False},
    )


def zero_serial() -> Hostile:
    return Hostile("zero serial", _edited(serialNumber=integer(0)), truth={"serial": 0})


LONG_SERIAL = int.from_bytes(bytes(range(1, 23)), "big")
"""22 bytes: RFC 5280 allows at most 20 octets, real CAs have issued longer."""


def long_serial() -> Hostile:
    return Hostile(
        "22-byte serial", _edited(serialNumber=integer(LONG_SERIAL)), truth={"serial": LONG_SERIAL}
    )


def invalid_utf8_subject() -> Hostile:
    """The subject CN is a UTF8String holding bytes that are not UTF-8."""
    broken_cn = tlv(UTF8_STRING, b"\xff\xfehostile")
    return Hostile(
        "invalid UTF-8 in the subject CN",
        _edited(subject=name((C, printable("US")), (CN, broken_cn))),
        broken=SUBJECT,
    )


def invalid_utf8_issuer() -> Hostile:
    broken_o = tlv(UTF8_STRING, b"Contoso \xc3\x28")
    return Hostile(
        "invalid UTF-8 in the issuer O",
        _edited(issuer=name((O, broken_o), (CN, utf8("hostile")))),
        broken=ISSUER,
    )


def bmp_subject() -> Hostile:
    member = _renamed(
        name((C, printable("US")), (O, bmp("Zoë Ltd")), (CN, bmp("hôstile"))),
        "CN=hôstile,O=Zoë Ltd,C=US",
        {"C": ("US",), "O": ("Zoë Ltd",), "CN": ("hôstile",)},
    )
    return _named(member, "BMPString names")


def universal_subject() -> Hostile:
    member = _renamed(
        name((O, universal("中文 Ltd")), (CN, universal("hostile 😀"))),
        "CN=hostile 😀,O=中文 Ltd",
        {"O": ("中文 Ltd",), "CN": ("hostile 😀",)},
    )
    return _named(member, "UniversalString names")


def teletex_subject() -> Hostile:
    """A TeletexString (T61) CN of plain ASCII, which cryptography reads as text."""
    member = _renamed(name((CN, teletex(b"cafe-t61"))), "CN=cafe-t61", {"CN": ("cafe-t61",)})
    return _named(member, "TeletexString name")


def teletex_8bit_subject() -> Hostile:
    """A TeletexString CN with an 8-bit byte (T.61 e-acute): cryptography cannot decode it."""
    return Hostile(
        "TeletexString name with an 8-bit byte",
        _edited(subject=name((CN, teletex(b"caf\xc2e")))),
        broken=SUBJECT,
    )


def invalid_bmp_subject() -> Hostile:
    """A BMPString holding a lone surrogate: cryptography refuses the whole certificate."""
    return unreadable(
        "BMPString with a lone surrogate", _edited(subject=name((CN, tlv(BMP_STRING, b"\xd8\x00"))))
    )


LONG_OUS = tuple(f"{i}-" + "x" * 120 for i in range(5))


def long_subject() -> Hostile:
    values = {"CN": ("hostile",), "OU": LONG_OUS, "O": ("Contoso, Ltd",)}
    rdn = ",".join(f"OU={ou}" for ou in reversed(LONG_OUS))
    member = _renamed(
        name(
            (O, utf8("Contoso, Ltd")), *((OU, utf8(ou)) for ou in LONG_OUS), (CN, utf8("hostile"))
        ),
        f"CN=hostile,{rdn},O=Contoso\\, Ltd",
        values,
    )
    return _named(member, "a 500-character subject")


def non_ascii_subject() -> Hostile:
    member = _renamed(
        name((O, utf8("Société Générale")), (OU, utf8("中文")), (CN, utf8("José"))),
        "CN=José,OU=中文,O=Société Générale",
        {"O": ("Société Générale",), "OU": ("中文",), "CN": ("José",)},
    )
    return _named(member, "non-ASCII names")


def _with_extensions(label: str, edit: str) -> Hostile:
    cert = Certificate.parse(base_certificate())
    if edit == "duplicate SAN":
        san = next(e for e in cert.extensions if elements(inner(e))[0] == oid("2.5.29.17"))
        der = cert.with_extensions([*cert.extensions, san]).der
    else:
        target, value = {
            "malformed SAN": (ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30\x05\x82\x03ab"),
            "malformed EKU": (ExtensionOID.EXTENDED_KEY_USAGE, sequence(utf8("clientAuth"))),
            "malformed policies": (
                ExtensionOID.CERTIFICATE_POLICIES,
                sequence(sequence(integer(1))),
            ),
        }[edit]
        der = cert.replace_extension(target.dotted_string, value).der
    return Hostile(label, der, broken=EXTENSIONS)


def unknown_key_algorithm() -> Hostile:
    """The key's AlgorithmIdentifier names an OID no library knows; the key bits are kept."""
    cert = Certificate.parse(base_certificate())
    spki = cert.fields["subjectPublicKeyInfo"]
    assert spki is not None
    _, key_bits = elements(inner(spki))
    unknown = sequence(sequence(oid("1.3.6.1.4.1.99999.3"), tlv(NULL, b"")), key_bits)
    return Hostile(
        "unknown public key algorithm",
        cert.replace(subjectPublicKeyInfo=unknown).der,
        broken=KEY,
        truth={"self_signed": False},
    )


MD5_WITH_RSA = "1.2.840.113549.1.1.4"
MD2_WITH_RSA = "1.2.840.113549.1.1.2"
SHA256_WITH_RSA = "1.2.840.113549.1.1.11"


def weak_signature(dotted: str, label: str, algorithm: str, digest: str) -> Hostile:
    """The signature algorithm OID patched in both places it appears (same length)."""
    der = base_certificate()
    assert der.count(oid(SHA256_WITH_RSA)) == 2
    return Hostile(
        label,
        der.replace(oid(SHA256_WITH_RSA), oid(dotted)),
        truth={"signature.algorithm": algorithm, "signature.hash": digest, "self_signed": False},
    )


UNKNOWN_SIGNATURE = "1.2.840.113549.1.1.99"


def unknown_signature_algorithm() -> Hostile:
    """A signature algorithm OID nobody knows: its name is the OID, its hash unreadable."""
    der = base_certificate().replace(oid(SHA256_WITH_RSA), oid(UNKNOWN_SIGNATURE))
    return Hostile(
        "unknown signature algorithm",
        der,
        broken=frozenset({"signature.hash"}),
        truth={"signature.algorithm": UNKNOWN_SIGNATURE},
    )


def version_1() -> Hostile:
    """No version field (v1) and, as v1 requires, no extensions."""
    return Hostile(
        "version 1",
        _edited(version=None, extensions=None),
        truth={
            "version": 1,
            "self_signed": False,
            "san.dns": (),
            "san.uri": (),
            "san.email": (),
            "san.ip": (),
            "san.upn": (),
            "spiffe_id": None,
            "eku": (),
            "key_usage": (),
            "is_ca": False,
            "path_length": None,
            "certificate_policies": (),
            "subject_key_id": None,
            "authority_key_id": None,
        },
    )


def unreadable(label: str, der: bytes) -> Hostile:
    return Hostile(label, der, readable=False)


@functools.cache
def corpus() -> tuple[Hostile, ...]:
    """Every member, the unchanged base certificate first."""
    base = base_certificate()
    return (
        Hostile("the base certificate", base),
        negative_serial(),
        zero_serial(),
        long_serial(),
        invalid_utf8_subject(),
        invalid_utf8_issuer(),
        bmp_subject(),
        universal_subject(),
        teletex_subject(),
        teletex_8bit_subject(),
        invalid_bmp_subject(),
        long_subject(),
        non_ascii_subject(),
        _with_extensions("duplicate SAN extensions", "duplicate SAN"),
        _with_extensions("malformed SAN bytes", "malformed SAN"),
        _with_extensions("malformed EKU", "malformed EKU"),
        _with_extensions("malformed certificate policies", "malformed policies"),
        unknown_key_algorithm(),
        weak_signature(MD5_WITH_RSA, "MD5 signature", "md5WithRSAEncryption", "md5"),
        weak_signature(MD2_WITH_RSA, "MD2 signature", MD2_WITH_RSA, "md2"),
        unknown_signature_algorithm(),
        version_1(),
        unreadable("trailing garbage", base + b"\x00\x00garbage"),
        unreadable("truncated DER", base[: len(base) // 2]),
        unreadable("empty SEQUENCE", b"\x30\x00"),
    )


def truth_of(member: Hostile) -> dict[str, object]:
    """The base truth with the member's differences applied."""
    truth = base_truth()
    truth.update(member.truth)
    if member.der != base_certificate() and "self_signed" not in member.truth:
        truth["self_signed"] = False  # edited bytes no longer match the signature
    return truth
