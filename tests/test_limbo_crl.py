"""x509-limbo's ``crl::*`` cases, decided by a policy in hard revocation mode.

``tests/data/x509-limbo/crl.json`` holds every ``crl::*`` case of x509-limbo (the variant
whose leaves carry clientAuth; provenance in ``crl.README.md``). Each case becomes a policy
whose anchors are the case's trusted certificates, whose intermediates and CRLs are the
case's own, in ``mode: hard``, and that allows ``trusted and not revoked``. Evaluated at the
case's validation time, the decision must be the case's expected result: SUCCESS is an
allow, FAILURE a deny. The one deviation, listed in docs/trust.md with its reason, is a CA
without a key usage extension, refused as an issuer before its CRL is looked at.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from policyengine import load_policy, read_certificate

CASES_FILE = Path(__file__).resolve().parent / "data" / "x509-limbo" / "crl.json"
CASES: list[dict[str, Any]] = json.loads(CASES_FILE.read_text())["testcases"]

DEVIATIONS: dict[str, str] = {
    "crl::issuer-no-keyusage-extension": (
        "no chain to an anchor could be built (candidates exhausted: invalid extension: "
        "keyUsage (2.5.29.15): Certificate is missing required extension)"
    ),
}
"""Case id -> why ``trusted`` is false, for the cases docs/trust.md lists as deviations:
the answer is a deny, and for that reason, not a revocation one."""


def limbo_policy(folder: Path, case: dict[str, Any]) -> Path:
    """The case as files in ``folder`` and a policy naming them."""
    files: dict[str, list[str]] = {"anchors": [], "intermediates": [], "crls": []}
    for field, key, suffix in (
        ("anchors", "trusted_certs", "pem"),
        ("intermediates", "untrusted_intermediates", "pem"),
        ("crls", "crls", "crl"),
    ):
        for index, text in enumerate(case[key]):
            name = f"{field}-{index}.{suffix}"
            (folder / name).write_text(text)
            files[field].append(name)
    lines = [
        "policy: limbo",
        "silence: [trusted-anywhere]",
        "trust:",
        f"  anchors: {json.dumps(files['anchors'])}",
        f"  intermediates: {json.dumps(files['intermediates'])}",
        "  header_intermediates: false",
        "  revocation:",
        f"    crls: {json.dumps(files['crls'])}",
        "    mode: hard",
    ]
    if case["max_chain_depth"] is not None:
        lines.insert(5, f"  max_chain_depth: {case['max_chain_depth']}")
    lines += [
        "rules:",
        "  - id: verified",
        "    effect: allow",
        "    when: trusted and not revoked",
    ]
    path = folder / "policy.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_vendored_file_holds_every_crl_case() -> None:
    assert len(CASES) == 8
    assert all(case["id"].startswith("crl::") for case in CASES)
    assert len({case["id"] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_limbo_crl_case_agrees_with_its_expected_result(
    tmp_path: Path, case: dict[str, Any]
) -> None:
    policy = load_policy(limbo_policy(tmp_path, case))
    now = datetime.fromisoformat(case["validation_time"])
    decision = policy.evaluate(case["peer_certificate"], path="/", now=now, explain=True)
    expected = case["expected_result"] == "SUCCESS"
    if case["id"] in DEVIATIONS:
        assert expected and not decision.allowed
        assert policy.trust is not None
        leaf = read_certificate(case["peer_certificate"])
        assert policy.trust.verify(leaf, (), now).reason == DEVIATIONS[case["id"]]
        return
    assert decision.allowed is expected, (case["id"], decision.reason, decision.message)
