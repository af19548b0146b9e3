"""CRL distribution points (RFC 5280 4.2.1.13): the ``crl_distribution_points`` source of
revocation evidence.

For a certificate whose chain verified, :class:`DistributionPointEvidence` fetches the CRL
at each ``http`` or ``https`` URL of its CRL distribution points extension, in order, and
reads it exactly as a CRL file of the policy is read
(:class:`~policyengine.request.revocation.CrlEvidence`: issued and signed by the
certificate's issuer, which may sign CRLs; complete; covering the certificate, its issuing
distribution point included; in effect and fresh). The first definite answer (good or
revoked) wins. Passed over, with a word in the trace: URLs of other schemes (``ldap:``,
``file:``), names that are no URL, and distribution points that name another CRL issuer
(indirect CRLs, which policyengine does not use); at most :data:`MAX_POINTS` URLs of a
certificate are asked.

A fetched CRL is checked for the issuer before it is kept (issued and signed by it,
complete, in effect, no defect, and not older than one fetched from the URL before: a
replay); one that fails is kept as a failure. CRLs are kept per URL and issuer until their
nextUpdate (fetched again after ``max_age`` at most, and after
:data:`~policyengine.request.answers.RETRY` when the fetch failed, or the CRL came stale),
at most :data:`CRLS` of them and :data:`BUDGET` bytes, and renewed in the background before
they end (:mod:`~policyengine.request.answers`); a renewal that fetches a CRL it would not
keep leaves the old one standing. Concurrent first sightings of certificates that name one
URL make one fetch.

Owns DistributionPointEvidence. Imports cryptography and the request side's own modules
(``fetch.py`` does the HTTP), never ``language/`` or ``evaluation/``.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import ClassVar

from cryptography import x509

from policyengine.request.answers import RETRY, Answers, Floors, Held, issuer_id
from policyengine.request.fetch import Fetcher, FetchError
from policyengine.request.revocation import Crl, CrlEvidence, Finding, Problem
from policyengine.values import format_time

__all__ = ["BUDGET", "CRLS", "MAX_POINTS", "DistributionPointEvidence"]

CRLS = 64
"""CRLs kept at most (one per URL; each up to ``fetch.max_bytes``); the oldest go first."""
BUDGET = 256 << 20
"""Bytes of CRLs kept at most (``fetch.max_bytes`` may be up to 64 MiB)."""
MAX_POINTS = 4
"""URLs of one certificate asked at most."""

_Fetched = Crl | str
"""A CRL as fetched and read, or why there is none."""


class DistributionPointEvidence:
    """CRLs fetched from the distribution points of certificates whose chain verified."""

    local: ClassVar[bool] = False

    def __init__(self, fetcher: Fetcher, *, max_age: timedelta) -> None:
        self.fetcher = fetcher
        self.max_age = max_age
        self.answers: Answers[tuple[str, bytes], _Fetched] = Answers(
            capacity=CRLS, wait=fetcher.timeout + 1.0, budget=BUDGET
        )
        self.floors: Floors[tuple[bytes, str]] = Floors()
        """The newest CRL seen per issuer and scope (its issuing distribution point)."""

    def status(self, cert: x509.Certificate, issuer: x509.Certificate, now: datetime) -> Finding:
        urls, notes = points_of(cert)
        if not urls and not notes:
            return Finding("unknown", "the certificate names no CRL distribution point", None)
        earliest: datetime | None = None  # with no URL to ask, the answer never changes
        who = issuer_id(issuer)
        for url in urls:
            held = self.answers.get((url, who), now, functools.partial(self._fetch, url, issuer))
            if held is None:
                notes.append(f"CRL {url}: another request's fetch did not come in time")
                look = now + RETRY
            elif isinstance(held.value, str):
                notes.append(held.value)
                look = held.until
            else:
                finding = CrlEvidence((held.value,)).status(cert, issuer, now)
                look = held.next_look(now)
                if finding.status != "unknown":
                    detail = "; ".join([finding.detail, *notes])
                    return Finding(finding.status, detail, _earliest(finding.next_update, look))
                notes.append(finding.detail)
            earliest = _earliest(earliest, look)
        return Finding("unknown", "; ".join(notes), earliest)

    def moments(self, issuers: Collection[x509.Name]) -> Iterator[datetime]:
        # each finding's next_update already bounds the cached verification of its chain
        return iter(())

    def problems(self, known: Sequence[x509.Certificate], now: datetime) -> list[Problem]:
        return []  # nothing to check before a certificate names its distribution points

    def _fetch(
        self, url: str, issuer: x509.Certificate, now: datetime, previous: Held[_Fetched] | None
    ) -> Held[_Fetched]:
        """The CRL at ``url``, checked for ``issuer`` before it is kept.

        A failure, kept :data:`RETRY` (and a renewal that fetches one leaves the CRL it
        would renew standing): a CRL that could never answer for the issuer's certificates
        at this URL (another issuer's, not signed by it, not in effect yet, the CRL of
        another distribution point, one for some reasons only), one of another scope than
        the CRL it would renew, and one older than a CRL of the issuer's for that scope
        seen before (a replay, or a copy behind: by its number, then its thisUpdate,
        whichever URL it came from). A CRL that is no proof of good (a delta, a defect) is
        kept without being renewed, so that the issuer's signed word that a certificate is
        revoked still counts (:meth:`CrlEvidence.listed`); so is a stale one."""

        def failed(why: str) -> Held[_Fetched]:
            return Held(why, now, now + RETRY, lasting=False)

        try:
            data = self.fetcher.fetch(url)
        except FetchError as exc:
            return failed(f"CRL distribution point: {exc}")
        try:
            crl = Crl.load(data, url)
        except ValueError as exc:  # NotACrl says "is not a CRL: why"
            said = str(exc) if str(exc).startswith("is not") else f"cannot be used: {exc}"
            return failed(f"CRL {url} {said}")
        except Exception as exc:  # hostile bytes cryptography cannot read: no evidence
            return failed(f"CRL {url} cannot be read ({type(exc).__name__}: {exc})")
        refused = _refusal(crl, issuer, url, now)
        if not refused and previous is not None and previous.holds(now):
            kept = previous.value
            if isinstance(kept, Crl) and kept.scope != crl.scope:
                refused = "covers another scope than the CRL it would renew"
        if refused:
            return failed(f"CRL {url} {refused}")
        # the trace says when the answer was produced, as OCSP's does
        name = f"{url}, published {format_time(crl.crl.last_update_utc)}"
        crl = replace(crl, name=name, signer=issuer)
        next_update = crl.crl.next_update_utc
        until = next_update if next_update is not None else now + self.max_age
        if until <= now:  # stale when fetched: it says "expired", and is fetched again soon
            return Held(crl, now, now + RETRY, lasting=False, size=len(data))
        if crl.delta or crl.problem or crl.number is None:
            return Held(crl, now, min(until, now + self.max_age), lasting=False, size=len(data))
        scope = (issuer_id(issuer), repr(crl.scope))
        seen = self.floors.admit(scope, (crl.number, crl.crl.last_update_utc))
        if seen is not None:
            return failed(
                f"CRL {url} is older than one of its issuer's seen before (CRL number"
                f" {crl.number} after {seen[0]}): a replay, or a copy behind"
            )
        # in force until its next update, fetched again after max_age for news
        return Held(crl, now, until, size=len(data), renew_by=now + self.max_age)


def _refusal(crl: Crl, issuer: x509.Certificate, url: str, now: datetime) -> str:
    """Why a CRL fetched from ``url`` can never answer for the certificates of ``issuer``
    that name the URL, or ""."""
    if crl.crl.issuer != issuer.subject:
        return (
            f"is issued by {crl.crl.issuer.rfc4514_string()}, not by"
            f" {issuer.subject.rfc4514_string()}"
        )
    if not crl.signed_by(issuer):
        return f"is not signed by {issuer.subject.rfc4514_string()}"
    if crl.crl.last_update_utc > now:
        return f"is not valid before {format_time(crl.crl.last_update_utc)}"
    scope = crl.scope
    if scope is not None:
        if scope.only_some_reasons:
            return "covers only some revocation reasons"
        if scope.only_contains_attribute_certs:
            return "covers attribute certificates only"
        names = {
            n.value for n in scope.full_name or () if isinstance(n, x509.UniformResourceIdentifier)
        }
        if scope.full_name and url not in names:
            return (
                "is the CRL of another distribution point (its issuing distribution point"
                " names others)"
            )
    return ""


def points_of(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    """The URLs to fetch a certificate's CRL from (http and https, at most MAX_POINTS),
    and a note for each distribution point passed over."""
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return [], []
    except Exception as exc:  # a malformed extension: no URL to trust
        return [], [f"its CRL distribution points cannot be read ({exc})"]
    urls: list[str] = []
    notes: list[str] = []
    for point in points:
        if point.reasons:
            notes.append(
                "a CRL distribution point covers only some revocation reasons: passed over"
            )
            continue
        if point.crl_issuer:
            notes.append(
                "a CRL distribution point names another CRL issuer (an indirect CRL), which "
                "policyengine does not use"
            )
            continue
        if point.full_name is None:
            notes.append(
                "a CRL distribution point names its CRL relative to the issuer: not fetched"
            )
            continue
        for name in point.full_name:
            if not isinstance(name, x509.UniformResourceIdentifier):
                notes.append(f"CRL distribution point {name.value!r} is not a URL: not fetched")
            elif name.value.split(":", 1)[0].lower() not in ("http", "https"):
                notes.append(
                    f"CRL distribution point {name.value} passed over: only http and https"
                    " are fetched"
                )
            elif name.value not in urls:
                urls.append(name.value)
    if len(urls) > MAX_POINTS:
        notes.append(
            f"{len(urls) - MAX_POINTS} CRL distribution points after the first {MAX_POINTS}"
            " passed over"
        )
    return urls[:MAX_POINTS], notes


def _earliest(one: datetime | None, other: datetime | None) -> datetime | None:
    if one is None:
        return other
    return one if other is None else min(one, other)
