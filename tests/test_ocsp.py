"""OCSP against a real responder: ``openssl ocsp`` on loopback (``-index``, ``-port``,
``-rsigner``), started by the fixtures, and, for what openssl cannot be made to answer
(tryLater, garbage, a hang, a redirect, an oversized body), a local HTTP server.

Each case is decided through a whole policy (``trusted`` and ``revoked``) in ``hard`` and
in ``soft`` mode, the trace checked; time moves by the evaluation's ``now``, never by
sleeping. Every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID
from revocation_support import (
    Answering,
    decide,
    evidence_of,
    free_port,
    revoked_said,
    serving,
)

from policyengine import Policy, PolicyError, load_policy
from policyengine.request.fetch import Fetcher
from policyengine.request.ocsp import OcspEvidence
from policyengine.testing import (
    IssuedCertificate,
    OcspResponder,
    make_certificate,
    make_crl,
    write_ocsp_index,
)

pytest.importorskip("urllib3", reason="OCSP needs the revocation extra (urllib3)")
OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")

Responder = OcspResponder


@dataclass
class Pki:
    folder: Path
    ca: IssuedCertificate
    good: IssuedCertificate
    revoked: IssuedCertificate
    unlisted: IssuedCertificate
    """Issued by the CA but not in the responder's index: unknown."""
    index: Path
    signers: dict[str, IssuedCertificate] = field(default_factory=dict)

    def write_index(self, revoked: list[IssuedCertificate]) -> None:
        write_ocsp_index(
            self.index,
            [c for c in (self.good, self.revoked) if c not in revoked],
            revoked,
            revoked_at=datetime(2026, 12, 1, tzinfo=UTC),
        )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("ocsp")
    ca = make_certificate({"CN": "OCSP Test CA", "O": "Contoso"}, ca=True)

    def leaf(cn: str) -> IssuedCertificate:
        return make_certificate({"CN": cn, "O": "Contoso"}, issuer=ca)

    pki = Pki(folder, ca, leaf("good"), leaf("revoked"), leaf("unlisted"), folder / "index.txt")
    (folder / "ca.pem").write_bytes(ca.pem)
    pki.write_index([pki.revoked])
    signers = {
        "ca": ca,
        "delegated": make_certificate(
            {"CN": "OCSP Responder"},
            issuer=ca,
            extended_key_usage=[ExtendedKeyUsageOID.OCSP_SIGNING],
        ),
        "no-ocsp-signing": make_certificate(
            {"CN": "OCSP Responder"},
            issuer=ca,
            extended_key_usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
        ),
        # the CA's name on another key: what a forger has
        "wrong-key": make_certificate({"CN": "OCSP Test CA", "O": "Contoso"}, ca=True),
    }
    pki.signers = signers
    return pki


@pytest.fixture(scope="module")
def responders(pki: Pki) -> Iterator[dict[str, Responder]]:
    started: dict[str, Responder] = {}
    try:
        for name, signer in pki.signers.items():
            started[name] = OcspResponder.start(pki.folder, pki.ca, pki.index, signer=signer)
        yield started
    finally:
        for responder in started.values():
            responder.stop()


class _Misbehaving(Answering):
    """What openssl cannot be made to answer, by path."""

    content_type = "application/ocsp-response"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        if self.path == "/try-later":
            body = ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.TRY_LATER
            ).public_bytes(serialization.Encoding.DER)
            self.answer(200, body)
        elif self.path == "/garbage":
            self.answer(200, b"\x30\x03garbage")
        elif self.path == "/hang":
            time.sleep(2)
            self.answer(200, b"")
        elif self.path == "/drip":  # the status line and headers, a byte at a time
            for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/ocsp-response\r\n":
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.05)
        elif self.path == "/redirect":
            self.redirect("http://203.0.113.9/ocsp")
        elif self.path == "/huge":
            self.answer(200, b"\x30" * (2 << 20))
        else:
            self.answer(404, b"")


@pytest.fixture(scope="module")
def misbehaving() -> Iterator[str]:
    with serving(_Misbehaving) as url:
        yield url


def policy_for(pki: Pki, responder: str, mode: str, name: str = "ocsp", more: str = "") -> Policy:
    """``more``: lines of ``trust.revocation`` after ``ocsp.timeout``."""
    path = pki.folder / f"{name}-{mode}-{free_port()}.yaml"
    path.write_text(policy_for_text(responder, mode, name, more))
    return load_policy(path)


def policy_for_text(responder: str, mode: str, name: str, more: str = "") -> str:
    return (
        f"policy: {name}\n"
        "mode: required\n"
        "trust:\n"
        "  anchors: [ca.pem]\n"
        "  revocation:\n"
        f"    mode: {mode}\n"
        "    sources: [ocsp]\n"
        "    ocsp:\n"
        f"      responder: {responder}\n"
        "      timeout: 500ms\n"
        f"{more}"
        "rules:\n"
        "  - id: revoked\n"
        "    effect: deny\n"
        "    when: revoked\n"
        "  - id: partner\n"
        "    effect: allow\n"
        "    when: trusted\n"
    )


# -- the answers -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["hard", "soft"])
@pytest.mark.parametrize("signer", ["ca", "delegated"])
def test_good_revoked_and_unknown(
    pki: Pki, responders: dict[str, Responder], mode: str, signer: str
) -> None:
    policy = policy_for(pki, responders[signer].url, mode)
    good = decide(policy, pki.good)
    assert (good.allowed, good.rule) == (True, "partner"), revoked_said(good)
    assert f"good per OCSP {responders[signer].url} (produced " in revoked_said(good)
    revoked = decide(policy, pki.revoked)
    assert (revoked.allowed, revoked.rule) == (False, "revoked")
    assert "revoked at 2026-12-01T00:00:00Z, reason key_compromise" in revoked_said(revoked)
    unknown = decide(policy, pki.unlisted)
    assert (unknown.allowed, unknown.rule) == (
        (False, "revoked") if mode == "hard" else (True, "partner")
    )
    assert f"unknown to OCSP {responders[signer].url}" in revoked_said(unknown)


@pytest.mark.parametrize("mode", ["hard", "soft"])
@pytest.mark.parametrize(
    ("where", "said"),
    [
        ("wrong-key", "whose signature does not verify"),
        ("no-ocsp-signing", "the responder certificate lacks id-kp-OCSPSigning"),
        ("/try-later", "answered try_later"),
        ("/garbage", "sent what is not an OCSP response"),
        ("/hang", "took longer than 0.5 s"),
        ("/drip", "took longer than 0.5 s"),
        ("/redirect", "redirected to http://203.0.113.9/ocsp; redirects are not followed"),
        ("/huge", "over fetch.max_bytes"),
        ("down", "could not be reached"),
    ],
)
def test_an_answer_that_cannot_be_believed_is_unknown(
    pki: Pki,
    responders: dict[str, Responder],
    misbehaving: str,
    mode: str,
    where: str,
    said: str,
) -> None:
    if where in ("/hang", "/drip") and "FAKETIME" in os.environ:  # scripts/test's later run
        pytest.skip("under libfaketime a thread's timed wait does not end on time")
    if where in responders:
        url = responders[where].url
    elif where == "down":
        url = f"http://127.0.0.1:{free_port()}"
    else:
        url = misbehaving + where
    policy = policy_for(pki, url, mode)
    started = time.monotonic()
    decision = decide(policy, pki.revoked if where == "wrong-key" else pki.good)
    assert time.monotonic() - started < 1.5  # the timeout (500ms) bounds the wait
    expected = (False, "revoked") if mode == "hard" else (True, "partner")
    assert (decision.allowed, decision.rule) == expected
    line = revoked_said(decision)
    assert said in line, line
    assert url.split("/")[2] in line  # the responder that failed is named


def test_nothing_is_asked_for_a_chain_that_did_not_verify(
    pki: Pki, responders: dict[str, Responder]
) -> None:
    responder = responders["ca"]
    policy = policy_for(pki, responder.url, "hard")
    stranger_ca = make_certificate({"CN": "Another CA"}, ca=True)
    stranger = make_certificate({"CN": "mallory"}, issuer=stranger_ca, ocsp=responder.url)
    before = responder.requests()
    decision = decide(policy, stranger)
    assert not decision.allowed
    time.sleep(0.2)  # a request would be logged by now
    assert responder.requests() == before


def test_the_certificate_s_own_responder_is_asked(
    pki: Pki, responders: dict[str, Responder]
) -> None:
    """No ``responder:``: the URL in the certificate's authority information access."""
    url = responders["ca"].url
    path = pki.folder / "aia.yaml"
    path.write_text(
        "policy: aia\nmode: required\ntrust:\n  anchors: [ca.pem]\n  revocation:\n"
        "    mode: hard\n    sources: [ocsp]\nrules:\n  - id: any\n    effect: allow\n"
        "    when: trusted and not revoked\n"
    )
    policy = load_policy(path)
    with_aia = make_certificate(
        {"CN": "good"}, issuer=pki.ca, serial=pki.good.certificate.serial_number, ocsp=url
    )
    assert decide(policy, with_aia).allowed
    without = decide(policy, pki.unlisted)
    assert not without.allowed
    assert "the certificate names no OCSP responder" in revoked_said(without)


# -- caching ---------------------------------------------------------------------------


def test_concurrent_first_sightings_make_one_request(
    pki: Pki, responders: dict[str, Responder]
) -> None:
    responder = responders["delegated"]
    policy = policy_for(pki, responder.url, "hard", name="crowd")
    before = responder.requests()
    barrier = threading.Barrier(200)
    results: list[bool] = []

    def ask() -> None:
        barrier.wait(timeout=20)
        results.append(decide(policy, pki.good).allowed)

    threads = [threading.Thread(target=ask) for _ in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results == [True] * 200
    time.sleep(0.2)
    assert responder.requests() - before == 1


@contextlib.contextmanager
def good_revoked_at(pki: Pki, responder: Responder) -> Iterator[None]:
    """``pki.good`` revoked at the responder while the block runs."""
    pki.write_index([pki.revoked, pki.good])
    responder.reread()
    try:
        yield
    finally:
        pki.write_index([pki.revoked])
        responder.reread()


def _first_answer(policy: Policy, pki: Pki) -> datetime:
    """Decide ``pki.good`` once (allowed): when its answer was produced."""
    first = decide(policy, pki.good)
    assert first.allowed
    produced = re.search(r"produced (\S+),", revoked_said(first))
    assert produced is not None
    return datetime.fromisoformat(produced.group(1).replace("Z", "+00:00"))


def test_a_revocation_is_seen_once_the_cached_answer_expires(
    pki: Pki, responders: dict[str, Responder]
) -> None:
    """``max_age: 1m`` caps the cached answer's life; the test's clock passes it. Not asked
    for in its last ten seconds, it is not renewed: the request after its end asks."""
    responder = responders["ca"]
    policy = policy_for(pki, responder.url, "hard", "later", "      max_age: 1m\n")
    since = _first_answer(policy, pki)
    with good_revoked_at(pki, responder):
        before = responder.requests()
        time.sleep(1.1)  # the next answer is produced a second after the first, at least
        # the cached answer still holds, before its renewal time: no request, allowed
        assert decide(policy, pki.good, since + timedelta(seconds=45)).allowed
        assert responder.requests() == before
        # past it (the new answer, produced a second later at least, is fresh): revoked
        later = decide(policy, pki.good, since + timedelta(seconds=60.5))
        assert (later.allowed, later.rule) == (False, "revoked"), revoked_said(later)
        assert "revoked at 2026-12-01T00:00:00Z" in revoked_said(later)
        time.sleep(0.2)
        assert responder.requests() == before + 1


def test_an_answer_asked_for_near_its_end_is_renewed_behind_the_request(
    pki: Pki, responders: dict[str, Responder]
) -> None:
    """In its last ten seconds the answer is served as kept and renewed in the background;
    past its end, the renewed answer decides with no request on the request's path."""
    responder = responders["delegated"]
    policy = policy_for(pki, responder.url, "hard", "renewed", "      max_age: 1m\n")
    since = _first_answer(policy, pki)
    with good_revoked_at(pki, responder):
        before = responder.requests()
        time.sleep(1.1)  # the renewed answer is produced a second after the first, at least
        renewing = decide(policy, pki.good, since + timedelta(seconds=55))
        assert renewing.allowed, revoked_said(renewing)  # the kept answer, at once
        evidence_of(policy, OcspEvidence).answers.settle()
        time.sleep(0.2)  # openssl logs the request it answered
        assert responder.requests() == before + 1
        later = decide(policy, pki.good, since + timedelta(seconds=60.5))
        assert (later.allowed, later.rule) == (False, "revoked"), revoked_said(later)
        time.sleep(0.2)
        assert responder.requests() == before + 1


# -- the policy file -------------------------------------------------------------------


def test_a_host_outside_allow_hosts_is_not_asked(
    pki: Pki, responders: dict[str, Responder]
) -> None:
    responder = responders["ca"]
    fetch = "    fetch:\n      allow_hosts: ['*.contoso.com']\n      max_bytes: 64KiB\n"
    policy = policy_for(pki, responder.url, "hard", "hosts", fetch)
    before = responder.requests()
    decision = decide(policy, pki.good)
    assert (decision.allowed, decision.rule) == (False, "revoked")
    assert "the host 127.0.0.1 is not in fetch.allow_hosts (*.contoso.com)" in revoked_said(
        decision
    )
    time.sleep(0.2)
    assert responder.requests() == before


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("      timeout: fast", '"fast" is not a time to wait'),
        ("      responder: ldap://ocsp.contoso.com", "is not an http(s) URL"),
        ("    sources: [ocsp, ldap]", 'is "ldap"; it must be `ocsp` or `crl_distribution_points`'),
    ],
)
def test_a_malformed_online_setting_names_its_line(
    pki: Pki, tmp_path: Path, line: str, said: str
) -> None:
    text = policy_for_text("http://127.0.0.1:9", "hard", "bad")
    key = line.split(":")[0] + ":"
    lines = [line if row.startswith(key) else row for row in text.splitlines()]
    (tmp_path / "ca.pem").write_bytes(pki.ca.pem)
    path = tmp_path / "bad.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    number = lines.index(line) + 1
    assert str(caught.value).startswith(f"{path}:{number}:"), str(caught.value)
    assert said in str(caught.value)


# -- what openssl will not sign: responses built here, handed over in process ------------


class Canned:
    """A Fetcher that answers every OCSP request with ``answer(request)``: for responses
    no responder here signs (another CA's, SHA-1 signed, hostile bytes)."""

    timeout = 0.5

    def __init__(self, answer: Callable[[ocsp.OCSPRequest], bytes]) -> None:
        self.answer = answer
        self.calls = 0

    def fetch(self, url: str, *, body: bytes, content_type: str) -> bytes:
        self.calls += 1
        return self.answer(ocsp.load_der_ocsp_request(body))

    def allowed(self, url: str) -> None:
        return None


def signed(
    cert: IssuedCertificate,
    issuer: IssuedCertificate,
    status: ocsp.OCSPCertStatus,
    algorithm: hashes.HashAlgorithm | None = None,
) -> bytes:
    now = datetime.now(UTC)
    builder = ocsp.OCSPResponseBuilder().add_response(
        cert.certificate,
        issuer.certificate,
        hashes.SHA1(),
        status,
        now - timedelta(minutes=1),
        now + timedelta(hours=1),
        now - timedelta(days=1) if status == ocsp.OCSPCertStatus.REVOKED else None,
        None,
    )
    builder = builder.responder_id(ocsp.OCSPResponderEncoding.NAME, issuer.certificate)
    response = builder.sign(issuer.key, algorithm or hashes.SHA256())  # type: ignore[arg-type]
    return response.public_bytes(serialization.Encoding.DER)


def evidence(fetcher: Canned) -> OcspEvidence:
    return OcspEvidence(fetcher, responder="http://ocsp.test/", max_age=timedelta(days=1))  # type: ignore[arg-type]


def test_two_issuers_of_one_key_do_not_share_answers() -> None:
    """Two CA names on one key, one serial each: the good answer about one certificate is
    not the revoked one's (the answers are kept by issuer name and key, and serial)."""
    key = ec.generate_private_key(ec.SECP256R1())
    one = make_certificate({"CN": "CA one"}, ca=True, key=key)
    two = make_certificate({"CN": "CA two"}, ca=True, key=key)
    x = make_certificate({"CN": "x"}, issuer=one, serial=77)
    y = make_certificate({"CN": "y"}, issuer=two, serial=77)

    def answer(request: ocsp.OCSPRequest) -> bytes:
        if request.issuer_name_hash == hashes_of(one):
            return signed(x, one, ocsp.OCSPCertStatus.GOOD)
        return signed(y, two, ocsp.OCSPCertStatus.REVOKED)

    fetcher = Canned(answer)
    seen = evidence(fetcher)
    now = datetime.now(UTC)
    assert seen.status(x.certificate, one.certificate, now).status == "good"
    assert seen.status(y.certificate, two.certificate, now).status == "revoked"
    assert fetcher.calls == 2


def hashes_of(issuer: IssuedCertificate) -> bytes:
    digest = hashes.Hash(hashes.SHA1())
    digest.update(issuer.certificate.subject.public_bytes())
    return digest.finalize()


def test_a_sha1_signed_response_is_not_believed(pki: Pki) -> None:
    fetcher = Canned(lambda _: signed(pki.good, pki.ca, ocsp.OCSPCertStatus.GOOD, hashes.SHA1()))
    finding = evidence(fetcher).status(pki.good.certificate, pki.ca.certificate, datetime.now(UTC))
    assert finding.status == "unknown"
    assert "sha1" in finding.detail.lower(), finding  # cryptography refuses it, or we do


def test_a_response_cryptography_cannot_read_is_unknown_not_an_error(pki: Pki) -> None:
    good = signed(pki.good, pki.ca, ocsp.OCSPCertStatus.GOOD)
    sha1 = bytes.fromhex("06052b0e03021a")  # the CertID's hash algorithm, made unknown
    hostile = good.replace(sha1, bytes.fromhex("06052b0e03021b"))
    fetcher = Canned(lambda _: hostile)
    seen = evidence(fetcher)
    now = datetime.now(UTC)
    finding = seen.status(pki.good.certificate, pki.ca.certificate, now)
    assert finding.status == "unknown" and "cannot be read" in finding.detail, finding
    seen.status(pki.good.certificate, pki.ca.certificate, now)
    assert fetcher.calls == 1  # the failure is kept (RETRY), not asked again at once


def test_a_crl_file_that_lists_the_certificate_outweighs_a_good_ocsp_answer(
    pki: Pki, responders: dict[str, Responder], tmp_path: Path
) -> None:
    crl = make_crl(pki.ca, [pki.good.certificate.serial_number])
    (pki.folder / "listed.crl").write_bytes(crl)
    both = "    crls: [listed.crl]\n"
    text = policy_for_text(responders["ca"].url, "hard", "both", both)
    path = pki.folder / "both.yaml"
    path.write_text(text.replace("sources: [ocsp]", "sources: [ocsp, crls]"))
    decision = decide(load_policy(path), pki.good)
    assert (decision.allowed, decision.rule) == (False, "revoked")
    assert "listed.crl" in revoked_said(decision)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080\\@ocsp.contoso.com/",
        "http://1.1.1.1\\.contoso.com/",
        "http://user@ocsp.contoso.com/",
        "http://ocsp.contoso.com%2e/",
        "http://ocsp.contoso.com/\x00",
        "ftp://ocsp.contoso.com/",
        "http://ocsp.fabrikam.com/",
    ],
)
def test_allow_hosts_is_checked_on_the_host_the_connection_uses(url: str) -> None:
    fetcher = Fetcher(timeout=0.2, max_bytes=1024, allow_hosts=["ocsp.contoso.com", "[::1]"])
    assert fetcher.allowed(url) is not None
    assert fetcher.allowed("http://ocsp.contoso.com/ocsp") is None
    assert fetcher.allowed("http://[::1]:8080/") is None


@pytest.mark.parametrize(("signs", "status"), [(True, "good"), (False, "unknown")])
def test_a_delegated_responder_s_key_usage_must_allow_signing(signs: bool, status: str) -> None:
    """A responder certificate with a key usage must hold digitalSignature in it."""
    ca = make_certificate({"CN": "CA"}, ca=True)
    client = make_certificate({"CN": "client"}, issuer=ca)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    usage = x509.KeyUsage(signs, False, not signs, False, False, False, False, False, False)
    delegate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name.from_rfc4514_string("CN=Responder"))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        .add_extension(usage, critical=True)
        .sign(ca.key, hashes.SHA256())  # type: ignore[arg-type]
    )
    builder = ocsp.OCSPResponseBuilder().add_response(
        client.certificate,
        ca.certificate,
        hashes.SHA1(),
        ocsp.OCSPCertStatus.GOOD,
        now - timedelta(minutes=1),
        now + timedelta(hours=1),
        None,
        None,
    )
    builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, delegate).certificates(
        [delegate]
    )
    body = builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    finding = evidence(Canned(lambda _: body)).status(client.certificate, ca.certificate, now)
    assert finding.status == status, finding.detail
    if not signs:
        assert "key usage does not include digitalSignature" in finding.detail


def test_a_responder_outside_allow_hosts_is_a_warning_on_its_line(pki: Pki) -> None:
    path = pki.folder / "outside.yaml"
    fetch = "    fetch:\n      allow_hosts: ['*.contoso.com']\n"
    path.write_text(policy_for_text("http://127.0.0.1:9/", "hard", "outside", fetch))
    [warning] = [w for w in load_policy(path).warnings if w.code == "trust-revocation"]
    assert (warning.span.line, warning.span.column) == (9, 18)
    assert warning.message == (
        "ocsp.responder: the host 127.0.0.1 is not in fetch.allow_hosts (*.contoso.com)"
    )
    assert warning.hint == "add its host to fetch.allow_hosts, or name a responder there"


def test_without_the_revocation_extra_an_online_source_is_an_error_on_its_line(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """urllib3 missing (as if the extra were not installed): the source that needs it is
    named, on its line, with what to install."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "urllib3" else real(name, *a)
    )
    path = pki.folder / "no-extra.yaml"
    path.write_text(policy_for_text("http://127.0.0.1:9/", "hard", "no-extra"))
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert str(caught.value).startswith(
        f"{path}:7:15: error: revocation source ocsp needs an HTTP client: pip install"
        " 'policyengine[revocation]'"
    )
    assert str(caught.value).endswith(
        "hint: install the extra, or remove the source from trust.revocation.sources"
    )


def test_an_older_good_answer_does_not_replace_a_revoked_one() -> None:
    """A replayed older "good" (validly signed, not expired) served when a "revoked" answer
    is renewed, and after it ends: refused both times, never a false allow."""
    ca = make_certificate({"CN": "CA"}, ca=True)
    client = make_certificate({"CN": "client"}, issuer=ca)
    now = datetime.now(UTC).replace(microsecond=0)

    def response(status: ocsp.OCSPCertStatus, this: datetime, until: datetime) -> bytes:
        builder = ocsp.OCSPResponseBuilder().add_response(
            client.certificate,
            ca.certificate,
            hashes.SHA1(),
            status,
            this,
            until,
            this if status == ocsp.OCSPCertStatus.REVOKED else None,
            None,
        )
        builder = builder.responder_id(ocsp.OCSPResponderEncoding.NAME, ca.certificate)
        signed = builder.sign(ca.key, hashes.SHA256())  # type: ignore[arg-type]
        return signed.public_bytes(serialization.Encoding.DER)

    revoked = response(
        ocsp.OCSPCertStatus.REVOKED, now - timedelta(minutes=1), now + timedelta(hours=2)
    )
    replayed = response(
        ocsp.OCSPCertStatus.GOOD, now - timedelta(hours=2), now + timedelta(hours=22)
    )
    served = [revoked]
    fetcher = Canned(lambda _: served[0])
    seen = evidence(fetcher)
    assert seen.status(client.certificate, ca.certificate, now).status == "revoked"
    served[0] = replayed
    renewing = now + timedelta(hours=1, minutes=50)
    assert seen.status(client.certificate, ca.certificate, renewing).status == "revoked"
    seen.answers.settle()
    assert fetcher.calls == 2
    assert (
        seen.status(client.certificate, ca.certificate, renewing + timedelta(minutes=1)).status
        == "revoked"
    )
    after = seen.status(client.certificate, ca.certificate, now + timedelta(hours=2, minutes=1))
    assert after.status == "unknown"
    assert "answered with a response older than one it gave before" in after.detail


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_an_expired_answer_is_unknown(
    pki: Pki, responders: dict[str, Responder], mode: str
) -> None:
    """openssl's answers are fresh an hour (``-nmin 60``); asked at a time two hours on,
    the answer it gives is past its nextUpdate when it comes."""
    policy = policy_for(pki, responders["ca"].url, mode, "expired")
    decision = decide(policy, pki.good, datetime.now(UTC) + timedelta(hours=2))
    expected = (False, "revoked") if mode == "hard" else (True, "partner")
    assert (decision.allowed, decision.rule) == expected
    assert "answered with a stale response (next update " in revoked_said(decision)
