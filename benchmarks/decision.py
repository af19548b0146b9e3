"""The cost of a decision, measured side by side in one run, with each target of issue 7.

    python benchmarks/decision.py [--repeats 7] [--seconds 0.3] [--peers] [--quick]

Every case is warmed up, then timed over ``--repeats`` repeats of as many calls as fill
``--seconds`` (the cases of table 1 in turn, repeat by repeat, so a machine whose speed
drifts slows them alike); the tables show the median per decision, the spread (min..max
of the repeats) and the ratio each target is about (for table 1's targets, the median of
the ratios of the repeats taken side by side). ``--peers`` adds the other policy engines
(``pip install -e '.[bench]'``, see peers.py) on the same policy and facts.

1. Per decision, on the four-predicate policy (validity, subject CN, issuer O, SHA-1
   fingerprint in a set of three), the same certificate throughout:

   plain python     a hand-written function over facts extracted beforehand: the floor
   facts            Policy.evaluate on facts already read (a returning client): the
                    decision memo answers
   facts, rules     the same with the memo off: the compiled rules run every time
   explain          the same with explain=True (the rules and the trace)
   facts, roles     "facts, rules" with an identity: section of two roles (issue 16) whose
                    conditions run before the rules: what roles cost
   header           Policy.evaluate_request with App Service's header (base64 DER), the
                    certificate seen before
   header, cold     certificates never seen before: a pool of distinct ones (2,000) taken
                    in turn through caches half that size (so each is forgotten before
                    it comes again): decode, parse, hash, decide
   handwritten      the App Service article's validator: decode the header, parse the
                    certificate, hash it, compare, on every request
   parser floor     what no reader of a new certificate header can skip: base64, cryptography's
                    ``load_der_x509_certificate`` and its SHA-1 fingerprint, on the pool

2. Rules: 1, 100, 1,000, 10,000 and (not with ``--quick``) 100,000 allow rules each
   pinning a distinct CN (or fingerprint), or of one of the generated shapes of SHAPES (a
   glob, a prefix, a disjunction of two equalities), the request matching the last; the
   memo off, so the rule index is what is measured. The linear scan (index off) is shown
   beside, up to 10,000 rules.
3. A fingerprint set of 1 and of 100,000 entries (memo off).
4. Loading and compiling a 10,000-rule policy and a 100,000-entry set, each beside
   libyaml's C loader (``yaml.CSafeLoader``) reading the same text: the floor of reading
   YAML in Python; and the memory a cached certificate takes.
5. One thread and eight threads deciding on one policy (threads.py).
"""

from __future__ import annotations

import argparse
import base64
import gc
import hashlib
import itertools
import sys
import time
import tracemalloc
from collections.abc import Callable

import yaml
from common import (
    NOW,
    format_table,
    four_predicates,
    handwritten,
    measure,
    measure_together,
    median,
    micros,
    spread,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from policyengine import Policy, read_certificate
from policyengine.load.document import parse_document
from policyengine.load.loader import compile_document
from policyengine.testing import make_certificate

HEADER = "X-ARR-ClientCert"
PEER = "10.0.0.1"
SUBJECT = {"CN": "api-client", "O": "Contoso Ltd"}


def compiled(text: str, **switches: bool) -> Policy:
    return compile_document(parse_document(text, "bench.yaml"), **switches)


class Bench:
    """The certificate, the pins and the pre-extracted facts every case decides on."""

    def __init__(self, pool: int = 2000) -> None:
        self.cert = make_certificate(SUBJECT)
        self.pins = [self.cert.sha1, "30757a2e831977d8bd9c8496e4c99ab26cb9622b", "5e" * 20]
        self.header = base64.b64encode(self.cert.der).decode()
        self.facts = read_certificate(self.cert.der)
        key = ec.generate_private_key(ec.SECP256R1())  # one key: the pool differs by serial
        self.pool = [
            base64.b64encode(make_certificate(SUBJECT, key=key).der).decode() for _ in range(pool)
        ]
        self.pool_pins = [hashlib.sha1(base64.b64decode(v)).hexdigest() for v in self.pool]
        self.extracted = {
            "cn": "api-client",
            "issuer_o": "Contoso Ltd",
            "sha1": self.cert.sha1,
            "not_before": self.facts.not_before,
            "not_after": self.facts.not_after,
        }


_ROLES = """identity:
  groups: [subject.O]
  roles:
    reader: valid
    partner: fingerprint in partners
rules:"""
"""Two roles for the four-predicate policy: a predicate each, as a short policy's are."""


def per_decision(bench: Bench) -> dict[str, Callable[[], object]]:
    text = four_predicates(bench.pins)
    policy = compiled(text)
    rules_run = compiled(text, memo=False)
    with_roles = compiled(text.replace("rules:", _ROLES, 1), memo=False)
    # never seen before: a pool of distinct certificates larger than the caches, in turn
    cold_text = four_predicates(bench.pins + bench.pool_pins)
    cold = compile_document(
        parse_document(cold_text, "bench.yaml"), facts_cache_size=len(bench.pool) // 2
    )
    pool_headers = [
        [("Host", "api.contoso.com"), ("Accept", "*/*"), (HEADER, value)] for value in bench.pool
    ]
    # each its own turn: taken together, they would see each value twice as often
    cold_turn = itertools.cycle(range(len(pool_headers)))
    hand_turn = itertools.cycle(range(len(pool_headers)))
    floor_turn = itertools.cycle(range(len(pool_headers)))
    facts, header, extracted = bench.facts, bench.header, bench.extracted
    headers = [("Host", "api.contoso.com"), ("Accept", "*/*"), (HEADER, header)]
    pin_set = frozenset(bench.pins)
    pool_set = frozenset(bench.pins + bench.pool_pins)

    def plain() -> bool:
        f = extracted
        return (
            f["not_before"] <= NOW <= f["not_after"]
            and f["cn"] == "api-client"
            and f["issuer_o"] == "Contoso Ltd"
            and f["sha1"] in pin_set
        )

    def request(p: Policy) -> Callable[[], object]:
        return lambda: p.evaluate_request(headers=headers, remote_addr=PEER, path="/", now=NOW)

    cases: dict[str, Callable[[], object]] = {
        "plain python": plain,
        "facts": lambda: policy.evaluate(facts, path="/", now=NOW),
        "facts, rules": lambda: rules_run.evaluate(facts, path="/", now=NOW),
        "explain": lambda: rules_run.evaluate(facts, path="/", now=NOW, explain=True),
        "facts, roles": lambda: with_roles.evaluate(facts, path="/", now=NOW),
        "header": request(policy),
        "header, cold": lambda: cold.evaluate_request(
            headers=pool_headers[next(cold_turn)], remote_addr=PEER, path="/", now=NOW
        ),
        "handwritten": lambda: handwritten(bench.pool[next(hand_turn)], pool_set, NOW),
        "parser floor": lambda: parser_floor(bench.pool[next(floor_turn)]),
    }
    for name, case in cases.items():
        assert case(), name  # every case allows: none is fast by being wrong
    return cases


def parser_floor(value: str) -> bytes:
    """Decode, parse and hash a certificate header: the least a first sighting costs."""
    return x509.load_der_x509_certificate(base64.b64decode(value)).fingerprint(hashes.SHA1())


SHAPES = {
    "cn": ('subject.CN == "api-client-{n}"', 'subject.CN == "api-client"'),
    "glob": ('subject.CN matches "client-{n}-*"', 'subject.CN matches "api-cl*"'),
    "prefix": ('subject.CN startswith "client-{n}"', 'subject.CN startswith "api-cl"'),
    "either": (
        '(subject.CN == "a-{n}" or issuer.O == "b-{n}")',
        '(subject.CN == "a-last" or issuer.O == "Contoso Ltd")',
    ),
}
"""Rule shapes by name: every rule but the last, and the last (which the request matches)."""


def many_rules(count: int, by: str, bench: Bench) -> str:
    if by in SHAPES:
        others, last = SHAPES[by]
        parts = [others.format(n=n) for n in range(count - 1)]
        parts.append(last)
    else:
        parts = [
            f'fingerprint == "{hashlib.sha1(b"%d" % n).hexdigest()}"' for n in range(count - 1)
        ]
        parts.append(f'fingerprint == "{bench.cert.sha1}"')
    rules = "".join(
        f"  - id: r{n}\n    effect: allow\n    when: valid and {part}\n"
        for n, part in enumerate(parts)
    )
    return f"policy: many\nrules:\n{rules}"


def fingerprint_set(count: int, bench: Bench) -> str:
    pins = [hashlib.sha1(b"%d" % n).hexdigest() for n in range(count - 1)] + [bench.cert.sha1]
    entries = "".join(f'    - "{pin}"\n' for pin in pins)
    return (
        f"policy: pinned\nsets:\n  partners:\n{entries}rules:\n"
        "  - id: partner\n    effect: allow\n    when: valid and fingerprint in partners\n"
    )


def _fresh_seconds(work: Callable[[], object]) -> float:
    """The seconds ``work()`` takes, the garbage of earlier tables collected first."""
    gc.collect()
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def memory_per_certificate(count: int = 2000) -> float:
    """Bytes a cached certificate holds: its DER, parsed facts and the decision memo (each
    certificate decided twice: the caches keep it from its second sighting on)."""
    ders = [make_certificate({"CN": f"c{n}", "O": "Contoso Ltd"}).der for n in range(count)]
    policy = compiled(four_predicates(['"' + "0" * 40 + '"']))
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for der in ders:
        policy.evaluate(der, path="/", now=NOW)
        policy.evaluate(der, path="/", now=NOW)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.3, help="per repeat")
    parser.add_argument("--peers", action="store_true", help="add the other engines")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter repeats")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.seconds = 3, 0.05
    bench = Bench(500 if args.quick else 2000)
    print(f"Python {sys.version.split()[0]}; medians of {args.repeats} repeats\n")

    def timed(case: Callable[[], object]) -> list[float]:
        return measure(case, args.repeats, args.seconds)

    # in turn, so that the ratios the targets are about see the same machine
    results = measure_together(per_decision(bench), args.repeats, args.seconds)
    floor = median(results["plain python"])
    body = [
        (name, micros(median(s)), spread(s), f"{median(s) / floor:.1f}")
        for name, s in results.items()
    ]
    print("1. One decision, four predicates")
    print(format_table(("case", "median", "spread", "x plain"), body))
    m = {name: median(s) for name, s in results.items()}

    def paired(a: str, b: str) -> float:
        """The median over the repeats of a's time over b's, each pair measured side by
        side: a drift of the machine between repeats cancels out."""
        return median([x / y for x, y in zip(results[a], results[b], strict=True)])

    facts = paired("facts", "plain python")
    explain = paired("explain", "facts, rules")
    header = paired("handwritten", "header")
    cold = paired("header, cold", "handwritten")
    floor_ratio = paired("header, cold", "parser floor")
    roles = paired("facts, roles", "facts, rules")

    def verdict(met: bool) -> str:
        # a quick run is a smoke test: too short to judge a target by
        return "not judged" if args.quick else "yes" if met else "NO"

    targets = [
        ("facts <= 2.5x plain python", facts, facts <= 2.5),
        ("explain <= 3x facts, rules", explain, explain <= 3),
        ("handwritten >= 20x header", header, header >= 20),
        ("header, cold <= handwritten", cold, cold <= 1),
        ("header, cold <= 2x parser floor", floor_ratio, floor_ratio <= 2),
    ]
    print()
    print(
        format_table(
            ("target", "ratio", "met"),
            [(t, f"{r:.2f}", verdict(ok)) for t, r, ok in targets],
        )
    )
    print(f"two roles cost {roles:.2f}x the rules alone (facts, roles over facts, rules)")
    peer_rows = []
    if args.peers:
        import peers

        for name, case in peers.peer_cases(bench.extracted, bench.pins, NOW).items():
            samples = timed(case)
            peer_rows.append(
                (
                    name,
                    micros(median(samples)),
                    spread(samples),
                    f"{median(samples) / m['facts']:.1f}",
                    f"{median(samples) / m['facts, rules']:.1f}",
                )
            )
        print("\n1b. The same policy and facts in other engines")
        header = ("engine", "median", "spread", "x facts", "x facts, rules")
        print(format_table(header, peer_rows))

    print("\n2. Rules, the request matching the last (memo off)")
    counts = (1, 100, 1_000, 10_000) if args.quick else (1, 100, 1_000, 10_000, 100_000)
    rows = []
    for by in ("cn", "fingerprint", "glob", "prefix", "either"):
        base = None
        for count in counts:
            text = many_rules(count, by, bench)
            indexed = compiled(text, memo=False)
            samples = timed(lambda p=indexed: p.evaluate(bench.facts, path="/", now=NOW))
            base = base or median(samples)
            what = f"pinning a {by}" if by in ("cn", "fingerprint") else f"of shape {by}"
            row = [f"{count:,} rules {what}", micros(median(samples)), spread(samples)]
            row.append(f"{median(samples) / base:.2f}")
            if 1 < count <= 10_000:  # at 100,000 a scan takes a tenth of a second a call
                linear = compiled(text, memo=False, index=False)
                scan = measure(
                    lambda p=linear: p.evaluate(bench.facts, path="/", now=NOW),
                    3,
                    args.seconds / 3,
                )
                row.append(micros(median(scan)))
            else:
                row.append("")
            rows.append(tuple(row))
    print(format_table(("case", "indexed", "spread", "x 1 rule", "linear scan"), rows))
    if args.peers:
        import peers

        peer_rows = []
        for n in (100, 1000):
            for name, case in peers.peer_rule_cases(n, bench.extracted, NOW).items():
                samples = measure(case, 3, args.seconds)
                peer_rows.append((f"{name}, {n} rules", micros(median(samples)), spread(samples)))
        print("\n2b. Rules pinning a CN in other engines")
        print(format_table(("engine", "median", "spread"), peer_rows))

    print("\n3. A fingerprint set (memo off)")
    rows = []
    base = None
    for count in (1, 100_000):
        policy = compiled(fingerprint_set(count, bench), memo=False)
        samples = timed(lambda p=policy: p.evaluate(bench.facts, path="/", now=NOW))
        base = base or median(samples)
        ratio = f"{median(samples) / base:.2f}"
        rows.append((f"{count:,} entries", micros(median(samples)), spread(samples), ratio))
    print(format_table(("set", "median", "spread", "x 1 entry"), rows))

    print("\n4. Loading, compiling, memory")
    rows = []
    for what, text in (
        ("10,000 rules", many_rules(10_000, "cn", bench)),
        ("a 100,000-entry set", fingerprint_set(100_000, bench)),
    ):
        load = _fresh_seconds(lambda text=text: compiled(text))
        floor = _fresh_seconds(lambda text=text: yaml.load(text, Loader=yaml.CSafeLoader))
        rows.append((f"load + check + compile {what}", f"{load:.2f} s", f"{load / floor:.1f}x"))
        rows.append(("libyaml's C loader on the same text", f"{floor:.2f} s", ""))
    per_cert = memory_per_certificate(200 if args.quick else 2000)
    rows.append(("memory per cached certificate", f"{per_cert / 1024:.1f} KiB", ""))
    print(format_table(("what", "value", "x libyaml"), rows))

    print("\n5. Threads (threads.py: 16 clients through evaluate_request)")
    import threads

    repeats, decisions = (3, 20_000) if args.quick else (5, 100_000)
    print(format_table(threads.TABLE_HEADER, threads.thread_rows(repeats, decisions)))


if __name__ == "__main__":
    main()
