"""The vocabulary: every name a policy may use, with its type, its doc and what it depends on.

This is the static half of an attribute: what the checker needs to resolve a name and type
a comparison, what ``docs/language.md`` lists (a test keeps the two in step), and what a
rule's decision depends on. How each attribute is *read* from a request lives apart, in
:mod:`policyengine.evaluation.attributes`, which the compiler asks once per name when a
policy is compiled.

Adding an attribute: one entry here (built below with :func:`_add`), its reader in
``evaluation/attributes.py``, a row in ``docs/language.md``.

What an attribute depends on is drawn from the closed set :data:`DEPENDENCIES`. The engine
asks it whether a decision may be remembered for a certificate (``certificate`` and
``time`` only), the rule index whether a value is cheap to read first, the checker whether
a name needs a ``trust:`` section, lint whether a rule admits a self-made certificate.

Must not import: ``cryptography``, anything of ``policyengine.request``,
``policyengine.evaluation`` or ``policyengine.load``. It is plain data.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Literal

from policyengine.oids import EKU_NAMES, NAME_ATTRIBUTES

__all__ = [
    "DEFAULT_PRINCIPAL",
    "DEPENDENCIES",
    "IDENTITY_NAMES",
    "VOCABULARY",
    "Attribute",
    "Dependency",
    "Type",
    "certificate_attributes",
    "depends_of",
    "lookup",
]


class Type(enum.Enum):
    BOOL = "bool"
    STRING = "string"
    INT = "int"
    TIME = "timestamp"
    DURATION = "duration"
    SERIAL = "serial"
    FINGERPRINT = "fingerprint"
    HEX = "hex"

    def __str__(self) -> str:
        return self.value


Dependency = Literal["certificate", "time", "request", "proxy", "trust", "chain"]

DEPENDENCIES: dict[Dependency, str] = {
    "certificate": "the client certificate itself (or that none was presented)",
    "time": "the evaluation time",
    "request": "the request's path, method or host",
    "proxy": "what the proxy source said of the certificate",
    "trust": "the chain verification against the policy's trust anchors (needs `trust:`)",
    "chain": "a trusted chain that was built: undefined when none was",
}
"""The closed set an attribute's ``depends`` is drawn from, each with what it means."""

_CERTIFICATE: frozenset[Dependency] = frozenset({"certificate"})
_AT_TIME: frozenset[Dependency] = frozenset({"certificate", "time"})
_REQUEST: frozenset[Dependency] = frozenset({"request"})
_PROXY: frozenset[Dependency] = frozenset({"proxy"})
_TRUST: frozenset[Dependency] = frozenset({"certificate", "time", "trust"})
_CHAIN: frozenset[Dependency] = _TRUST | {"chain"}


@dataclass(frozen=True, slots=True)
class Attribute:
    """One name a policy can use."""

    name: str
    type: Type
    doc: str
    example: str
    """A complete ``when:`` expression using the attribute, shown in the docs."""
    _: KW_ONLY
    depends: frozenset[Dependency]
    """What its value depends on, drawn from :data:`DEPENDENCIES`."""
    multi: bool = False
    """Multi-valued (a DN can hold several OUs): ``in``, ``any`` and ``all`` see every value."""
    algorithm: str | None = None
    """For fingerprints: ``sha1``, ``sha256``, or None for ``fingerprint`` (by length)."""
    aliases: Mapping[str, str] | None = None
    """Other spellings of values, turned into the canonical one when a policy is loaded."""
    prefix: str = ""
    """``chain.root.`` or ``chain.issuer.`` for a fact of a certificate in the chain."""


VOCABULARY: dict[str, Attribute] = {}
"""Every attribute by name, in the order the docs and ``policyengine inspect`` list them."""

_ALIASES: dict[str, Mapping[str, str]] = {
    "eku": {oid: name for oid, name in EKU_NAMES.items()},
    "key_usage": {"nonRepudiation": "contentCommitment"},
}


def _add(attribute: Attribute) -> None:
    assert attribute.depends <= frozenset(DEPENDENCIES), attribute.name
    VOCABULARY[attribute.name] = attribute


# -- the certificate as a whole -------------------------------------------------------------

_add(
    Attribute(
        "present",
        Type.BOOL,
        "A client certificate was presented (and could be read).",
        'present and subject.O == "Contoso Ltd"',
        depends=_CERTIFICATE,
    )
)
_add(
    Attribute(
        "valid",
        Type.BOOL,
        "The evaluation time lies within the certificate's validity period "
        "(not_before <= now <= not_after, compared to the second).",
        "valid",
        depends=_AT_TIME,
    )
)
_add(
    Attribute(
        "expired",
        Type.BOOL,
        "The evaluation time is after not_after (a later second).",
        "expired",
        depends=_AT_TIME,
    )
)
_add(
    Attribute(
        "not_yet_valid",
        Type.BOOL,
        "The evaluation time is before not_before.",
        "not_yet_valid",
        depends=_AT_TIME,
    )
)
_add(
    Attribute(
        "self_signed",
        Type.BOOL,
        "The subject equals the issuer and the certificate's own public key verifies its "
        "signature.",
        "not self_signed",
        depends=_CERTIFICATE,
    )
)
_add(
    Attribute(
        "not_before",
        Type.TIME,
        "Start of the validity period (UTC).",
        "not_before < 2026-01-01T00:00:00Z",
        depends=_CERTIFICATE,
    )
)
_add(
    Attribute(
        "not_after",
        Type.TIME,
        "End of the validity period (UTC).",
        "not_after >= 2027-06-30",
        depends=_CERTIFICATE,
    )
)
_add(
    Attribute(
        "serial",
        Type.SERIAL,
        'The serial number. Written in a policy as hex text ("0x1A2B3C", "1a:2b:3c") or a '
        "decimal integer; compared as a number.",
        "serial in revoked_serials",
        depends=_CERTIFICATE,
    )
)

# -- fingerprints ---------------------------------------------------------------------------

for _algorithm in ("sha1", "sha256"):
    _add(
        Attribute(
            f"fingerprint.{_algorithm}",
            Type.FINGERPRINT,
            f"The {_algorithm.upper().replace('SHA', 'SHA-')} digest of the certificate's DER "
            "encoding, as lower-case hex. "
            "Pins are written in any case, with or without colons or spaces.",
            f"fingerprint.{_algorithm} in partners",
            depends=_CERTIFICATE,
            algorithm=_algorithm,
        )
    )
_add(
    Attribute(
        "fingerprint",
        Type.FINGERPRINT,
        "The certificate's fingerprint, compared as SHA-1 or SHA-256 by the length of the "
        "value it is compared with (40 or 64 hex digits). The App Service samples' "
        '"thumbprint" is the SHA-1 one.',
        'fingerprint == "5E:8A:4F:0B:12:9C:D3:77:21:AA:90:6B:3E:F1:C4:58:0D:2E:79:B6"',
        depends=_CERTIFICATE,
        algorithm=None,
    )
)

# -- names ----------------------------------------------------------------------------------

_NAME_DOCS = {
    "CN": ("common name", '== "api-client"'),
    "SN": ("surname", '== "Smith"'),
    "serialNumber": ("serialNumber name attribute (not the certificate's serial)", '== "A1234"'),
    "C": ("country", '== "US"'),
    "L": ("locality", '== "Redmond"'),
    "ST": ("state or province", '== "Washington"'),
    "street": ("street address", 'contains "Microsoft Way"'),
    "O": ("organization", '== "Contoso, Ltd"'),
    "OU": ("organizational unit", 'in ["Payments", "Billing"]'),
    "title": ("title", '== "Service"'),
    "businessCategory": ("business category", '== "Private Organization"'),
    "postalCode": ("postal code", 'startswith "98"'),
    "name": ("name attribute", '== "Payments Service"'),
    "givenName": ("given name", '== "Ada"'),
    "initials": ("initials", '== "AL"'),
    "generationQualifier": ("generation qualifier", '== "Jr"'),
    "dnQualifier": ("DN qualifier", '== "prod"'),
    "pseudonym": ("pseudonym", '== "svc-7"'),
    "organizationIdentifier": ("organization identifier", 'startswith "VATGB-"'),
    "DC": ("domain component", '== "contoso"'),
    "UID": ("user id", 'startswith "svc-"'),
    "emailAddress": ("email address (PKCS #9)", 'endswith "@contoso.com"'),
    "jurisdictionC": ("jurisdiction country (EV certificates)", '== "US"'),
    "jurisdictionST": ("jurisdiction state (EV certificates)", '== "Delaware"'),
    "jurisdictionL": ("jurisdiction locality (EV certificates)", '== "Wilmington"'),
}


def _name_attribute(name: str, doc: str = "", example: str = "") -> Attribute:
    """``subject.CN``, ``issuer.2.5.4.12``: one attribute of a distinguished name."""
    return Attribute(name, Type.STRING, doc, example, depends=_CERTIFICATE, multi=True)


for _which in ("subject", "issuer"):
    _add(
        Attribute(
            _which,
            Type.STRING,
            f"The whole {_which} distinguished name as an RFC 4514 string, most specific "
            "attribute first (as `cryptography` prints it). Prefer the attributes below.",
            f'{_which} == "CN=api-client,O=Contoso Ltd,C=US"',
            depends=_CERTIFICATE,
        )
    )
    for _key, _oid in NAME_ATTRIBUTES.items():
        _label, _example = _NAME_DOCS[_key]
        _add(
            _name_attribute(
                f"{_which}.{_key}",
                f'The {_which}\'s {_label} ({_oid}). Multi-valued: see "Several values".',
                f"{_which}.{_key} {_example}",
            )
        )

_OID = re.compile(r"[0-2](\.(0|[1-9][0-9]{0,9})){1,30}")


def lookup(name: str) -> Attribute | None:
    """The attribute a policy names: a vocabulary entry, or a name attribute by dotted OID.

    ``subject.2.5.4.12`` reads the subject's title; any OID works, known or not.
    """
    attribute = VOCABULARY.get(name)
    if attribute is not None:
        return attribute
    which, _, oid = name.partition(".")
    if which in ("subject", "issuer") and _OID.fullmatch(oid):
        return _name_attribute(name)
    return None


# -- extensions -----------------------------------------------------------------------------

_MULTI = {
    "san.dns": (
        "DNS names in the subject alternative name, lower case.",
        'any san.dns matches "*.contoso.com"',
    ),
    "san.uri": (
        "URIs in the subject alternative name.",
        '"https://contoso.com/payments" in san.uri',
    ),
    "san.email": (
        "Email addresses (rfc822Name) in the subject alternative name.",
        'san.email endswith "@contoso.com"',
    ),
    "san.ip": (
        "IP addresses in the subject alternative name, as text (`10.1.2.3`, `2001:db8::1`).",
        '"10.1.2.3" in san.ip',
    ),
    "san.upn": (
        "Microsoft user principal names (the other-name 1.3.6.1.4.1.311.20.2.3) in the "
        "subject alternative name.",
        'san.upn endswith "@contoso.com"',
    ),
    "eku": (
        "Extended key usages, by name where known (serverAuth, clientAuth, codeSigning, "
        "emailProtection, timeStamping, OCSPSigning, anyExtendedKeyUsage, smartcardLogon, "
        "kdcAuth), otherwise as a dotted OID. A name or its OID may be written.",
        '"clientAuth" in eku',
    ),
    "key_usage": (
        "Key usage bits that are set: digitalSignature, contentCommitment (nonRepudiation), "
        "keyEncipherment, dataEncipherment, keyAgreement, keyCertSign, cRLSign, encipherOnly, "
        "decipherOnly.",
        '"digitalSignature" in key_usage',
    ),
    "certificate_policies": (
        "The certificate policy OIDs.",
        '"2.23.140.1.2.1" in certificate_policies',
    ),
}

for _name, (_doc, _example) in _MULTI.items():
    _add(
        Attribute(
            _name,
            Type.STRING,
            _doc + ' Multi-valued: see "Several values".',
            _example,
            depends=_CERTIFICATE,
            multi=True,
            aliases=_ALIASES.get(_name),
        )
    )

_SINGLE: dict[str, tuple[Type, str, str]] = {
    "spiffe_id": (
        Type.STRING,
        "The SPIFFE ID: the one spiffe:// URI in the subject alternative name; undefined when "
        "there is none or more than one.",
        'spiffe_id startswith "spiffe://contoso.com/ns/payments/"',
    ),
    "version": (Type.INT, "The X.509 version: 1 or 3.", "version == 3"),
    "lifetime": (Type.DURATION, "not_after minus not_before.", "lifetime <= 398d"),
    "key.type": (
        Type.STRING,
        "The public key's algorithm: rsa, ec, ed25519, ed448 or dsa.",
        'key.type in ["ec", "ed25519"]',
    ),
    "key.size": (
        Type.INT,
        "The public key's size in bits (RSA and DSA modulus, EC curve size; 256 for Ed25519, "
        "456 for Ed448).",
        'key.size >= 2048 or key.type != "rsa"',
    ),
    "key.curve": (
        Type.STRING,
        "The elliptic curve of an EC key (secp256r1, secp384r1, …); undefined for other keys.",
        'key.curve in ["secp256r1", "secp384r1"]',
    ),
    "signature.algorithm": (
        Type.STRING,
        "The signature algorithm, as `cryptography` names it (sha256WithRSAEncryption, "
        "ecdsa-with-SHA256, ed25519, …), or its dotted OID when unknown.",
        'signature.algorithm != "md5WithRSAEncryption"',
    ),
    "signature.hash": (
        Type.STRING,
        "The hash of the signature algorithm (sha256, sha384, sha1, md5, md2, …); undefined "
        "for algorithms without a separate hash such as Ed25519.",
        'signature.hash not in ["md2", "md5", "sha1"]',
    ),
    "is_ca": (
        Type.BOOL,
        "The basic constraints mark the certificate as a CA (false without the extension).",
        "not is_ca",
    ),
    "path_length": (
        Type.INT,
        "The basic constraints' path length; undefined when not set.",
        "path_length == 0",
    ),
    "subject_key_id": (
        Type.HEX,
        "The subject key identifier, as hex (written in any case, with or without colons).",
        'subject_key_id == "6a:1f:3b:22:90:c4:5e:77:13:08:aa:4d:e2:9b:01:f3:c6:58:2d:90"',
    ),
    "authority_key_id": (
        Type.HEX,
        "The authority key identifier's key id, as hex: it names the issuing CA's key.",
        "authority_key_id in issuing_ca_keys",
    ),
}

for _name, (_type, _doc, _example) in _SINGLE.items():
    _add(Attribute(_name, _type, _doc, _example, depends=_CERTIFICATE))

# -- the request ----------------------------------------------------------------------------

_add(
    Attribute(
        "request.path",
        Type.STRING,
        "The request path, without the query string, with dot segments resolved and "
        "repeated slashes collapsed.",
        'request.path startswith "/admin"',
        depends=_REQUEST,
    )
)
_add(
    Attribute(
        "request.method",
        Type.STRING,
        "The HTTP method, upper case.",
        'request.method in ["GET", "HEAD"]',
        depends=_REQUEST,
    )
)
_add(
    Attribute(
        "request.host",
        Type.STRING,
        "The Host the request was sent to, lower case, without the port.",
        'request.host == "api.contoso.com"',
        depends=_REQUEST,
    )
)

# -- the proxy ------------------------------------------------------------------------------

_add(
    Attribute(
        "proxy.verified",
        Type.BOOL,
        "What the proxy says of its own verification of the certificate: nginx and Apache "
        "SUCCESS, HAProxy 0, GCP and Cloudflare true, an ASGI server's client_cert_error "
        "unset. Undefined when the proxy says nothing (Azure, Envoy, Traefik send no such "
        "header). See docs/sources.md.",
        'proxy.verified and subject.O == "Contoso Ltd"',
        depends=_PROXY,
    )
)
_add(
    Attribute(
        "proxy.verify",
        Type.STRING,
        "The proxy's verification header as sent, e.g. nginx's `FAILED:certificate has expired`.",
        'not proxy.verify startswith "FAILED"',
        depends=_PROXY,
    )
)

# -- chain of trust and revocation -----------------------------------------------------------

_add(
    Attribute(
        "trusted",
        Type.BOOL,
        "The certificate chains to one of the policy's trust anchors at the evaluation time: "
        "signatures, validity of every certificate, basic constraints, key usage, path length "
        "and name constraints checked by `cryptography`'s verifier, clientAuth EKU as the "
        "`trust:` section says. Needs a `trust:` section. See docs/trust.md.",
        "trusted and not revoked",
        depends=_TRUST,
    )
)
_add(
    Attribute(
        "revoked",
        Type.BOOL,
        "The certificate, or with `check: chain` (the default) any certificate of the chain "
        "below the anchor, is listed in the newest CRL of its issuer. An unknown status (no "
        "usable fresh CRL) counts as revoked in `hard` mode and not in `soft` mode; undefined "
        "when no trusted chain was built. Needs a `trust:` section. See docs/trust.md.",
        "trusted and not revoked",
        depends=_CHAIN,
    )
)
_add(
    Attribute(
        "chain.length",
        Type.INT,
        "How many certificates the trusted chain holds, leaf and anchor included.",
        "chain.length <= 3",
        depends=_CHAIN,
    )
)

# -- identity -------------------------------------------------------------------------------

IDENTITY_NAMES = ("principal", "groups", "roles")
"""The attributes the policy's ``identity:`` section defines (docs/identity.md)."""
DEFAULT_PRINCIPAL = ("san.uri", "san.dns", "subject.CN")
"""The principal when the policy names none: URI SAN, else DNS SAN, else the subject's CN."""

_IDENTITY = {
    "principal": (
        "Who the certificate names: the first attribute of `identity.principal` (by default "
        "san.uri, san.dns, subject.CN) that has exactly one value; undefined when none has.",
        'principal matches "*.contoso.com"',
    ),
    "groups": (
        "Every value of each attribute of `identity.groups`, in order, without repeats (none "
        'by default). Multi-valued: see "Several values".',
        '"Payments" in groups',
    ),
    "roles": (
        "The roles of `identity.roles` whose condition holds, in the order written; naming a "
        'role that is not defined is an error. Multi-valued: see "Several values".',
        '"ops" in roles',
    ),
}

for _name, (_doc, _example) in _IDENTITY.items():
    _multiple = _name != "principal"
    _add(Attribute(_name, Type.STRING, _doc, _example, depends=_CERTIFICATE, multi=_multiple))

CHAIN_FACTS = (
    "subject",
    *(f"subject.{key}" for key in NAME_ATTRIBUTES),
    "issuer",
    *(f"issuer.{key}" for key in NAME_ATTRIBUTES),
    "fingerprint",
    "fingerprint.sha1",
    "fingerprint.sha256",
    "serial",
    "not_before",
    "not_after",
    "subject_key_id",
    "key.type",
    "key.size",
)
"""The leaf attributes that can be read of another certificate of the trusted chain."""

_CHAIN_MEMBERS = {
    "chain.root.": "the trust anchor that ends the chain",
    "chain.issuer.": (
        "the certificate that issued the leaf (the anchor itself for a two-certificate chain; "
        "undefined when the leaf is itself an anchor)"
    ),
}

for _prefix, _who in _CHAIN_MEMBERS.items():
    for _name in CHAIN_FACTS:
        _leaf = VOCABULARY[_name]
        _add(
            Attribute(
                _prefix + _name,
                _leaf.type,
                f"`{_name}` of {_who}; undefined when no trusted chain was built.",
                _leaf.example.replace(_name, _prefix + _name, 1) if _leaf.example else "",
                depends=_CHAIN,
                multi=_leaf.multi,
                algorithm=_leaf.algorithm,
                aliases=_leaf.aliases,
                prefix=_prefix,
            )
        )


def depends_of(names: str | Iterable[str]) -> frozenset[Dependency]:
    """What the named attributes depend on, together. Every name must be known (a checked
    policy's names are); an unknown one raises ``KeyError``."""
    found: frozenset[Dependency] = frozenset()
    for name in (names,) if isinstance(names, str) else names:
        attribute = lookup(name)
        if attribute is None:
            raise KeyError(name)
        found |= attribute.depends
    return found


def certificate_attributes() -> tuple[Attribute, ...]:
    """Every attribute read from the certificate itself (and the time), in vocabulary order:
    not the request, the proxy, the chain or the identity. ``fingerprint`` is left out: it is
    the two digests, listed on their own."""
    return tuple(
        a
        for a in VOCABULARY.values()
        if a.depends <= _AT_TIME and a.name != "fingerprint" and a.name not in IDENTITY_NAMES
    )
