"""``policyengine eval`` over a large inventory, next to the certificate parser alone.

    python benchmarks/eval.py [--files 20000] [--repeats 3]

Writes ``--files`` DER certificates into a temporary folder (a handful of distinct
certificates, each written many times under its own name, so making them is quick), then
times, over the same files:

- parser only   read each file and ``cryptography.x509.load_der_x509_certificate``: the floor;
- parse+decide  read each file, ``read_certificate`` and ``Policy.evaluate``: what deciding
                costs at the least (the rules read names and dates the bare parser never
                decodes, and cryptography decodes them only when asked);
- eval          the whole ``policyengine eval`` pipeline (walk, read, parse, decide, expiry,
                one JSON line per certificate written to a discarded stream), in one
                process (``--jobs 1``) and then in ``--jobs`` worker processes (default:
                one per CPU).

Each is the best of ``--repeats`` runs (the page cache is warm after the first); the ratio
says how close eval comes to the speed of the parser.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from policyengine import load_policy, policy_from_text, read_certificate
from policyengine.cli import _cpus as cpus
from policyengine.cli import main
from policyengine.testing import make_certificate

POLICY = """\
policy: bench
mode: required
sets:
  revoked_serials: ["0x1A2B3C"]
rules:
  - id: revoked-serial
    effect: deny
    when: serial in revoked_serials
  - id: partner
    effect: allow
    when: valid and subject.O == "Contoso Ltd" and issuer.CN == "bench"
"""


def make_inventory(directory: Path, count: int) -> None:
    now = datetime.now(UTC)
    distinct = [
        make_certificate(
            {"CN": "bench", "O": "Contoso Ltd" if i % 2 else "Fabrikam"},
            not_before=now - timedelta(days=1),
            not_after=now + timedelta(days=5 + i * 20),
        ).der
        for i in range(16)
    ]
    for index in range(count):
        shard = directory / f"{index // 1000:03d}"
        shard.mkdir(exist_ok=True)
        (shard / f"client-{index:06d}.der").write_bytes(distinct[index % len(distinct)])


def parser_only(directory: Path) -> int:
    parsed = 0
    for root, _, names in os.walk(directory):
        for name in names:
            with open(os.path.join(root, name), "rb") as handle:
                x509.load_der_x509_certificate(handle.read())
            parsed += 1
    return parsed


def parse_and_decide(policy_file: Path, directory: Path) -> int:
    policy = load_policy(policy_file)
    now = datetime.now(UTC)
    decided = 0
    for root, _, names in os.walk(directory):
        for name in names:
            with open(os.path.join(root, name), "rb") as handle:
                policy.evaluate(read_certificate(handle.read()), path="/", method="GET", now=now)
            decided += 1
    return decided


def run_eval(policy_file: Path, directory: Path, jobs: int) -> int:
    sink = io.StringIO()
    args = ["eval", str(policy_file), "--certs", str(directory), "--format", "json"]
    with contextlib.redirect_stdout(sink):
        code = main([*args, "--jobs", str(jobs)])
    assert code == 0
    return sink.getvalue().count("\n")


def best(work: Callable[[], int], repeats: int) -> tuple[float, int]:
    times = []
    count = 0
    for _ in range(repeats):
        start = time.perf_counter()
        count = work()
        times.append(time.perf_counter() - start)
    return min(times), count


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=cpus(), help="for the last run")
    args = parser.parse_args()
    policy_from_text(POLICY, "bench.yaml")  # fail early on a broken benchmark policy
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "certs"
        directory.mkdir()
        policy_file = Path(tmp) / "bench.yaml"
        policy_file.write_text(POLICY)
        make_inventory(directory, args.files)
        floor, parsed = best(lambda: parser_only(directory), args.repeats)
        deciding, decided = best(lambda: parse_and_decide(policy_file, directory), args.repeats)
        audited, lines = best(lambda: run_eval(policy_file, directory, 1), args.repeats)
        shared, shared_lines = best(
            lambda: run_eval(policy_file, directory, args.jobs), args.repeats
        )
    assert parsed == decided == lines == shared_lines == args.files, (parsed, decided, lines)
    print(f"{args.files} DER files, best of {args.repeats}")
    print(
        f"parser only  {floor:7.3f} s  {floor / args.files * 1e6:6.1f} µs/file"
        f"  {args.files / floor:9.0f} files/s"
    )
    print(
        f"parse+decide {deciding:7.3f} s  {deciding / args.files * 1e6:6.1f} µs/file"
        f"  {args.files / deciding:9.0f} files/s"
    )
    print(
        f"eval         {audited:7.3f} s  {audited / args.files * 1e6:6.1f} µs/file"
        f"  {args.files / audited:9.0f} files/s"
    )
    print(
        f"eval, {args.jobs} jobs {shared:7.3f} s  {shared / args.files * 1e6:6.1f} µs/file"
        f"  {args.files / shared:9.0f} files/s"
    )
    print(f"ratio        eval {audited / floor:.2f}x the parser alone")
    print(f"ratio        eval {audited / deciding:.2f}x parse+decide")
    print(f"ratio        eval --jobs {args.jobs} {shared / floor:.2f}x the parser alone")


if __name__ == "__main__":
    run()
