"""Cost of chain verification (``trusted`` / ``revoked``), measured side by side in one run.

    python benchmarks/trust.py [--repeats 7] [--quick]

Cases, on one generated PKI (EC P-256: root -> issuing CA -> client, and a CRL from each
CA, in hard mode: the whole chain is checked):

- verify cold        TrustStore.verify of the 3-certificate chain, cache emptied each time;
- verify cached      the same leaf again: a dictionary lookup;
- decide cold        Policy.evaluate with ``trusted and not revoked``, trust cache emptied
                     each time (the certificate's facts stay cached, as for a returning
                     client whose chain result has expired);
- decide cached      the same decision with the chain result cached;
- hostile 8 shared   a request through the rfc9440 source forwarding 8 crafted
                     intermediates that share the issuing CA's name and one attacker key,
                     decided cold (the deny path);
- hostile 8 distinct the same with 8 look-alikes with distinct keys, each signed by the
                     next (a ring: nothing to de-duplicate, every one reaches the verifier,
                     within the source's default max_chain_length of 8);
- hostile 100 direct 100 shared-key look-alikes handed to TrustStore.verify directly, before
                     any source cap, cold.

With ``openssl`` on PATH (``openssl ocsp`` as the responder, on loopback, signing as the
issuing CA), the same decision with ``sources: [ocsp]`` (``check: leaf``):

- OCSP first sight   trust cache and OCSP answers emptied each time: one request to the
                     responder per call, over a kept-alive connection;
- OCSP returning     the answer and the chain result kept: what a returning client pays;
- revocation off     the same certificate and rule with ``mode: off``, cached: the
                     reference the returning client is compared with (the issue's goal:
                     within 10 %);
- OCSP down, soft    ``soft`` mode, the responder's port closed, a returning client: the
                     failure is kept (10 s), so no request waits.

With ``sources: [crl_distribution_points]`` (a CRL of 1,000 entries served on loopback):

- CDP first sight    trust cache and kept CRLs emptied each time: one fetch of the CRL
                     (about 40 KB), read and checked, per call;
- CDP new client, CRL kept   a client of a CA whose CRL is kept: the chain verified and
                     the CRL's signature checked, no fetch;
- CDP returning      the chain result kept.

Each case is warmed up, then timed over ``--repeats`` repeats of as many calls as fill
0.3 s (``--quick``: 3 repeats of 0.05 s); the table shows the median time per call over
the repeats and the spread (min..max of the repeats).
"""

from __future__ import annotations

import argparse
import base64
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from common import NOW, VALIDITY, format_table, measure, median, micros, spread
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from policyengine import Policy, load_policy, read_certificate
from policyengine.caches import BoundedCache
from policyengine.testing import IssuedCertificate, make_certificate

DATES = VALIDITY
ISSUING = {"CN": "Bench Issuing CA", "O": "Bench PKI"}
PEER = "10.0.0.5"


def header(der: bytes) -> str:
    return ":" + base64.b64encode(der).decode() + ":"


def write_pki(folder: Path) -> tuple[Policy, IssuedCertificate, IssuedCertificate]:
    """The policy (its files in ``folder``), the root and the issuing CA."""
    root = make_certificate({"CN": "Bench Root CA", "O": "Bench PKI"}, ca=True, **DATES)
    issuing = make_certificate(ISSUING, issuer=root, ca=True, **DATES)
    for name, ca, revoked in (("issuing.crl", issuing, [0x0BAD]), ("root.crl", root, [])):
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca.certificate.subject)
            .last_update(DATES["not_before"])
            .next_update(DATES["not_after"])
            .add_extension(x509.CRLNumber(1), critical=False)
        )
        for serial in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(DATES["not_before"])
                .build()
            )
        crl = builder.sign(ca.key, hashes.SHA256())  # type: ignore[arg-type]
        (folder / name).write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    (folder / "root.pem").write_bytes(root.pem)
    (folder / "issuing.pem").write_bytes(issuing.pem)
    (folder / "policy.yaml").write_text(
        textwrap.dedent(
            """
            policy: bench-trust
            silence: [trusted-anywhere]
            certificate:
              source: rfc9440
            trust:
              anchors: [root.pem]
              intermediates: [issuing.pem]
              revocation:
                crls: [issuing.crl, root.crl]
                mode: hard
            rules:
              - id: partner
                effect: allow
                when: trusted and not revoked
            """
        )
    )
    return load_policy(folder / "policy.yaml"), root, issuing


def look_alikes(root: IssuedCertificate, count: int, shared_key: bool) -> list[IssuedCertificate]:
    """CAs named like the issuing CA, under a fake root: one attacker key, or one key each
    with every look-alike signed by the next (a ring of cross-signatures)."""
    attacker = ec.generate_private_key(ec.SECP256R1())
    fake_root = IssuedCertificate(root.certificate, attacker)  # the root's name, wrong key
    if shared_key:
        return [
            make_certificate(ISSUING, issuer=fake_root, ca=True, key=attacker, **DATES)
            for _ in range(count)
        ]
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(count)]
    named = make_certificate(ISSUING, ca=True, **DATES)  # only its name is used as issuer
    ring = []
    for n, key in enumerate(keys):
        signer = IssuedCertificate(named.certificate, keys[(n + 1) % count])
        ring.append(make_certificate(ISSUING, issuer=signer, ca=True, key=key, **DATES))
    return ring


def build() -> dict[str, Callable[[], object]]:
    folder = Path(tempfile.mkdtemp(prefix="bench-trust-"))
    policy, root, issuing = write_pki(folder)
    store = policy.trust
    assert store is not None
    client = make_certificate({"CN": "orders-client", "O": "Contoso Ltd"}, issuer=issuing, **DATES)
    facts = read_certificate(client.der)
    assert store.verify(facts, (), NOW).trusted
    assert policy.evaluate(client.der, path="/", now=NOW).allowed

    shared = look_alikes(root, 100, shared_key=True)
    distinct = look_alikes(root, 8, shared_key=False)

    def hostile_leaf(issuer: IssuedCertificate) -> IssuedCertificate:
        return make_certificate({"CN": "intruder"}, issuer=issuer, **DATES)

    shared_leaf = hostile_leaf(shared[0])
    distinct_leaf = hostile_leaf(distinct[0])
    shared_facts = read_certificate(shared_leaf.der)
    shared_ders = tuple(c.der for c in shared)

    def request(leaf: IssuedCertificate, chain: list[IssuedCertificate]) -> dict[str, str]:
        return {
            "Client-Cert": header(leaf.der),
            "Client-Cert-Chain": ", ".join(header(c.der) for c in chain),
        }

    shared_headers = request(shared_leaf, shared[:8])
    distinct_headers = request(distinct_leaf, distinct)
    for headers in (shared_headers, distinct_headers):
        decision = policy.evaluate_request(headers=headers, remote_addr=PEER, path="/", now=NOW)
        assert decision.reason == "no_matching_rule", decision
    assert not store.verify(shared_facts, shared_ders, NOW).trusted

    def cold(work: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            store._cache = BoundedCache(store.cache_size)  # forget every verification
            return work()

        return run

    def decide_hostile(headers: dict[str, str]) -> Callable[[], object]:
        return cold(
            lambda: policy.evaluate_request(headers=headers, remote_addr=PEER, path="/", now=NOW)
        )

    ocsp, stop = ocsp_cases(folder, issuing, client)
    STOPS.append(stop)
    cdp, stop = cdp_cases(folder, issuing)
    STOPS.append(stop)
    return {
        "verify cold": cold(lambda: store.verify(facts, (), NOW)),
        "verify cached": lambda: store.verify(facts, (), NOW),
        "decide cold": cold(lambda: policy.evaluate(client.der, path="/", now=NOW)),
        "decide cached": lambda: policy.evaluate(client.der, path="/", now=NOW),
        "hostile 8 shared": decide_hostile(shared_headers),
        "hostile 8 distinct": decide_hostile(distinct_headers),
        "hostile 100 direct": cold(lambda: store.verify(shared_facts, shared_ders, NOW)),
        **ocsp,
        **cdp,
    }


STOPS: list[Callable[[], None]] = []
"""What to stop when the run ends (the OCSP responder)."""


OCSP_POLICY = """
policy: bench-ocsp-{mode}
trust:
  anchors: [root.pem]
  intermediates: [issuing.pem]
  revocation:
    mode: {mode}
    check: leaf
    sources: [ocsp]
    ocsp:
      responder: {url}
      timeout: 2s
rules:
  - id: partner
    effect: allow
    when: trusted and not revoked
"""


def ocsp_cases(
    folder: Path, issuing: IssuedCertificate, client: IssuedCertificate
) -> tuple[dict[str, Callable[[], object]], Callable[[], None]]:
    """The OCSP rows, and what stops the responder; none without openssl."""
    import datetime as dt

    from policyengine.testing import OcspResponder, write_ocsp_index

    write_ocsp_index(folder / "index.txt", [client])
    try:
        responder = OcspResponder.start(folder, issuing, folder / "index.txt")
    except RuntimeError as exc:  # openssl is not installed
        print(f"OCSP rows skipped: {exc}")
        return {}, lambda: None
    port, down = int(responder.url.rsplit(":", 1)[1]), _closed_port()

    def written(mode: str, url: str) -> Policy:
        path = folder / f"ocsp-{mode}-{url.rsplit(':', 1)[1]}.yaml"
        path.write_text(OCSP_POLICY.format(mode=mode, url=url))
        return load_policy(path)

    hard = written("hard", f"http://127.0.0.1:{port}")
    off = written("off", f"http://127.0.0.1:{port}")
    soft_down = written("soft", f"http://127.0.0.1:{down}")
    now = dt.datetime.now(dt.UTC)
    for policy in (hard, off, soft_down):
        decision = policy.evaluate(client.der, path="/", now=now, explain=True)
        assert decision.allowed, decision.trace
    store = hard.trust
    assert store is not None
    evidence = store._revocation.evidence[0]

    def first_sight() -> object:
        store._cache = BoundedCache(store.cache_size)
        evidence.answers.clear()  # type: ignore[attr-defined]
        return hard.evaluate(client.der, path="/", now=dt.datetime.now(dt.UTC))

    cases: dict[str, Callable[[], object]] = {
        "OCSP first sight": first_sight,
        "OCSP returning": lambda: hard.evaluate(client.der, path="/", now=now),
        "revocation off": lambda: off.evaluate(client.der, path="/", now=now),
        "OCSP down, soft": lambda: soft_down.evaluate(client.der, path="/", now=now),
    }
    return cases, responder.stop


def cdp_cases(
    folder: Path, issuing: IssuedCertificate
) -> tuple[dict[str, Callable[[], object]], Callable[[], None]]:
    """The CRL distribution point rows (a CRL of 1,000 entries served on loopback by
    ``http.server``), and what stops the server."""
    import datetime as dt
    import http.server
    import threading

    from policyengine.testing import make_crl

    crl = make_crl(issuing, range(10_000, 11_000))

    class Serve(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # one write: no wait on a delayed ACK between two
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(crl)}\r\n\r\n".encode()
            self.wfile.write(head + crl)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Serve)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/issuing.crl"
    client = make_certificate({"CN": "cdp-client"}, issuer=issuing, crl_urls=[url])
    path = folder / "cdp.yaml"
    text = OCSP_POLICY.format(mode="hard", url=url).replace("[ocsp]", "[crl_distribution_points]")
    path.write_text(text.replace(f"      responder: {url}\n", ""))
    policy = load_policy(path)
    now = dt.datetime.now(dt.UTC)
    assert policy.evaluate(client.der, path="/", now=now).allowed
    store = policy.trust
    assert store is not None
    evidence = store._revocation.evidence[0]

    def new_client(fetch: bool) -> Callable[[], object]:
        def run() -> object:
            store._cache = BoundedCache(store.cache_size)
            if fetch:
                evidence.answers.clear()  # type: ignore[attr-defined]
            return policy.evaluate(client.der, path="/", now=now)

        return run

    def stop() -> None:
        server.shutdown()
        server.server_close()

    cases: dict[str, Callable[[], object]] = {
        "CDP first sight": new_client(fetch=True),
        "CDP new client, CRL kept": new_client(fetch=False),
        "CDP returning": lambda: policy.evaluate(client.der, path="/", now=now),
    }
    return cases, stop


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="3 repeats of a tenth as many")
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats
    seconds = 0.05 if args.quick else 0.3
    started = time.perf_counter()
    try:
        cases = build()
        results = {name: measure(case, repeats, seconds) for name, case in cases.items()}
    finally:
        for stop in STOPS:
            stop()
    rows = [(name, micros(median(s)), spread(s)) for name, s in results.items()]
    print(format_table(("case", "median", "spread (min..max)"), rows))
    print(f"({repeats} repeats; {time.perf_counter() - started:.1f} s in all)")


if __name__ == "__main__":
    main()
