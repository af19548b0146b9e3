"""Chain of trust and revocation: the ``trusted`` and ``revoked`` predicates.

A :class:`TrustStore` is built once per policy from its ``trust:`` section: anchors,
known intermediates, CRLs, and the verifier settings. :meth:`TrustStore.verify` decides one
certificate with ``cryptography``'s own path builder (``cryptography.x509.verification``),
configured for client certificates as they are found in the wild:

- the end-entity policy is WebPKI's, except that a subject alternative name may be absent
  or critical (client certificates often have none, or one beside a subject); a
  certificate with an empty subject must still have one, marked critical;
- with ``client_auth_eku: required`` the extended key usage must be present and hold
  clientAuth; with ``optional`` it may be absent, but when present it must hold clientAuth
  (a serverAuth-only certificate never passes). Either way it must not be critical, as in
  the WebPKI policy. ``ExtensionPolicy.permit_all()`` is not used: it would silently drop
  those checks.

A chain the verifier built is then held to the name constraints it does not apply (a
SAN-less leaf's CN and emailAddress, subjects under directoryName subtrees): see
:mod:`policyengine.request.constraints`.

Forwarded intermediates are attacker-controlled. Before path building they are capped,
stripped of byte-identical copies, and of certificates that cannot be issuers (not CAs, or
naming no issuer on the way up from the leaf). ``cryptography`` 49 and newer also bound the
signature checks a path search may do.

Revocation (``revocation: mode``) checks every certificate below the anchor (``check:
chain``) or the leaf alone (``check: leaf``). For each, the newest complete CRL of its issuer
decides (highest CRL number, then latest ``this_update``); a CRL that is no evidence (an
issuer without cRLSign, no or a critical CRL number, a critical extension not processed, an
indirect or delta CRL, a scope that excludes the certificate) leaves the status unknown.

Results are cached per (leaf, forwarded intermediates) and reused while the evaluation time
stays within the window in which they cannot change: between the latest ``not_before`` and
the earliest ``not_after`` in the chain and the ``this_update``/``next_update`` of every
CRL of a checked certificate's issuer.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from policyengine.errors import CertificateError, TrustError
from policyengine.oids import EKU_NAMES
from policyengine.request.certificate import (
    CertificateFacts,
    parse_error_in_words,
    read_certificate,
)
from policyengine.request.constraints import name_constraint_violation
from policyengine.request.der import PEM_BEGIN
from policyengine.values import format_serial, format_time

__all__ = [
    "REVOCATION_CHECKS",
    "REVOCATION_MODES",
    "TrustError",
    "TrustResult",
    "TrustSettings",
    "TrustStore",
]

REVOCATION_MODES = ("off", "soft", "hard")
REVOCATION_CHECKS = ("chain", "leaf")
MAX_FORWARDED_CANDIDATES = 8
"""At most this many forwarded intermediates reach the path builder."""
_FAILURE_TTL = timedelta(seconds=60)
_SECOND = timedelta(seconds=1)
"""Validity is compared to the second, as the verifier does (X.509 times are whole seconds)."""


@dataclass(frozen=True, slots=True)
class TrustSettings:
    """The ``trust:`` section, with file names resolved against the policy's folder."""

    anchors: tuple[Path, ...]
    intermediates: tuple[Path, ...] = ()
    header_intermediates: bool = True
    max_chain_depth: int = 4
    client_auth_eku: str = "required"
    crls: tuple[Path, ...] = ()
    revocation: str = "off"
    revocation_check: str = "chain"
    """``chain``: every certificate below the anchor; ``leaf``: the leaf only."""


@dataclass(frozen=True, slots=True)
class TrustResult:
    """What verification found for one certificate at one time."""

    trusted: bool
    reason: str
    """Why not, in plain words (empty when trusted)."""
    chain: tuple[CertificateFacts, ...] = ()
    """The chain that was built, leaf first, anchor last (empty when not trusted)."""
    revocation: str = "off"
    """``good``, ``revoked``, ``unknown`` or ``off``."""
    revocation_detail: str = ""

    def describe_chain(self) -> str:
        parts = []
        for index, facts in enumerate(self.chain):
            last = index == len(self.chain) - 1
            role = (
                ("leaf and anchor" if last else "leaf")
                if index == 0
                else "anchor"
                if last
                else "via"
            )
            summary = facts.summary()
            parts.append(
                f"{role} {summary['subject']} (sha256 {summary['fingerprint.sha256'][:16]}…, "
                f"valid {summary['not_before']}..{summary['not_after']})"
            )
        return " <- ".join(parts)


@dataclass(slots=True)
class _Cached:
    result: TrustResult
    valid_from: datetime
    valid_until: datetime


@dataclass(frozen=True, slots=True)
class _Crl:
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

    @classmethod
    def read(cls, crl: x509.CertificateRevocationList, name: str) -> _Crl:
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
        is_ca = _is_ca(cert)
        if scope.only_contains_ca_certs and not is_ca:
            return "covers CA certificates only, and this is not a CA certificate"
        if scope.only_contains_user_certs and is_ca:
            return "covers end-entity certificates only, and this is a CA certificate"
        named = scope.full_name is not None or scope.relative_name is not None
        if named and not _distribution_point_matches(scope, cert):
            return (
                "covers the certificates of another distribution point (its issuing "
                "distribution point names none of the certificate's CRL distribution "
                "points)"
            )
        return ""


@dataclass(slots=True)
class TrustStore:
    """Anchors, intermediates and CRLs loaded once; verification per request, cached."""

    settings: TrustSettings
    anchors: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...]
    crls: tuple[_Crl, ...]
    cache_size: int = 4096
    _store: verification.Store = field(init=False)
    _known: tuple[x509.Certificate, ...] = field(init=False)
    _known_der: frozenset[bytes] = field(init=False)
    _cache: OrderedDict[tuple[bytes, tuple[bytes, ...]], _Cached] = field(init=False)
    _lock: threading.Lock = field(init=False)

    def __post_init__(self) -> None:
        self._store = verification.Store(list(self.anchors))
        self._known = self.anchors + self.intermediates
        self._known_der = frozenset(c.public_bytes(serialization.Encoding.DER) for c in self._known)
        self._cache = OrderedDict()
        self._lock = threading.Lock()

    # -- loading -----------------------------------------------------------------------

    @classmethod
    def load(cls, settings: TrustSettings) -> TrustStore:
        """Read every anchor, intermediate and CRL; raises TrustError naming the entry."""
        anchors = tuple(_read_certificates(settings.anchors, "anchors"))
        intermediates = tuple(_read_certificates(settings.intermediates, "intermediates"))
        crls = []
        for index, path in enumerate(settings.crls):
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise TrustError("crls", index, f"cannot read {path}: {exc.strerror}") from None
            try:
                crl = (
                    x509.load_pem_x509_crl(data)
                    if b"-----BEGIN" in data
                    else x509.load_der_x509_crl(data)
                )
            except ValueError as exc:
                raise TrustError("crls", index, f"{path} is not a CRL: {exc}") from None
            problem = _unreadable_crl(crl)
            if problem:
                where = f"trust.revocation.crls[{index}] {path}"
                raise TrustError("crls", index, f"{where}: {problem}", _BROKEN_HINT) from None
            crls.append(_Crl.read(crl, path.name))
        return cls(settings, anchors, intermediates, tuple(crls))

    def problems(self, now: datetime) -> list[tuple[str, int, str]]:
        """What ``policyengine check`` should report: ``(field, index, message)``."""
        found = []
        for index, anchor in enumerate(self.anchors):
            name = anchor.subject.rfc4514_string()
            if not _is_ca(anchor):
                found.append(("anchors", index, f"anchor {name} is not a CA certificate"))
            if anchor.not_valid_after_utc < now:
                when = format_time(anchor.not_valid_after_utc)
                found.append(("anchors", index, f"anchor {name} expired on {when}"))
        for index, entry in enumerate(self.crls):
            next_update = entry.crl.next_update_utc
            if next_update is not None and next_update < now:
                when = format_time(next_update)
                found.append(("crls", index, f"CRL {entry.name} expired on {when}"))
            signers = [
                c for c in self._known if c.subject == entry.crl.issuer and _signed_by(entry.crl, c)
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

    # -- verifying ---------------------------------------------------------------------

    def verify(
        self, leaf: CertificateFacts, forwarded: Sequence[bytes], now: datetime
    ) -> TrustResult:
        """Whether ``leaf`` chains to an anchor at ``now``, and its revocation status."""
        key = (leaf.der, tuple(forwarded) if self.settings.header_intermediates else ())
        cached = self._cache.get(key)
        if cached is not None and cached.valid_from <= now < cached.valid_until:
            with self._lock:
                if key in self._cache:
                    self._cache.move_to_end(key)  # least recently used goes first
            return cached.result
        entry = self._verify(leaf, key[1], now)
        with self._lock:
            self._cache[key] = entry
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return entry.result

    def _verify(
        self, leaf: CertificateFacts, forwarded: tuple[bytes, ...], now: datetime
    ) -> _Cached:
        candidates = self._candidates(leaf.certificate, leaf.der, forwarded)
        verifier = (
            verification.PolicyBuilder()
            .store(self._store)
            .time(now)
            .max_chain_depth(self.settings.max_chain_depth)
            .extension_policies(
                ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
                ee_policy=self._ee_policy(),
            )
            .build_client_verifier()
        )
        try:
            built = verifier.verify(leaf.certificate, list(self.intermediates) + candidates)
        except verification.VerificationError as exc:
            reason = self._diagnose(leaf.certificate, candidates, now, str(exc))
            until = now + _FAILURE_TTL
            if now < leaf.not_before < until:
                until = leaf.not_before  # a certificate about to become valid is not kept out
            return _Cached(TrustResult(False, reason), now, until)
        violation = name_constraint_violation(built.chain)
        if violation:  # what the verifier leaves out: subjects, and directoryName subtrees
            return _Cached(TrustResult(False, violation), now, now + _FAILURE_TTL)
        chain = tuple(read_certificate(c) for c in built.chain)
        valid_from = max(c.not_before for c in chain)
        # the verifier compares whole seconds: valid through the last second of not_after
        valid_until = min(c.not_after for c in chain) + _SECOND
        status, detail, next_update = self._revocation(built.chain, now)
        if next_update is not None:
            valid_until = min(valid_until, next_update)
        if self.settings.revocation != "off":
            # a CRL's answer changes at its last_update and its next_update, whichever side
            # of ``now`` they are (not valid yet, fresh, stale), not only at a fresh next_update
            issuers = {cert.issuer for cert, _ in self._checked(built.chain)}
            for entry in self.crls:
                if entry.crl.issuer not in issuers:
                    continue
                for moment in (entry.crl.last_update_utc, entry.crl.next_update_utc):
                    if moment is None:
                        continue
                    if moment <= now:
                        valid_from = max(valid_from, moment)
                    else:
                        valid_until = min(valid_until, moment)
        result = TrustResult(True, "", chain, status, detail)
        return _Cached(result, valid_from, valid_until)

    def _ee_policy(self) -> verification.ExtensionPolicy:
        policy = verification.ExtensionPolicy.webpki_defaults_ee().may_be_present(
            x509.SubjectAlternativeName, verification.Criticality.AGNOSTIC, _names_someone
        )
        # the extended key usage must not be critical, as in cryptography's own policy
        if self.settings.client_auth_eku == "required":
            return policy.require_present(
                x509.ExtendedKeyUsage,
                verification.Criticality.NON_CRITICAL,
                _require_client_auth,
            )
        return policy.may_be_present(
            x509.ExtendedKeyUsage, verification.Criticality.NON_CRITICAL, _client_auth_if_present
        )

    def _candidates(
        self, leaf: x509.Certificate, leaf_der: bytes, forwarded: Iterable[bytes]
    ) -> list[x509.Certificate]:
        """Forwarded intermediates that could be issuers on the way up from the leaf.

        Only byte-identical copies are dropped (of each other, of the leaf, of a configured
        anchor or intermediate): two certificates with the same subject and key may differ
        in validity or constraints (a cross-certificate and its renewal), and the verifier
        must see both to find the chain that holds."""
        seen_der: set[bytes] = {leaf_der, *self._known_der}
        cas: list[x509.Certificate] = []
        for der in forwarded:
            if der in seen_der:
                continue
            seen_der.add(der)
            try:
                cert = x509.load_der_x509_certificate(der)
            except Exception:
                continue
            if not _is_ca(cert):
                continue
            cas.append(cert)
        # keep only certificates reachable by issuer name from the leaf upwards
        # (through configured intermediates too: a forwarded cross-certificate may sit above
        # one), at most MAX_FORWARDED_CANDIDATES of them
        wanted = {leaf.issuer.public_bytes()}
        kept: list[x509.Certificate] = []
        configured = list(self.intermediates)
        changed = True
        while changed and len(kept) < MAX_FORWARDED_CANDIDATES:
            changed = False
            for known in configured:
                if known.subject.public_bytes() in wanted:
                    issuer = known.issuer.public_bytes()
                    changed = changed or issuer not in wanted
                    wanted.add(issuer)
            for cert in cas:
                if cert in kept or cert.subject.public_bytes() not in wanted:
                    continue
                kept.append(cert)
                wanted.add(cert.issuer.public_bytes())
                changed = True
                if len(kept) >= MAX_FORWARDED_CANDIDATES:
                    break
        return kept

    def _diagnose(
        self,
        leaf: x509.Certificate,
        candidates: list[x509.Certificate],
        now: datetime,
        message: str,
    ) -> str:
        """The verifier's refusal in plain words, found by walking the names ourselves."""
        if now >= leaf.not_valid_after_utc + _SECOND:
            return f"the certificate expired on {format_time(leaf.not_valid_after_utc)}"
        if leaf.not_valid_before_utc > now:
            return f"the certificate is not valid before {format_time(leaf.not_valid_before_utc)}"
        if "2.5.29.37" in message and "criticality" in message:
            return (
                "the certificate's extended key usage is marked critical, which is refused "
                "(as cryptography's verifier does)"
            )
        if "clientAuth" in message or "required EKU" in message or "2.5.29.37" in message:
            try:
                usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
                held = ", ".join(EKU_NAMES.get(o.dotted_string, o.dotted_string) for o in usage)
                has = f"it has {held}" if held else "it is empty"
            except x509.ExtensionNotFound:
                has = "it has none"
            except Exception:
                has = "it cannot be read"
            return f"the certificate's extended key usage does not include clientAuth ({has})"
        pool = list(self._known) + candidates
        current = leaf
        for _ in range(self.settings.max_chain_depth + 1):
            if any(current.issuer == a.subject for a in self.anchors) and current is not leaf:
                break
            issuers = [c for c in pool if c.subject == current.issuer and c is not current]
            if not issuers:
                return (
                    f"issuer {current.issuer.rfc4514_string()} not found among anchors or "
                    "intermediates"
                )
            issuer = issuers[0]
            name = issuer.subject.rfc4514_string()
            if now >= issuer.not_valid_after_utc + _SECOND:
                role = "anchor" if issuer in self.anchors else "intermediate"
                return f"{role} {name} expired on {format_time(issuer.not_valid_after_utc)}"
            if issuer.not_valid_before_utc > now:
                when = format_time(issuer.not_valid_before_utc)
                return f"intermediate {name} is not valid before {when}"
            if not _is_ca(issuer):
                return f"issuer {name} is not a CA certificate"
            if issuer in self.anchors:
                break
            current = issuer
        return _plain_verifier_message(message)

    def _checked(
        self, chain: Sequence[x509.Certificate]
    ) -> list[tuple[x509.Certificate, x509.Certificate]]:
        """``(certificate, its issuer)`` for each certificate whose status is checked.

        Every certificate below the anchor (``check: chain``), or the leaf alone (``check:
        leaf``). A leaf that is itself an anchor is checked against CRLs it signed.
        """
        pairs = [(cert, chain[index + 1]) for index, cert in enumerate(chain[:-1])]
        if not pairs:
            pairs = [(chain[0], chain[0])]
        return pairs[:1] if self.settings.revocation_check == "leaf" else pairs

    def _revocation(
        self, chain: list[x509.Certificate], now: datetime
    ) -> tuple[str, str, datetime | None]:
        """``(status, detail, earliest next_update consulted)`` for the built chain.

        Revoked when any checked certificate is revoked; else unknown when any is unknown;
        else good. The leaf's words come first and bare, an intermediate's after its name.
        """
        if self.settings.revocation == "off":
            return "off", "revocation checking is off", None
        earliest: datetime | None = None
        unknown: list[str] = []
        good: list[str] = []
        for index, (cert, issuer) in enumerate(self._checked(chain)):
            status, detail, next_update = self._check_crls(cert, issuer, now)
            if status == "unknown":
                status, detail, next_update = self._listed(cert, issuer, now) or (
                    status,
                    detail,
                    next_update,
                )
            if next_update is not None:
                earliest = next_update if earliest is None else min(earliest, next_update)
            who = "" if index == 0 else f"intermediate {cert.subject.rfc4514_string()}: "
            if status == "revoked":
                return "revoked", f"{who or 'the certificate: '}{detail}", earliest
            (unknown if status == "unknown" else good).append(who + detail)
        if unknown:
            return "unknown", "; ".join(unknown), earliest
        return "good", "; ".join(good), earliest

    def _check_crls(
        self, cert: x509.Certificate, issuer: x509.Certificate, now: datetime
    ) -> tuple[str, str, datetime | None]:
        """One certificate's status: the newest complete CRL of its issuer decides.

        Candidates are the CRLs naming the certificate's issuer, signed with its key, and
        covering the certificate (not a delta CRL; an issuing distribution point that
        includes it). Of those in effect at ``now`` (``last_update`` passed), the newest
        decides: the highest CRL number, or the latest ``last_update`` when numbers tie or
        some are absent. When it cannot be used (expired, or one of the defects that make a
        CRL no evidence), the status is unknown: an older CRL is not consulted instead.
        """
        notes: list[str] = []
        named = [entry for entry in self.crls if entry.crl.issuer == cert.issuer]
        authentic: list[_Crl] = []
        for entry in named:
            if _signed_by(entry.crl, issuer):
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
        in_effect: list[_Crl] = []
        for entry in authentic:
            why = entry.out_of_scope(cert)
            if why:
                notes.append(f"CRL {entry.name} {why}")
            elif entry.crl.last_update_utc > now:
                when = format_time(entry.crl.last_update_utc)
                notes.append(f"CRL {entry.name} is not valid before {when}")
            else:
                in_effect.append(entry)
        if not in_effect:
            if notes:
                return "unknown", "; ".join(notes), None
            return "unknown", f"no CRL from {cert.issuer.rfc4514_string()}", None
        by_number = all(entry.number is not None for entry in in_effect)
        newest_key = max(entry.newness(by_number) for entry in in_effect)
        newest = [entry for entry in in_effect if entry.newness(by_number) == newest_key]
        serial = format_serial(cert.serial_number)
        for entry in newest:
            if entry.problem:
                return "unknown", f"CRL {entry.name} cannot be used: {entry.problem}", None
        for entry in newest:
            next_update = entry.crl.next_update_utc
            if next_update is not None and next_update <= now:
                return "unknown", f"CRL {entry.name} expired on {format_time(next_update)}", None
        # equally new CRLs (a CA's copy served twice): any one that lists it decides
        for entry in newest:
            revoked = entry.crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            if revoked is not None:
                when = format_time(revoked.revocation_date_utc)
                return (
                    "revoked",
                    f"serial {serial} revoked on {when} (CRL {entry.name})",
                    entry.crl.next_update_utc,
                )
        entry = newest[0]
        delta = self._listed(cert, issuer, now, deltas_after=entry.number)
        if delta is not None:
            return delta
        next_update = entry.crl.next_update_utc
        until = f", fresh until {format_time(next_update)}" if next_update else ""
        return "good", f"serial {serial} not listed in CRL {entry.name}{until}", next_update

    def _listed(
        self,
        cert: x509.Certificate,
        issuer: x509.Certificate,
        now: datetime,
        *,
        deltas_after: int | None = -1,
    ) -> tuple[str, str, datetime | None] | None:
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
            if scoped.out_of_scope(cert) or not _signed_by(entry.crl, issuer):
                continue
            revoked = entry.crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            if revoked is None or _reason(revoked) is x509.ReasonFlags.remove_from_crl:
                continue
            if entry.delta:
                source = f"delta CRL {entry.name}, newer than the complete CRL"
            else:
                source = f"CRL {entry.name}, signed by the issuer; no usable CRL says otherwise"
            return (
                "revoked",
                f"serial {format_serial(cert.serial_number)} revoked on "
                f"{format_time(revoked.revocation_date_utc)} ({source})",
                None,
            )
        return None


def _read_certificates(paths: Sequence[Path], field_name: str) -> list[x509.Certificate]:
    found: list[x509.Certificate] = []
    for index, path in enumerate(paths):
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        if path.is_dir() and not files:
            raise TrustError(field_name, index, f"{path} holds no certificate files")
        for file in files:
            try:
                data = file.read_bytes()
            except OSError as exc:
                raise TrustError(field_name, index, f"cannot read {file}: {exc.strerror}") from None
            try:
                if PEM_BEGIN in data:
                    loaded = x509.load_pem_x509_certificates(data)
                else:
                    loaded = [read_certificate(data).certificate]
            except (ValueError, CertificateError, x509.InvalidVersion) as exc:
                raise TrustError(field_name, index, f"{file} is not a certificate: {exc}") from None
            for number, cert in enumerate(loaded, 1):
                problem = _unreadable_certificate(cert)
                if problem:
                    where = f"trust.{field_name}[{index}] {file}"
                    if len(loaded) > 1:
                        where += f", certificate {number} of {len(loaded)}"
                    raise TrustError(field_name, index, f"{where}: {problem}", _BROKEN_HINT)
            found.extend(loaded)
    return found


_BROKEN_HINT = (
    "replace the file with a well-formed copy from its issuer; "
    "`openssl x509 -noout -text` (or `openssl crl`) shows what it holds"
)


def _unreadable_certificate(cert: x509.Certificate) -> str:
    """What cannot be read of a certificate cryptography loaded, or "" when all can.

    cryptography parses a certificate's fields when they are first read, so a file that
    loads may still fail later (an invalid UTF-8 name, a string type a name may not have).
    Every field the verifier and the policy read is read here once, at load time.
    """
    fields = (
        ("version", lambda: cert.version),
        ("serial number", lambda: cert.serial_number),
        ("validity", lambda: (cert.not_valid_before_utc, cert.not_valid_after_utc)),
        ("subject", lambda: cert.subject.rfc4514_string()),
        ("issuer", lambda: cert.issuer.rfc4514_string()),
        ("extensions", lambda: [e.value for e in cert.extensions]),
        ("public key", cert.public_key),
    )
    return _first_unreadable(fields, "this certificate")


def _unreadable_crl(crl: x509.CertificateRevocationList) -> str:
    """What cannot be read of a CRL cryptography loaded, or "" when all can."""

    def entries() -> None:
        for entry in crl:
            _ = (
                entry.serial_number,
                entry.revocation_date_utc,
                [e.value for e in entry.extensions],
            )

    fields = (
        ("issuer", lambda: crl.issuer.rfc4514_string()),
        ("validity", lambda: (crl.last_update_utc, crl.next_update_utc)),
        ("extensions", lambda: [e.value for e in crl.extensions]),
        ("revoked certificates", entries),
    )
    return _first_unreadable(fields, "this CRL")


def _first_unreadable(fields: Iterable[tuple[str, object]], kind: str) -> str:
    for name, read in fields:
        try:
            read()  # type: ignore[operator]
        except Exception as exc:  # cryptography raises ValueError, InvalidVersion, ...
            return (
                f"cryptography reads {kind} only in part; its {name} cannot be read "
                f"({parse_error_in_words(exc)})"
            )
    return ""


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except Exception:
        return False
    return bool(constraints.ca)


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
    try:
        return bool(crl.is_signature_valid(issuer.public_key()))  # type: ignore[arg-type]
    except Exception:
        return False


def _require_client_auth(
    policy: verification.Policy, cert: x509.Certificate, usage: x509.ExtendedKeyUsage
) -> None:
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usage:
        raise ValueError("the extended key usage does not include clientAuth")


def _client_auth_if_present(
    policy: verification.Policy, cert: x509.Certificate, usage: x509.ExtendedKeyUsage | None
) -> None:
    if usage is not None:
        _require_client_auth(policy, cert, usage)


def _names_someone(
    policy: verification.Policy, cert: x509.Certificate, names: x509.SubjectAlternativeName | None
) -> None:
    """A subject alternative name may be absent, or critical, but a certificate with an
    empty subject must carry one, marked critical (RFC 5280 4.2.1.6): else it names no one."""
    if len(cert.subject) > 0:
        return
    if names is None:
        raise ValueError(
            "the certificate names no one: its subject is empty and it has no subject "
            "alternative name"
        )
    if not cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical:
        raise ValueError(
            "the certificate's subject is empty, so its subject alternative name must be "
            "marked critical (RFC 5280 4.2.1.6), and it is not"
        )


def _plain_verifier_message(message: str) -> str:
    text = message.removeprefix("validation failed: ").removeprefix("fatal error: ")
    text = text.removeprefix("Python extension validator failed: ValueError: ")
    cut = text.find(" (encountered processing")
    if cut >= 0:
        text = text[:cut]
    if text.startswith("candidates exhausted"):
        return "no chain to an anchor could be built (" + text + ")"
    return text
