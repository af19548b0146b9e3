"""What each speed layer buys, end to end, measured side by side in one run.

    python benchmarks/layers.py [--repeats 7] [--seconds 0.2] [--request-us 300] [--quick]

Four layers, each turned off by a keyword option of ``compile_document``:

- the decision memo (``memo=False``): a returning client's decision, kept by the policy;
- the recall lane (``recall=False``): the header memo's one-pass check of a returning
  client's headers (``HeaderMemo.recall``) before anything else;
- second-sighting admission (``second_sighting=False``): the facts cache and the header
  memo store a certificate from its first sighting;
- the DER name reader (``der_names=False``): names read through cryptography's objects.

1. For each layer, the rows of ``decision.py`` it is on the path of, with it and without,
   all taken in turn repeat by repeat (so a drift of the machine falls on every case):
   ``facts`` (Policy.evaluate on facts seen before), ``header`` (App Service's header,
   the certificate seen before) and ``header, cold`` (a pool of 2,000 distinct
   certificates through caches half that size). The saving of a layer is the median of
   the paired differences; its share of a request end to end is that saving over the
   cost of a whole request: the bare app's server CPU per request (``--request-us``,
   from ``load.py``: about 300 µs on the two-core machine this was written on) plus what
   the middleware adds on that row.
2. ``decision.py``'s targets, with each layer off.
3. A flood: one-off certificates (twice the caches' size between two requests of one
   returning client), with second-sighting admission and without: what the returning
   client's request costs, and what a one-off costs.

``--quick`` is a smoke run: tiny counts, no verdict.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import itertools
import statistics
import sys
import time
from collections.abc import Callable

from common import (
    NOW,
    format_table,
    four_predicates,
    handwritten,
    measure_together,
    median,
    micros,
)
from cryptography.hazmat.primitives.asymmetric import ec

from policyengine import Policy, read_certificate
from policyengine.load.document import parse_document
from policyengine.load.loader import compile_document
from policyengine.testing import make_certificate

HEADER = "X-ARR-ClientCert"
PEER = "10.0.0.1"
SUBJECT = {"CN": "api-client", "O": "Contoso Ltd"}
LAYERS: dict[str, dict[str, bool]] = {
    "decision memo": {"memo": False},
    "recall lane": {"recall": False},
    "second sighting": {"second_sighting": False},
    "DER name reader": {"der_names": False},
}
ROWS = ("facts", "header", "header, cold")
RULE = 0.05
"""A layer that buys less than this share of a request end to end goes (issue 15)."""


class Bench:
    """One returning client's certificate, a pool of one-off ones, and their pins."""

    def __init__(self, pool: int) -> None:
        self.cert = make_certificate(SUBJECT)
        self.header = base64.b64encode(self.cert.der).decode()
        key = ec.generate_private_key(ec.SECP256R1())  # one key: the pool differs by serial
        self.pool = [
            base64.b64encode(make_certificate(SUBJECT, key=key).der).decode() for _ in range(pool)
        ]
        self.pins = [self.cert.sha1, "30757a2e831977d8bd9c8496e4c99ab26cb9622b", "5e" * 20]
        self.pins += [hashlib.sha1(base64.b64decode(v)).hexdigest() for v in self.pool]
        self.text = four_predicates(self.pins)
        self.extracted = {
            "cn": "api-client",
            "issuer_o": "Contoso Ltd",
            "sha1": self.cert.sha1,
            "not_before": read_certificate(self.cert.der).not_before,
            "not_after": read_certificate(self.cert.der).not_after,
        }

    def policy(self, size: int = 4096, **switches: bool) -> Policy:
        return compile_document(parse_document(self.text, "layers.yaml"), size, **switches)


def _headers(value: str) -> list[tuple[str, str]]:
    return [("Host", "api.contoso.com"), ("Accept", "*/*"), (HEADER, value)]


def variant_cases(
    bench: Bench, name: str, switches: dict[str, bool]
) -> dict[str, Callable[[], object]]:
    """The three rows for one variant of the policy (every layer on, or one off)."""
    warm = bench.policy(**switches)
    cold = bench.policy(len(bench.pool) // 2, **switches)
    facts = warm._facts.read(bench.cert.der)  # read as this variant reads names
    headers = _headers(bench.header)
    pool = [_headers(value) for value in bench.pool]
    turn = itertools.cycle(range(len(pool)))
    cases: dict[str, Callable[[], object]] = {
        f"{name}|facts": lambda: warm.evaluate(facts, path="/", now=NOW),
        f"{name}|header": lambda: warm.evaluate_request(
            headers=headers, remote_addr=PEER, path="/", now=NOW
        ),
        f"{name}|header, cold": lambda: cold.evaluate_request(
            headers=pool[next(turn)], remote_addr=PEER, path="/", now=NOW
        ),
    }
    for case_name, case in cases.items():
        for _ in range(3):  # seen before: the caches keep it from the second sighting
            decision = case()
        assert decision.allowed, (case_name, decision)  # type: ignore[attr-defined]
    return cases


def baselines(bench: Bench) -> dict[str, Callable[[], object]]:
    """The plain Python function and the handwritten validator, as in decision.py."""
    f = bench.extracted
    pins = frozenset(bench.pins)
    turn = itertools.cycle(range(len(bench.pool)))

    def plain() -> bool:
        return (
            f["not_before"] <= NOW <= f["not_after"]  # type: ignore[operator]
            and f["cn"] == "api-client"
            and f["issuer_o"] == "Contoso Ltd"
            and f["sha1"] in pins
        )

    return {
        "plain python": plain,
        "handwritten": lambda: handwritten(bench.pool[next(turn)], pins, NOW),
    }


def paired(results: dict[str, list[float]], a: str, b: str, op: str = "/") -> float:
    """The median over the repeats of a's time over (or minus) b's, taken side by side."""
    pairs = zip(results[a], results[b], strict=True)
    return median([x / y if op == "/" else x - y for x, y in pairs])


def layer_rows(
    results: dict[str, list[float]], request: float
) -> tuple[list[tuple[str, ...]], dict[str, float]]:
    """Table 1, and each layer's largest share of a request end to end."""
    rows: list[tuple[str, ...]] = []
    shares: dict[str, float] = {}
    for layer in LAYERS:
        best = 0.0
        for row in ROWS:
            on, off = f"all on|{row}", f"{layer}|{row}"
            saving = paired(results, off, on, "-")
            share = saving / (request + median(results[on]))
            best = max(best, share)
            rows.append(
                (
                    layer,
                    row,
                    micros(median(results[on])),
                    micros(median(results[off])),
                    f"{saving * 1e6:+.2f} µs",
                    f"{share:+.1%}",
                )
            )
        shares[layer] = best
    return rows, shares


def target_rows(
    results: dict[str, list[float]], quick: bool
) -> tuple[list[tuple[str, ...]], dict[str, list[str]]]:
    """decision.py's targets that these layers can move, for every variant; and for each
    layer, the targets met with every layer on and missed without it."""
    rows = []
    missed: dict[str, list[str]] = {}
    met_on: dict[str, bool] = {}
    for variant in ("all on", *LAYERS):
        checks = [
            (
                "facts <= 2.5x plain python",
                paired(results, f"{variant}|facts", "plain python"),
                2.5,
            ),
            ("handwritten >= 20x header", paired(results, "handwritten", f"{variant}|header"), -20),
            (
                "header, cold <= handwritten",
                paired(results, f"{variant}|header, cold", "handwritten"),
                1.0,
            ),
        ]
        for target, ratio, bound in checks:
            met = ratio >= -bound if bound < 0 else ratio <= bound
            if variant == "all on":
                met_on[target] = met
            elif met_on[target] and not met:
                missed.setdefault(variant, []).append(target)
            verdict = "not judged" if quick else "yes" if met else "NO"
            off = "every layer on" if variant == "all on" else f"{variant} off"
            rows.append((off, target, f"{ratio:.2f}", verdict))
    return rows, missed


def flood(bench: Bench, size: int, rounds: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per returning request and per one-off request, second sighting on and off.

    Each round sends ``2 * size`` one-off certificates (from the pool, in turn: each comes
    back only after the whole pool) and then the returning client's request, timed apart.
    """
    policies = {
        "on": bench.policy(size),
        "off": bench.policy(size, second_sighting=False),
    }
    returning = _headers(bench.header)
    pool = [_headers(value) for value in bench.pool]
    turns = {name: itertools.cycle(range(len(pool))) for name in policies}
    for policy in policies.values():  # the returning client is known to both
        for _ in range(3):
            policy.evaluate_request(headers=returning, remote_addr=PEER, path="/", now=NOW)
    samples: dict[str, list[float]] = {
        f"{kind}, {name}": [] for kind in ("returning", "one-off") for name in policies
    }
    for _ in range(repeats):
        for name, policy in policies.items():  # in turn: both see the same machine
            back = one_off = 0.0
            for _ in range(rounds):
                start = time.perf_counter()
                for _ in range(2 * size):
                    headers = pool[next(turns[name])]
                    policy.evaluate_request(headers=headers, remote_addr=PEER, path="/", now=NOW)
                middle = time.perf_counter()
                decision = policy.evaluate_request(
                    headers=returning, remote_addr=PEER, path="/", now=NOW
                )
                back += time.perf_counter() - middle
                one_off += middle - start
                assert decision.allowed
            samples[f"returning, {name}"].append(back / rounds)
            samples[f"one-off, {name}"].append(one_off / (rounds * 2 * size))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.2, help="per case and repeat")
    parser.add_argument(
        "--request-us",
        type=float,
        default=300.0,
        help="the bare app's server CPU per request, from load.py (µs)",
    )
    parser.add_argument("--quick", action="store_true", help="fewer, shorter repeats")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.seconds = 3, 0.02
    bench = Bench(400 if args.quick else 2000)
    print(f"Python {sys.version.split()[0]}; medians of {args.repeats} paired repeats\n")

    cases = baselines(bench)
    cases.update(variant_cases(bench, "all on", {}))
    for layer, switches in LAYERS.items():
        cases.update(variant_cases(bench, layer, switches))
    results = measure_together(cases, args.repeats, args.seconds)
    request = args.request_us * 1e-6

    rows, shares = layer_rows(results, request)
    print(f"1. Each layer on its rows (a request end to end: {args.request_us:.0f} µs + the row)")
    header = ("layer", "row", "with it", "without", "it saves", "share of a request")
    print(format_table(header, rows))

    print("\n2. decision.py's targets with each layer off")
    targets, missed = target_rows(results, args.quick)
    print(format_table(("variant", "target", "ratio", "met"), targets))

    size = 50 if args.quick else 500
    samples = flood(bench, size, 2 if args.quick else 4, args.repeats)
    print(
        f"\n3. A flood: {2 * size} one-off certificates between two requests of a returning "
        f"client (caches of {size})"
    )
    print(format_table(FLOOD_HEADER, flood_rows(samples, request, shares)))
    print(
        f"\n4. The rule: a layer that buys under {RULE:.0%} of a request end to end goes, "
        "unless a target needs it"
    )
    for layer, share in shares.items():
        print(f"  {layer}: {verdict(layer, share, missed.get(layer, []), args.quick)}")


FLOOD_HEADER = ("request", "second sighting", "without", "it saves", "share of a request")


def flood_rows(
    samples: dict[str, list[float]], request: float, shares: dict[str, float]
) -> list[tuple[str, ...]]:
    """Table 3; the returning client's share is what second sighting is judged on (it
    is a flood defence more than a speed layer), so it goes into ``shares``."""
    body = []
    for kind in ("returning", "one-off"):
        on, off = samples[f"{kind}, on"], samples[f"{kind}, off"]
        saving = statistics.median([b - a for a, b in zip(on, off, strict=True)])
        share = saving / (request + median(on))
        if kind == "returning":
            shares["second sighting"] = max(shares["second sighting"], share)
        row = (kind, micros(median(on)), micros(median(off)), f"{saving * 1e6:+.2f} µs")
        body.append((*row, f"{share:+.1%}"))
    return body


def verdict(layer: str, share: float, needs: list[str], quick: bool) -> str:
    """What the rule says of one layer."""
    where = " (the flood's returning client)" if layer == "second sighting" else ""
    if quick:
        said = "not judged"
    elif share >= RULE:
        said = "stays: it buys enough"
    elif needs:
        said = "stays: without it, " + "; ".join(needs) + " is missed"
    else:
        said = "goes"
    return f"at most {share:+.1%} of a request{where}: {said}"


if __name__ == "__main__":
    main()
