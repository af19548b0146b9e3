"""Revocation: the ``revoked`` predicate, for a chain that :mod:`~policyengine.request.trust`
has built.

:class:`Revocation` holds a trust store's ``revocation:`` settings and its kinds of
evidence, and decides a chain: every certificate below the anchor (``check: chain``) or the
leaf alone (``check: leaf``) is asked about, each of its issuer, kind by kind, the first
definite answer (good or revoked) winning. The chain is revoked when any certificate is,
else unknown when any is unknown, else good.

One kind of evidence today, :class:`CrlEvidence`: the CRLs listed in the policy. For each
certificate, the newest complete CRL of its issuer decides (highest CRL number, then latest
``this_update``); a CRL that is no evidence (an issuer without cRLSign, no or a critical
CRL number, a critical extension not processed, an indirect or delta CRL, a scope that
excludes the certificate) leaves the status unknown. A newer delta CRL, or the issuer's
signed word in a CRL that cannot prove a certificate good, can still revoke (fail closed).
Another kind (OCSP) is a class with the three methods of :class:`Evidence`.

Owns reading what a CRL says (:class:`Crl`), not reading CRL files (trust.py loads them).
Imports cryptography and the request side's own modules, never ``language/`` or
``evaluation/``, and never trust.py (which imports this module).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import ClassVar, NamedTuple, Protocol

from cryptography import x509

from policyengine.request.certificate import first_unreadable
from policyengine.request.extensions import is_ca
from policyengine.values import format_serial, format_time

__all__ = [
    "REVOCATION_CHECKS",
    "REVOCATION_MODES",
    "Crl",
    "CrlEvidence",
    "Evidence",
    "Finding",
    "NotACrl",
    "Revocation",
]

REVOCATION_MODES = ("off", "soft", "hard")
REVOCATION_CHECKS = ("chain", "leaf")

Problem = tuple[str, int, str]
"""What ``policyengine check`` reports: ``(field of trust:, index in it, message)``."""


class Finding(NamedTuple):
    """One answer about revocation: of one certificate, or of a whole chain."""

    status: str
    """``good``, ``revoked``, ``unknown`` (or ``off``, for a chain when checking is off)."""
    detail: str
    """Why, in plain words: which evidence said so."""
    next_update: datetime | None
    """The earliest time the evidence consulted may be superseded, when it says."""


class Evidence(Protocol):
    """One kind of evidence of revocation (CRL files, OCSP responses)."""

    local: ClassVar[bool]
    """Read from the policy's own files (CRLs), not fetched: a revocation it shows stands
    even after another kind said good (:meth:`Revocation._status_of`)."""

    def status(self, cert: x509.Certificate, issuer: x509.Certificate, now: datetime) -> Finding:
        """What this kind of evidence says of ``cert``, issued by ``issuer``, at ``now``."""
        ...

    def moments(self, issuers: Collection[x509.Name]) -> Iterator[datetime]:
        """Every time at which an answer about a certificate of one of ``issuers`` may
        change, whichever side of now it is: the bounds of a cached verification."""
        ...

    def problems(self, known: Sequence[x509.Certificate], now: datetime) -> list[Problem]:
        """What is wrong with the evidence itself, for ``policyengine check``; ``known`` are
        the trust store's anchors and intermediates."""
        ...


@dataclass(frozen=True, slots=True)
class Revocation:
    """A trust store's revocation settings and evidence: the revocation status of a chain."""

    mode: str
    """``off``, ``soft`` or ``hard`` (what an unknown status does is the engine's affair)."""
    check: str
    """``chain``: every certificate below the anchor; ``leaf``: the leaf only."""
    evidence: tuple[Evidence, ...]
    """Asked in this order, for each checked certificate; the first definite answer wins."""

    def checked(
        self, chain: Sequence[x509.Certificate]
    ) -> list[tuple[x509.Certificate, x509.Certificate]]:
        """``(certificate, its issuer)`` for each certificate whose status is checked.

        Every certificate below the anchor (``check: chain``), or the leaf alone (``check:
        leaf``). A leaf that is itself an anchor is checked against CRLs it signed.
        """
        pairs = [(cert, chain[index + 1]) for index, cert in enumerate(chain[:-1])]
        if not pairs:
            pairs = [(chain[0], chain[0])]
        return pairs[:1] if self.check == "leaf" else pairs

    def status(self, chain: Sequence[x509.Certificate], now: datetime) -> Finding:
        """The status of the built chain (leaf first), with the earliest ``next_update``
        consulted.

        Revoked when any checked certificate is revoked; else unknown when any is unknown;
        else good. The leaf's words come first and bare, an intermediate's after its name.
        """
        if self.mode == "off":
            return Finding("off", "revocation checking is off", None)
        earliest: datetime | None = None
        unknown: list[str] = []
        good: list[str] = []
        for index, (cert, issuer) in enumerate(self.checked(chain)):
            status, detail, next_update = self._status_of(cert, issuer, now)
            if next_update is not None:
                earliest = next_update if earliest is None else min(earliest, next_update)
            who = "" if index == 0 else f"intermediate {cert.subject.rfc4514_string()}: "
            if status == "revoked":
                return Finding("revoked", f"{who or 'the certificate: '}{detail}", earliest)
            (unknown if status == "unknown" else good).append(who + detail)
        if unknown:
            return Finding("unknown", "; ".join(unknown), earliest)
        return Finding("good", "; ".join(good), earliest)

    def _status_of(
        self, cert: x509.Certificate, issuer: x509.Certificate, now: datetime
    ) -> Finding:
        """One certificate's status: the first kind of evidence that knows decides; but a
        good answer fetched from the network (OCSP, which has no nonce here, so an old good
        answer may be replayed until it expires) does not outweigh the issuer's signed word
        in a CRL file of the policy's that lists the certificate."""
        unknown: list[Finding] = []
        for index, evidence in enumerate(self.evidence):
            finding = evidence.status(cert, issuer, now)
            if finding.status == "good":
                for later in self.evidence[index + 1 :]:
                    if later.local and (listed := later.status(cert, issuer, now)).status == (
                        "revoked"
                    ):
                        return listed
            if finding.status != "unknown":
                return finding
            unknown.append(finding)
        updates = [f.next_update for f in unknown if f.next_update is not None]
        return Finding("unknown", "; ".join(f.detail for f in unknown), min(updates, default=None))

    def window(
        self,
        chain: Sequence[x509.Certificate],
        now: datetime,
        valid_from: datetime,
        valid_until: datetime,
    ) -> tuple[datetime, datetime]:
        """``valid_from`` and ``valid_until`` narrowed to the time in which no evidence
        consulted for ``chain`` changes its answer (a cached result's window)."""
        if self.mode == "off":
            return valid_from, valid_until
        # a CRL's answer changes at its last_update and its next_update, whichever side
        # of ``now`` they are (not valid yet, fresh, stale), not only at a fresh next_update
        issuers = {cert.issuer for cert, _ in self.checked(chain)}
        for evidence in self.evidence:
            for moment in evidence.moments(issuers):
                if moment <= now:
                    valid_from = max(valid_from, moment)
                else:
                    valid_until = min(valid_until, moment)
        return valid_from, valid_until

    def problems(self, known: Sequence[x509.Certificate], now: datetime) -> list[Problem]:
        """What is wrong with the evidence, for ``policyengine check``."""
        return [problem for evidence in self.evidence for problem in evidence.problems(known, now)]


class NotACrl(ValueError):
    """Bytes that are no CRL at all: ``is not a CRL: why``."""


@dataclass(frozen=True, slots=True)
class Crl:
    """A CRL as loaded, with what can be said about it without a certificate at hand."""

    crl: x509.CertificateRevocationList
    name: str
    number: int | None = None
    """Its CRL number, or None when it has none."""
    delta: bool = False
    """A delta CRL (deltaCRLIndicator): never used, only complete CRLs are."""
    scope: x509.IssuingDistributionPoint | None = None
    """Its issuing distribution point, which limits the certificates it covers."""
    problem: str = ""
    """Why it can never be evidence (empty when it can)."""
    signer: x509.Certificate | None = None
    """The issuer its signature was checked against when it was fetched (not again)."""

    def signed_by(self, issuer: x509.Certificate) -> bool:
        """Whether ``issuer``'s key verifies its signature."""
        return (self.signer is not None and self.signer == issuer) or _signed_by(self.crl, issuer)

    @classmethod
    def load(cls, data: bytes, name: str) -> Crl:
        """A CRL's bytes (DER, or PEM) read wholly: raises :class:`NotACrl` for what is no
        CRL, ValueError saying what cannot be read of one cryptography loads only in part."""
        try:
            # DER is a SEQUENCE long enough to need a long-form length; PEM may have text first
            der = data[:1] == b"\x30" and data[1:2] in (b"\x81", b"\x82", b"\x83", b"\x84")
            pem = not der and b"-----BEGIN" in data
            crl = x509.load_pem_x509_crl(data) if pem else x509.load_der_x509_crl(data)
        except ValueError as exc:
            raise NotACrl(f"is not a CRL: {exc}") from None
        problem = _unreadable_crl(crl)
        if problem:
            raise ValueError(problem)
        return cls.read(crl, name)

    @classmethod
    def read(cls, crl: x509.CertificateRevocationList, name: str) -> Crl:
        number: int | None = None
        delta = False
        scope: x509.IssuingDistributionPoint | None = None
        problems: list[str] = []
        try:
            extensions = list(crl.extensions)
        except Exception as exc:  # a malformed extension is refused when read
            return cls(crl, name, problem=f"its extensions cannot be read ({exc})")
        for extension in extensions:
            value = extension.value
            if isinstance(value, x509.CRLNumber):
                number = value.crl_number
                if extension.critical:
                    problems.append(
                        "its CRL number extension is marked critical (RFC 5280 requires it "
                        "non-critical)"
                    )
            elif isinstance(value, x509.DeltaCRLIndicator):
                delta = True
            elif isinstance(value, x509.IssuingDistributionPoint):
                scope = value
                if value.indirect_crl:
                    problems.append(
                        "it is an indirect CRL (it may list other issuers' certificates), "
                        "which policyengine does not use"
                    )
            elif extension.critical and extension.oid not in _UNDERSTOOD_CRL_EXTENSIONS:
                problems.append(
                    f"it carries a critical extension policyengine does not process "
                    f"({_extension_name(extension.oid)})"
                )
        if number is None:
            problems.append("it has no CRL number (RFC 5280 requires one)")
        entry_problem = _entry_problem(crl)
        if entry_problem:
            problems.append(entry_problem)
        return cls(crl, name, number, delta, scope, "; ".join(problems))

    def newness(self, by_number: bool) -> tuple[int, datetime]:
        """The sort key of "newest": CRL number first when every candidate has one."""
        if by_number and self.number is not None:
            return (self.number, self.crl.last_update_utc)
        return (0, self.crl.last_update_utc)

    def out_of_scope(self, cert: x509.Certificate) -> str:
        """Why this CRL does not cover ``cert`` (empty when it does)."""
        if self.delta:
            return (
                "is a delta CRL (deltaCRLIndicator): it never proves a certificate good, "
                "only a complete CRL does"
            )
        scope = self.scope
        if scope is None:
            return ""
        if scope.only_contains_attribute_certs:
            return "covers attribute certificates only"
        if scope.only_some_reasons:
            return "covers only some revocation reasons, so it is not complete"
        cert_is_ca = is_ca(cert)
        if scope.only_contains_ca_certs and not cert_is_ca:
            return "covers CA certificates only, and this is not a CA certificate"
        if scope.only_contains_user_certs and cert_is_ca:
            return "covers end-entity certificates only, and this is a CA certificate"
        named = scope.full_name is not None or scope.relative_name is not None
        if named and not _distribution_point_matches(scope, cert):
            return (
                "covers the certificates of another distribution point (its issuing "
                "distribution point names none of the certificate's CRL distribution "
                "points)"
            )
        return ""


@dataclass(frozen=True, slots=True)
class CrlEvidence:
    """The CRLs a policy lists, as evidence: the newest complete CRL of an issuer decides."""

    crls: tuple[Crl, ...]
    local: ClassVar[bool] = True

    def status(self, cert: x509.Certificate, issuer: x509.Certificate, now: datetime) -> Finding:
        """What the CRLs say of ``cert``; when the newest complete CRL cannot say, whether a
        CRL of its issuer lists it all the same (:meth:`listed`)."""
        finding = self._newest_says(cert, issuer, now)
        if finding.status == "unknown":
            return self.listed(cert, issuer, now) or finding
        return finding

    def _newest_says(
        self, cert: x509.Certificate, issuer: x509.Certificate, now: datetime
    ) -> Finding:
        """One certificate's status: the newest complete CRL of its issuer decides.

        Of the CRLs that can speak for the certificate (:meth:`_in_effect`), the newest
        decides: the highest CRL number, or the latest ``last_update`` when numbers tie or
        some are absent. When it cannot be used (expired, or one of the defects that make a
        CRL no evidence), the status is unknown: an older CRL is not consulted instead.
        """
        notes: list[str] = []
        in_effect = self._in_effect(cert, issuer, now, notes)
        if not in_effect:
            if notes:
                return Finding("unknown", "; ".join(notes), None)
            return Finding("unknown", f"no CRL from {cert.issuer.rfc4514_string()}", None)
        by_number = all(entry.number is not None for entry in in_effect)
        newest_key = max(entry.newness(by_number) for entry in in_effect)
        newest = [entry for entry in in_effect if entry.newness(by_number) == newest_key]
        serial = format_serial(cert.serial_number)
        for entry in newest:
            if entry.problem:
                return Finding("unknown", f"CRL {entry.name} cannot be used: {entry.problem}", None)
        for entry in newest:
            next_update = entry.crl.next_update_utc
            if next_update is not None and next_update <= now:
                when = format_time(next_update)
                return Finding("unknown", f"CRL {entry.name} expired on {when}", None)
        # equally new CRLs (a CA's copy served twice): any one that lists it decides
        for entry in newest:
            revoked = entry.crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            if revoked is not None:
                when = format_time(revoked.revocation_date_utc)
                return Finding(
                    "revoked",
                    f"serial {serial} revoked on {when} (CRL {entry.name})",
                    entry.crl.next_update_utc,
                )
        entry = newest[0]
        delta = self.listed(cert, issuer, now, deltas_after=entry.number)
        if delta is not None:
            return delta
        next_update = entry.crl.next_update_utc
        until = f", fresh until {format_time(next_update)}" if next_update else ""
        return Finding(
            "good", f"serial {serial} not listed in CRL {entry.name}{until}", next_update
        )

    def _in_effect(
        self, cert: x509.Certificate, issuer: x509.Certificate, now: datetime, notes: list[str]
    ) -> list[Crl]:
        """The CRLs that can speak for ``cert`` at ``now``; why each other one cannot goes
        to ``notes``.

        They name the certificate's issuer, are signed with its key (which may sign CRLs),
        cover the certificate (not a delta CRL; an issuing distribution point that includes
        it) and are in effect (``last_update`` passed).
        """
        named = [entry for entry in self.crls if entry.crl.issuer == cert.issuer]
        authentic: list[Crl] = []
        for entry in named:
            if entry.signed_by(issuer):
                authentic.append(entry)
            else:
                notes.append(f"CRL {entry.name} is not signed by {issuer.subject.rfc4514_string()}")
        if authentic and _lacks_crl_sign(issuer):
            names = ", ".join(entry.name for entry in authentic)
            notes.append(
                f"CRL {names} cannot be used: the key usage of its issuer "
                f"{issuer.subject.rfc4514_string()} does not include cRLSign"
            )
            authentic = []
        in_effect: list[Crl] = []
        for entry in authentic:
            why = entry.out_of_scope(cert)
            if why:
                notes.append(f"CRL {entry.name} {why}")
            elif entry.crl.last_update_utc > now:
                when = format_time(entry.crl.last_update_utc)
                notes.append(f"CRL {entry.name} is not valid before {when}")
            else:
                in_effect.append(entry)
        return in_effect

    def listed(
        self,
        cert: x509.Certificate,
        issuer: x509.Certificate,
        now: datetime,
        *,
        deltas_after: int | None = -1,
    ) -> Finding | None:
        """Revocation by a CRL that cannot say "good": the issuer's own signed word that
        the certificate is revoked is evidence enough to deny (fail closed), whether the CRL
        is a delta, expired, or has a defect that keeps it from proving anything else.

        With ``deltas_after`` (the number of the complete CRL that found the certificate
        good), only delta CRLs newer than it count: a revocation published in a delta after
        the base is not lost. A removeFromCRL entry (a hold lifted) revokes nothing."""
        for entry in self.crls:
            if entry.crl.issuer != cert.issuer or entry.crl.last_update_utc > now:
                continue
            if deltas_after != -1:
                newer = entry.number is None or deltas_after is None or entry.number > deltas_after
                if not (entry.delta and newer):
                    continue
            scoped = replace(entry, delta=False)
            if scoped.out_of_scope(cert) or not entry.signed_by(issuer):
                continue
            revoked = entry.crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            if revoked is None or _reason(revoked) is x509.ReasonFlags.remove_from_crl:
                continue
            if entry.delta:
                source = f"delta CRL {entry.name}, newer than the complete CRL"
            else:
                source = f"CRL {entry.name}, signed by the issuer; no usable CRL says otherwise"
            return Finding(
                "revoked",
                f"serial {format_serial(cert.serial_number)} revoked on "
                f"{format_time(revoked.revocation_date_utc)} ({source})",
                None,
            )
        return None

    def moments(self, issuers: Collection[x509.Name]) -> Iterator[datetime]:
        """The ``last_update`` and ``next_update`` of every CRL of one of ``issuers``."""
        for entry in self.crls:
            if entry.crl.issuer not in issuers:
                continue
            for moment in (entry.crl.last_update_utc, entry.crl.next_update_utc):
                if moment is not None:
                    yield moment

    def problems(self, known: Sequence[x509.Certificate], now: datetime) -> list[Problem]:
        """Expired CRLs, CRLs no known CA signed, delta CRLs and CRLs that cannot be used."""
        found: list[Problem] = []
        for index, entry in enumerate(self.crls):
            next_update = entry.crl.next_update_utc
            if next_update is not None and next_update < now:
                when = format_time(next_update)
                found.append(("crls", index, f"CRL {entry.name} expired on {when}"))
            signers = [
                c for c in known if c.subject == entry.crl.issuer and _signed_by(entry.crl, c)
            ]
            if not signers:
                issuer = entry.crl.issuer.rfc4514_string()
                found.append(
                    ("crls", index, f"CRL {entry.name} is not signed by a known CA ({issuer})")
                )
            if entry.delta:
                found.append(
                    (
                        "crls",
                        index,
                        f"CRL {entry.name} is a delta CRL: it never proves a certificate good, "
                        "and is consulted only for revocations newer than the complete CRL",
                    )
                )
            if entry.problem:
                found.append(("crls", index, f"CRL {entry.name} cannot be used: {entry.problem}"))
            if signers and all(_lacks_crl_sign(c) for c in signers):
                issuer = signers[0].subject.rfc4514_string()
                found.append(
                    (
                        "crls",
                        index,
                        f"CRL {entry.name} cannot be used: the key usage of its issuer {issuer} "
                        "does not include cRLSign",
                    )
                )
        return found


_UNDERSTOOD_CRL_EXTENSIONS = frozenset(
    {
        x509.oid.ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        x509.oid.ExtensionOID.ISSUER_ALTERNATIVE_NAME,
    }
)
"""Critical CRL extensions that do not stop a CRL from being used (besides the CRL number,
deltaCRLIndicator and issuing distribution point, which are handled by name)."""

_UNDERSTOOD_ENTRY_EXTENSIONS = frozenset(
    {
        x509.oid.CRLEntryExtensionOID.CRL_REASON,
        x509.oid.CRLEntryExtensionOID.INVALIDITY_DATE,
    }
)


def _extension_name(oid: x509.ObjectIdentifier) -> str:
    name = oid._name
    return oid.dotted_string if name == "Unknown OID" else f"{name}, {oid.dotted_string}"


def _entry_problem(crl: x509.CertificateRevocationList) -> str:
    """Why the CRL's entries make it unusable: a critical entry extension not understood
    (RFC 5280 5.3: such a CRL must not be used for any certificate), or a certificate issuer
    entry (an indirect CRL)."""
    try:
        for revoked in crl:
            for extension in revoked.extensions:
                if extension.oid == x509.oid.CRLEntryExtensionOID.CERTIFICATE_ISSUER:
                    return (
                        "an entry names another certificate issuer (an indirect CRL), which "
                        "policyengine does not use"
                    )
                if extension.critical and extension.oid not in _UNDERSTOOD_ENTRY_EXTENSIONS:
                    return (
                        f"an entry carries a critical extension policyengine does not process "
                        f"({_extension_name(extension.oid)})"
                    )
    except Exception as exc:  # a malformed entry is refused when read
        return f"its entries cannot be read ({exc})"
    return ""


def _unreadable_crl(crl: x509.CertificateRevocationList) -> str:
    """What cannot be read of a CRL cryptography loaded, or "" when all can."""

    def entries() -> None:
        for entry in crl:
            _ = (
                entry.serial_number,
                entry.revocation_date_utc,
                [e.value for e in entry.extensions],
            )

    fields: tuple[tuple[str, Callable[[], object]], ...] = (
        ("issuer", lambda: crl.issuer.rfc4514_string()),
        ("validity", lambda: (crl.last_update_utc, crl.next_update_utc)),
        ("extensions", lambda: [e.value for e in crl.extensions]),
        ("revoked certificates", entries),
    )
    return first_unreadable(fields, "this CRL")


def _lacks_crl_sign(issuer: x509.Certificate) -> bool:
    """The issuer has a key usage extension without cRLSign (none at all is accepted,
    RFC 5280 6.3.3 (f)); one that cannot be read counts as lacking it."""
    try:
        usage = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return False
    except Exception:
        return True
    return not usage.crl_sign


def _distribution_point_matches(
    scope: x509.IssuingDistributionPoint, cert: x509.Certificate
) -> bool:
    """The certificate names, among its CRL distribution points, the one of the CRL's
    issuing distribution point (RFC 5280 6.3.3 (b)(2)(i)); a certificate naming none is
    not covered (fail closed)."""
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except Exception:
        return False
    for point in points:
        if scope.full_name and point.full_name and set(scope.full_name) & set(point.full_name):
            return True
        if scope.relative_name and scope.relative_name == point.relative_name:
            return True
    return False


def _reason(revoked: x509.RevokedCertificate) -> x509.ReasonFlags | None:
    try:
        return revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except Exception:  # none given, or unreadable: a revocation all the same
        return None


def _signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    """Whether ``issuer``'s key verifies the CRL's signature (False on any error)."""
    try:
        return bool(crl.is_signature_valid(issuer.public_key()))  # type: ignore[arg-type]
    except Exception:
        return False
