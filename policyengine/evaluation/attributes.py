"""The readers: how each attribute of the vocabulary is read from a :class:`Context`.

:func:`readers_for` gives an attribute's :class:`Readers`; the compiler and the rule index
ask it once per name when a policy is compiled and bind the functions into their closures,
so a request calls a reader directly and never looks a name up. :data:`READERS` holds them
for every name of :data:`~policyengine.language.vocabulary.VOCABULARY` (a test keeps the
two in step); a name attribute written by dotted OID (``subject.2.5.4.12``) gets its
readers made when it is compiled.

Readers take the per-request :class:`Context` and return a value, or a
:class:`~policyengine.values.Missing` that says why there is none. They may raise
:class:`~policyengine.values.FactError` when the part of the certificate they read is broken.
They are the hot path: each is one call that reads the facts, with nothing between.

Must not import: ``load``, ``integrations``, ``tooling``, ``cli``; nothing here parses or
checks a policy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import attrgetter
from typing import TYPE_CHECKING

from policyengine.errors import FactError
from policyengine.evaluation.context import Context
from policyengine.language.vocabulary import VOCABULARY, Attribute
from policyengine.oids import NAME_ATTRIBUTES
from policyengine.values import ABSENT, Missing, format_time

if TYPE_CHECKING:
    from policyengine.evaluation.identity import Identity

__all__ = ["READERS", "Readers", "read_fact", "readers_for"]

Reader = Callable[[Context], object]
ReadAll = Callable[[Context], tuple[object, ...] | Missing]
Why = Callable[[Context], str]
ReadToken = Callable[[Context], bytes | Missing]


@dataclass(frozen=True, slots=True)
class Readers:
    """How one attribute is read."""

    read: Reader
    """The value, or Missing. For a multi-valued attribute, its only value."""
    read_all: ReadAll | None = None
    """For multi-valued attributes (a DN can hold several OUs): every value."""
    why: Why | None = None
    """For predicates: a sentence on why the value is what it is, for the trace."""
    read_token: ReadToken | None = None
    """For fingerprints: the keyed token used for set membership."""


READERS: dict[str, Readers] = {}


def readers_for(attribute: Attribute) -> Readers:
    """How ``attribute`` is read: for the compiler, once per name when compiling."""
    found = READERS.get(attribute.name)
    if found is not None:
        return found
    which, _, oid = attribute.name.partition(".")
    if which not in ("subject", "issuer"):
        raise KeyError(f"no reader for {attribute.name!r}")
    return _name_readers(which, oid, oid)  # a name attribute by OID, from ``lookup``


def read_fact(attribute: Attribute, ctx: Context) -> object:
    """An attribute's value for display: all values of a multi-valued one, a Missing, or the
    FactError that reading it raised (returned, not raised)."""
    readers = readers_for(attribute)
    try:
        return readers.read_all(ctx) if readers.read_all else readers.read(ctx)
    except FactError as exc:
        return exc


# -- the certificate as a whole -------------------------------------------------------------


def _present(ctx: Context) -> bool:
    return ctx.facts is not None


def _present_why(ctx: Context) -> str:
    return "a certificate was presented" if ctx.facts is not None else ABSENT.reason


READERS["present"] = Readers(_present, why=_present_why)


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


READERS["valid"] = Readers(_valid, why=_validity_why)
READERS["expired"] = Readers(_expired, why=_validity_why)
READERS["not_yet_valid"] = Readers(_not_yet_valid, why=_validity_why)


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


READERS["self_signed"] = Readers(_self_signed, why=_self_signed_why)


def _fact(name: str) -> Reader:
    """A reader for a plain attribute of CertificateFacts."""

    get = attrgetter(name)

    def read(ctx: Context) -> object:
        facts = ctx.facts
        return ABSENT if facts is None else get(facts)

    read.__name__ = f"read_{name}"
    return read


for _name in ("not_before", "not_after", "serial"):
    READERS[_name] = Readers(_fact(_name))

# -- fingerprints ---------------------------------------------------------------------------

for _algorithm in ("sha1", "sha256"):
    READERS[f"fingerprint.{_algorithm}"] = Readers(
        _fact(_algorithm),
        read_token=_fact(f"{_algorithm}_token"),  # type: ignore[arg-type]
    )


def _both_fingerprints(ctx: Context) -> object:
    facts = ctx.facts
    return ABSENT if facts is None else f"sha1 {facts.sha1}, sha256 {facts.sha256}"


READERS["fingerprint"] = Readers(_both_fingerprints)

# -- names ----------------------------------------------------------------------------------


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


def _name_all(which: str, oid: str) -> ReadAll:
    def read(ctx: Context) -> tuple[object, ...] | Missing:
        facts = ctx.facts
        return ABSENT if facts is None else facts.name_values(which, oid)

    return read


def _name_readers(which: str, oid: str, label: str) -> Readers:
    return Readers(_name_single(which, oid, label), read_all=_name_all(which, oid))


for _which in ("subject", "issuer"):
    READERS[_which] = Readers(_name_string(_which))
    for _key, _oid in NAME_ATTRIBUTES.items():
        READERS[f"{_which}.{_key}"] = _name_readers(_which, _oid, _key)

# -- extensions -----------------------------------------------------------------------------


def _multi(field: str, what: str) -> Readers:
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

    return Readers(read, read_all=read_all)


_MULTI = {
    "san.dns": ("san_dns", "DNS SAN"),
    "san.uri": ("san_uri", "URI SAN"),
    "san.email": ("san_email", "email SAN"),
    "san.ip": ("san_ip", "IP address SAN"),
    "san.upn": ("san_upn", "UPN SAN"),
    "eku": ("eku", "extended key usage"),
    "key_usage": ("key_usage", "key usage"),
    "certificate_policies": ("certificate_policies", "certificate policy"),
}
"""Each multi-valued extension: the facts field it reads, and what one value is called."""

for _name, (_field, _what) in _MULTI.items():
    READERS[_name] = _multi(_field, _what)

_SINGLE = {
    "spiffe_id": "spiffe_id",
    "version": "version",
    "lifetime": "lifetime",
    "key.type": "key_type",
    "key.size": "key_size",
    "key.curve": "key_curve",
    "signature.algorithm": "signature_algorithm",
    "signature.hash": "signature_hash",
    "is_ca": "is_ca",
    "path_length": "path_length",
    "subject_key_id": "subject_key_id",
    "authority_key_id": "authority_key_id",
}
"""Each single-valued extension or key fact: the facts field it reads."""

for _name, _field in _SINGLE.items():
    READERS[_name] = Readers(_fact(_field))

# -- identity -------------------------------------------------------------------------------

_NO_IDENTITY = Missing("no identity was worked out for this request")


def _principal(ctx: Context) -> object:
    identity = ctx.identity
    return _NO_IDENTITY if identity is None else identity.principal_value()


def _identity_values(value_of: Callable[[Identity], tuple[str, ...]], what: str) -> Readers:
    """Readers of a multi-valued part of the identity (groups, roles)."""

    def read_all(ctx: Context) -> tuple[object, ...] | Missing:
        identity = ctx.identity
        return _NO_IDENTITY if identity is None else value_of(identity)

    def read(ctx: Context) -> object:
        values = read_all(ctx)
        if isinstance(values, Missing) or len(values) == 1:
            return values if isinstance(values, Missing) else values[0]
        return Missing(f"{len(values)} {what}" if values else f"no {what}")

    return Readers(read, read_all=read_all)


READERS["principal"] = Readers(_principal)
READERS["groups"] = _identity_values(lambda identity: identity.groups_value(), "groups")
READERS["roles"] = _identity_values(lambda identity: identity.roles_value(), "roles hold")

# -- the request ----------------------------------------------------------------------------


def _request(field: str) -> Reader:
    def read(ctx: Context) -> object:
        return getattr(ctx, field)

    return read


for _field in ("path", "method", "host"):
    READERS[f"request.{_field}"] = Readers(_request(_field))

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


READERS["proxy.verified"] = Readers(_proxy_verified, why=_proxy_verified_why)
READERS["proxy.verify"] = Readers(_proxy_verify)

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
        if store is not None and store.settings.revocation == "hard":
            return True
        ctx.soft = result.revocation_detail  # the decision's message says it was let pass
        return False
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


def _chain_length(ctx: Context) -> int | Missing:
    result = ctx.trust()
    if isinstance(result, Missing):
        return result
    if not result.trusted:
        return Missing(f"no trusted chain was built: {result.reason}")
    return len(result.chain)


READERS["trusted"] = Readers(_trusted, why=_trusted_why)
READERS["revoked"] = Readers(_revoked, why=_revoked_why)
READERS["chain.length"] = Readers(_chain_length)

Pick = Callable[[Context], Context | Missing]


def _chain_member(position: int) -> Pick:
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


def _through(pick: Pick, read: Reader) -> Reader:
    def reader(ctx: Context) -> object:
        member = pick(ctx)
        return member if isinstance(member, Missing) else read(member)

    return reader


def _through_all(pick: Pick, read_all: ReadAll) -> ReadAll:
    def reader(ctx: Context) -> tuple[object, ...] | Missing:
        member = pick(ctx)
        return member if isinstance(member, Missing) else read_all(member)

    return reader


def _chain_readers(pick: Pick, leaf: Readers) -> Readers:
    """A leaf attribute's readers, applied to a certificate of the trusted chain."""
    return Readers(
        _through(pick, leaf.read),
        read_all=_through_all(pick, leaf.read_all) if leaf.read_all else None,
        read_token=_through(pick, leaf.read_token)  # type: ignore[arg-type]
        if leaf.read_token
        else None,
    )


_CHAIN_POSITIONS = {"chain.root.": -1, "chain.issuer.": 1}
"""Where in the trusted chain (leaf first) each chain member's facts are read."""

_PICKS = {prefix: _chain_member(position) for prefix, position in _CHAIN_POSITIONS.items()}

for _name, _attribute in VOCABULARY.items():
    if _attribute.prefix:
        _leaf = READERS[_name.removeprefix(_attribute.prefix)]
        READERS[_name] = _chain_readers(_PICKS[_attribute.prefix], _leaf)
