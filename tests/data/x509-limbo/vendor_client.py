"""Write ``client.json`` beside this file: the x509-limbo cases a client verifier answers.

    python tests/data/x509-limbo/vendor_client.py /path/to/x509-limbo-corpus

The corpus folder holds ``limbo.json`` and ``limbo_clienteku.json`` as described in
``PROVENANCE-client.md``. The CLIENT cases come from ``limbo.json``; every other case from
``limbo_clienteku.json`` (the same cases, the generator's default leaf EKU clientAuth),
unless :func:`left_out` gives a reason. The reasons are written into ``client.json`` too,
so the file says what it does not hold and why.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

UPSTREAM_COMMIT = "8a2e6f41023b1716dc16fe63335e4bb972e4c3f6"

KEPT_FIELDS = (
    "id",
    "features",
    "conflicts_with",
    "validation_kind",
    "trusted_certs",
    "untrusted_intermediates",
    "peer_certificate",
    "validation_time",
    "max_chain_depth",
    "extended_key_usage",
    "expected_result",
)

CONFLICT_SIDE_LEFT_OUT = {
    "rfc5280::nc::permitted-dns-match-noncritical": "webpki::nc::permitted-dns-match-noncritical",
    "rfc5280::ca-as-leaf": "webpki::ca-as-leaf",
}
"""Pairs limbo marks as conflicting (no verifier can agree with both): the WebPKI side is
run, as by cryptography's verifier. rfc5280::eku::ee-without-eku is run instead (under
``client_auth_eku: optional`` it agrees, under ``required`` it is a listed deviation)."""

PROFILE_CHECKS = {
    "rfc5280::aki::intermediate-missing-aki": "AKI presence on an intermediate",
    "rfc5280::ski::root-missing-ski": "SKI presence on a root",
    "rfc5280::ski::intermediate-missing-ski": "SKI presence on an intermediate",
    "webpki::aki::root-with-aki-authoritycertissuer": "the form of a root's AKI",
    "webpki::aki::root-with-aki-authoritycertserialnumber": "the form of a root's AKI",
    "webpki::aki::root-with-aki-all-fields": "the form of a root's AKI",
    "webpki::aki::root-with-aki-ski-mismatch": "a root's AKI against its SKI",
    "webpki::forbidden-rsa-not-divisible-by-8-in-root": "a root's RSA modulus length",
}
"""Certificate-profile rules that cryptography's verifier does not enforce (its own limbo
harness skips these ids, like Go and rustls-webpki); none is a path, validity, constraint
or signature question."""

PROFILE_FEATURES = {
    "pedantic-rfc5280",
    "pedantic-serial-number",
    "pedantic-webpki-subscriber-key",
    "pedantic-public-suffix-wildcard",
    "has-policy-constraints",
}
"""Features cryptography's limbo harness declares unsupported, for the same reason
(certificate policies are not processed; leaf key sizes are for a policy to demand, with
``key.type`` and ``key.size``)."""

HOSTNAME_CASES = ("rfc5280::san::underscore-dns", "rfc5280::san::ip-in-dns")
"""Their FAILURE comes from the expected peer name, a host name a server verifier is asked
for (``foo_bar.example.com`` is refused as a name, ``8.8.8.8`` is an IP, not the DNS SAN
given): a client verifier is asked for none."""

SAN_PRESENCE_CASES = ("webpki::san::no-san", "webpki::san::san-critical-with-nonempty-subject")
"""Kept from webpki::san::*: they judge whether a SAN may be absent or critical, which is
a deviation docs/trust.md lists, not hostname matching."""


def left_out(case: dict[str, Any]) -> str | None:
    """Why a case of limbo_clienteku.json is not vendored, or None."""
    case_id: str = case["id"]
    if case_id.startswith("crl::"):
        return "CRL case: tests/data/x509-limbo/crl.json and tests/test_limbo_crl.py"
    if case_id.startswith("online::"):
        return (
            "a real server certificate (serverAuth only): every one fails a client verifier "
            "on its EKU, which says nothing about its chain"
        )
    if case_id.startswith("webpki::cn::") or (
        case_id.startswith("webpki::san::") and case_id not in SAN_PRESENCE_CASES
    ):
        return "hostname matching against an expected peer name"
    if case_id in HOSTNAME_CASES:
        return "hostname matching: the expected peer name is what fails"
    if case["extended_key_usage"] == ["serverAuth"]:
        return "asks for serverAuth: a server verifier's question"
    if case_id in CONFLICT_SIDE_LEFT_OUT:
        return f"conflicts with {CONFLICT_SIDE_LEFT_OUT[case_id]}, the WebPKI side, which is run"
    if case_id in PROFILE_CHECKS:
        return f"certificate profile ({PROFILE_CHECKS[case_id]}), not checked by cryptography"
    profile = sorted(PROFILE_FEATURES.intersection(case["features"]))
    if profile:
        return f"certificate profile ({', '.join(profile)}), not checked by cryptography"
    return None


def main(corpus: Path) -> None:
    limbo = json.loads((corpus / "limbo.json").read_text())["testcases"]
    clienteku = json.loads((corpus / "limbo_clienteku.json").read_text())["testcases"]
    cases: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for case in limbo:
        if case["validation_kind"] == "CLIENT":
            cases.append({**{k: case[k] for k in KEPT_FIELDS}, "from": "limbo.json"})
    client_ids = {c["id"] for c in cases}
    for case in clienteku:
        if case["id"] in client_ids:
            continue
        reason = left_out(case)
        if reason is not None:
            skipped[case["id"]] = reason
            continue
        cases.append({**{k: case[k] for k in KEPT_FIELDS}, "from": "limbo_clienteku.json"})
    out = Path(__file__).with_name("client.json")
    lines = [
        "{",
        f'"upstream": "C2SP/x509-limbo@{UPSTREAM_COMMIT}",',
        '"license": "Apache-2.0",',
        '"left_out": ' + json.dumps(skipped, sort_keys=True) + ",",
        '"testcases": [',
        ",\n".join(json.dumps(c, separators=(",", ":")) for c in cases),
        "]}",
    ]
    out.write_text("\n".join(lines) + "\n")
    print(f"{len(cases)} cases written to {out}, {len(skipped)} left out")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
