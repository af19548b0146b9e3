"""One Policy shared by several threads: correctness and aggregate throughput.

    python benchmarks/threads.py [--repeats 5] [--decisions 100000] [--threads 1,8] [--quick]

A pool of 16 distinct client certificates, sent as App Service sends them (base64 DER in
``X-ARR-ClientCert``, the ``azure`` source), is decided by one shared ``Policy`` through
``Policy.evaluate_request``: by one thread, then by several, each thread looping over the
pool from its own starting point, so that threads decide different certificates at the
same moment. The policy is the four-predicate policy of ``decision.py`` (validity, subject
CN, issuer O, SHA-1 fingerprint in a set); its set pins the 15 pool certificates that must
pass the fingerprint test (and decision.py's two decoy pins), since 12 of the 16 clients
are allowed. The 4 denied clients each fail one predicate: the CN, the issuer O, the pin,
the validity.

Cases:

- cached   the policy's default caches: after the first request of each certificate,
           a decision is a header-memo and facts-cache hit (a returning client);
- churn    ``facts_cache_size=4``, smaller than the pool: every request misses, decodes
           the header, parses the certificate and decides, and the caches' second-sighting
           admission (a certificate is kept from its second sighting) notes and forgets, all
           concurrently;
- plain python  not policyengine: the same harness around the policy written as a plain
           Python function over facts extracted beforehand, run ten times a call (about
           the cost of a cached decision): what handing the interpreter's lock over costs
           code that does nothing else;
- handwritten  not policyengine either: the App Service article's validator (decode,
           parse, check dates, names and thumbprint by hand, with ``cryptography``).

The total number of decisions of a run is fixed (``--decisions``, a tenth of it for
churn and handwritten) and split evenly between the threads; the wall time runs from the
moment every thread is ready until the last one finishes. Every decision is checked
against the one computed up front by a single thread (same allow/deny, reason, rule and
message, and facts of the very certificate that was sent); an exception or a differing
decision is an error. The table shows the median over ``--repeats`` runs (1-thread and
n-thread runs alternate): wall time, aggregate decisions/s with its spread (min..max)
and its ratio to one thread's; the process CPU time per decision and its ratio to one
thread's (what threading costs in work, which other processes sharing the machine
disturb less than wall time); and the errors summed over all runs.

Under CPython's GIL the threads take turns, so the aggregate throughput of n threads
should stay close to one thread's; the goal is no errors and no loss of throughput.
Handing the lock over (every 5 ms by default) costs a few percent whatever the code;
``--switch-interval 50`` shows how much of a loss is that.
:func:`measure_threads` returns the numbers and :func:`thread_rows` the formatted rows,
for another benchmark to include.
"""

from __future__ import annotations

import argparse
import base64
import functools
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from common import NOW, format_table, four_predicates, handwritten
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from policyengine import Decision, Policy, policy_from_text
from policyengine.testing import IssuedCertificate, make_certificate

PEER = "10.0.0.1"
HEADER = "X-ARR-ClientCert"
DECOY_PINS = ("30757a2e831977d8bd9c8496e4c99ab26cb9622b", "5e" * 20)
CASES: dict[str, int | None] = {
    "cached": None,
    "churn": 4,
    "plain python": None,
    "handwritten": None,
}
"""Case name -> facts_cache_size (None: the policy's default; unused by the baselines)."""
BASELINES = ("plain python", "handwritten")

TABLE_HEADER = (
    "case",
    "threads",
    "decisions",
    "wall",
    "decisions/s",
    "spread",
    "x 1 thread",
    "CPU/decision",
    "x 1 thread",
    "errors",
)


@dataclass(frozen=True)
class Client:
    name: str
    der: bytes
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Expected:
    client: Client
    decision: object
    """A policy's Decision, or the handwritten validator's bool."""


@dataclass
class ThreadResult:
    """The runs of one case with one thread count."""

    case: str
    threads: int
    decisions: int
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None

    @property
    def rates(self) -> list[float]:
        return [self.decisions / s for s in self.seconds]

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    @property
    def cpu_per_decision(self) -> float:
        """Median CPU time of the process per decision: what the work costs, whatever
        else the machine runs (wall time also counts the time other processes took)."""
        return statistics.median(self.cpu_seconds) / self.decisions


def make_clients() -> tuple[list[Client], list[str]]:
    """The 16 clients (12 allowed, 4 denied) and the pins of the policy that decides them."""
    valid_from, valid_to = NOW - timedelta(days=30), NOW + timedelta(days=335)
    good = {"CN": "api-client", "O": "Contoso Ltd"}

    def cert(subject: dict[str, str], *, expired: bool = False) -> IssuedCertificate:
        end = NOW - timedelta(days=1) if expired else valid_to
        return make_certificate(subject, not_before=valid_from, not_after=end)

    allowed = [(f"allowed-{i:02d}", cert(good)) for i in range(12)]
    wrong_cn = ("wrong-cn", cert({"CN": "other-client", "O": "Contoso Ltd"}))
    wrong_o = ("wrong-issuer", cert({"CN": "api-client", "O": "Fabrikam"}))
    expired = ("expired", cert(good, expired=True))
    unpinned = ("not-pinned", cert(good))
    pinned = [*allowed, wrong_cn, wrong_o, expired]
    pins = [c.sha1 for _, c in pinned] + list(DECOY_PINS)
    # denied clients spread through the pool, not bunched at its end
    pool = [*allowed[:3], wrong_cn, *allowed[3:6], wrong_o, *allowed[6:9], expired]
    pool += [*allowed[9:], unpinned]
    clients = [
        Client(name, c.der, ((HEADER, base64.b64encode(c.der).decode()),)) for name, c in pool
    ]
    return clients, pins


def decide(policy: Policy, client: Client) -> Decision:
    return policy.evaluate_request(headers=client.headers, remote_addr=PEER, path="/", now=NOW)


def _by_hand(pins: frozenset[str], client: Client) -> bool:
    return handwritten(client.headers[0][1], pins, NOW)


PLAIN_ROUNDS = 10
"""The plain function is run this many times per call: about the cost of a cached decision."""


def _plain(pins: frozenset[str], facts: dict[bytes, tuple[object, ...]], client: Client) -> bool:
    """The policy in plain Python over facts extracted beforehand, ``PLAIN_ROUNDS`` times."""
    not_before, not_after, cn, org, sha1 = facts[client.der]
    allowed = False
    for _ in range(PLAIN_ROUNDS):
        allowed = (
            not_before <= NOW <= not_after  # type: ignore[operator]
            and cn == "api-client"
            and org == "Contoso Ltd"
            and sha1 in pins
        )
    return allowed


def _extracted(clients: Sequence[Client]) -> dict[bytes, tuple[object, ...]]:
    facts: dict[bytes, tuple[object, ...]] = {}
    for client in clients:
        c = x509.load_der_x509_certificate(client.der)
        facts[client.der] = (
            c.not_valid_before_utc,
            c.not_valid_after_utc,
            c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value,
            c.issuer.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value,
            c.fingerprint(hashes.SHA1()).hex(),
        )
    return facts


def expected_decisions(policy: Policy, clients: Sequence[Client]) -> list[Expected]:
    """Each client's decision, computed once by this thread: what every thread must get."""
    decisions = [decide(policy, client) for client in clients]
    expected = [Expected(c, d) for c, d in zip(clients, decisions, strict=True)]
    allowed = [c.name for c, d in zip(clients, decisions, strict=True) if d.allowed]
    denied = {c.name: d.reason for c, d in zip(clients, decisions, strict=True) if not d.allowed}
    if len(allowed) != 12 or set(denied) != {"wrong-cn", "wrong-issuer", "expired", "not-pinned"}:
        raise AssertionError(f"unexpected decisions: allowed {allowed}, denied {denied}")
    return expected


def _mismatch(decision: object, want: Expected) -> str | None:
    if decision != want.decision:
        return f"{want.client.name}: got {decision!r}, expected {want.decision!r}"
    if isinstance(decision, Decision) and (
        decision.certificate is None or decision.certificate.der != want.client.der
    ):
        return f"{want.client.name}: the decision carries another certificate's facts"
    return None


def run_once(
    call: Callable[[Client], object], expected: Sequence[Expected], threads: int, decisions: int
) -> tuple[float, float, int, str | None]:
    """Wall time, process CPU time, error count and first error of ``decisions`` split
    over ``threads``."""
    share = decisions // threads
    stride = max(1, len(expected) // threads)
    barrier = threading.Barrier(threads + 1)
    errors = [0] * threads
    first: list[str | None] = [None] * threads

    def work(slot: int) -> None:
        start = slot * stride
        order = [expected[(start + k) % len(expected)] for k in range(share)]
        count = 0
        note: str | None = None
        barrier.wait()
        for want in order:
            try:
                decision = call(want.client)
            except Exception as exc:  # counted, not raised: the run goes on
                count += 1
                note = note or f"{want.client.name}: {type(exc).__name__}: {exc}"
                continue
            problem = _mismatch(decision, want)
            if problem is not None:
                count += 1
                note = note or problem
        errors[slot] = count
        first[slot] = note

    workers = [threading.Thread(target=work, args=(slot,)) for slot in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    started, cpu_started = time.perf_counter(), time.process_time()
    for worker in workers:
        worker.join()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    notes = [n for n in first if n is not None]
    return elapsed, cpu, sum(errors), notes[0] if notes else None


def measure_threads(
    repeats: int = 5,
    decisions: int = 100_000,
    thread_counts: Sequence[int] = (1, 8),
    cases: Sequence[str] = tuple(CASES),
) -> list[ThreadResult]:
    """Run every case with every thread count ``repeats`` times, thread counts alternating."""
    clients, pins = make_clients()
    policy_text = four_predicates(pins, "bench-threads")
    results: list[ThreadResult] = []
    reference: list[object] | None = None
    for case in cases:
        size = CASES[case]
        policy = (
            policy_from_text(policy_text, "threads.yaml")
            if size is None
            else policy_from_text(policy_text, "threads.yaml", facts_cache_size=size)
        )
        expected = expected_decisions(policy, clients)
        call: Callable[[Client], object] = functools.partial(decide, policy)
        if case in BASELINES:
            if case == "handwritten":
                call = functools.partial(_by_hand, frozenset(pins))
            else:
                call = functools.partial(_plain, frozenset(pins), _extracted(clients))
            expected = [
                Expected(e.client, isinstance(e.decision, Decision) and e.decision.allowed)
                for e in expected
            ]
        elif reference is None:
            reference = [e.decision for e in expected]
        elif reference != [e.decision for e in expected]:
            raise AssertionError(f"case {case} decides the pool differently")
        slow = size is not None or case == "handwritten"
        number = max(decisions // 10, 1) if slow else decisions
        # warm-up: every certificate seen, the code paths run once
        _, _, warm_errors, warm_note = run_once(call, expected, 1, min(number, 2000))
        by_threads = {n: ThreadResult(case, n, (number // n) * n) for n in thread_counts}
        first = next(iter(by_threads.values()))
        first.errors, first.first_error = warm_errors, warm_note
        for _ in range(repeats):
            for n, result in by_threads.items():
                elapsed, cpu, errors, note = run_once(call, expected, n, number)
                result.seconds.append(elapsed)
                result.cpu_seconds.append(cpu)
                result.errors += errors
                result.first_error = result.first_error or note
        results.extend(by_threads.values())
    return results


def rows(results: Sequence[ThreadResult]) -> list[tuple[str, ...]]:
    """The table rows of ``results`` (columns as in :data:`TABLE_HEADER`)."""
    single = {r.case: r for r in results if r.threads == 1}
    out: list[tuple[str, ...]] = []
    for r in results:
        rates = r.rates
        base = single.get(r.case)
        ratio = f"{r.rate / base.rate:.2f}" if base else "-"
        cpu_ratio = f"{r.cpu_per_decision / base.cpu_per_decision:.2f}" if base else "-"
        out.append(
            (
                r.case,
                str(r.threads),
                f"{r.decisions}",
                f"{statistics.median(r.seconds) * 1e3:.0f} ms",
                f"{r.rate:,.0f}",
                f"{min(rates):,.0f}..{max(rates):,.0f}",
                ratio,
                f"{r.cpu_per_decision * 1e6:.1f} µs",
                cpu_ratio,
                str(r.errors),
            )
        )
    return out


def thread_rows(repeats: int = 5, decisions: int = 100_000) -> list[tuple[str, ...]]:
    """Measure (1 and 8 threads, both cases) and return the formatted table rows."""
    return rows(measure_threads(repeats, decisions))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--decisions", type=int, default=100_000, help="per run (cached case)")
    parser.add_argument("--threads", default="1,8", help="thread counts, comma-separated")
    parser.add_argument(
        "--switch-interval",
        type=float,
        help="the interpreter's thread switch interval, in ms (sys.setswitchinterval): "
        "how much of the loss is handing the GIL over",
    )
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: one repeat of 2,000 decisions, 1 and 2 threads",
    )
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.decisions, args.threads = 1, 2_000, "1,2"
    counts = sorted({int(n) for n in args.threads.split(",")} | {1})
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval / 1e3)
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    print(
        f"Python {sys.version.split()[0]}, GIL {'on' if gil else 'off'}, "
        f"switch interval {sys.getswitchinterval() * 1e3:g} ms"
    )
    results = measure_threads(args.repeats, args.decisions, counts, args.cases.split(","))
    print(format_table(TABLE_HEADER, rows(results)))
    failed = [r for r in results if r.errors]
    for r in failed:
        print(f"{r.case}, {r.threads} threads: {r.errors} errors; first: {r.first_error}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
