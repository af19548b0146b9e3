"""CRLs fetched from certificates' distribution points, served by a real HTTP server on
loopback that the fixture starts (``http.server``), which counts the requests it gets.

Each case is decided through a whole policy (``trusted`` and ``revoked``), in ``hard`` and
``soft`` mode where the answer is unknown; time moves by the evaluation's ``now``, never by
sleeping. Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from revocation_support import (
    Answering,
    decide,
    evidence_of,
    free_port,
    revoked_said,
    serving,
)

from policyengine import Policy, load_policy
from policyengine.integrations.asgi import PolicyMiddleware
from policyengine.integrations.runtime import DECISION_LOGGER, DecisionLog
from policyengine.request.distribution import MAX_POINTS, DistributionPointEvidence, points_of
from policyengine.testing import IssuedCertificate, make_certificate, make_crl

pytest.importorskip("urllib3", reason="fetching CRLs needs the revocation extra (urllib3)")


@dataclass
class CrlServer:
    """What each path serves, and how many requests each path got."""

    base: str = ""
    served: dict[str, bytes] = field(default_factory=dict)
    hits: collections.Counter[str] = field(default_factory=collections.Counter)

    def url(self, path: str) -> str:
        return self.base + path


def _handler(server: CrlServer) -> type[Answering]:
    class Handler(Answering):
        protocol_version = "HTTP/1.1"
        content_type = "application/pkix-crl"

        def do_GET(self) -> None:
            server.hits[self.path] += 1
            if self.path == "/hang":
                time.sleep(2)
                self.answer(200, b"")
            elif self.path == "/redirect":
                self.redirect("http://203.0.113.9/ca.crl")
            elif self.path == "/slow.crl":  # a CRL that takes 300 ms to come
                time.sleep(0.3)
                self.answer(200, server.served[self.path])
            elif self.path == "/huge":  # says so up front
                self.answer(200, b"\x30" * (2 << 20))
            elif self.path == "/endless":  # does not say: read until the cap
                self.send_response(200)
                self.send_header("Connection", "close")
                self.end_headers()
                with contextlib.suppress(OSError):
                    for _ in range(64):
                        self.wfile.write(b"\x30" * 65536)
            elif self.path in server.served:
                self.answer(200, server.served[self.path])
            else:
                self.answer(404, b"")

    return Handler


@pytest.fixture(scope="module")
def crl_server() -> Iterator[CrlServer]:
    state = CrlServer()
    with serving(_handler(state)) as url:
        state.base = url
        yield state


@dataclass
class Pki:
    folder: Path
    ca: IssuedCertificate
    other_ca: IssuedCertificate
    """Another CA under the same name: what a forger has."""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("cdp")
    ca = make_certificate({"CN": "CDP Test CA", "O": "Contoso"}, ca=True)
    (folder / "ca.pem").write_bytes(ca.pem)
    other = make_certificate({"CN": "CDP Test CA", "O": "Contoso"}, ca=True)
    return Pki(folder, ca, other)


_count = iter(range(10**6))


def policy_for(
    pki: Pki, mode: str, sources: str = "[crl_distribution_points]", intermediates: str = "[]"
) -> Policy:
    path = pki.folder / f"cdp-{mode}-{next(_count)}.yaml"
    path.write_text(
        f"policy: cdp\nmode: required\ntrust:\n  anchors: [ca.pem]\n"
        f"  intermediates: {intermediates}\n  revocation:\n"
        f"    mode: {mode}\n    sources: {sources}\n    ocsp:\n      timeout: 500ms\n"
        "rules:\n  - id: revoked\n    effect: deny\n    when: revoked\n"
        "  - id: partner\n    effect: allow\n    when: trusted\n"
    )
    return load_policy(path)


def leaf(pki: Pki, *urls: str, issuer: IssuedCertificate | None = None) -> IssuedCertificate:
    return make_certificate(
        {"CN": "client", "O": "Contoso"}, issuer=issuer or pki.ca, crl_urls=urls
    )


def serve(server: CrlServer, path: str, crl: bytes) -> str:
    server.served[path] = crl
    return server.url(path)


# -- the answers -----------------------------------------------------------------------


def test_good_and_revoked_from_the_distribution_point(pki: Pki, crl_server: CrlServer) -> None:
    good, revoked = leaf(pki, crl_server.url("/ca.crl")), leaf(pki, crl_server.url("/ca.crl"))
    serve(crl_server, "/ca.crl", make_crl(pki.ca, [revoked.certificate.serial_number]))
    policy = policy_for(pki, "hard")
    allowed = decide(policy, good)
    assert (allowed.allowed, allowed.rule) == (True, "partner"), revoked_said(allowed)
    said = revoked_said(allowed)
    assert re.search(
        rf"not listed in CRL {re.escape(crl_server.url('/ca.crl'))}, published \S+Z, fresh"
        r" until \S+Z$",
        said,
    ), said
    denied = decide(policy, revoked)
    assert (denied.allowed, denied.rule) == (False, "revoked")
    assert "revoked on " in revoked_said(denied)
    assert f"(CRL {crl_server.url('/ca.crl')}, published " in revoked_said(denied)


@pytest.mark.parametrize("mode", ["hard", "soft"])
@pytest.mark.parametrize(
    ("where", "said"),
    [
        ("down", "could not be reached"),
        ("/missing.crl", "answered HTTP 404"),
        ("/hang", "took longer than 0.5 s"),
        ("/redirect", "redirected to http://203.0.113.9/ca.crl; redirects are not followed"),
        ("/huge", "over fetch.max_bytes"),
        ("/endless", "sent more than fetch.max_bytes"),
        ("/garbage.crl", "is not a CRL"),
        ("/forged.crl", "is not signed by O=Contoso,CN=CDP Test CA"),
        ("/stale.crl", "expired on"),
        ("/stranger.crl", "is issued by CN=Another CA, not by O=Contoso,CN=CDP Test CA"),
    ],
)
def test_a_crl_that_cannot_be_had_or_believed_is_unknown(
    pki: Pki, crl_server: CrlServer, mode: str, where: str, said: str
) -> None:
    if where == "/hang" and "FAKETIME" in os.environ:  # scripts/test's later run
        pytest.skip("under libfaketime a thread's timed wait does not end on time")
    now = datetime.now(UTC)
    crl_server.served["/garbage.crl"] = b"\x30\x03garbage"
    crl_server.served["/forged.crl"] = make_crl(pki.other_ca)
    crl_server.served["/stale.crl"] = make_crl(
        pki.ca, last_update=now - timedelta(days=2), next_update=now - timedelta(days=1)
    )
    stranger = make_certificate({"CN": "Another CA"}, ca=True)
    crl_server.served["/stranger.crl"] = make_crl(stranger)
    url = f"http://127.0.0.1:{free_port()}/ca.crl" if where == "down" else crl_server.url(where)
    policy = policy_for(pki, mode)
    started = time.monotonic()
    decision = decide(policy, leaf(pki, url))
    assert time.monotonic() - started < 1.5  # the timeout (500ms) bounds the wait
    expected = (False, "revoked") if mode == "hard" else (True, "partner")
    assert (decision.allowed, decision.rule) == expected
    line = revoked_said(decision)
    assert said in line, line
    assert "127.0.0.1" in line  # the URL that failed is named


def test_a_certificate_without_an_http_point_is_unknown_and_says_why(pki: Pki) -> None:
    policy = policy_for(pki, "hard")
    none = decide(policy, leaf(pki))
    assert not none.allowed
    assert "the certificate names no CRL distribution point" in revoked_said(none)
    ldap = decide(policy, leaf(pki, "ldap://ldap.contoso.com/cn=CA?certificateRevocationList"))
    assert not ldap.allowed
    assert "passed over: only http and https are fetched" in revoked_said(ldap)


def test_an_ldap_point_is_passed_over_and_the_http_one_answers(
    pki: Pki, crl_server: CrlServer
) -> None:
    url = serve(crl_server, "/both.crl", make_crl(pki.ca))
    decision = decide(policy_for(pki, "hard"), leaf(pki, "ldap://ldap.contoso.com/ca", url))
    assert decision.allowed
    said = revoked_said(decision)
    assert f"not listed in CRL {url}" in said
    assert "ldap://ldap.contoso.com/ca passed over" in said


@pytest.mark.parametrize("first", ["/missing.crl", "/huge", "/endless", "/garbage.crl"])
def test_the_next_point_is_asked_when_the_first_fails(
    pki: Pki, crl_server: CrlServer, first: str
) -> None:
    """On the same host, so over the same pooled connection: one left with unread bytes
    (a refusal, a body over the cap) is not reused."""
    crl_server.served["/garbage.crl"] = b"\x30\x03garbage"
    url = serve(crl_server, "/second.crl", make_crl(pki.ca))
    cert = leaf(pki, crl_server.url(first), url)
    decision = decide(policy_for(pki, "hard"), cert)
    assert decision.allowed, revoked_said(decision)


def test_points_of_reads_only_urls_of_the_issuer_s_own_crl() -> None:
    ca = make_certificate({"CN": "CA"}, ca=True)
    urls = [f"http://crl{n}.contoso.com/ca.crl" for n in range(MAX_POINTS + 2)]
    found, notes = points_of(make_certificate(issuer=ca, crl_urls=urls).certificate)
    assert (found, notes) == (
        urls[:MAX_POINTS],
        ["2 CRL distribution points after the first 4 passed over"],
    )
    indirect = x509.CRLDistributionPoints(
        [
            x509.DistributionPoint(
                [x509.UniformResourceIdentifier("http://crl.contoso.com/other.crl")],
                None,
                None,
                [x509.DirectoryName(x509.Name.from_rfc4514_string("CN=Other CA"))],
            )
        ]
    )
    cert = _with_extension(ca, indirect)
    found, notes = points_of(cert)
    assert found == []
    assert notes == [
        "a CRL distribution point names another CRL issuer (an indirect CRL), which "
        "policyengine does not use"
    ]


def _with_extension(ca: IssuedCertificate, value: x509.ExtensionType) -> x509.Certificate:
    from cryptography.hazmat.primitives import hashes

    base = make_certificate(issuer=ca).certificate
    builder = (
        x509.CertificateBuilder()
        .subject_name(base.subject)
        .issuer_name(base.issuer)
        .public_key(base.public_key())
        .serial_number(base.serial_number)
        .not_valid_before(base.not_valid_before_utc)
        .not_valid_after(base.not_valid_after_utc)
        .add_extension(value, critical=False)
    )
    return builder.sign(ca.key, hashes.SHA256())


def test_an_intermediate_is_checked_at_its_own_distribution_point(
    pki: Pki, crl_server: CrlServer
) -> None:
    """``check: chain``: the intermediate's distribution point is the root's CRL."""
    root_url = crl_server.url("/root.crl")
    intermediate = make_certificate(
        {"CN": "CDP Issuing CA"}, issuer=pki.ca, ca=True, crl_urls=[root_url]
    )
    inter_url = serve(crl_server, "/issuing.crl", make_crl(intermediate))
    cert = leaf(pki, inter_url, issuer=intermediate)
    (pki.folder / "issuing.pem").write_bytes(intermediate.pem)
    serve(crl_server, "/root.crl", make_crl(pki.ca))
    allowed = decide(policy_for(pki, "hard", intermediates="[issuing.pem]"), cert)
    assert allowed.allowed, revoked_said(allowed)
    assert "intermediate CN=CDP Issuing CA: serial" in revoked_said(allowed)
    serve(crl_server, "/root.crl", make_crl(pki.ca, [intermediate.certificate.serial_number]))
    again = decide(policy_for(pki, "hard", intermediates="[issuing.pem]"), cert)
    assert (again.allowed, again.rule) == (False, "revoked")
    assert "intermediate CN=CDP Issuing CA" in revoked_said(again)


def test_nothing_is_fetched_for_a_chain_that_did_not_verify(
    pki: Pki, crl_server: CrlServer
) -> None:
    stranger_ca = make_certificate({"CN": "Another CA"}, ca=True)
    cert = make_certificate(issuer=stranger_ca, crl_urls=[crl_server.url("/mallory.crl")])
    decision = decide(policy_for(pki, "hard"), cert)
    assert not decision.allowed
    time.sleep(0.2)  # a request would have come by now
    assert crl_server.hits["/mallory.crl"] == 0


def test_ocsp_down_then_the_distribution_point_answers(pki: Pki, crl_server: CrlServer) -> None:
    url = serve(crl_server, "/after-ocsp.crl", make_crl(pki.ca))
    cert = make_certificate(
        {"CN": "client"}, issuer=pki.ca, crl_urls=[url], ocsp=f"http://127.0.0.1:{free_port()}"
    )
    policy = policy_for(pki, "hard", "[ocsp, crl_distribution_points]")
    decision = decide(policy, cert)
    assert decision.allowed, revoked_said(decision)
    assert f"not listed in CRL {url}" in revoked_said(decision)


# -- caching and renewal ---------------------------------------------------------------


def test_concurrent_first_sightings_of_one_point_make_one_fetch(
    pki: Pki, crl_server: CrlServer
) -> None:
    url = serve(crl_server, "/crowd.crl", make_crl(pki.ca))
    policy = policy_for(pki, "hard")
    clients = [leaf(pki, url) for _ in range(20)]  # 20 certificates, 200 requests
    barrier = threading.Barrier(200)
    results: list[bool] = []

    def ask(cert: IssuedCertificate) -> None:
        barrier.wait(timeout=20)
        results.append(decide(policy, cert).allowed)

    threads = [threading.Thread(target=ask, args=(clients[n % 20],)) for n in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results == [True] * 200
    assert crl_server.hits["/crowd.crl"] == 1


def test_a_kept_crl_is_renewed_in_the_background_and_a_returning_client_waits_for_none(
    pki: Pki, crl_server: CrlServer
) -> None:
    """The CRL is fresh an hour: renewed in its last tenth (6 minutes), by the request that
    finds it so, which is answered from what is kept; after the old CRL's next update the
    renewed one answers, with no fetch on the request's path."""
    now = datetime.now(UTC).replace(microsecond=0)
    next_update = now + timedelta(hours=1)
    url = serve(crl_server, "/renewed.crl", make_crl(pki.ca, next_update=next_update))
    cert = leaf(pki, url)
    policy = policy_for(pki, "hard")
    assert decide(policy, cert, now).allowed
    assert crl_server.hits["/renewed.crl"] == 1
    later = make_crl(pki.ca, [cert.certificate.serial_number], next_update=now + timedelta(days=1))
    serve(crl_server, "/renewed.crl", later)
    # before the renewal time: what is kept answers, nothing is fetched
    assert decide(policy, cert, now + timedelta(minutes=50)).allowed
    assert crl_server.hits["/renewed.crl"] == 1
    # in the last tenth: answered from what is kept, renewed behind it
    renewing = decide(policy, cert, now + timedelta(minutes=55))
    assert renewing.allowed, revoked_said(renewing)
    evidence_of(policy, DistributionPointEvidence).answers.settle()
    assert crl_server.hits["/renewed.crl"] == 2
    # past the old CRL's next update: the renewed CRL answers, fetched already
    after = decide(policy, cert, next_update + timedelta(seconds=1))
    assert (after.allowed, after.rule) == (False, "revoked")
    assert crl_server.hits["/renewed.crl"] == 2


def test_a_failed_fetch_is_kept_a_while_then_asked_again(pki: Pki, crl_server: CrlServer) -> None:
    url = crl_server.url("/late.crl")
    cert = leaf(pki, url)
    policy = policy_for(pki, "hard")
    now = datetime.now(UTC)
    assert not decide(policy, cert, now).allowed
    assert not decide(policy, leaf(pki, url), now + timedelta(seconds=5)).allowed
    assert crl_server.hits["/late.crl"] == 1  # the failure stands RETRY (10 s)
    serve(crl_server, "/late.crl", make_crl(pki.ca))
    assert decide(policy, cert, now + timedelta(seconds=11)).allowed
    assert crl_server.hits["/late.crl"] == 2


def test_a_soft_pass_is_said_in_the_decision_log(
    pki: Pki, crl_server: CrlServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Soft mode lets an unknown status pass; the decision's message, which the decision
    log writes as its explanation, says so and why. Hard mode and a known status do not."""
    url = crl_server.url("/soft-missing.crl")
    cert = leaf(pki, url)
    soft = policy_for(pki, "soft").evaluate(cert.pem, now=datetime.now(UTC))
    assert soft.allowed
    with caplog.at_level(logging.INFO, logger=DECISION_LOGGER):
        DecisionLog().record(soft, method="GET", path="/", peer="127.0.0.1", elapsed_us=1.0)
    explanation = caplog.records[-1].explanation  # type: ignore[attr-defined]
    assert explanation == (
        "Allowed by rule partner. Revocation status unknown, let pass in soft mode (CRL "
        f"distribution point: {url} answered HTTP 404)."
    )
    known = serve(crl_server, "/soft-known.crl", make_crl(pki.ca))
    assert policy_for(pki, "soft").evaluate(leaf(pki, known).pem).message == (
        "Allowed by rule partner."
    )


def test_under_asgi_a_fetch_does_not_stop_the_event_loop(pki: Pki, crl_server: CrlServer) -> None:
    """The ASGI middleware decides on the loop, but a first sighting's fetch (300 ms here)
    runs in a worker thread: the loop goes on (a ticker every 10 ms sees no gap of more
    than 150 ms), and the decision is the same as it would be inline."""
    url = serve(crl_server, "/slow.crl", make_crl(pki.ca))
    cert = leaf(pki, url)
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["policyengine.decision"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    guarded = PolicyMiddleware(app, policy_for(pki, "hard"), log=None)
    der = x509.load_pem_x509_certificate(cert.pem).public_bytes(serialization.Encoding.DER)
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/orders",
        "headers": [(b"x-arr-clientcert", base64.b64encode(der))],
        "client": ("127.0.0.1", 5000),
    }
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    async def main() -> tuple[float, float]:
        gaps: list[float] = []
        done = asyncio.Event()

        async def tick() -> None:
            last = time.monotonic()
            while not done.is_set():
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        ticker = asyncio.create_task(tick())
        started = time.monotonic()
        await guarded(scope, receive, send)
        took = time.monotonic() - started
        done.set()
        await ticker
        return took, max(gaps)

    took, longest = asyncio.run(main())
    assert sent[0]["status"] == 200
    assert seen[0].allowed, seen[0]
    assert took >= 0.25  # the fetch was waited for, in a thread
    assert longest < 0.15, longest
    assert crl_server.hits["/slow.crl"] == 1


def test_an_older_crl_does_not_replace_a_newer_one(pki: Pki, crl_server: CrlServer) -> None:
    """A replay (or a mirror behind) of an older CRL, validly signed and not expired, that
    does not list the certificate: refused at renewal (the newer one stands) and after the
    newer one ends (unknown, and hard mode denies) - never a false allow."""
    now = datetime.now(UTC).replace(microsecond=0)
    cert = leaf(pki, crl_server.url("/rollback.crl"))
    newer = make_crl(
        pki.ca, [cert.certificate.serial_number], number=2, next_update=now + timedelta(hours=1)
    )
    older = make_crl(
        pki.ca, number=1, last_update=now - timedelta(hours=2), next_update=now + timedelta(days=1)
    )
    serve(crl_server, "/rollback.crl", newer)
    policy = policy_for(pki, "hard")
    assert decide(policy, cert, now).rule == "revoked"
    serve(crl_server, "/rollback.crl", older)
    assert decide(policy, cert, now + timedelta(minutes=55)).rule == "revoked"  # renews
    evidence_of(policy, DistributionPointEvidence).answers.settle()
    assert crl_server.hits["/rollback.crl"] == 2
    assert decide(policy, cert, now + timedelta(minutes=59)).rule == "revoked"  # it stands
    after = decide(policy, cert, now + timedelta(minutes=61))
    assert (after.allowed, after.rule) == (False, "revoked")
    assert "is older than one of its issuer's seen before (CRL number 1 after 2)" in (
        revoked_said(after)
    )


def test_a_forged_crl_at_renewal_leaves_the_genuine_one_standing(
    pki: Pki, crl_server: CrlServer
) -> None:
    """A CRL under the CA's name on another key, with a far next update, served when the
    genuine one is renewed: not kept, so it cannot deny every client of the CA until then."""
    now = datetime.now(UTC).replace(microsecond=0)
    cert = leaf(pki, crl_server.url("/renew-forged.crl"))
    serve(crl_server, "/renew-forged.crl", make_crl(pki.ca, next_update=now + timedelta(hours=1)))
    policy = policy_for(pki, "hard")
    assert decide(policy, cert, now).allowed
    forged = make_crl(
        pki.other_ca, [cert.certificate.serial_number], next_update=now + timedelta(days=365)
    )
    serve(crl_server, "/renew-forged.crl", forged)
    assert decide(policy, cert, now + timedelta(minutes=55)).allowed
    evidence_of(policy, DistributionPointEvidence).answers.settle()
    assert crl_server.hits["/renew-forged.crl"] == 2
    kept = decide(
        policy, leaf(pki, crl_server.url("/renew-forged.crl")), now + timedelta(minutes=56)
    )
    assert kept.allowed, revoked_said(kept)  # a new client of the CA, from the genuine CRL


def test_max_age_caps_how_long_a_crl_is_kept(pki: Pki, crl_server: CrlServer) -> None:
    url = serve(crl_server, "/capped.crl", make_crl(pki.ca))  # fresh for a day
    cert = leaf(pki, url)
    path = pki.folder / "capped.yaml"
    path.write_text(
        "policy: capped\nmode: required\ntrust:\n  anchors: [ca.pem]\n  revocation:\n"
        "    mode: hard\n    sources: [crl_distribution_points]\n    ocsp:\n      max_age: 1m\n"
        "rules:\n  - id: partner\n    effect: allow\n    when: trusted and not revoked\n"
    )
    policy = load_policy(path)
    now = datetime.now(UTC)
    assert decide(policy, cert, now).allowed
    assert decide(policy, leaf(pki, url), now + timedelta(seconds=30)).allowed
    assert crl_server.hits["/capped.crl"] == 1
    # past max_age: answered from the CRL kept (in force a day), fetched again behind
    assert decide(policy, leaf(pki, url), now + timedelta(minutes=2)).allowed
    evidence_of(policy, DistributionPointEvidence).answers.settle()
    assert crl_server.hits["/capped.crl"] == 2


def test_a_der_crl_holding_the_pem_marker_is_read_as_der(pki: Pki, crl_server: CrlServer) -> None:
    marker = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"-----BEGIN")
    der = make_crl(pki.ca, extensions=[marker])
    assert b"-----BEGIN" in der
    decision = decide(policy_for(pki, "hard"), leaf(pki, serve(crl_server, "/marker.crl", der)))
    assert decision.allowed, revoked_said(decision)


def test_a_point_for_some_reasons_only_is_passed_over() -> None:
    ca = make_certificate({"CN": "CA"}, ca=True)
    some = x509.CRLDistributionPoints(
        [
            x509.DistributionPoint(
                [x509.UniformResourceIdentifier("http://crl.contoso.com/compromise.crl")],
                None,
                frozenset({x509.ReasonFlags.key_compromise}),
                None,
            )
        ]
    )
    assert points_of(_with_extension(ca, some)) == (
        [],
        ["a CRL distribution point covers only some revocation reasons: passed over"],
    )


def test_no_soft_pass_is_said_in_hard_mode_nor_when_no_rule_reads_revoked(
    pki: Pki, crl_server: CrlServer
) -> None:
    cert = leaf(pki, crl_server.url("/never.crl"))
    path = pki.folder / "trusted-only.yaml"
    path.write_text(
        "policy: t\nmode: required\ntrust:\n  anchors: [ca.pem]\n  revocation:\n"
        "    mode: soft\n    sources: [crl_distribution_points]\n"
        "rules:\n  - id: partner\n    effect: allow\n    when: trusted\n"
    )
    assert load_policy(path).evaluate(cert.pem).message == "Allowed by rule partner."
    hard = policy_for(pki, "hard").evaluate(cert.pem)
    assert (hard.allowed, hard.message) == (False, "Denied by rule revoked.")


def test_a_replay_at_a_second_point_meets_the_same_mark(pki: Pki, crl_server: CrlServer) -> None:
    """The mark is the issuer's (and the scope's), not the URL's: an older CRL replayed at
    the certificate's second distribution point is refused too, never a false allow."""
    now = datetime.now(UTC).replace(microsecond=0)
    cert = leaf(pki, crl_server.url("/first.crl"), crl_server.url("/second-point.crl"))
    newer = make_crl(
        pki.ca, [cert.certificate.serial_number], number=2, next_update=now + timedelta(hours=1)
    )
    older = make_crl(pki.ca, number=1, last_update=now - timedelta(hours=2))
    serve(crl_server, "/first.crl", newer)
    policy = policy_for(pki, "hard")
    assert decide(policy, cert, now).rule == "revoked"
    serve(crl_server, "/first.crl", older)
    serve(crl_server, "/second-point.crl", older)
    after = decide(policy, cert, now + timedelta(minutes=61))
    assert (after.allowed, after.rule) == (False, "revoked"), revoked_said(after)
    said = revoked_said(after)
    assert said.count("is older than one of its issuer's seen before") == 2, said


def _scoped_crl(pki: Pki, url: str, number: int) -> bytes:
    scope = x509.IssuingDistributionPoint(
        full_name=[x509.UniformResourceIdentifier(url)],
        relative_name=None,
        only_contains_user_certs=False,
        only_contains_ca_certs=False,
        only_some_reasons=None,
        indirect_crl=False,
        only_contains_attribute_certs=False,
    )
    return make_crl(pki.ca, number=number, extensions=[scope])


def test_the_crl_of_another_distribution_point_is_not_kept(pki: Pki, crl_server: CrlServer) -> None:
    """Served at one URL, a CRL whose issuing distribution point names another: refused
    when first fetched, and at renewal (the CRL it would renew stands)."""
    here, there = crl_server.url("/part-1.crl"), crl_server.url("/part-2.crl")
    cert = leaf(pki, here)
    serve(crl_server, "/part-1.crl", _scoped_crl(pki, there, 1))
    first = decide(policy_for(pki, "hard"), cert)
    assert not first.allowed
    assert "is the CRL of another distribution point" in revoked_said(first)
    now = datetime.now(UTC).replace(microsecond=0)
    serve(crl_server, "/part-1.crl", _scoped_crl(pki, here, 1))
    policy = policy_for(pki, "soft")
    assert "not listed in CRL" in revoked_said(decide(policy, cert, now))
    serve(crl_server, "/part-1.crl", _scoped_crl(pki, there, 11))
    decide(policy, cert, now + timedelta(hours=22))  # renews
    evidence_of(policy, DistributionPointEvidence).answers.settle()
    kept = decide(policy, leaf(pki, here), now + timedelta(hours=22, minutes=1))
    assert "not listed in CRL" in revoked_said(kept), revoked_said(kept)


def test_a_crl_without_a_number_that_lists_the_certificate_still_revokes(
    pki: Pki, crl_server: CrlServer
) -> None:
    """No proof of good (RFC 5280 requires a CRL number), but the issuer's signed word
    that the certificate is revoked: denied in soft mode too."""
    from cryptography.hazmat.primitives import hashes

    cert = leaf(pki, crl_server.url("/numberless.crl"))
    now = datetime.now(UTC)
    numberless = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(pki.ca.certificate.subject)
        .last_update(now - timedelta(hours=1))
        .next_update(now + timedelta(days=1))
        .add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(cert.certificate.serial_number)
            .revocation_date(now - timedelta(days=1))
            .build()
        )
        .sign(pki.ca.key, hashes.SHA256())
    )
    serve(crl_server, "/numberless.crl", numberless.public_bytes(serialization.Encoding.DER))
    decision = decide(policy_for(pki, "soft"), cert)
    assert (decision.allowed, decision.rule) == (False, "revoked"), revoked_said(decision)


def test_a_crl_published_a_moment_ahead_of_our_clock_is_fetched_again_soon(
    pki: Pki, crl_server: CrlServer
) -> None:
    """thisUpdate 30 s ahead: not in effect, so a failure kept 10 s, not an unknown kept
    until the CRL's renewal hours later."""
    now = datetime.now(UTC).replace(microsecond=0)
    ahead = make_crl(pki.ca, last_update=now + timedelta(seconds=30))
    cert = leaf(pki, serve(crl_server, "/ahead.crl", ahead))
    policy = policy_for(pki, "hard")
    early = decide(policy, cert, now)
    assert not early.allowed
    assert "is not valid before" in revoked_said(early)
    assert decide(policy, cert, now + timedelta(seconds=31)).allowed


def test_the_soft_pass_reads_alike_plain_and_explained_with_an_index(
    pki: Pki, crl_server: CrlServer
) -> None:
    """Eight rules or more are indexed, and the index reads every attribute once before
    the rules: that read of ``revoked`` must not make the plain decision say more."""
    cert = leaf(pki, crl_server.url("/indexed-missing.crl"))
    rules = "".join(
        f'  - id: r{n}\n    effect: allow\n    when: subject.CN == "other-{n}" and not revoked\n'
        for n in range(8)
    )
    path = pki.folder / "indexed.yaml"
    path.write_text(
        "policy: indexed\nmode: required\ntrust:\n  anchors: [ca.pem]\n  revocation:\n"
        "    mode: soft\n    sources: [crl_distribution_points]\nrules:\n"
        + rules
        + "  - id: partner\n    effect: allow\n    when: trusted\n"
    )
    policy = load_policy(path)
    plain = policy.evaluate(cert.pem)
    explained = policy.evaluate(cert.pem, explain=True)
    assert plain.message == explained.message == "Allowed by rule partner."
