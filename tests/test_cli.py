"""The ``policyengine`` command, run as a subprocess: exit codes, output, stdin, errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import NOW_TEXT, POLICIES, ROOT, run_cli, shipped_policies

from policyengine.testing import make_certificate

NOW_ARG = NOW_TEXT
PARTNER_API = str(POLICIES / "partner-api.yaml")
CERTS = POLICIES / "certs"
ANSI = re.compile(r"\x1b\[")
REQUIRED_KEYS = {
    "decision",
    "status",
    "reason",
    "rule",
    "policy",
    "message",
    "certificate",
    "trace",
}
OPTIONAL_KEYS = {"errors", "closest_rule", "failed_condition", "identity"}

BROKEN_POLICY = """\
policy: broken
rules:
  - id: r
    effect: allow
    when: |
      valid
      and subjet.CN == "x"
"""


cli = run_cli


def explain_json(*args: str, stdin: bytes | None = None) -> tuple[int, dict[str, object]]:
    result = cli("explain", *args, "--format", "json", stdin=stdin)
    assert result.stderr == ""
    payload = json.loads(result.stdout)
    assert isinstance(payload, dict)
    return result.returncode, payload


@pytest.fixture
def broken_policy(tmp_path: Path) -> Path:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN_POLICY)
    return path


# -- explain ------------------------------------------------------------------------------------


def test_explain_allow_exits_0() -> None:
    result = cli(
        "explain", PARTNER_API, "--cert", str(CERTS / "partner.pem"), "--path", "/orders",
        "--at", NOW_ARG,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        "ALLOW  allowed_by_rule  (status 200)\nAllowed by rule partner.\n"
    )
    assert "rule partner (allow)  ✓ holds" in result.stdout
    assert result.stderr == ""


def test_explain_deny_exits_1_and_shows_the_failing_predicate() -> None:
    result = cli("explain", PARTNER_API, "--cert", str(CERTS / "fabrikam.pem"), "--at", NOW_ARG)
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith("DENY  no_matching_rule  (status 403)\n")
    assert 'issuer.O == "Microsoft Corp"  ✗  got "Fabrikam"' in result.stdout
    assert "fingerprint in partners  ·  not evaluated" in result.stdout


def test_explain_without_a_certificate_in_required_mode() -> None:
    result = cli("explain", PARTNER_API, "--at", NOW_ARG)
    assert result.returncode == 1
    assert result.stdout.startswith("DENY  missing_certificate  (status 403)\n")


def test_explain_excluded_path_exits_0() -> None:
    code, payload = explain_json(PARTNER_API, "--path", "/Health/live")
    assert code == 0
    assert payload["reason"] == "excluded_path"
    assert payload["certificate"] is None


def test_explain_json_keys_allow() -> None:
    code, payload = explain_json(
        PARTNER_API, "--cert", str(CERTS / "partner.pem"), "--at", NOW_ARG, "--path", "/orders"
    )
    assert code == 0
    assert set(payload) == REQUIRED_KEYS | {"identity"}
    assert payload["decision"] == "allow"
    assert payload["status"] == 200
    assert payload["reason"] == "allowed_by_rule"
    assert payload["rule"] == "partner"
    assert payload["policy"] == "partner-api"
    assert payload["message"] == "Allowed by rule partner."
    certificate = payload["certificate"]
    assert isinstance(certificate, dict)
    assert certificate["subject"] == "O=Microsoft Corp,CN=nildevecc"
    assert certificate["fingerprint.sha256"] == (
        "e2d65529f91ba9fc8a79f24d2a7fc2138043fefe478b7036994564dd54872298"
    )
    assert certificate["not_after"] == "2099-12-31T00:00:00Z"
    trace = payload["trace"]
    assert isinstance(trace, dict)
    assert [s["step"] for s in trace["steps"]] == ["path", "certificate", "mode"]
    assert [(r["rule"], r["outcome"]) for r in trace["rules"]] == [
        ("revoked-partner", "false"),
        ("partner", "true"),
    ]


def test_explain_json_keys_deny_with_closest_rule() -> None:
    code, payload = explain_json(PARTNER_API, "--cert", str(CERTS / "expired.pem"), "--at", NOW_ARG)
    assert code == 1
    assert set(payload) <= REQUIRED_KEYS | OPTIONAL_KEYS
    assert set(payload) == REQUIRED_KEYS | {"closest_rule", "failed_condition", "identity"}
    assert payload["decision"] == "deny"
    assert payload["status"] == 403
    assert payload["reason"] == "no_matching_rule"
    assert payload["rule"] is None
    assert payload["closest_rule"] == "partner"
    assert payload["failed_condition"] == "valid"
    trace = payload["trace"]
    assert isinstance(trace, dict)
    valid = trace["rules"][1]["condition"]["children"][0]
    assert valid["text"] == "valid"
    assert valid["outcome"] == "false"
    assert valid["detail"] == "not_after 2024-01-01T00:00:00Z is before now 2026-11-28T10:00:00Z"
    assert (valid["line"], valid["column"]) == (25, 7)


def test_explain_json_without_a_certificate() -> None:
    code, payload = explain_json(PARTNER_API)
    assert code == 1
    assert set(payload) == REQUIRED_KEYS
    assert payload["certificate"] is None
    assert payload["reason"] == "missing_certificate"


def test_explain_json_malformed_certificate(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"not a certificate at all")
    code, payload = explain_json(PARTNER_API, "--cert", str(junk))
    assert code == 1
    assert set(payload) == REQUIRED_KEYS
    assert payload["reason"] == "malformed_certificate"
    assert payload["certificate"] is None


def test_explain_json_with_errors(tmp_path: Path) -> None:
    policy = tmp_path / "pinned.yaml"
    ca = make_certificate({"CN": "Test CA"}, ca=True)
    leaf = make_certificate({"CN": "QQQQbroken"}, issuer=ca)
    der = leaf.der.replace(b"\x0c\x0aQQQQbroken", b"\x0c\x0a\xff\xfeQQbroken")
    cert = tmp_path / "broken.der"
    cert.write_bytes(der)
    policy.write_text(
        "policy: p\nrules:\n"
        '  - id: block\n    effect: deny\n    when: subject.CN == "evil"\n'
        "  - id: any\n    effect: allow\n    when: present\n"
    )
    code, payload = explain_json(str(policy), "--cert", str(cert))
    assert code == 1
    assert set(payload) == REQUIRED_KEYS | {"errors", "identity"}
    assert payload["reason"] == "rule_error"
    assert payload["rule"] == "block"
    errors = payload["errors"]
    assert isinstance(errors, list) and len(errors) == 1
    assert errors[0].startswith("rule block: the subject name cannot be read: ")
    certificate = payload["certificate"]
    assert isinstance(certificate, dict)
    assert certificate["subject"].startswith("<the subject name cannot be read")
    assert certificate["issuer"] == "CN=Test CA"


def test_explain_reads_the_certificate_from_stdin() -> None:
    pem = (CERTS / "partner.pem").read_bytes()
    code, payload = explain_json(PARTNER_API, "--cert", "-", "--at", NOW_ARG, stdin=pem)
    assert code == 0
    assert payload["reason"] == "allowed_by_rule"
    code, payload = explain_json(PARTNER_API, "--cert", "-", "--at", NOW_ARG, stdin=b"")
    assert code == 1
    assert payload["reason"] == "malformed_certificate"


def test_explain_accepts_der(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    pem = (CERTS / "partner.pem").read_bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
    path = tmp_path / "partner.der"
    path.write_bytes(der)
    code, payload = explain_json(PARTNER_API, "--cert", str(path), "--at", NOW_ARG)
    assert code == 0
    assert payload["reason"] == "allowed_by_rule"
    code, payload = explain_json(PARTNER_API, "--cert", "-", "--at", NOW_ARG, stdin=der)
    assert code == 0


def test_explain_at_changes_validity() -> None:
    webforms = str(POLICIES / "appservice-webforms.yaml")
    expired = str(CERTS / "expired.pem")
    code, payload = explain_json(webforms, "--cert", expired, "--at", "2023-06-01")
    assert code == 0
    assert payload["reason"] == "allowed_by_rule"
    code, payload = explain_json(webforms, "--cert", expired, "--at", NOW_ARG)
    assert code == 1
    assert payload["failed_condition"] == "valid"
    code, payload = explain_json(webforms, "--cert", expired, "--at", "2022-06-01T00:00:00+02:00")
    assert code == 1
    trace = payload["trace"]
    assert isinstance(trace, dict)
    assert trace["rules"][0]["condition"]["children"][0]["detail"] == (
        "not_before 2023-01-01T00:00:00Z is after now 2022-05-31T22:00:00Z"
    )


def test_explain_bad_at_exits_2() -> None:
    result = cli("explain", PARTNER_API, "--at", "yesterday")
    assert result.returncode == 2
    assert "is not a timestamp" in result.stderr
    assert result.stdout == ""


def test_explain_passes_method_and_host(tmp_path: Path) -> None:
    policy = tmp_path / "req.yaml"
    policy.write_text(
        "policy: req\nmode: optional\nrules:\n  - id: r\n    effect: allow\n"
        '    when: request.method == "POST" and request.host == "api.contoso.com"\n'
    )
    code, payload = explain_json(str(policy), "--method", "post", "--host", "API.Contoso.com:443")
    assert code == 0
    assert payload["rule"] == "r"
    code, payload = explain_json(str(policy), "--method", "post")
    assert code == 1
    assert payload["failed_condition"] == 'request.host == "api.contoso.com"'


def test_explain_missing_cert_file_exits_2() -> None:
    result = cli("explain", PARTNER_API, "--cert", "no/such/cert.pem")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        "policyengine: cannot read certificate file no/such/cert.pem: "
        "No such file or directory; check the path\n"
    )


def test_explain_broken_policy_exits_2_with_location(broken_policy: Path) -> None:
    result = cli("explain", str(broken_policy), "--cert", str(CERTS / "partner.pem"))
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"{broken_policy}:7:11: error: unknown name `subjet.CN`" in result.stderr
    assert "^^^^^^^^^" in result.stderr
    assert "did you mean `subject.CN`?" in result.stderr


def test_explain_missing_policy_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = cli("explain", str(missing))
    assert result.returncode == 2
    assert str(missing) in result.stderr
    assert result.stdout == ""


# -- check --------------------------------------------------------------------------------------


def test_check_all_shipped_policies() -> None:
    files = sorted(str(p) for p in shipped_policies())
    result = cli("check", *files)
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    for file in files:
        assert any(line.startswith(f"{file}: ok (") for line in lines), file
    # only the README's policy (the minimal policy) keeps its warnings, on purpose
    assert [line.split(": warning: ")[0] for line in lines if ": warning: " in line] == [
        f"{PARTNER_API}:7:1",
        f"{PARTNER_API}:10:18",
        f"{PARTNER_API}:28:26",
    ]


def test_check_broken_policy(broken_policy: Path) -> None:
    result = cli("check", str(broken_policy), PARTNER_API)
    assert result.returncode == 1
    assert result.stdout.startswith(
        f"{broken_policy}:7:11: error: unknown name `subjet.CN`\n"
        '    7 |       and subjet.CN == "x"\n'
        "      |           ^^^^^^^^^\n"
        "hint: did you mean `subject.CN`?\n"
    )
    assert f"{broken_policy}: 1 error(s)" in result.stdout
    assert f"{PARTNER_API}: ok (" in result.stdout


def test_check_json(broken_policy: Path) -> None:
    result = cli("check", "--format", "json", str(broken_policy), PARTNER_API)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report == [
        {
            "file": str(broken_policy),
            "valid": False,
            "diagnostics": [
                {
                    "file": str(broken_policy),
                    "line": 7,
                    "column": 11,
                    "severity": "error",
                    "code": "unknown-name",
                    "message": "unknown name `subjet.CN`",
                    "hint": "did you mean `subject.CN`?",
                }
            ],
        },
        {"file": PARTNER_API, "valid": True, "diagnostics": report[1]["diagnostics"]},
    ]
    assert report[1]["diagnostics"][0] == TRUSTED_ANYWHERE
    codes = [d["code"] for d in report[1]["diagnostics"]]
    assert codes == ["trusted-anywhere", "renegotiation", "sha1-pin"]
    ok = cli("check", "--format", "json", PARTNER_API)
    assert ok.returncode == 0
    assert [d["code"] for d in json.loads(ok.stdout)[0]["diagnostics"]] == codes


TRUSTED_ANYWHERE = {
    "file": PARTNER_API,
    "line": 7,
    "column": 1,
    "severity": "warning",
    "code": "trusted-anywhere",
    "message": "the azure source believes X-ARR-ClientCert from any peer by default",
    "hint": "App Service's front end can be anywhere, so this is the azure default: make sure "
    "the app is reachable only through App Service (no private endpoint, VNet route or open "
    "container port that skips it)",
}


def test_check_missing_file_fails(tmp_path: Path) -> None:
    result = cli("check", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert str(tmp_path / "nope.yaml") in result.stdout


def test_no_command_is_a_usage_error() -> None:
    result = cli()
    assert result.returncode == 2
    assert "usage:" in result.stderr


# -- colour -------------------------------------------------------------------------------------


def test_no_colour_when_stdout_is_not_a_terminal(broken_policy: Path) -> None:
    for args in (
        ("explain", PARTNER_API, "--cert", str(CERTS / "partner.pem"), "--at", NOW_ARG),
        ("explain", PARTNER_API, "--cert", str(CERTS / "fabrikam.pem"), "--at", NOW_ARG),
        ("explain", PARTNER_API),
        ("check", str(broken_policy)),
        ("check", *sorted(str(p) for p in shipped_policies())),
    ):
        result = cli(*args)
        assert not ANSI.search(result.stdout), args
        assert not ANSI.search(result.stderr), args


def _run_in_terminal(args: list[str], env: dict[str, str]) -> str:
    import pty

    primary, secondary = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "policyengine", *args],
            stdout=secondary,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
            env=env,
        )
        os.close(secondary)
        chunks: list[bytes] = []
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # the other end is closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        process.wait(timeout=60)
    finally:
        os.close(primary)
    return b"".join(chunks).decode("utf-8")


def test_colour_on_a_terminal_unless_no_color() -> None:
    args = ["explain", PARTNER_API, "--cert", str(CERTS / "fabrikam.pem"), "--at", NOW_ARG]
    environment = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    assert ANSI.search(_run_in_terminal(args, environment))
    plain = _run_in_terminal(args, {**environment, "NO_COLOR": "1"})
    assert "DENY  no_matching_rule" in plain
    assert not ANSI.search(plain)


def test_check_warnings_do_not_fail(tmp_path: Path) -> None:
    path = tmp_path / "warn.yaml"
    path.write_text(
        "policy: w\nsets:\n  unused: [a]\nrules:\n  - id: r\n    effect: allow\n"
        '    when: valid and issuer.O == "C"\n'
        "silence: [trusted-anywhere, any-certificate]\n"  # an issuer check is no guard
    )
    result = cli("check", str(path))
    assert result.returncode == 0
    assert f"{path}:3:3: warning: set `unused` is never used" in result.stdout
    assert re.search(rf"{re.escape(str(path))}: ok \(1 rules?, 1 warning\(s\)\)", result.stdout)
    report = json.loads(cli("check", "--format", "json", str(path)).stdout)
    assert report[0]["valid"] is True
    assert [d["severity"] for d in report[0]["diagnostics"]] == ["warning"]
