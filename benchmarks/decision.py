"""Per-decision cost of the engine, measured side by side in one run.

    python benchmarks/decision.py [--repeats 7] [--number 20000]

Cases, all on the same four-predicate policy (validity, subject CN, issuer O, SHA-1
fingerprint in a set of three) and the same certificate:

- plain python   a hand-written function over facts extracted beforehand: the floor;
- facts read     Policy.evaluate on CertificateFacts already read (a returning client);
- explain        the same with explain=True (the trace);
- der in         Policy.evaluate on DER bytes (seen before: facts from the cache);
- der cold       the same with the facts cache off: parse + hash + decide on every call;
- header in      Policy.evaluate_request with App Service's header (base64 DER), seen before;
- handwritten    the App Service sample style on DER bytes: parse, hash, compare.

Each case runs ``number`` decisions per repeat after a warm-up; the table shows the
median per decision over the repeats, the spread (min..max of the repeats), and the
ratio to the plain function.
"""

from __future__ import annotations

import argparse
import base64
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from policyengine import policy_from_text, read_certificate
from policyengine.testing import make_certificate

NOW = datetime(2026, 11, 28, tzinfo=UTC)


def build() -> dict[str, Callable[[], object]]:
    cert = make_certificate({"CN": "api-client", "O": "Contoso Ltd"})
    der = cert.der
    pins = [cert.sha1, "30757a2e831977d8bd9c8496e4c99ab26cb9622b", "5e" * 20]
    policy_text = f"""
policy: bench
sets:
  partners: [{", ".join(pins)}]
rules:
  - id: partner
    effect: allow
    when: |
      valid and subject.CN == "api-client" and issuer.O == "Contoso Ltd"
      and fingerprint in partners
"""
    policy = policy_from_text(policy_text, "bench.yaml")
    facts = read_certificate(der)
    cold = policy_from_text(policy_text, "bench.yaml", facts_cache_size=0)
    header = [("X-ARR-ClientCert", base64.b64encode(der).decode())]
    assert policy.evaluate(facts, path="/", now=NOW).allowed

    extracted = {
        "cn": "api-client",
        "issuer_o": "Contoso Ltd",
        "sha1": cert.sha1,
        "not_before": facts.not_before,
        "not_after": facts.not_after,
    }
    pin_set = frozenset(pins)

    def plain() -> bool:
        f = extracted
        return (
            f["not_before"] <= NOW <= f["not_after"]
            and f["cn"] == "api-client"
            and f["issuer_o"] == "Contoso Ltd"
            and f["sha1"] in pin_set
        )

    def handwritten() -> bool:
        c = x509.load_der_x509_certificate(der)
        if not (c.not_valid_before_utc <= NOW <= c.not_valid_after_utc):
            return False
        cn = c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        org = c.issuer.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
        return (
            cn == "api-client"
            and org == "Contoso Ltd"
            and c.fingerprint(hashes.SHA1()).hex() in pin_set
        )

    assert plain() and handwritten()
    return {
        "plain python": plain,
        "facts read": lambda: policy.evaluate(facts, path="/", now=NOW),
        "explain": lambda: policy.evaluate(facts, path="/", now=NOW, explain=True),
        "der in": lambda: policy.evaluate(der, path="/", now=NOW),
        "der cold": lambda: cold.evaluate(der, path="/", now=NOW),
        "header in": lambda: policy.evaluate_request(
            headers=header, remote_addr="10.0.0.1", path="/", now=NOW
        ),
        "handwritten": handwritten,
    }


def measure(case: Callable[[], object], number: int, repeats: int) -> list[float]:
    for _ in range(min(number, 1000)):
        case()
    per_call = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            case()
        per_call.append((time.perf_counter() - start) / number)
    return per_call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--number", type=int, default=20000)
    args = parser.parse_args()
    cases = build()
    results = {}
    for name, case in cases.items():
        number = args.number if name not in ("der cold", "handwritten") else args.number // 10
        results[name] = measure(case, number, args.repeats)
    floor = statistics.median(results["plain python"])
    print(f"{'case':<14}{'median':>12}{'spread':>24}{'x plain':>10}")
    for name, samples in results.items():
        median = statistics.median(samples)
        spread = f"{min(samples) * 1e6:.2f}..{max(samples) * 1e6:.2f} µs"
        print(f"{name:<14}{median * 1e6:>9.2f} µs{spread:>24}{median / floor:>10.1f}")


if __name__ == "__main__":
    main()
