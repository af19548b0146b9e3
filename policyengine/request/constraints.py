"""Name constraints that ``cryptography``'s verifier does not apply, applied to a built chain.

``cryptography`` checks a CA's DNS, IP and email name constraints against the subject
alternative names below it, and refuses a critical constraint on directory names. Client
certificates often have no SAN, and a policy reads their subject (``subject.CN``,
``subject.emailAddress``, ``subject.O``), so a CA constrained to ``example.com`` could
otherwise issue ``CN=www.evil.com`` without a SAN and have it trusted. As OpenSSL does,
:func:`name_constraint_violation` checks, against every CA of the chain above it:

- the leaf's subject CN, when it reads as a DNS name and the leaf has no dNSName SAN,
  against the CA's DNS constraints;
- every subject emailAddress against its email (rfc822Name) constraints;
- every subject, and every directoryName SAN, against its directoryName constraints (only a
  non-critical extension can hold one here: the verifier refuses a critical one).

A self-issued intermediate's subject is not checked (RFC 5280 6.1.3), the leaf's always is.
Permitted subtrees of a kind bind every name of that kind; an excluded subtree that matches
refuses. As in OpenSSL, a certificate whose names times the CA's constraints exceed a
bound is refused outright: the check must stay cheap whatever an issuer wrote.

Owns :func:`name_constraint_violation`, which ``trust.py`` calls on a verified chain.
Imports cryptography only: nothing of ``language/``, ``evaluation/`` or the rest of
``request/``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from cryptography import x509
from cryptography.x509.oid import NameOID

__all__ = ["MAX_NAME_CHECKS", "name_constraint_violation"]

MAX_NAME_CHECKS = 1 << 16
"""A certificate's names (subject attributes and SAN entries) times a CA's constraints
(permitted and excluded subtrees) may not exceed this; OpenSSL bounds it the same way."""

_DNS_NAME = re.compile(r"[^\s@.]+(?:\.[^\s@.]+)+\.?")
"""Two dot-separated labels or more, without spaces or ``@``: a CN that may be read as a
host name (``www.evil.com``), not one that names a person (``J. Smith``) or a service.
Looser than a host name on purpose (fail closed): a label of 64 characters or one that is
not LDH (``büro.evil.com``) is checked too, since a rule on ``subject.CN`` reads it all
the same."""

_NAME_CONSTRAINTS_OID = b"\x06\x03\x55\x1d\x1e"
"""The DER of OID 2.5.29.30: a CA whose signed bytes lack it has no name constraints."""

_KINDS = {x509.DNSName: "DNS", x509.RFC822Name: "email", x509.DirectoryName: "directoryName"}


def name_constraint_violation(chain: Sequence[x509.Certificate]) -> str:
    """Why the chain (leaf first) breaks a name constraint, or ``""`` when it does not."""
    try:
        for index in range(1, len(chain)):
            ca = chain[index]
            if _NAME_CONSTRAINTS_OID not in ca.tbs_certificate_bytes:
                continue  # no name constraints: nothing to read
            try:
                extensions = ca.extensions
            except Exception as exc:  # the verifier read it, the Python layer cannot
                role = "anchor" if index == len(chain) - 1 else "intermediate"
                return (
                    f"the extensions of {role} {_name(ca)} cannot be read ({exc}), so its name "
                    "constraints cannot be checked"
                )
            try:
                constraints = extensions.get_extension_for_class(x509.NameConstraints).value
            except x509.ExtensionNotFound:
                continue
            permitted = list(constraints.permitted_subtrees or ())
            excluded = list(constraints.excluded_subtrees or ())
            count = len(permitted) + len(excluded)
            for position, cert in enumerate(chain[:index]):
                if position > 0 and cert.subject == cert.issuer:
                    continue  # a self-issued intermediate
                found = _check(cert, position == 0, ca, permitted, excluded, count)
                if found:
                    return found
    except Exception as exc:  # an unreadable name or constraint: fail closed
        return f"the name constraints cannot be checked: {exc}"
    return ""


def _check(
    cert: x509.Certificate,
    is_leaf: bool,
    ca: x509.Certificate,
    permitted: list[x509.GeneralName],
    excluded: list[x509.GeneralName],
    count: int,
) -> str:
    try:
        sans = list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        sans = []
    names = len(cert.subject.rdns) + len(sans)
    who = "the certificate" if is_leaf else f"intermediate {cert.subject.rfc4514_string()}"
    if names * count > MAX_NAME_CHECKS:
        return (
            f"{who} has {names} names and {_name(ca)} has {count} name constraints: more "
            f"than {MAX_NAME_CHECKS} checks, refused"
        )
    for kind, value, label in _constrained_names(cert, is_leaf, sans):
        same = [c for c in permitted if _KINDS.get(type(c)) == kind]
        if same and not any(_within(kind, value, c.value, excluded=False) for c in same):
            return (
                f"permitted subtree violation: {who}'s {label} is outside the {kind} name "
                f"constraints of {_name(ca)} (permitted: {_list(same)})"
            )
        for constraint in excluded:
            if _KINDS.get(type(constraint)) == kind and _within(
                kind, value, constraint.value, excluded=True
            ):
                return (
                    f"excluded subtree violation: {who}'s {label} is within the excluded "
                    f"{kind} name constraint {_show(constraint)} of {_name(ca)}"
                )
    return ""


def _constrained_names(
    cert: x509.Certificate, is_leaf: bool, sans: list[x509.GeneralName]
) -> Iterator[tuple[str, object, str]]:
    """``(kind, value, how the reason names it)`` for each name this module checks."""
    if is_leaf:  # with or without a dNSName SAN: a rule on subject.CN reads the CN
        for attribute in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
            cn = attribute.value
            if isinstance(cn, str) and _DNS_NAME.fullmatch(cn):
                yield "DNS", cn, f"subject CN {cn}"
    for attribute in cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS):
        email = attribute.value
        yield "email", email, f"subject emailAddress {email!s}"
    yield "directoryName", cert.subject, f"subject {cert.subject.rfc4514_string() or '(empty)'}"
    for name in sans:
        if isinstance(name, x509.DirectoryName):
            shown = name.value.rfc4514_string()
            yield "directoryName", name.value, f"directoryName SAN {shown}"


def _within(kind: str, value: object, constraint: object, *, excluded: bool) -> bool:
    if kind == "DNS":
        return _dns_within(str(value), str(constraint), excluded)
    if kind == "email":
        return _email_within(value, str(constraint))
    assert isinstance(value, x509.Name) and isinstance(constraint, x509.Name)
    return _dn_within(value, constraint)


def _dns_within(name: str, constraint: str, excluded: bool) -> bool:
    """``name`` is ``constraint`` or below it; for an excluded subtree, a wildcard name
    matches when any name it stands for could be (the fail-closed reading)."""
    name = name.lower().rstrip(".")
    constraint = constraint.lower().rstrip(".")
    if not constraint:
        return True
    if constraint.startswith("."):
        return name.endswith(constraint)
    if name == constraint or name.endswith("." + constraint):
        return True
    if excluded and name.startswith("*."):
        rest = name[2:]
        return constraint == rest or constraint.endswith("." + rest)
    return False


def _email_within(value: object, constraint: str) -> bool:
    """RFC 5280 4.2.1.10: a mailbox (``a@host``), every mailbox at a host (``host``), or at
    every host below a domain (``.domain``). An address without ``@`` is within nothing,
    so a permitted subtree refuses it."""
    if not isinstance(value, str) or "@" not in value:
        return False
    local, _, host = value.rpartition("@")
    host = host.lower()
    if "@" in constraint:
        want_local, _, want_host = constraint.rpartition("@")
        return local == want_local and host == want_host.lower()
    if constraint.startswith("."):
        return host.endswith(constraint.lower())
    return host == constraint.lower()


def _dn_within(name: x509.Name, constraint: x509.Name) -> bool:
    """The constraint's RDNs begin the name's, compared without case or extra spaces."""
    have, want = name.rdns, constraint.rdns
    if len(want) > len(have):
        return False
    return all(_rdn(a) == _rdn(b) for a, b in zip(have, want, strict=False))


def _rdn(rdn: x509.RelativeDistinguishedName) -> frozenset[tuple[str, object]]:
    return frozenset(
        (
            attribute.oid.dotted_string,
            " ".join(attribute.value.split()).casefold()
            if isinstance(attribute.value, str)
            else attribute.value,
        )
        for attribute in rdn
    )


def _name(ca: x509.Certificate) -> str:
    return ca.subject.rfc4514_string()


def _show(constraint: x509.GeneralName) -> str:
    value = constraint.value
    return value.rfc4514_string() if isinstance(value, x509.Name) else str(value)


def _list(constraints: list[x509.GeneralName], most: int = 3) -> str:
    shown = ", ".join(_show(c) for c in constraints[:most])
    more = len(constraints) - most
    return shown + (f" and {more} more" if more > 0 else "")
