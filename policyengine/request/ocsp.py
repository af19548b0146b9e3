"""OCSP (RFC 6960): the ``ocsp`` source of revocation evidence.

:class:`OcspEvidence` asks the certificate's responder (the OCSP URL of its authority
information access, or ``trust.revocation.ocsp.responder`` for all) about it and its
issuer, and believes the answer only when:

* the response is ``successful`` and holds a single response for this serial number and
  this issuer (the hashes of its name and key);
* it is signed by the issuer itself, or by a responder certificate the issuer signed that
  holds id-kp-OCSPSigning (and digitalSignature, when it has a key usage) and is valid now
  (a delegated responder);
* it is fresh: ``thisUpdate`` not in the future (a minute's skew allowed) and
  ``nextUpdate`` not past; its life is capped by ``max_age`` from ``thisUpdate`` (and a
  response without ``nextUpdate`` lives ``max_age``).

``good`` and ``revoked`` are definite; ``unknown``, and every failure (no responder, a
fetch that fails, ``tryLater``, a bad signature, a stale answer), is unknown, with the
reason: then the next source is asked, and ``soft`` or ``hard`` decide.

Answers are kept per issuer (its name and key) and serial number until they expire, and
renewed in the background before they do (:mod:`~policyengine.request.answers`); a failure
is remembered for :data:`~policyengine.request.answers.RETRY` so that a responder that is
down is not asked on every request. Concurrent first sightings of one certificate make one
request (single flight): the others wait for it, at most the fetch timeout.

Owns OcspEvidence. Imports cryptography and the request side's own modules (``fetch.py``
does the HTTP), never ``language/`` or ``evaluation/``.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterator, Sequence
from datetime import datetime, timedelta
from typing import ClassVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from policyengine.request.answers import RETRY, SKEW, Answers, Floors, Held, issuer_id
from policyengine.request.der import read_tlv
from policyengine.request.fetch import Fetcher, FetchError
from policyengine.request.revocation import Finding, Problem
from policyengine.values import format_serial, format_time

__all__ = ["ANSWERS", "OcspEvidence"]

ANSWERS = 16384
"""Answers kept at most (one per certificate asked about); the oldest go first."""
_MEDIA = "application/ocsp-request"


class OcspEvidence:
    """OCSP answers for certificates whose chain verified."""

    local: ClassVar[bool] = False

    def __init__(
        self, fetcher: Fetcher, *, responder: str | None = None, max_age: timedelta
    ) -> None:
        self.fetcher = fetcher
        self.responder = responder
        self.max_age = max_age
        self.answers: Answers[tuple[bytes, int], Finding] = Answers(
            capacity=ANSWERS, wait=fetcher.timeout + 1.0
        )
        self.floors: Floors[tuple[bytes, int]] = Floors()
        """The newest thisUpdate seen per certificate: an older response is refused."""

    def status(self, cert: x509.Certificate, issuer: x509.Certificate, now: datetime) -> Finding:
        key = (issuer_id(issuer), cert.serial_number)
        held = self.answers.get(key, now, functools.partial(self._ask, key, cert, issuer))
        if held is None:
            why = "OCSP: another request's answer did not come in time"
            return Finding("unknown", why, now + RETRY)
        return held.value._replace(next_update=held.next_look(now))

    def moments(self, issuers: Collection[x509.Name]) -> Iterator[datetime]:
        # An answer is about one certificate, not about every certificate of its issuer
        # (as a CRL is): its finding's next_update already ends the cached verification of
        # its own chain, and walking every answer of a busy CA here would cost each new
        # client's verification thousands of steps.
        return iter(())

    def problems(self, known: Sequence[x509.Certificate], now: datetime) -> list[Problem]:
        if self.responder is not None and (refused := self.fetcher.allowed(self.responder)):
            return [("responder", 0, f"ocsp.responder: {refused}")]
        return []

    # -- one question ------------------------------------------------------------------

    def _ask(
        self,
        key: tuple[bytes, int],
        cert: x509.Certificate,
        issuer: x509.Certificate,
        now: datetime,
        previous: Held[Finding] | None,
    ) -> Held[Finding]:
        url = self.responder or _responder_of(cert)
        if url is None:
            return _failure("OCSP: the certificate names no OCSP responder", now)
        try:
            request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())
            body = request.build().public_bytes(serialization.Encoding.DER)
            data = self.fetcher.fetch(url, body=body, content_type=_MEDIA)
            return self._read(data, url, key, cert, issuer, now)
        except (FetchError, _Refused) as exc:
            return _failure(f"OCSP: {exc}", now)
        except Exception as exc:  # a hostile response cryptography cannot read: unknown
            why = f"OCSP: {url} sent a response that cannot be read ({type(exc).__name__}: {exc})"
            return _failure(why, now)

    def _read(
        self,
        data: bytes,
        url: str,
        key: tuple[bytes, int],
        cert: x509.Certificate,
        issuer: x509.Certificate,
        now: datetime,
    ) -> Held[Finding]:
        try:
            response = ocsp.load_der_ocsp_response(data)
        except ValueError as exc:
            raise _Refused(f"{url} sent what is not an OCSP response ({exc})") from None
        if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            raise _Refused(f"{url} answered {response.response_status.name.lower()}")
        single = _single_for(response, cert, issuer)
        if single is None:
            raise _Refused(f"{url} answered about another certificate")
        _check_signature(response, issuer, now, url)
        this_update = single.this_update_utc
        next_update = single.next_update_utc
        if this_update > now + SKEW:
            raise _Refused(
                f"{url} answered with a thisUpdate in the future ({format_time(this_update)})"
            )

        until = this_update + self.max_age
        if next_update is not None:
            until = min(until, next_update)
        if until <= now:
            raise _Refused(
                f"{url} answered with a stale response (next update {format_time(until)})"
            )
        when = f"produced {format_time(response.produced_at_utc)}, next update {format_time(until)}"
        status = single.certificate_status
        if status == ocsp.OCSPCertStatus.GOOD:
            finding = Finding("good", f"good per OCSP {url} ({when})", until)
        elif status == ocsp.OCSPCertStatus.REVOKED:
            reason = single.revocation_reason
            why = f", reason {reason.name}" if reason is not None else ""
            revoked_at = format_time(single.revocation_time_utc)
            finding = Finding(
                "revoked",
                f"serial {format_serial(cert.serial_number)} revoked at {revoked_at}{why}"
                f" per OCSP {url} ({when})",
                until,
            )
        else:
            finding = Finding("unknown", f"unknown to OCSP {url} ({when})", until)
        seen = self.floors.admit(key, (this_update,))
        if seen is not None:  # an older answer replayed, or a responder's cache behind
            raise _Refused(
                f"{url} answered with a response older than one it gave before (thisUpdate"
                f" {format_time(this_update)}, before {format_time(seen[0])})"
            )
        return Held(finding, this_update, until)


def _failure(why: str, now: datetime) -> Held[Finding]:
    return Held(Finding("unknown", why, now + RETRY), now, now + RETRY, lasting=False)


class _Refused(Exception):
    """An OCSP response that cannot be believed: why."""


def _responder_of(cert: x509.Certificate) -> str | None:
    try:
        access = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
    except (x509.ExtensionNotFound, ValueError):
        return None
    for description in access.value:
        location = description.access_location
        if description.access_method == AuthorityInformationAccessOID.OCSP and isinstance(
            location, x509.UniformResourceIdentifier
        ):
            return location.value
    return None


def _key_hash(cert: x509.Certificate) -> bytes:
    """SHA-1 of the subject public key's bits: how OCSP names an issuer's key."""
    digest = hashes.Hash(hashes.SHA1())
    digest.update(_key_bits(cert))
    return digest.finalize()


def _key_bits(cert: x509.Certificate) -> bytes:
    """The BIT STRING contents of subjectPublicKey (without its algorithm)."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # SubjectPublicKeyInfo ::= SEQUENCE { algorithm, subjectPublicKey BIT STRING }
    _, start, end = read_tlv(spki, 0, "a public key")
    _, _, after_algorithm = read_tlv(spki, start, "a public key", end)
    _, bits, stop = read_tlv(spki, after_algorithm, "a public key", end)
    return spki[bits + 1 : stop]  # the first byte counts the unused bits


def _single_for(
    response: ocsp.OCSPResponse, cert: x509.Certificate, issuer: x509.Certificate
) -> ocsp.OCSPSingleResponse | None:
    """The single response about ``cert`` of ``issuer``, by serial and issuer hashes."""
    for single in response.responses:
        if single.serial_number != cert.serial_number:
            continue
        algorithm = single.hash_algorithm
        name_hash = hashes.Hash(algorithm)
        name_hash.update(issuer.subject.public_bytes())
        key_hash = hashes.Hash(type(algorithm)())
        key_hash.update(_key_bits(issuer))
        if single.issuer_name_hash == name_hash.finalize() and (
            single.issuer_key_hash == key_hash.finalize()
        ):
            return single
    return None


def _check_signature(
    response: ocsp.OCSPResponse, issuer: x509.Certificate, now: datetime, url: str
) -> None:
    """Raise unless the issuer, or a delegated responder it issued, signed ``response``."""
    signer = _signer(response, issuer, now, url)
    try:
        _verify(signer.public_key(), response)
    except (InvalidSignature, TypeError, ValueError) as exc:
        raise _Refused(f"{url} sent a response whose signature does not verify ({exc!r})") from None


def _signer(
    response: ocsp.OCSPResponse, issuer: x509.Certificate, now: datetime, url: str
) -> x509.Certificate:
    if _names(response, issuer):
        return issuer
    for candidate in response.certificates:
        if not _names(response, candidate):
            continue
        if candidate.issuer != issuer.subject:
            raise _Refused(f"{url}: the responder certificate was not issued by the issuer")
        try:
            candidate.verify_directly_issued_by(issuer)
        except (InvalidSignature, TypeError, ValueError):
            raise _Refused(
                f"{url}: the responder certificate is not signed by the issuer"
            ) from None
        try:
            usage = candidate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            usage = x509.ExtendedKeyUsage([])
        if ExtendedKeyUsageOID.OCSP_SIGNING not in usage:
            raise _Refused(f"{url}: the responder certificate lacks id-kp-OCSPSigning")
        if not _may_sign(candidate):
            raise _Refused(
                f"{url}: the responder certificate's key usage does not include digitalSignature"
            )
        if not candidate.not_valid_before_utc <= now <= candidate.not_valid_after_utc:
            raise _Refused(f"{url}: the responder certificate is not valid now")
        return candidate
    raise _Refused(f"{url} sent a response signed by neither the issuer nor a responder it named")


def _may_sign(cert: x509.Certificate) -> bool:
    """A key usage, when there is one, that includes digitalSignature (what signing a
    response is); one that cannot be read does not."""
    try:
        return bool(cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature)
    except x509.ExtensionNotFound:
        return True
    except Exception:
        return False


def _names(response: ocsp.OCSPResponse, cert: x509.Certificate) -> bool:
    """Whether the response's responder ID names ``cert`` (by name or by key hash)."""
    if response.responder_name is not None:
        return response.responder_name == cert.subject
    return response.responder_key_hash == _key_hash(cert)


def _verify(key: object, response: ocsp.OCSPResponse) -> None:
    signature, data = response.signature, response.tbs_response_bytes
    algorithm = response.signature_hash_algorithm
    if isinstance(algorithm, hashes.MD5 | hashes.SHA1):
        raise ValueError(f"signed with {algorithm.name.upper()}, which is not accepted")
    if isinstance(key, rsa.RSAPublicKey) and algorithm is not None:
        key.verify(signature, data, padding.PKCS1v15(), algorithm)
    elif isinstance(key, ec.EllipticCurvePublicKey) and algorithm is not None:
        key.verify(signature, data, ec.ECDSA(algorithm))
    elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        key.verify(signature, data)
    else:
        raise TypeError(f"a {type(key).__name__} signature is not checked")
