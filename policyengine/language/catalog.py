"""The attribute catalog: every name a policy may use, with its type, its doc and its reader.

Adding an attribute is one entry in :data:`CATALOG` (built below with :func:`_add`). The
checker resolves names against it when a policy is loaded, the compiler binds each name's
reader into a closure once, and ``docs/language.md`` lists every entry (a test keeps the
two in step).

Readers take the per-request :class:`Context` and return a value, or a
:class:`~policyengine.values.Missing` that says why there is none. They may raise
:class:`~policyengine.values.FactError` when the part of the certificate they read is broken.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import attrgetter

from policyengine.errors import FactError
from policyengine.request.certificate import EKU_NAMES, NAME_ATTRIBUTES, CertificateFacts
from policyengine.request.sources import Forwarded
from policyengine.request.trust import TrustResult, TrustStore
from policyengine.values import ABSENT, Missing, format_time, normalize_host, normalize_path

__all__ = [
    "CATALOG",
    "Attribute",
    "Context",
    "Type",
    "certificate_attributes",
    "lookup",
    "read_fact",
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


class Context:
    """What one evaluation sees: the certificate's facts, the request, and the time.

    The request's path, method and host are given as received and normalised on first
    read, so a policy that never looks at them never pays for it.
    """

    __slots__ = (
        "_host",
        "_method",
        "_path",
        "_trust",
        "facts",
        "forwarded",
        "now",
        "raw_host",
        "raw_method",
        "raw_path",
        "trust_store",
    )

    _path: str | Missing
    _method: str | Missing
    _host: str | Missing
    _trust: TrustResult | Missing

    excluded = False
    """``path excluded`` inside a rule: always false, since rules run only for requests
    whose path no exclusion covers (an excluded path is allowed before any rule runs)."""

    def __init__(
        self,
        facts: CertificateFacts | None,
        now: datetime,
        path: str | None = None,
        method: str | None = None,
        host: str | None = None,
        forwarded: Forwarded | None = None,
        trust_store: TrustStore | None = None,
    ) -> None:
        self.facts = facts
        self.now = now
        self.raw_path = path
        self.raw_method = method
        self.raw_host = host
        self.forwarded = forwarded
        """What the proxy source yielded, when the request came through one."""
        self.trust_store = trust_store

    @property
    def path(self) -> str | Missing:
        """The request path as an application routes it (see ``normalize_path``)."""
        try:
            return self._path
        except AttributeError:
            raw = self.raw_path
            self._path = normalize_path(raw) if isinstance(raw, str) else _NO_PATH
            return self._path

    @property
    def method(self) -> str | Missing:
        try:
            return self._method
        except AttributeError:
            raw = self.raw_method
            self._method = raw.upper() if isinstance(raw, str) and raw else _NO_METHOD
            return self._method

    @property
    def host(self) -> str | Missing:
        try:
            return self._host
        except AttributeError:
            raw = self.raw_host
            self._host = normalize_host(raw) if isinstance(raw, str) and raw.strip() else _NO_HOST
            return self._host

    def trust(self) -> TrustResult | Missing:
        """Chain verification for this certificate, done once per evaluation (and cached
        by the trust store across evaluations)."""
        try:
            return self._trust
        except AttributeError:
            pass
        result: TrustResult | Missing
        if self.facts is None:
            result = ABSENT
        elif self.trust_store is None:
            result = Missing("the policy has no trust anchors")
        else:
            chain = self.forwarded.chain if self.forwarded is not None else ()
            result = self.trust_store.verify(self.facts, chain, self.now)
        self._trust = result
        return result

    def with_facts(self, facts: CertificateFacts) -> Context:
        """The same request seen through another certificate (one of the chain)."""
        return Context(facts, self.now, self.raw_path, self.raw_method, self.raw_host)


_NO_PATH = Missing("no request path was given")
_NO_METHOD = Missing("no method was given")
_NO_HOST = Missing("no host was given")


Reader = Callable[[Context], object]


@dataclass(frozen=True, slots=True)
class Attribute:
    """One name a policy can use."""

    name: str
    type: Type
    doc: str
    example: str
    """A complete ``when:`` expression using the attribute, shown in the docs."""
    read: Reader
    """The value, or Missing. For a multi-valued attribute, its only value."""
    read_all: Callable[[Context], tuple[object, ...] | Missing] | None = None
    """For multi-valued attributes (a DN can hold several OUs): every value."""
    why: Callable[[Context], str] | None = None
    """For predicates: a sentence on why the value is what it is, for the trace."""
    read_token: Callable[[Context], bytes | Missing] | None = None
    """For fingerprints: the keyed token used for set membership."""
    algorithm: str | None = None
    """For fingerprints: ``sha1``, ``sha256``, or None for ``fingerprint`` (by length)."""
    aliases: Mapping[str, str] | None = None
    """Other spellings of values, turned into the canonical one when a policy is loaded."""
    prefix: str = ""
    """``chain.root.`` or ``chain.issuer.`` for a fact of a certificate in the chain."""

    @property
    def multi(self) -> bool:
        return self.read_all is not None


CATALOG: dict[str, Attribute] = {}

_ALIASES: dict[str, Mapping[str, str]] = {
    "eku": {oid: name for oid, name in EKU_NAMES.items()},
    "key_usage": {"nonRepudiation": "contentCommitment"},
}


def _add(attribute: Attribute) -> None:
    CATALOG[attribute.name] = attribute


# -- the certificate as a whole -------------------------------------------------------------


def _present(ctx: Context) -> bool:
    return ctx.facts is not None


def _present_why(ctx: Context) -> str:
    return "a certificate was presented" if ctx.facts is not None else ABSENT.reason


_add(
    Attribute(
        "present",
        Type.BOOL,
        "A client certificate was presented (and could be read).",
        'present and subject.O == "Contoso Ltd"',
        _present,
        why=_present_why,
    )
)


def _validity(ctx: Context) -> tuple[datetime, datetime] | Missing:
    facts = ctx.facts
    if facts is None:
        return ABSENT
    return facts.not_before, facts.not_after


_SECOND = timedelta(seconds=1)
"""X.509 times are whole seconds, and so is every comparison of the evaluation time with
them: a time within the second of ``not_after`` is not past it (``now >= not_after + 1 s``
is past), as ``cryptography``'s verifier, which drops the fraction, decides ``trusted``."""


def _valid(ctx: Context) -> bool | Missing:
    facts = ctx.facts
    if facts is None:
        return ABSENT
    return facts.not_before <= ctx.now < facts.not_after + _SECOND


def _expired(ctx: Context) -> bool | Missing:
    span = _validity(ctx)
    if isinstance(span, Missing):
        return span
    return ctx.now >= span[1] + _SECOND


def _not_yet_valid(ctx: Context) -> bool | Missing:
    span = _validity(ctx)
    if isinstance(span, Missing):
        return span
    return ctx.now < span[0]


def _validity_why(ctx: Context) -> str:
    span = _validity(ctx)
    if isinstance(span, Missing):
        return span.reason
    before, after = span
    now = format_time(ctx.now)
    if ctx.now < before:
        return f"not_before {format_time(before)} is after now {now}"
    if ctx.now >= after + _SECOND:
        return f"not_after {format_time(after)} is before now {now}"
    return f"not_before {format_time(before)} <= now {now} <= not_after {format_time(after)}"


_add(
    Attribute(
        "valid",
        Type.BOOL,
        "The evaluation time lies within the certificate's validity period "
        "(not_before <= now <= not_after, compared to the second).",
        "valid",
        _valid,
        why=_validity_why,
    )
)
_add(
    Attribute(
        "expired",
        Type.BOOL,
        "The evaluation time is after not_after (a later second).",
        "expired",
        _expired,
        why=_validity_why,
    )
)
_add(
    Attribute(
        "not_yet_valid",
        Type.BOOL,
        "The evaluation time is before not_before.",
        "not_yet_valid",
        _not_yet_valid,
        why=_validity_why,
    )
)


def _self_signed(ctx: Context) -> bool | Missing:
    return ABSENT if ctx.facts is None else ctx.facts.self_signed


def _self_signed_why(ctx: Context) -> str:
    facts = ctx.facts
    if facts is None:
        return ABSENT.reason
    if facts.self_signed:
        return "subject equals issuer and the certificate's own key verifies its signature"
    if facts.subject != facts.issuer:
        return "subject differs from issuer"
    return "subject equals issuer but the certificate's own key does not verify its signature"


_add(
    Attribute(
        "self_signed",
        Type.BOOL,
        "The subject equals the issuer and the certificate's own public key verifies its "
        "signature.",
        "not self_signed",
        _self_signed,
        why=_self_signed_why,
    )
)


def _fact(name: str) -> Reader:
    """A reader for a plain attribute of CertificateFacts."""

    get = attrgetter(name)

    def read(ctx: Context) -> object:
        facts = ctx.facts
        return ABSENT if facts is None else get(facts)

    read.__name__ = f"read_{name}"
    return read


_add(
    Attribute(
        "not_before",
        Type.TIME,
        "Start of the validity period (UTC).",
        "not_before < 2026-01-01T00:00:00Z",
        _fact("not_before"),
    )
)
_add(
    Attribute(
        "not_after",
        Type.TIME,
        "End of the validity period (UTC).",
        "not_after >= 2027-06-30",
        _fact("not_after"),
    )
)
_add(
    Attribute(
        "serial",
        Type.SERIAL,
        'The serial number. Written in a policy as hex text ("0x1A2B3C", "1a:2b:3c") or a '
        "decimal integer; compared as a number.",
        "serial in revoked_serials",
        _fact("serial"),
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
            _fact(_algorithm),
            read_token=_fact(f"{_algorithm}_token"),  # type: ignore[arg-type]
            algorithm=_algorithm,
        )
    )


def _both_fingerprints(ctx: Context) -> object:
    facts = ctx.facts
    return ABSENT if facts is None else f"sha1 {facts.sha1}, sha256 {facts.sha256}"


_add(
    Attribute(
        "fingerprint",
        Type.FINGERPRINT,
        "The certificate's fingerprint, compared as SHA-1 or SHA-256 by the length of the "
        "value it is compared with (40 or 64 hex digits). The App Service samples' "
        '"thumbprint" is the SHA-1 one.',
        'fingerprint == "5E:8A:4F:0B:12:9C:D3:77:21:AA:90:6B:3E:F1:C4:58:0D:2E:79:B6"',
        _both_fingerprints,
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


def _name_string(which: str) -> Reader:
    def read(ctx: Context) -> object:
        facts = ctx.facts
        return ABSENT if facts is None else getattr(facts, which)

    return read


def _name_single(which: str, oid: str, label: str) -> Reader:
    single = attrgetter(f"{which}_single")

    def read(ctx: Context) -> object:
        facts = ctx.facts
        if facts is None:
            return ABSENT
        value = single(facts).get(oid)
        if value is not None:
            return value
        return facts.name_value(which, oid, label)  # none or several: Missing says which

    return read


def _name_all(which: str, oid: str) -> Callable[[Context], tuple[object, ...] | Missing]:
    def read(ctx: Context) -> tuple[object, ...] | Missing:
        facts = ctx.facts
        return ABSENT if facts is None else facts.name_values(which, oid)

    return read


def _name_attribute(which: str, label: str, oid: str, doc: str, example: str) -> Attribute:
    return Attribute(
        f"{which}.{label}",
        Type.STRING,
        doc,
        example,
        _name_single(which, oid, label),
        read_all=_name_all(which, oid),
    )


for _which in ("subject", "issuer"):
    _add(
        Attribute(
            _which,
            Type.STRING,
            f"The whole {_which} distinguished name as an RFC 4514 string, most specific "
            "attribute first (as `cryptography` prints it). Prefer the attributes below.",
            f'{_which} == "CN=api-client,O=Contoso Ltd,C=US"',
            _name_string(_which),
        )
    )
    for _key, _oid in NAME_ATTRIBUTES.items():
        _label, _example = _NAME_DOCS[_key]
        _add(
            _name_attribute(
                _which,
                _key,
                _oid,
                f'The {_which}\'s {_label} ({_oid}). Multi-valued: see "Several values".',
                f"{_which}.{_key} {_example}",
            )
        )

_OID = re.compile(r"[0-2](\.(0|[1-9][0-9]{0,9})){1,30}")


def lookup(name: str) -> Attribute | None:
    """The attribute a policy names: a catalog entry, or a name attribute by dotted OID.

    ``subject.2.5.4.12`` reads the subject's title; any OID works, known or not.
    """
    attribute = CATALOG.get(name)
    if attribute is not None:
        return attribute
    which, _, oid = name.partition(".")
    if which in ("subject", "issuer") and _OID.fullmatch(oid):
        return _name_attribute(which, oid, oid, "", "")
    return None


# -- extensions -----------------------------------------------------------------------------


ReadAll = Callable[[Context], tuple[object, ...] | Missing]


def _multi(field: str, what: str) -> tuple[Reader, ReadAll]:
    """Readers for a multi-valued fact: its only value, and all its values."""

    def read_all(ctx: Context) -> tuple[object, ...] | Missing:
        facts = ctx.facts
        return ABSENT if facts is None else getattr(facts, field)

    def read(ctx: Context) -> object:
        values = read_all(ctx)
        if isinstance(values, Missing) or len(values) == 1:
            return values if isinstance(values, Missing) else values[0]
        if not values:
            return Missing(f"the certificate has no {what}")
        shown = ", ".join(repr(v) for v in values)
        return Missing(f"the certificate has {len(values)} {what} values ({shown}); ambiguous")

    return read, read_all


_MULTI = {
    "san.dns": (
        "san_dns",
        "DNS SAN",
        "DNS names in the subject alternative name, lower case.",
        'any san.dns matches "*.contoso.com"',
    ),
    "san.uri": (
        "san_uri",
        "URI SAN",
        "URIs in the subject alternative name.",
        '"https://contoso.com/payments" in san.uri',
    ),
    "san.email": (
        "san_email",
        "email SAN",
        "Email addresses (rfc822Name) in the subject alternative name.",
        'san.email endswith "@contoso.com"',
    ),
    "san.ip": (
        "san_ip",
        "IP address SAN",
        "IP addresses in the subject alternative name, as text (`10.1.2.3`, `2001:db8::1`).",
        '"10.1.2.3" in san.ip',
    ),
    "san.upn": (
        "san_upn",
        "UPN SAN",
        "Microsoft user principal names (the other-name 1.3.6.1.4.1.311.20.2.3) in the "
        "subject alternative name.",
        'san.upn endswith "@contoso.com"',
    ),
    "eku": (
        "eku",
        "extended key usage",
        "Extended key usages, by name where known (serverAuth, clientAuth, codeSigning, "
        "emailProtection, timeStamping, OCSPSigning, anyExtendedKeyUsage, smartcardLogon, "
        "kdcAuth), otherwise as a dotted OID. A name or its OID may be written.",
        '"clientAuth" in eku',
    ),
    "key_usage": (
        "key_usage",
        "key usage",
        "Key usage bits that are set: digitalSignature, contentCommitment (nonRepudiation), "
        "keyEncipherment, dataEncipherment, keyAgreement, keyCertSign, cRLSign, encipherOnly, "
        "decipherOnly.",
        '"digitalSignature" in key_usage',
    ),
    "certificate_policies": (
        "certificate_policies",
        "certificate policy",
        "The certificate policy OIDs.",
        '"2.23.140.1.2.1" in certificate_policies',
    ),
}

for _name, (_field, _what, _doc, _example) in _MULTI.items():
    _read, _read_all = _multi(_field, _what)
    _add(
        Attribute(
            _name,
            Type.STRING,
            _doc + ' Multi-valued: see "Several values".',
            _example,
            _read,
            read_all=_read_all,
            aliases=_ALIASES.get(_name),
        )
    )

_SINGLE: dict[str, tuple[str, Type, str, str]] = {
    "spiffe_id": (
        "spiffe_id",
        Type.STRING,
        "The SPIFFE ID: the one spiffe:// URI in the subject alternative name; undefined when "
        "there is none or more than one.",
        'spiffe_id startswith "spiffe://contoso.com/ns/payments/"',
    ),
    "version": ("version", Type.INT, "The X.509 version: 1 or 3.", "version == 3"),
    "lifetime": (
        "lifetime",
        Type.DURATION,
        "not_after minus not_before.",
        "lifetime <= 398d",
    ),
    "key.type": (
        "key_type",
        Type.STRING,
        "The public key's algorithm: rsa, ec, ed25519, ed448 or dsa.",
        'key.type in ["ec", "ed25519"]',
    ),
    "key.size": (
        "key_size",
        Type.INT,
        "The public key's size in bits (RSA and DSA modulus, EC curve size; 256 for Ed25519, "
        "456 for Ed448).",
        'key.size >= 2048 or key.type != "rsa"',
    ),
    "key.curve": (
        "key_curve",
        Type.STRING,
        "The elliptic curve of an EC key (secp256r1, secp384r1, …); undefined for other keys.",
        'key.curve in ["secp256r1", "secp384r1"]',
    ),
    "signature.algorithm": (
        "signature_algorithm",
        Type.STRING,
        "The signature algorithm, as `cryptography` names it (sha256WithRSAEncryption, "
        "ecdsa-with-SHA256, ed25519, …), or its dotted OID when unknown.",
        'signature.algorithm != "md5WithRSAEncryption"',
    ),
    "signature.hash": (
        "signature_hash",
        Type.STRING,
        "The hash of the signature algorithm (sha256, sha384, sha1, md5, md2, …); undefined "
        "for algorithms without a separate hash such as Ed25519.",
        'signature.hash not in ["md2", "md5", "sha1"]',
    ),
    "is_ca": (
        "is_ca",
        Type.BOOL,
        "The basic constraints mark the certificate as a CA (false without the extension).",
        "not is_ca",
    ),
    "path_length": (
        "path_length",
        Type.INT,
        "The basic constraints' path length; undefined when not set.",
        "path_length == 0",
    ),
    "subject_key_id": (
        "subject_key_id",
        Type.HEX,
        "The subject key identifier, as hex (written in any case, with or without colons).",
        'subject_key_id == "6a:1f:3b:22:90:c4:5e:77:13:08:aa:4d:e2:9b:01:f3:c6:58:2d:90"',
    ),
    "authority_key_id": (
        "authority_key_id",
        Type.HEX,
        "The authority key identifier's key id, as hex: it names the issuing CA's key.",
        "authority_key_id in issuing_ca_keys",
    ),
}

for _name, (_field, _type, _doc, _example) in _SINGLE.items():
    _add(Attribute(_name, _type, _doc, _example, _fact(_field)))

# -- the request ----------------------------------------------------------------------------


def _request(field: str) -> Reader:
    def read(ctx: Context) -> object:
        return getattr(ctx, field)

    return read


_add(
    Attribute(
        "request.path",
        Type.STRING,
        "The request path, without the query string, with dot segments resolved and "
        "repeated slashes collapsed.",
        'request.path startswith "/admin"',
        _request("path"),
    )
)
_add(
    Attribute(
        "request.method",
        Type.STRING,
        "The HTTP method, upper case.",
        'request.method in ["GET", "HEAD"]',
        _request("method"),
    )
)
_add(
    Attribute(
        "request.host",
        Type.STRING,
        "The Host the request was sent to, lower case, without the port.",
        'request.host == "api.contoso.com"',
        _request("host"),
    )
)

# -- the proxy ------------------------------------------------------------------------------

_NO_PROXY = Missing("the certificate did not come through a proxy source")


def _proxy_verified(ctx: Context) -> bool | Missing:
    forwarded = ctx.forwarded
    if forwarded is None:
        return _NO_PROXY
    if forwarded.proxy_verified is None:
        return Missing("the proxy did not say whether it verified the certificate")
    return forwarded.proxy_verified


def _proxy_verified_why(ctx: Context) -> str:
    value = _proxy_verified(ctx)
    if isinstance(value, Missing):
        return value.reason
    raw = ctx.forwarded.proxy_verify if ctx.forwarded is not None else None
    return f"the proxy sent {raw!r}" if raw is not None else str(value).lower()


def _proxy_verify(ctx: Context) -> str | Missing:
    forwarded = ctx.forwarded
    if forwarded is None:
        return _NO_PROXY
    if forwarded.proxy_verify is None:
        return Missing("the proxy sent no verification header")
    return forwarded.proxy_verify


_add(
    Attribute(
        "proxy.verified",
        Type.BOOL,
        "What the proxy says of its own verification of the certificate: nginx and Apache "
        "SUCCESS, HAProxy 0, GCP and Cloudflare true, an ASGI server's client_cert_error "
        "unset. Undefined when the proxy says nothing (Azure, Envoy, Traefik send no such "
        "header). See docs/sources.md.",
        'proxy.verified and subject.O == "Contoso Ltd"',
        _proxy_verified,
        why=_proxy_verified_why,
    )
)
_add(
    Attribute(
        "proxy.verify",
        Type.STRING,
        "The proxy's verification header as sent, e.g. nginx's `FAILED:certificate has expired`.",
        'not proxy.verify startswith "FAILED"',
        _proxy_verify,
    )
)


# -- chain of trust and revocation -----------------------------------------------------------


def _trusted(ctx: Context) -> bool | Missing:
    result = ctx.trust()
    return result if isinstance(result, Missing) else result.trusted


def _trusted_why(ctx: Context) -> str:
    result = ctx.trust()
    if isinstance(result, Missing):
        return result.reason
    return "chain: " + result.describe_chain() if result.trusted else result.reason


def _revoked(ctx: Context) -> bool | Missing:
    result = ctx.trust()
    if isinstance(result, Missing):
        return result
    if not result.trusted:
        return Missing(f"no trusted chain to check revocation against: {result.reason}")
    if result.revocation == "unknown":
        store = ctx.trust_store
        return store is not None and store.settings.revocation == "hard"
    return result.revocation == "revoked"


def _revoked_why(ctx: Context) -> str:
    result = ctx.trust()
    if isinstance(result, Missing):
        return result.reason
    if not result.trusted:
        return f"no trusted chain to check revocation against: {result.reason}"
    if result.revocation == "unknown":
        hard = ctx.trust_store is not None and ctx.trust_store.settings.revocation == "hard"
        verdict = "hard mode counts it as revoked" if hard else "soft mode lets it pass"
        return f"status unknown ({result.revocation_detail}); {verdict}"
    return result.revocation_detail


_add(
    Attribute(
        "trusted",
        Type.BOOL,
        "The certificate chains to one of the policy's trust anchors at the evaluation time: "
        "signatures, validity of every certificate, basic constraints, key usage, path length "
        "and name constraints checked by `cryptography`'s verifier, clientAuth EKU as the "
        "`trust:` section says. Needs a `trust:` section. See docs/trust.md.",
        "trusted and not revoked",
        _trusted,
        why=_trusted_why,
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
        _revoked,
        why=_revoked_why,
    )
)


def _chain_length(ctx: Context) -> int | Missing:
    result = ctx.trust()
    if isinstance(result, Missing):
        return result
    if not result.trusted:
        return Missing(f"no trusted chain was built: {result.reason}")
    return len(result.chain)


_add(
    Attribute(
        "chain.length",
        Type.INT,
        "How many certificates the trusted chain holds, leaf and anchor included.",
        "chain.length <= 3",
        _chain_length,
    )
)


def _chain_member(position: int) -> Callable[[Context], Context | Missing]:
    def pick(ctx: Context) -> Context | Missing:
        result = ctx.trust()
        if isinstance(result, Missing):
            return result
        if not result.trusted:
            return Missing(f"no trusted chain was built: {result.reason}")
        chain = result.chain
        if position >= len(chain):
            # a leaf that is itself a trust anchor: the chain is that one certificate
            return Missing(
                "the trusted chain is the leaf alone (the leaf is itself a trust anchor), "
                "so nothing issued it"
            )
        return ctx.with_facts(chain[position if position >= 0 else len(chain) + position])

    return pick


def _through(pick: Callable[[Context], Context | Missing], read: Reader) -> Reader:
    def reader(ctx: Context) -> object:
        member = pick(ctx)
        return member if isinstance(member, Missing) else read(member)

    return reader


def _through_all(pick: Callable[[Context], Context | Missing], read_all: ReadAll) -> ReadAll:
    def reader(ctx: Context) -> tuple[object, ...] | Missing:
        member = pick(ctx)
        return member if isinstance(member, Missing) else read_all(member)

    return reader


_CHAIN_FACTS = (
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
_CHAIN_MEMBERS = {
    "chain.root.": (-1, "the trust anchor that ends the chain"),
    "chain.issuer.": (
        1,
        "the certificate that issued the leaf (the anchor itself for a two-certificate chain; "
        "undefined when the leaf is itself an anchor)",
    ),
}

for _prefix, (_position, _who) in _CHAIN_MEMBERS.items():
    _pick = _chain_member(_position)
    for _name in _CHAIN_FACTS:
        _leaf = CATALOG[_name]
        _add(
            Attribute(
                _prefix + _name,
                _leaf.type,
                f"`{_name}` of {_who}; undefined when no trusted chain was built.",
                _leaf.example.replace(_name, _prefix + _name, 1) if _leaf.example else "",
                _through(_pick, _leaf.read),
                read_all=_through_all(_pick, _leaf.read_all) if _leaf.read_all else None,
                read_token=_through(_pick, _leaf.read_token)  # type: ignore[arg-type]
                if _leaf.read_token
                else None,
                algorithm=_leaf.algorithm,
                aliases=_leaf.aliases,
                prefix=_prefix,
            )
        )


def certificate_attributes() -> tuple[Attribute, ...]:
    """Every catalog attribute read from the certificate itself (not the request or proxy)."""
    return tuple(
        a
        for name, a in CATALOG.items()
        if not name.startswith(("request.", "proxy.", "chain."))
        and name not in ("fingerprint", "trusted", "revoked")
    )


def read_fact(attribute: Attribute, ctx: Context) -> object:
    """An attribute's value for display: all values of a multi-valued one, a Missing, or the
    FactError that reading it raised (returned, not raised)."""
    try:
        return attribute.read_all(ctx) if attribute.read_all else attribute.read(ctx)
    except FactError as exc:
        return exc
