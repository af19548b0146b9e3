"""Chain of trust and revocation: the ``trusted`` and ``revoked`` predicates.

A :class:`TrustStore` is built once per policy from its ``trust:`` section: anchors,
known intermediates, CRLs, and the verifier settings. :meth:`TrustStore.verify` decides one
certificate with ``cryptography``'s own path builder (``cryptography.x509.verification``),
configured for client certificates as they are found in the wild:

- the end-entity policy is WebPKI's, except that a subject alternative name may be absent
  or critical (client certificates often have none, or one beside a subject);
- with ``client_auth_eku: required`` the extended key usage must be present and hold
  clientAuth; with ``optional`` it may be absent, but when present it must hold clientAuth
  (a serverAuth-only certificate never passes). ``ExtensionPolicy.permit_all()`` is not
  used: it would silently drop that check.

Forwarded intermediates are attacker-controlled. Before path building they are capped,
de-duplicated (by DER, and by subject and key), and stripped of certificates that cannot be
issuers (not CAs, or naming no issuer on the way up from the leaf). ``cryptography`` 49 and
newer also bound the signature checks a path search may do.

Results are cached per (leaf, forwarded intermediates) and reused while the evaluation time
stays within the window in which they cannot change: between the latest ``not_before`` and
the earliest ``not_after`` in the chain and the ``next_update`` of every CRL consulted.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from policyengine.certificate import (
    EKU_NAMES,
    CertificateError,
    CertificateFacts,
    read_certificate,
)
from policyengine.values import format_serial, format_time

__all__ = [
    "REVOCATION_MODES",
    "TrustError",
    "TrustResult",
    "TrustSettings",
    "TrustStore",
]

REVOCATION_MODES = ("off", "soft", "hard")
MAX_FORWARDED_CANDIDATES = 8
"""At most this many forwarded intermediates reach the path builder."""
_FAILURE_TTL = timedelta(seconds=60)


class TrustError(Exception):
    """A trust anchor, intermediate or CRL file cannot be used; ``index`` names which entry."""

    def __init__(
        self,
        field: str,
        index: int,
        message: str,
        hint: str = "check the path: it is relative to the policy file",
    ) -> None:
        super().__init__(message)
        self.field = field
        self.index = index
        self.hint = hint


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
            role = "anchor" if index == len(self.chain) - 1 else "leaf" if index == 0 else "via"
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
    crl: x509.CertificateRevocationList
    name: str


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
    _cache: OrderedDict[tuple[bytes, tuple[bytes, ...]], _Cached] = field(init=False)
    _lock: threading.Lock = field(init=False)

    def __post_init__(self) -> None:
        self._store = verification.Store(list(self.anchors))
        self._known = self.anchors + self.intermediates
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
            crls.append(_Crl(crl, path.name))
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
            if not any(
                c.subject == entry.crl.issuer and _signed_by(entry.crl, c) for c in self._known
            ):
                issuer = entry.crl.issuer.rfc4514_string()
                found.append(
                    ("crls", index, f"CRL {entry.name} is not signed by a known CA ({issuer})")
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
        chain = tuple(read_certificate(c) for c in built.chain)
        valid_from = max(c.not_before for c in chain)
        valid_until = min(c.not_after for c in chain) + timedelta(microseconds=1)
        status, detail, next_update = self._revocation(built.chain, now)
        if next_update is not None:
            valid_until = min(valid_until, next_update)
        if self.settings.revocation != "off":
            # a CRL's answer changes at its last_update and its next_update, whichever side
            # of ``now`` they are (not valid yet, fresh, stale), not only at a fresh next_update
            issuers = {c.issuer for c in built.chain[:-1]}
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
            x509.SubjectAlternativeName, verification.Criticality.AGNOSTIC, None
        )
        if self.settings.client_auth_eku == "required":
            return policy.require_present(
                x509.ExtendedKeyUsage, verification.Criticality.AGNOSTIC, _require_client_auth
            )
        return policy.may_be_present(
            x509.ExtendedKeyUsage, verification.Criticality.AGNOSTIC, _client_auth_if_present
        )

    def _candidates(
        self, leaf: x509.Certificate, leaf_der: bytes, forwarded: Iterable[bytes]
    ) -> list[x509.Certificate]:
        """Forwarded intermediates that could be issuers on the way up from the leaf."""
        seen_der: set[bytes] = set()
        seen_identity: set[tuple[bytes, bytes]] = set()
        cas: list[x509.Certificate] = []
        for der in forwarded:
            if der in seen_der or der == leaf_der:
                continue
            seen_der.add(der)
            try:
                cert = x509.load_der_x509_certificate(der)
                identity = (cert.subject.public_bytes(), _spki(cert))
            except Exception:
                continue
            if identity in seen_identity or not _is_ca(cert):
                continue
            seen_identity.add(identity)
            cas.append(cert)
        # keep only certificates reachable by issuer name from the leaf upwards
        wanted = {leaf.issuer.public_bytes()}
        kept: list[x509.Certificate] = []
        changed = True
        while changed and len(kept) < MAX_FORWARDED_CANDIDATES:
            changed = False
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
        if leaf.not_valid_after_utc < now:
            return f"the certificate expired on {format_time(leaf.not_valid_after_utc)}"
        if leaf.not_valid_before_utc > now:
            return f"the certificate is not valid before {format_time(leaf.not_valid_before_utc)}"
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
            if issuer.not_valid_after_utc < now:
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

    def _revocation(
        self, chain: list[x509.Certificate], now: datetime
    ) -> tuple[str, str, datetime | None]:
        """``(status, detail, earliest next_update consulted)`` for the built chain."""
        if self.settings.revocation == "off":
            return "off", "revocation checking is off", None
        earliest: datetime | None = None
        leaf_status, leaf_detail = "unknown", ""
        for index, cert in enumerate(chain[:-1]):
            issuer = chain[index + 1]
            status, detail, next_update = self._check_crls(cert, issuer, now)
            if next_update is not None:
                earliest = next_update if earliest is None else min(earliest, next_update)
            who = (
                "the certificate" if index == 0 else f"intermediate {cert.subject.rfc4514_string()}"
            )
            if status == "revoked":
                return "revoked", f"{who}: {detail}", earliest
            if index == 0:
                leaf_status, leaf_detail = status, detail
            elif status == "unknown" and detail.startswith("CRL"):
                return "unknown", f"{who}: {detail}", earliest
        return leaf_status, leaf_detail, earliest

    def _check_crls(
        self, cert: x509.Certificate, issuer: x509.Certificate, now: datetime
    ) -> tuple[str, str, datetime | None]:
        notes = []
        for entry in self.crls:
            crl = entry.crl
            if crl.issuer != cert.issuer:
                continue
            if not _signed_by(crl, issuer):
                notes.append(f"CRL {entry.name} is not signed by {issuer.subject.rfc4514_string()}")
                continue
            next_update = crl.next_update_utc
            if next_update is not None and next_update <= now:
                notes.append(f"CRL {entry.name} expired on {format_time(next_update)}")
                continue
            if crl.last_update_utc > now:
                notes.append(
                    f"CRL {entry.name} is not valid before {format_time(crl.last_update_utc)}"
                )
                continue
            revoked = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            serial = format_serial(cert.serial_number)
            if revoked is not None:
                when = format_time(revoked.revocation_date_utc)
                return (
                    "revoked",
                    f"serial {serial} revoked on {when} (CRL {entry.name})",
                    next_update,
                )
            until = f", fresh until {format_time(next_update)}" if next_update else ""
            return "good", f"serial {serial} not listed in CRL {entry.name}{until}", next_update
        if notes:
            return "unknown", "; ".join(notes), None
        return "unknown", f"no CRL from {cert.issuer.rfc4514_string()}", None


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
                if b"-----BEGIN CERTIFICATE-----" in data:
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
            return f"cryptography reads {kind} only in part; its {name} cannot be read ({exc})"
    return ""


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except Exception:
        return False
    return bool(constraints.ca)


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


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


def _plain_verifier_message(message: str) -> str:
    text = message.removeprefix("validation failed: ").removeprefix("fatal error: ")
    cut = text.find(" (encountered processing")
    if cut >= 0:
        text = text[:cut]
    if text.startswith("candidates exhausted"):
        return "no chain to an anchor could be built (" + text + ")"
    return text
