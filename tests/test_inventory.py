"""`policyengine eval`: a certificate inventory audited against one policy.

The inventory is made here: certificates the policy allows and denies, one expiring within
the window, a PEM bundle, garbage, a broken symlink and a FIFO (tests run as root, so a
chmod 000 file would still be readable: these are the unreadable entries that stay
unreadable), and files the walk must skip.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import NOW
from hypothesis import given, settings
from hypothesis import strategies as st

from policyengine import load_policy, read_certificate
from policyengine.cli import main
from policyengine.testing import make_certificate
from policyengine.tooling.inventory import audit, find_certificate_files

AT = NOW
ROOT = Path(__file__).resolve().parent.parent

POLICY = """\
policy: inventory
mode: required
rules:
  - id: blocked-ou
    effect: deny
    when: subject.OU == "Blocked"
  - id: contoso
    effect: allow
    when: valid and subject.O == "Contoso Ltd"
"""


def _cert(cn: str, o: str, *, days: int = 3650, ou: str | None = None, serial: int = 1) -> bytes:
    subject = [("CN", cn), ("O", o), *([("OU", ou)] if ou else [])]
    return make_certificate(
        subject,
        not_before=datetime(2025, 1, 1, tzinfo=UTC),
        not_after=AT + timedelta(days=days),
        serial=serial,
    ).pem


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``policy.yaml`` and ``certs/`` in one folder (the tests run from it)."""
    base = tmp_path_factory.mktemp("inventory")
    (base / "policy.yaml").write_text(POLICY)
    certs = base / "certs"
    (certs / "nested").mkdir(parents=True)
    (certs / "allowed.pem").write_bytes(_cert("api", "Contoso Ltd"))
    denied = make_certificate(
        [("CN", "api"), ("O", "Fabrikam")],
        not_before=datetime(2025, 1, 1, tzinfo=UTC),
        not_after=datetime(2030, 1, 1, tzinfo=UTC),
    )
    (certs / "denied.der").write_bytes(denied.der)
    (certs / "nested" / "soon.crt").write_bytes(_cert("soon", "Contoso Ltd", days=10))
    bundle = _cert("one", "Contoso Ltd") + b"\n" + _cert("two", "Contoso Ltd", ou="Blocked")
    (certs / "bundle.pem").write_bytes(b"subject=CN=one\n" + bundle)
    (certs / "garbage.pem").write_bytes(
        b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"
    )
    (certs / "broken.pem").symlink_to(certs / "missing.pem")
    os.mkfifo(certs / "fifo.pem")
    (certs / "notes.txt").write_text("not examined: not a certificate file name\n")
    (certs / ".hidden.pem").write_text("not examined: hidden\n")
    return base


def _run(cwd: Path, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "policyengine", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,  # a FIFO opened for reading would hang here
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )


TABLE = """\
FILE                   DECISION    RULE        REASON                 EXPIRES               FLAG      WHY
certs/allowed.pem      allow       contoso     allowed_by_rule        2036-11-25T10:00:00Z
certs/broken.pem       unreadable  -           unreadable             -                               cannot read certs/broken.pem: No such file or directory
certs/bundle.pem#1     allow       contoso     allowed_by_rule        2036-11-25T10:00:00Z
certs/bundle.pem#2     deny        blocked-ou  denied_by_rule         2036-11-25T10:00:00Z            Denied by rule blocked-ou.
certs/denied.der       deny        -           no_matching_rule       2030-01-01T00:00:00Z            No allow rule holds; the closest is contoso, where `subject.O == "Contoso Ltd"` is false.
certs/fifo.pem         unreadable  -           unreadable             -                               cannot read certs/fifo.pem: a FIFO, not a regular file
certs/garbage.pem      unreadable  -           malformed_certificate  -                               the PEM certificate's base64 is broken
certs/nested/soon.crt  allow       contoso     allowed_by_rule        2026-12-08T10:00:00Z  expiring
3 allowed, 2 denied, 3 unreadable, 1 expiring within 30d
"""  # noqa: E501 (the table is as wide as it is printed)


def test_table_is_exact(inventory: Path) -> None:
    result = _run(
        inventory, "eval", "policy.yaml", "--certs", "certs", "--at", "2026-11-28T10:00:00Z"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == TABLE
    assert result.stderr == ""  # stderr is a pipe here: no progress bar


def test_json_lines(inventory: Path) -> None:
    result = _run(
        inventory,
        "eval",
        "policy.yaml",
        "--certs",
        "certs",
        "--at",
        "2026-11-28T10:00:00Z",
        "--format",
        "json",
        "--expiring",
        "2w",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    by_file = {row["file"]: row for row in rows}
    assert list(by_file) == [
        "certs/allowed.pem",
        "certs/broken.pem",
        "certs/bundle.pem#1",
        "certs/bundle.pem#2",
        "certs/denied.der",
        "certs/fifo.pem",
        "certs/garbage.pem",
        "certs/nested/soon.crt",
    ]
    for row in rows:
        assert {"file", "decision", "rule", "reason", "expiring", "not_after", "subject"} <= set(
            row
        )
        assert "sha256" in row
    soon = by_file["certs/nested/soon.crt"]
    assert soon["decision"] == "allow" and soon["rule"] == "contoso" and soon["expiring"] is True
    assert soon["subject"] == "O=Contoso Ltd,CN=soon"
    assert len(soon["sha256"]) == 64
    blocked = by_file["certs/bundle.pem#2"]
    assert (blocked["decision"], blocked["rule"], blocked["reason"]) == (
        "deny",
        "blocked-ou",
        "denied_by_rule",
    )
    denied = by_file["certs/denied.der"]
    assert denied["rule"] is None and "closest is contoso" in denied["message"]
    broken = by_file["certs/broken.pem"]
    assert broken["decision"] == "unreadable" and broken["reason"] == "unreadable"
    assert "No such file or directory" in broken["message"]
    assert by_file["certs/garbage.pem"]["reason"] == "malformed_certificate"
    assert sum(row["expiring"] for row in rows) == 1


def test_progress_bar_only_on_a_terminal(inventory: Path) -> None:
    controller, terminal = pty.openpty()
    try:
        process = subprocess.run(
            [sys.executable, "-m", "policyengine", "eval", "policy.yaml", "--certs", "certs"],
            cwd=inventory,
            stdout=subprocess.PIPE,
            stderr=terminal,
            timeout=30,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            check=False,
        )
        os.close(terminal)
        terminal = -1
        drawn = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the terminal side is closed and drained
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    assert process.returncode == 0
    assert b"\r[" in drawn and b"/7 files" in drawn
    assert drawn.endswith(b"\r\x1b[K")  # the bar is erased once the run is done
    assert b"\r" not in process.stdout  # the table itself stays clean


def test_exit_status_2_on_bad_policy_or_option(
    inventory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("policy: broken\nrules:\n  - id: x\n    effect: allow\n    when: subjet.CN\n")
    certs = str(inventory / "certs")
    assert main(["eval", str(broken), "--certs", certs]) == 2
    assert "cannot be used" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(inventory / "policy.yaml"), "--certs", certs, "--expiring", "soon"])
    assert exit_info.value.code == 2
    assert "is not a window" in capsys.readouterr().err


def test_missing_and_garbage_files_are_reported_and_the_run_goes_on(
    inventory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = str(inventory / "policy.yaml")
    allowed = str(inventory / "certs" / "allowed.pem")
    noise = tmp_path / "noise.bin"  # named on the command line: examined whatever its name
    noise.write_bytes(bytes(range(256)))
    code = main(
        ["eval", policy, "--certs", "/nonexistent/x.pem", str(noise), allowed, "--format", "json"]
    )
    assert code == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(row["decision"], row["reason"]) for row in rows] == [
        ("unreadable", "unreadable"),
        ("unreadable", "malformed_certificate"),
        ("allow", "allowed_by_rule"),
    ]
    assert rows[1]["message"] == (
        "neither PEM (it has no -----BEGIN CERTIFICATE----- line) "
        "nor DER (which begins with byte 0x30)"
    )


def test_expiry_window_and_request(inventory: Path) -> None:
    policy = load_policy(inventory / "policy.yaml")
    files = [str(inventory / "certs" / "nested" / "soon.crt")]
    within = next(audit(policy, files, at=AT, window=timedelta(days=10)))
    assert within.expiring and not within.expired
    outside = next(audit(policy, files, at=AT, window=timedelta(days=9)))
    assert not outside.expiring
    later = next(audit(policy, files, at=AT + timedelta(days=11), window=timedelta(days=30)))
    assert later.expired and not later.expiring and later.decision == "deny"


def test_expired_is_decided_to_the_second(inventory: Path) -> None:
    """X.509 times are whole seconds: 5 ms past not_after is not expired yet, 1 s is."""
    policy = load_policy(inventory / "policy.yaml")
    files = [str(inventory / "certs" / "nested" / "soon.crt")]
    ends = read_certificate((inventory / "certs" / "nested" / "soon.crt").read_bytes()).not_after
    just = next(audit(policy, files, at=ends + timedelta(milliseconds=5), window=timedelta(0)))
    assert not just.expired
    past = next(audit(policy, files, at=ends + timedelta(seconds=1), window=timedelta(0)))
    assert past.expired


def test_the_request_path_and_method_reach_the_rules(tmp_path: Path) -> None:
    policy_file = tmp_path / "p.yaml"
    policy_file.write_text(
        textwrap.dedent(
            """\
            policy: paths
            exclusion_paths: /health
            rules:
              - id: writers
                effect: allow
                when: request.method == "GET" and subject.O == "Contoso Ltd"
            """
        )
    )
    cert = tmp_path / "c.pem"
    cert.write_bytes(_cert("api", "Contoso Ltd"))
    policy = load_policy(policy_file)
    window = timedelta(days=30)
    get = next(audit(policy, [str(cert)], at=AT, window=window, method="GET"))
    post = next(audit(policy, [str(cert)], at=AT, window=window, method="POST"))
    health = next(audit(policy, [str(cert)], at=AT, window=window, path="/health", method="POST"))
    assert (get.decision, post.decision, health.reason) == ("allow", "deny", "excluded_path")


def test_walk_order_and_skips(inventory: Path) -> None:
    found = [os.path.relpath(p, inventory) for p in find_certificate_files([str(inventory)])]
    assert found == [
        "certs/allowed.pem",
        "certs/broken.pem",
        "certs/bundle.pem",
        "certs/denied.der",
        "certs/fifo.pem",
        "certs/garbage.pem",
        "certs/nested/soon.crt",
    ]


@pytest.fixture(scope="module")
def large_inventory(inventory: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Over two chunks' worth of files, every kind the small inventory has, interleaved."""
    certs = tmp_path_factory.mktemp("large")
    kinds = ["allowed.pem", "denied.der", "bundle.pem", "garbage.pem", "nested/soon.crt"]
    contents = [(inventory / "certs" / kind).read_bytes() for kind in kinds]
    for n in range(1200):
        kind = kinds[n % len(kinds)]
        (certs / f"{n:05d}-{kind.replace('/', '-')}").write_bytes(contents[n % len(kinds)])
    (certs / "00600-broken.pem").symlink_to(certs / "missing.pem")
    return certs


def test_worker_processes_give_the_same_results_in_the_same_order(
    inventory: Path, large_inventory: Path
) -> None:
    from policyengine.tooling.inventory import _CHUNK, AuditResult, audit_report

    policy = load_policy(inventory / "policy.yaml")
    names = list(find_certificate_files([str(large_inventory)]))
    assert len(names) > 2 * _CHUNK
    request = {"at": AT, "window": timedelta(days=30), "path": "/", "method": "GET", "host": None}
    alone = list(audit(policy, names, jobs=1, **request))  # type: ignore[arg-type]
    together = list(audit(policy, names, jobs=2, **request))  # type: ignore[arg-type]
    assert together == alone
    assert len(alone) == len(names) + 240  # each bundle gives two results
    assert {r.decision for r in alone} == {"allow", "deny", "unreadable"}

    def render(result: AuditResult) -> str:  # says which process wrote the line
        return f"{os.getpid()} {result.file} {result.decision} {result.expiring}\n"

    for jobs in (1, 2):
        reports = list(audit_report(policy, names, render, jobs=jobs, **request))  # type: ignore[arg-type]
        lines = "".join(r.text for r in reports).splitlines()
        assert [line.split(" ", 1)[1] for line in lines] == [
            f"{r.file} {r.decision} {r.expiring}" for r in alone
        ]
        writers = {int(line.split(" ", 1)[0]) for line in lines}
        assert (writers == {os.getpid()}) == (jobs == 1)  # with 2 jobs, the workers wrote
        assert [r.files for r in reports] == sorted(r.files for r in reports)
        assert reports[-1].files == len(names)
        counted = [sum(getattr(r, key) for r in reports) for key in ("allowed", "denied")]
        assert counted == [sum(r.decision == d for r in alone) for d in ("allow", "deny")]
        assert sum(r.unreadable for r in reports) == sum(r.decision == "unreadable" for r in alone)
        assert sum(r.expiring for r in reports) == sum(r.expiring for r in alone)


def test_eval_with_jobs_prints_what_one_process_prints(
    inventory: Path, large_inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = str(inventory / "policy.yaml")
    outputs = []
    for jobs in ("1", "2"):
        args = ["eval", policy, "--certs", str(large_inventory), "--at", "2026-11-28T10:00:00Z"]
        assert main([*args, "--jobs", jobs]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    assert outputs[0].splitlines()[-1] == (
        "720 allowed, 480 denied, 241 unreadable, 240 expiring within 30d"
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", policy, "--certs", str(large_inventory), "--jobs", "0"])
    assert exit_info.value.code == 2
    assert "a number of processes" in capsys.readouterr().err


@settings(max_examples=300, deadline=None)
@given(
    texts=st.lists(st.text(), min_size=4, max_size=4),
    optional=st.lists(st.none() | st.text(), min_size=4, max_size=4),
    flags=st.tuples(st.booleans(), st.booleans()),
)
def test_a_result_as_json_is_what_json_dumps_writes(
    texts: list[str], optional: list[str | None], flags: tuple[bool, bool]
) -> None:
    from policyengine.tooling.inventory import AuditResult

    file, decision, reason, message = texts
    rule, not_after, subject, sha256 = optional
    result = AuditResult(
        file, 1, decision, reason, message, rule, not_after, subject, sha256, *flags
    )
    line = result.to_json()
    assert line == json.dumps(result.to_dict(), ensure_ascii=False)
    assert json.loads(line) == result.to_dict()
