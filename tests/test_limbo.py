"""x509-limbo's path-validation cases, decided by ``trusted`` as a policy sees it.

``tests/data/x509-limbo/client.json`` holds the cases a client-certificate verifier can
answer (see PROVENANCE-client.md there): limbo's CLIENT cases, and the name-constraint,
chain-building, validity, basic-constraints, path-length, key-usage and signature cases
regenerated with clientAuth leaves. Each runs twice, at its validation time: with its
intermediates configured under ``trust: intermediates:``, and forwarded by an RFC 9440
proxy in ``Client-Cert-Chain``. ``trusted`` must agree with the expected result, but for
the deviations docs/trust.md lists with their reasons (each checked to be one still).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import NOW, ROOT
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from policyengine import Decision, load_policy
from policyengine.errors import PolicyFileError
from policyengine.evaluation.trace import TraceNode

DATA = Path(__file__).parent / "data" / "x509-limbo" / "client.json"
LIMBO = json.loads(DATA.read_text())
CASES: dict[str, dict[str, Any]] = {case["id"]: case for case in LIMBO["testcases"]}
PEER = "10.0.0.5"
MAX_CHAIN_LENGTH = 32
"""The most intermediates an RFC 9440 source accepts (the schema's maximum)."""

DEVIATIONS: Mapping[str, str] = {
    "webpki::san::no-san": "a subject alternative name may be absent",
    "webpki::san::san-critical-with-nonempty-subject": "a subject alternative name may be critical",
    "rfc5280::eku::ee-without-eku": "the clientAuth extended key usage is required",
    "pathlen::validation-ignores-pathlen-in-leaf": "a CA certificate is no client certificate",
    "pathlen::self-issued-certs-pathlen": "self-issued intermediates count toward path length",
    "pathlen::max-chain-depth-1-self-issued": "self-issued intermediates count toward depth",
    "rfc5280::nc::permitted-dn-match": "a critical directoryName constraint is refused",
}
"""Cases where ``trusted`` differs from limbo's expectation on purpose; docs/trust.md
lists each with its reason. Every one but the first two refuses a chain limbo accepts
(a false deny, never a false allow)."""


def der(pem: str) -> bytes:
    certificate = x509.load_pem_x509_certificate(pem.encode())
    return certificate.public_bytes(serialization.Encoding.DER)


def sf_binary(data: bytes) -> str:
    return ":" + base64.b64encode(data).decode() + ":"


def limbo_policy(folder: Path, case: Mapping[str, Any], *, forwarded: bool, eku: str) -> Any:
    (folder / "anchors.pem").write_text("".join(case["trusted_certs"]))
    trust = ["  anchors: [anchors.pem]", f"  client_auth_eku: {eku}"]
    if case["untrusted_intermediates"] and not forwarded:
        (folder / "intermediates.pem").write_text("".join(case["untrusted_intermediates"]))
        trust.append("  intermediates: [intermediates.pem]")
    if case["max_chain_depth"] is not None:
        trust.append(f"  max_chain_depth: {min(case['max_chain_depth'], 16)}")
    text = "\n".join(
        [
            "policy: limbo",
            "certificate:",
            "  source: rfc9440",
            f"  max_chain_length: {MAX_CHAIN_LENGTH}",
            "  max_header_bytes: 1048576",
            "trust:",
            *trust,
            "rules:",
            "  - id: trusted",
            "    effect: allow",
            "    when: trusted",
            "",
        ]
    )
    (folder / "policy.yaml").write_text(text)
    return load_policy(folder / "policy.yaml")


def decide(
    folder: Path, case: Mapping[str, Any], *, forwarded: bool, eku: str = "required"
) -> Decision:
    policy = limbo_policy(folder, case, forwarded=forwarded, eku=eku)
    headers = {"Client-Cert": sf_binary(der(case["peer_certificate"]))}
    if forwarded and case["untrusted_intermediates"]:
        chain = ", ".join(sf_binary(der(p)) for p in case["untrusted_intermediates"])
        headers["Client-Cert-Chain"] = chain
    at = datetime.fromisoformat(case["validation_time"]) if case["validation_time"] else NOW
    decision: Decision = policy.evaluate_request(
        headers=headers, remote_addr=PEER, path="/", now=at, explain=True
    )
    return decision


def trusted_node(decision: Decision) -> TraceNode | None:
    assert decision.trace is not None
    for rule in decision.trace.rules:
        if rule.node.text == "trusted":
            return rule.node
    return None


def verdict(decision: Decision, case: Mapping[str, Any], forwarded: bool) -> str:
    """SUCCESS or FAILURE, after checking that the decision is one of the expected kinds:
    ``trusted`` true or false (never undefined, never an error), or a refusal before trust
    is consulted that the case explains."""
    assert decision.errors == (), decision.errors
    if decision.allowed:
        assert decision.reason == "allowed_by_rule"
        node = trusted_node(decision)
        assert node is not None and node.outcome == "true"
        return "SUCCESS"
    if decision.reason == "chain_too_long":  # the source refuses before path building
        assert forwarded and len(case["untrusted_intermediates"]) > MAX_CHAIN_LENGTH
        return "FAILURE"
    if decision.reason == "malformed_certificate":  # the leaf cannot be read at all
        assert "could not be read" in decision.message
        return "FAILURE"
    assert decision.reason == "no_matching_rule", (decision.reason, decision.message)
    node = trusted_node(decision)
    assert node is not None and node.outcome == "false", node
    return "FAILURE"


@pytest.mark.parametrize("forwarded", [False, True], ids=["configured", "forwarded"])
@pytest.mark.parametrize("case_id", sorted(CASES))
def test_limbo_case(tmp_path: Path, case_id: str, forwarded: bool) -> None:
    case = CASES[case_id]
    try:
        decision = decide(tmp_path, case, forwarded=forwarded)
    except PolicyFileError as exc:
        # a configured anchor or intermediate that cryptography reads only in part is
        # refused when the policy loads: nothing is allowed (issue 14, item 13)
        assert "cryptography reads this certificate only in part" in str(exc)
        got, why = "FAILURE", str(exc)
    else:
        got = verdict(decision, case, forwarded)
        node = trusted_node(decision)
        why = node.detail if node else decision.message
    if case_id in DEVIATIONS:
        assert got != case["expected_result"], f"{case_id} agrees now: drop its deviation"
    else:
        assert got == case["expected_result"], why


def test_a_leaf_without_eku_agrees_when_the_eku_is_optional(tmp_path: Path) -> None:
    """rfc5280::eku::ee-without-eku expects a leaf without EKU to pass: it does under
    ``client_auth_eku: optional``; the default (required) is a listed deviation."""
    case = CASES["rfc5280::eku::ee-without-eku"]
    for forwarded in (False, True):
        decision = decide(tmp_path, case, forwarded=forwarded, eku="optional")
        assert verdict(decision, case, forwarded) == case["expected_result"] == "SUCCESS"


def test_every_deviation_is_documented_with_its_reason() -> None:
    trust = (ROOT / "docs" / "trust.md").read_text()
    for case_id, reason in DEVIATIONS.items():
        assert case_id in CASES, case_id
        assert f"| `{case_id}` | {reason} |" in trust, case_id


def test_the_vendored_set_is_what_the_provenance_says() -> None:
    """Limbo's 10 CLIENT cases, every `::nc::` case but the one left out as the losing side
    of a conflict, and no CRL case (tests/test_limbo_crl.py has those)."""
    assert LIMBO["upstream"] == "C2SP/x509-limbo@8a2e6f41023b1716dc16fe63335e4bb972e4c3f6"
    assert sum(c["validation_kind"] == "CLIENT" for c in CASES.values()) == 10
    names = [i for i in (*CASES, *LIMBO["left_out"]) if "::nc::" in i]
    assert [i for i in names if i not in CASES] == ["rfc5280::nc::permitted-dns-match-noncritical"]
    assert len(names) == 52
    assert not any(i.startswith("crl::") for i in CASES)
    assert not set(CASES) & set(LIMBO["left_out"])
    assert len(CASES) + len(LIMBO["left_out"]) == 208
