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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from policyengine.certificate import NAME_ATTRIBUTES, CertificateFacts
from policyengine.values import ABSENT, Missing, format_time

__all__ = ["CATALOG", "Attribute", "Context", "Type"]


class Type(enum.Enum):
    BOOL = "bool"
    STRING = "string"
    INT = "int"
    TIME = "timestamp"
    DURATION = "duration"
    SERIAL = "serial"
    FINGERPRINT = "fingerprint"

    def __str__(self) -> str:
        return self.value


class Context:
    """What one evaluation sees: the certificate's facts, the request, and the time."""

    __slots__ = ("excluded", "facts", "host", "method", "now", "path")

    def __init__(
        self,
        facts: CertificateFacts | None,
        now: datetime,
        path: str | Missing,
        method: str | Missing,
        host: str | Missing,
        excluded: bool,
    ) -> None:
        self.facts = facts
        self.now = now
        self.path = path
        self.method = method
        self.host = host
        self.excluded = excluded


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

    @property
    def multi(self) -> bool:
        return self.read_all is not None


CATALOG: dict[str, Attribute] = {}


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


def _valid(ctx: Context) -> bool | Missing:
    span = _validity(ctx)
    if isinstance(span, Missing):
        return span
    return span[0] <= ctx.now <= span[1]


def _expired(ctx: Context) -> bool | Missing:
    span = _validity(ctx)
    if isinstance(span, Missing):
        return span
    return ctx.now > span[1]


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
    if ctx.now > after:
        return f"not_after {format_time(after)} is before now {now}"
    return f"not_before {format_time(before)} <= now {now} <= not_after {format_time(after)}"


_add(
    Attribute(
        "valid",
        Type.BOOL,
        "The evaluation time lies within the certificate's validity period "
        "(not_before <= now <= not_after).",
        "valid",
        _valid,
        why=_validity_why,
    )
)
_add(
    Attribute(
        "expired",
        Type.BOOL,
        "The evaluation time is after not_after.",
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

    def read(ctx: Context) -> object:
        facts = ctx.facts
        return ABSENT if facts is None else getattr(facts, name)

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
    "CN": "common name",
    "O": "organization",
    "OU": "organizational unit",
    "C": "country",
    "ST": "state or province",
    "L": "locality",
    "emailAddress": "email address (PKCS #9)",
    "serialNumber": "serialNumber name attribute (not the certificate's serial)",
    "DC": "domain component",
    "UID": "user id",
}
_NAME_EXAMPLES = {
    "CN": '== "api-client"',
    "O": '== "Contoso, Ltd"',
    "OU": 'in ["Payments", "Billing"]',
    "C": '== "US"',
    "ST": '== "Washington"',
    "L": '== "Redmond"',
    "emailAddress": 'endswith "@contoso.com"',
    "serialNumber": '== "A1234"',
    "DC": '== "contoso"',
    "UID": 'startswith "svc-"',
}


def _name_string(which: str) -> Reader:
    def read(ctx: Context) -> object:
        facts = ctx.facts
        return ABSENT if facts is None else getattr(facts, which)

    return read


def _name_single(which: str, key: str) -> Reader:
    def read(ctx: Context) -> object:
        facts = ctx.facts
        return ABSENT if facts is None else facts.name_value(which, key)

    return read


def _name_all(which: str, key: str) -> Callable[[Context], tuple[object, ...] | Missing]:
    def read(ctx: Context) -> tuple[object, ...] | Missing:
        facts = ctx.facts
        return ABSENT if facts is None else facts.name_values(which, key)

    return read


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
    for _key in NAME_ATTRIBUTES:
        _add(
            Attribute(
                f"{_which}.{_key}",
                Type.STRING,
                f'The {_which}\'s {_NAME_DOCS[_key]}. Multi-valued: see "Several values".',
                f"{_which}.{_key} {_NAME_EXAMPLES[_key]}",
                _name_single(_which, _key),
                read_all=_name_all(_which, _key),
            )
        )

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
