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

Revocation (``revocation: mode``) is asked of a chain that was built: see
:mod:`policyengine.request.revocation`.

Results are cached per (leaf, forwarded intermediates) and reused while the evaluation time
stays within the window in which they cannot change: between the latest ``not_before`` and
the earliest ``not_after`` in the chain and the ``this_update``/``next_update`` of every
CRL of a checked certificate's issuer.

This module owns the ``trust:`` settings, loading the trust files (anchors, intermediates,
CRLs) and what is wrong with them, building and verifying chains, and the cache of results
(a :class:`~policyengine.caches.BoundedCache`).
Like all of ``request/``, it imports nothing of ``language/`` or ``evaluation/``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from policyengine.caches import BoundedCache
from policyengine.errors import CertificateError, TrustError
from policyengine.oids import EKU_NAMES
from policyengine.request.certificate import (
    CertificateFacts,
    first_unreadable,
    read_certificate,
)
from policyengine.request.constraints import name_constraint_violation
from policyengine.request.der import PEM_BEGIN
from policyengine.request.extensions import is_ca
from policyengine.request.revocation import (
    REVOCATION_CHECKS,
    REVOCATION_MODES,
    Crl,
    CrlEvidence,
    Evidence,
    NotACrl,
    Revocation,
)
from policyengine.values import format_time

__all__ = [
    "ONLINE_SOURCES",
    "REVOCATION_CHECKS",
    "REVOCATION_MODES",
    "OnlineRevocation",
    "TrustError",
    "TrustResult",
    "TrustSettings",
    "TrustStore",
]

ONLINE_SOURCES = ("ocsp", "crl_distribution_points")
"""The kinds of revocation evidence fetched over the network (the revocation extra)."""
MAX_FORWARDED_CANDIDATES = 8
"""At most this many forwarded intermediates reach the path builder."""
_FAILURE_TTL = timedelta(seconds=60)
_SECOND = timedelta(seconds=1)
"""Validity is compared to the second, as the verifier does (X.509 times are whole seconds)."""


@dataclass(frozen=True, slots=True)
class OnlineRevocation:
    """``trust.revocation``'s sources and how to ask online ones (``ocsp:``, ``fetch:``)."""

    sources: tuple[str, ...] = ("crls",)
    """The kinds of evidence, in the order they are asked: ``ocsp``,
    ``crl_distribution_points``, ``crls``."""
    responder: str | None = None
    """One OCSP responder for every certificate (None: each one's AIA URL)."""
    timeout: float = 0.2
    """Seconds one fetch may take, all told."""
    max_age: float = 86400.0
    """Seconds an OCSP response is used after its thisUpdate, at most (and a CRL fetched
    from a distribution point is kept before it is fetched again)."""
    allow_hosts: tuple[str, ...] = ("*",)
    max_bytes: int = 1 << 20


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
    online: OnlineRevocation = OnlineRevocation()


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


@dataclass(slots=True)
class TrustStore:
    """Anchors, intermediates and CRLs loaded once; verification per request, cached."""

    settings: TrustSettings
    anchors: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...]
    crls: tuple[Crl, ...]
    cache_size: int = 4096
    _revocation: Revocation = field(init=False)
    _store: verification.Store = field(init=False)
    _known: tuple[x509.Certificate, ...] = field(init=False)
    _known_der: frozenset[bytes] = field(init=False)
    _cache: BoundedCache[tuple[bytes, tuple[bytes, ...]], _Cached] = field(init=False)

    def __post_init__(self) -> None:
        settings = self.settings
        kinds = settings.online.sources if settings.revocation != "off" else ("crls",)
        evidence = _evidence(kinds, settings.online, self.crls)
        self._revocation = Revocation(settings.revocation, settings.revocation_check, evidence)
        self._store = verification.Store(list(self.anchors))
        self._known = self.anchors + self.intermediates
        self._known_der = frozenset(c.public_bytes(serialization.Encoding.DER) for c in self._known)
        self._cache = BoundedCache(self.cache_size)

    # -- loading -----------------------------------------------------------------------

    @classmethod
    def load(cls, settings: TrustSettings) -> TrustStore:
        """Read every anchor, intermediate and CRL; raises TrustError naming the entry."""
        online = [kind for kind in settings.online.sources if kind in ONLINE_SOURCES]
        if online and settings.revocation != "off" and importlib.util.find_spec("urllib3") is None:
            raise TrustError(  # the revocation extra
                "sources",
                settings.online.sources.index(online[0]),
                f"revocation source {online[0]} needs an HTTP client: pip install"
                " 'policyengine[revocation]'",
                "install the extra, or remove the source from trust.revocation.sources",
            )
        anchors = tuple(_read_certificates(settings.anchors, "anchors"))
        intermediates = tuple(_read_certificates(settings.intermediates, "intermediates"))
        crls = []
        for index, path in enumerate(settings.crls):
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise TrustError("crls", index, f"cannot read {path}: {exc.strerror}") from None
            try:
                crls.append(Crl.load(data, path.name))
            except NotACrl as exc:
                raise TrustError("crls", index, f"{path} {exc}") from None
            except ValueError as exc:
                where = f"trust.revocation.crls[{index}] {path}"
                raise TrustError("crls", index, f"{where}: {exc}", _BROKEN_HINT) from None
        return cls(settings, anchors, intermediates, tuple(crls))

    def problems(self, now: datetime) -> list[tuple[str, int, str]]:
        """What ``policyengine check`` should report: ``(field, index, message)``."""
        found = []
        for index, anchor in enumerate(self.anchors):
            name = anchor.subject.rfc4514_string()
            if not is_ca(anchor):
                found.append(("anchors", index, f"anchor {name} is not a CA certificate"))
            if anchor.not_valid_after_utc < now:
                when = format_time(anchor.not_valid_after_utc)
                found.append(("anchors", index, f"anchor {name} expired on {when}"))
        found.extend(self._revocation.problems(self._known, now))
        return found

    # -- verifying ---------------------------------------------------------------------

    def verify(
        self, leaf: CertificateFacts, forwarded: Sequence[bytes], now: datetime
    ) -> TrustResult:
        """Whether ``leaf`` chains to an anchor at ``now``, and its revocation status."""
        key = (leaf.der, tuple(forwarded) if self.settings.header_intermediates else ())
        cached = self._cache.recall(key)
        if cached is not None and cached.valid_from <= now < cached.valid_until:
            return cached.result
        entry = self._verify(leaf, key[1], now)
        self._cache.put(key, entry)
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
        status, detail, next_update = self._revocation.status(built.chain, now)
        if next_update is not None:
            valid_until = min(valid_until, next_update)
        valid_from, valid_until = self._revocation.window(built.chain, now, valid_from, valid_until)
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
            if not is_ca(cert):
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
            if not is_ca(issuer):
                return f"issuer {name} is not a CA certificate"
            if issuer in self.anchors:
                break
            current = issuer
        return _plain_verifier_message(message)


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
    fields: tuple[tuple[str, Callable[[], object]], ...] = (
        ("version", lambda: cert.version),
        ("serial number", lambda: cert.serial_number),
        ("validity", lambda: (cert.not_valid_before_utc, cert.not_valid_after_utc)),
        ("subject", lambda: cert.subject.rfc4514_string()),
        ("issuer", lambda: cert.issuer.rfc4514_string()),
        ("extensions", lambda: [e.value for e in cert.extensions]),
        ("public key", cert.public_key),
    )
    return first_unreadable(fields, "this certificate")


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


def _evidence(
    kinds: Sequence[str], online: OnlineRevocation, crls: tuple[Crl, ...]
) -> tuple[Evidence, ...]:
    """The kinds of evidence of ``trust.revocation.sources``, in order; the online ones
    share one fetcher (its connections and its bounds), and are imported only when a
    policy asks for them (the revocation extra)."""
    found: list[Evidence] = []
    fetcher = None
    max_age = timedelta(seconds=online.max_age)
    for kind in kinds:
        if kind == "crls":
            found.append(CrlEvidence(crls))
            continue
        from policyengine.request.fetch import Fetcher

        if fetcher is None:
            fetcher = Fetcher(
                timeout=online.timeout, max_bytes=online.max_bytes, allow_hosts=online.allow_hosts
            )
        if kind == "ocsp":
            from policyengine.request.ocsp import OcspEvidence

            found.append(OcspEvidence(fetcher, responder=online.responder, max_age=max_age))
        else:
            from policyengine.request.distribution import DistributionPointEvidence

            found.append(DistributionPointEvidence(fetcher, max_age=max_age))
    return tuple(found)
