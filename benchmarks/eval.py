"""``policyengine eval`` over a large inventory, next to the certificate parser alone.

    python benchmarks/eval.py [--files 20000] [--repeats 3] [--quick]

Writes ``--files`` DER certificates into a temporary folder, every one of them distinct
(its own subject, serial and expiry, signed by one of four CAs, as in a real inventory:
nothing learnt from one certificate answers for the next), then times, over the same files:

- parser only   read each file and ``cryptography.x509.load_der_x509_certificate``: the floor;
- handwritten   the script one would write instead with cryptography: read, parse, the same
                policy by hand, one JSON line with the decision, expiry, subject and SHA-256;
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
import json
import os
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from policyengine import load_policy, policy_from_text, read_certificate
from policyengine.cli import main
from policyengine.cli.eval import cpus
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
    authorities = [make_certificate({"CN": "bench", "O": f"CA {i}"}, ca=True) for i in range(4)]
    key = ec.generate_private_key(ec.SECP256R1())  # one leaf key: signing is what costs
    for index in range(count):
        der = make_certificate(
            {"CN": f"client-{index:06d}", "O": "Contoso Ltd" if index % 2 else "Fabrikam"},
            issuer=authorities[index % len(authorities)],
            key=key,
            not_before=now - timedelta(days=1),
            not_after=now + timedelta(days=5 + index % 700),
        ).der
        shard = directory / f"{index // 1000:03d}"
        shard.mkdir(exist_ok=True)
        (shard / f"client-{index:06d}.der").write_bytes(der)


def parser_only(directory: Path) -> int:
    parsed = 0
    for root, _, names in os.walk(directory):
        for name in names:
            with open(os.path.join(root, name), "rb") as handle:
                x509.load_der_x509_certificate(handle.read())
            parsed += 1
    return parsed


def handwritten(directory: Path) -> int:
    """The audit script one would write with cryptography: the same policy by hand, the
    same fields (decision, expiry, subject, SHA-256) as one JSON line per file."""
    now = datetime.now(UTC)
    revoked = {0x1A2B3C}
    sink = io.StringIO()
    written = 0
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                certificate = x509.load_der_x509_certificate(handle.read())
            subject = certificate.subject
            organizations = subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
            issuers = certificate.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
            not_after = certificate.not_valid_after_utc
            allowed = (
                certificate.serial_number not in revoked
                and certificate.not_valid_before_utc <= now <= not_after
                and [a.value for a in organizations] == ["Contoso Ltd"]
                and [a.value for a in issuers] == ["bench"]
            )
            line = {
                "file": path,
                "decision": "allow" if allowed else "deny",
                "not_after": not_after.isoformat(),
                "subject": subject.rfc4514_string(),
                "sha256": certificate.fingerprint(hashes.SHA256()).hex(),
            }
            sink.write(json.dumps(line) + "\n")
            written += 1
    return written


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
    parser.add_argument("--quick", action="store_true", help="a smoke run: 200 files, one repeat")
    args = parser.parse_args()
    if args.quick:
        args.files, args.repeats = 200, 1
    policy_from_text(POLICY, "bench.yaml")  # fail early on a broken benchmark policy
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "certs"
        directory.mkdir()
        policy_file = Path(tmp) / "bench.yaml"
        policy_file.write_text(POLICY)
        make_inventory(directory, args.files)
        floor, parsed = best(lambda: parser_only(directory), args.repeats)
        by_hand, handwritten_lines = best(lambda: handwritten(directory), args.repeats)
        deciding, decided = best(lambda: parse_and_decide(policy_file, directory), args.repeats)
        audited, lines = best(lambda: run_eval(policy_file, directory, 1), args.repeats)
        shared, shared_lines = best(
            lambda: run_eval(policy_file, directory, args.jobs), args.repeats
        )
    counts = (parsed, handwritten_lines, decided, lines, shared_lines)
    assert set(counts) == {args.files}, counts
    print(f"{args.files} DER files, best of {args.repeats}")
    print(
        f"parser only  {floor:7.3f} s  {floor / args.files * 1e6:6.1f} µs/file"
        f"  {args.files / floor:9.0f} files/s"
    )
    print(
        f"handwritten  {by_hand:7.3f} s  {by_hand / args.files * 1e6:6.1f} µs/file"
        f"  {args.files / by_hand:9.0f} files/s"
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
    print(f"ratio        eval {audited / by_hand:.2f}x the handwritten script")


if __name__ == "__main__":
    run()
