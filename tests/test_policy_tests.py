"""`policyengine test`: the shipped policies' test files pass, and the runner reports right."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import POLICIES

from policyengine.testing import make_certificate
from policyengine.tooling.policy_tests import (
    discover,
    junit_xml,
    render_results,
    run_file,
    run_files,
)


def test_every_shipped_policy_has_a_test_file_and_they_all_pass() -> None:
    files = discover([POLICIES])
    tested = {run_file(f).policy.file for f in files}  # type: ignore[union-attr]
    shipped = {str(p) for p in POLICIES.glob("*.yaml") if not p.name.endswith(".test.yaml")}
    assert {Path(t).resolve() for t in tested} == {Path(s).resolve() for s in shipped}
    results = run_files(files)
    failures = [(r.path, c.name, c.message) for r in results for c in r.cases if not c.passed]
    assert failures == []
    assert all(r.error is None for r in results)
    assert sum(r.passed for r in results) >= 20


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    cert = make_certificate({"CN": "api-client", "O": "Contoso Ltd"})
    other = make_certificate({"CN": "api-client", "O": "Fabrikam"})
    (tmp_path / "ok.pem").write_bytes(cert.pem)
    (tmp_path / "other.pem").write_bytes(other.pem)
    (tmp_path / "p.yaml").write_text(
        textwrap.dedent(
            f"""\
            policy: p
            silence: [trusted-anywhere]
            rules:
              - id: contoso
                effect: allow
                when: valid and subject.O == "Contoso Ltd" and fingerprint.sha256 == "{cert.sha256}"
              - id: readonly
                effect: allow
                when: valid and request.method == "GET" and issuer.O == "Nobody"
            """
        )
    )
    (tmp_path / "p.test.yaml").write_text(
        textwrap.dedent(
            """\
            policy: p.yaml
            cases:
              - name: contoso is allowed
                cert: ok.pem
                expect: {decision: allow, rule: contoso}
              - name: fabrikam is allowed (wrong on purpose)
                cert: other.pem
                expect: {decision: allow}
              - name: no certificate
                expect: {decision: deny, reason: missing_certificate}
            """
        )
    )
    return tmp_path


def test_a_failing_case_is_reported_with_its_place_and_trace(suite: Path) -> None:
    results = run_files(discover([suite]))
    text = render_results(results)
    lines = text.splitlines()
    assert lines[0] == f"{suite / 'p.test.yaml'} .F."
    failed = next(line for line in lines if line.startswith("FAILED"))
    assert failed == (
        f"FAILED {suite / 'p.test.yaml'}:6:11 fabrikam is allowed (wrong on purpose): "
        "expected decision allow, got deny (No allow rule holds; the closest is readonly, "
        'where `issuer.O == "Nobody"` is false.)'
    )
    assert '      subject.O == "Contoso Ltd"  ✗  got "Fabrikam"' in lines
    assert lines[-1] == "2 passed, 1 failed"


def test_junit_output_parses_and_counts(suite: Path) -> None:
    xml = junit_xml(run_files(discover([suite])))
    root = ET.fromstring(xml)
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures")) == ("3", "1")
    cases = root.findall("./testsuite/testcase")
    assert [c.get("name") for c in cases] == [
        "contoso is allowed",
        "fabrikam is allowed (wrong on purpose)",
        "no certificate",
    ]
    failure = cases[1].find("failure")
    assert failure is not None and "expected decision allow, got deny" in failure.get("message", "")


def test_coverage_names_what_no_case_exercised(suite: Path) -> None:
    (result,) = run_files(discover([suite]))
    assert result.policy is not None
    gaps = result.coverage.gaps(result.policy)
    assert "rule readonly (line 7) never holds" in gaps
    assert '`request.method == "GET"` in readonly line 9:21 is only ever true' in gaps
    assert '`issuer.O == "Nobody"` in readonly line 9:49 is only ever false' in gaps


def test_a_broken_test_file_is_an_error_with_its_position(tmp_path: Path) -> None:
    path = tmp_path / "bad.test.yaml"
    path.write_text("policy: missing.yaml\ncases:\n  - name: x\n    expect: {decision: maybe}\n")
    result = run_file(path)
    assert result.error is not None
    assert str(result.error).startswith(f"{path}:4:24: error: cases[0].expect.decision is")
    path.write_text("policy: missing.yaml\ncases:\n  - name: x\n    expect: {decision: allow}\n")
    result = run_file(path)
    assert result.error is not None
    assert "cannot read the policy file" in str(result.error)


def test_the_cli_exit_status_and_formats(suite: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "policyengine", "test", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    failing = run(str(suite))
    assert failing.returncode == 1
    assert failing.stdout.rstrip().endswith("2 passed, 1 failed")
    assert run(str(POLICIES)).returncode == 0
    junit = run("--format", "junit", str(suite))
    assert ET.fromstring(junit.stdout).get("failures") == "1"
    covered = run("--coverage", str(suite))
    assert "COVERAGE" in covered.stdout and "never holds" in covered.stdout
    empty = run(str(suite / "nothing-here"))
    assert empty.returncode == 2
    assert "no such file or folder" in empty.stderr
