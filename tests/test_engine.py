"""The decision procedure: every reason code, deny-overrides, first allow, the closest rule,
exclusion paths, the modes, fail-closed evaluation, malformed input, and the shipped policies.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import hashlib
import weakref
from collections.abc import Callable
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path

import pytest
from conftest import NOW, POLICIES, shipped_policies
from cryptography import x509

from policyengine import (
    REASONS,
    Decision,
    Policy,
    Request,
    load_policy,
    policy_from_text,
    read_certificate,
)
from policyengine.request.certificate import MAX_CERTIFICATE_BYTES, CertificateFacts
from policyengine.testing import IssuedCertificate, make_certificate

UTC = UTC
START = datetime(2025, 1, 1, tzinfo=UTC)
END = datetime(2027, 1, 1, tzinfo=UTC)

ORDERS = """
policy: orders
description: the orders API
mode: required
exclusion_paths: /public;/health
sets:
  retired: ["0x0BAD"]
rules:
  - id: revoked
    effect: deny
    when: serial in retired
  - id: no-fabrikam
    effect: deny
    when: subject.O == "Fabrikam"
  - id: contoso
    effect: allow
    when: |
      valid
      and subject.O == "Contoso Ltd"
      and subject.CN == "api-client"
"""


# -- certificates -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def contoso(ca: IssuedCertificate) -> IssuedCertificate:
    return make_certificate(
        {"CN": "api-client", "O": "Contoso Ltd"},
        issuer=ca,
        not_before=START,
        not_after=END,
    )


@pytest.fixture(scope="module")
def other_cn(ca: IssuedCertificate) -> IssuedCertificate:
    return make_certificate(
        {"CN": "batch-job", "O": "Contoso Ltd"}, issuer=ca, not_before=START, not_after=END
    )


@pytest.fixture(scope="module")
def fabrikam() -> IssuedCertificate:
    return make_certificate({"CN": "api-client", "O": "Fabrikam"}, not_before=START, not_after=END)


@pytest.fixture(scope="module")
def revoked(ca: IssuedCertificate) -> IssuedCertificate:
    return make_certificate(
        {"CN": "api-client", "O": "Contoso Ltd"},
        issuer=ca,
        not_before=START,
        not_after=END,
        serial=0x0BAD,
    )


def break_subject(ca: IssuedCertificate) -> bytes:
    """A certificate, issued by ``ca``, whose subject CN is a UTF8String of invalid UTF-8.

    cryptography loads it (names are parsed on access) but raises on ``.subject``; the
    issuer, the serial and the validity still read.
    """
    leaf = make_certificate(
        {"CN": "QQQQbroken", "O": "Contoso Ltd"}, issuer=ca, not_before=START, not_after=END
    )
    good = b"\x0c\x0aQQQQbroken"
    assert leaf.der.count(good) == 1
    return leaf.der.replace(good, b"\x0c\x0a\xff\xfeQQbroken")


@pytest.fixture(scope="module")
def broken(ca: IssuedCertificate) -> bytes:
    der = break_subject(ca)
    cert = x509.load_der_x509_certificate(der)
    with pytest.raises(ValueError):
        _ = cert.subject
    assert cert.issuer == ca.certificate.subject
    return der


def subject_error(der: bytes) -> str:
    """The FactError text for a broken subject, built from cryptography's own message."""
    try:
        _ = x509.load_der_x509_certificate(der).subject
    except ValueError as exc:
        return f"the subject name cannot be read: {str(exc).strip().splitlines()[0][:200]}"
    raise AssertionError("the subject was readable")


@pytest.fixture
def orders(compile_policy: Callable[[str], Policy]) -> Policy:
    return compile_policy(ORDERS)


def decide(policy: Policy, cert: object, path: str = "/orders", **kwargs: object) -> Decision:
    """Plain and explained evaluation, which must agree; the explained decision."""
    kwargs.setdefault("now", NOW)
    plain = policy.evaluate(cert, path=path, **kwargs)  # type: ignore[arg-type]
    explained = policy.evaluate(cert, path=path, explain=True, **kwargs)  # type: ignore[arg-type]
    assert plain == explained
    assert explained.trace is not None
    return explained


def assert_decision(
    decision: Decision,
    *,
    reason: str,
    message: str,
    rule: str | None = None,
    errors: tuple[str, ...] = (),
    closest_rule: str | None = None,
    failed_condition: str | None = None,
) -> None:
    allowed = reason in ("excluded_path", "allowed_by_rule")
    assert decision.reason == reason
    assert decision.allowed is allowed
    assert bool(decision) is allowed
    assert decision.effect == ("allow" if allowed else "deny")
    assert decision.status == (200 if allowed else 403)
    assert decision.rule == rule
    assert decision.message == message
    assert decision.errors == errors
    assert decision.closest_rule == closest_rule
    assert decision.failed_condition == failed_condition


# -- every reason code --------------------------------------------------------------------------


def test_excluded_path(orders: Policy, fabrikam: IssuedCertificate) -> None:
    decision = decide(orders, fabrikam.pem, "/public/catalog")
    assert_decision(
        decision,
        reason="excluded_path",
        message="The path /public/catalog is excluded from client-certificate checks by /public.",
    )
    assert decision.certificate is None  # not even read
    assert decision.trace is not None and decision.trace.rules == ()
    # the certificate is not looked at, so garbage does not matter either
    assert decide(orders, b"garbage", "/health").reason == "excluded_path"


def test_allowed_by_rule(orders: Policy, contoso: IssuedCertificate) -> None:
    decision = decide(orders, contoso.pem)
    assert_decision(
        decision, reason="allowed_by_rule", rule="contoso", message="Allowed by rule contoso."
    )
    assert decision.certificate is not None
    assert decision.to_dict() == {
        "decision": "allow",
        "status": 200,
        "reason": "allowed_by_rule",
        "rule": "contoso",
        "policy": "orders",
        "message": "Allowed by rule contoso.",
        "identity": {
            "principal": "api-client",
            "principal_from": "subject.CN",
            "groups": [],
            "groups_from": [],
            "roles": [],
        },
    }


def test_malformed_certificate(orders: Policy) -> None:
    decision = decide(orders, "")
    assert_decision(
        decision,
        reason="malformed_certificate",
        message="The client certificate could not be read: the certificate is empty.",
    )
    assert decision.certificate is None


def test_missing_certificate(orders: Policy) -> None:
    decision = decide(orders, None)
    assert_decision(
        decision,
        reason="missing_certificate",
        message="No client certificate was presented, and policy orders requires one.",
    )
    assert decision.trace is not None
    assert [s.name for s in decision.trace.steps] == ["path", "certificate", "mode"]
    assert decision.trace.steps[-1].outcome == "deny"


def test_denied_by_rule(orders: Policy, fabrikam: IssuedCertificate) -> None:
    decision = decide(orders, fabrikam.pem)
    assert_decision(
        decision, reason="denied_by_rule", rule="no-fabrikam", message="Denied by rule no-fabrikam."
    )
    assert decision.trace is not None
    outcomes = {r.rule: r.outcome for r in decision.trace.rules}
    assert outcomes == {"revoked": "false", "no-fabrikam": "true", "contoso": "skipped"}


def test_denied_by_a_revoked_serial(orders: Policy, revoked: IssuedCertificate) -> None:
    decision = decide(orders, revoked.der)
    assert_decision(
        decision, reason="denied_by_rule", rule="revoked", message="Denied by rule revoked."
    )


def test_rule_error(orders: Policy, broken: bytes) -> None:
    error = subject_error(broken)
    decision = decide(orders, broken)
    assert_decision(
        decision,
        reason="rule_error",
        rule="no-fabrikam",
        message=(
            f"Deny rule no-fabrikam could not be evaluated ({error}), so the request is denied."
        ),
        errors=(f"rule no-fabrikam: {error}",),
    )
    assert decision.trace is not None
    by_rule = {r.rule: r for r in decision.trace.rules}
    assert by_rule["revoked"].outcome == "false"  # the serial still reads
    assert by_rule["no-fabrikam"].outcome == "error"
    assert by_rule["no-fabrikam"].error == error
    assert by_rule["contoso"].outcome == "skipped"


def test_no_matching_rule(orders: Policy, other_cn: IssuedCertificate) -> None:
    decision = decide(orders, other_cn.pem)
    assert_decision(
        decision,
        reason="no_matching_rule",
        message=(
            "No allow rule holds; the closest is contoso, where "
            '`subject.CN == "api-client"` is false.'
        ),
        closest_rule="contoso",
        failed_condition='subject.CN == "api-client"',
    )
    assert decision.to_dict()["failed_condition"] == 'subject.CN == "api-client"'


def test_evaluation_error_from_a_time_given_as_text(
    orders: Policy, contoso: IssuedCertificate
) -> None:
    # a realistic mistake: `now` from a config file or a header, still a string
    decision = orders.evaluate(contoso.pem, path="/orders", now="2026-11-28T10:00:00Z")  # type: ignore[arg-type]
    assert_decision(
        decision,
        reason="evaluation_error",
        message=(
            "The request could not be evaluated, so it is denied: "
            "'str' object has no attribute 'tzinfo'"
        ),
        errors=("AttributeError: 'str' object has no attribute 'tzinfo'",),
    )
    explained = orders.evaluate(contoso.pem, path="/orders", now="x", explain=True)  # type: ignore[arg-type]
    assert explained.reason == "evaluation_error"


def test_evaluation_error_from_a_date(orders: Policy, contoso: IssuedCertificate) -> None:
    decision = orders.evaluate(contoso.pem, path="/orders", now=date(2026, 11, 28))  # type: ignore[arg-type]
    assert decision.reason == "evaluation_error"
    assert not decision.allowed
    assert decision.errors == ("AttributeError: 'datetime.date' object has no attribute 'tzinfo'",)


class ExplodingFacts(CertificateFacts):
    """Facts whose every summary read fails unexpectedly (not a FactError)."""

    def summary(self) -> dict[str, str]:
        raise RuntimeError("the facts store is gone")


def test_evaluation_error_from_facts_that_raise(orders: Policy, contoso: IssuedCertificate) -> None:
    facts = ExplodingFacts(contoso.certificate, contoso.der)
    decision = orders.evaluate(facts, path="/orders", now=NOW, explain=True)
    assert_decision(
        decision,
        reason="evaluation_error",
        message="The request could not be evaluated, so it is denied: the facts store is gone",
        errors=("RuntimeError: the facts store is gone",),
    )


def test_every_reason_is_reached(
    orders: Policy,
    contoso: IssuedCertificate,
    other_cn: IssuedCertificate,
    fabrikam: IssuedCertificate,
    broken: bytes,
) -> None:
    reached = {
        decide(orders, fabrikam.pem, "/public/x").reason,
        decide(orders, contoso.pem).reason,
        decide(orders, b"garbage").reason,
        decide(orders, None).reason,
        decide(orders, fabrikam.pem).reason,
        decide(orders, broken).reason,
        decide(orders, other_cn.pem).reason,
        orders.evaluate(contoso.pem, now="2026-11-28").reason,  # type: ignore[arg-type]
    }
    header = "X-ARR-ClientCert"
    value = base64.b64encode(contoso.der).decode()
    for headers in (
        [(header, value), (header, value)],  # duplicate_header
        [(header, "A" * 20000)],  # header_too_large
        [(header, "not base64!")],  # malformed_header
    ):
        reached.add(orders.evaluate_request(headers=headers, remote_addr="10.0.0.1").reason)
    chained = policy_from_text(
        "policy: p\ncertificate:\n  source: rfc9440\n  max_chain_length: 1\n"
        "rules:\n  - id: a\n    effect: allow\n    when: valid\n"
    )
    sf = ":" + value + ":"
    two = ", ".join(":" + base64.b64encode(c.der).decode() + ":" for c in (fabrikam, other_cn))
    reached.add(
        chained.evaluate_request(
            headers={"Client-Cert": sf, "Client-Cert-Chain": two},
            remote_addr="10.0.0.1",
        ).reason  # chain_too_long
    )
    assert reached == set(REASONS)


# -- deny overrides allow, first allow wins ----------------------------------------------------


@pytest.mark.parametrize("deny_first", [True, False])
def test_deny_overrides_allow_in_any_order(
    compile_policy: Callable[[str], Policy], contoso: IssuedCertificate, deny_first: bool
) -> None:
    allow = "  - id: everyone\n    effect: allow\n    when: present\n"
    deny = '  - id: no-contoso\n    effect: deny\n    when: subject.O == "Contoso Ltd"\n'
    rules = deny + allow if deny_first else allow + deny
    policy = compile_policy("policy: p\nrules:\n" + rules)
    decision = decide(policy, contoso.pem)
    assert_decision(
        decision, reason="denied_by_rule", rule="no-contoso", message="Denied by rule no-contoso."
    )


def test_first_allow_wins(
    compile_policy: Callable[[str], Policy], contoso: IssuedCertificate
) -> None:
    policy = compile_policy(
        """
        policy: p
        rules:
          - id: not-this
            effect: allow
            when: subject.O == "Fabrikam"
          - id: by-name
            effect: allow
            when: subject.CN == "api-client"
          - id: by-org
            effect: allow
            when: subject.O == "Contoso Ltd"
        """
    )
    decision = decide(policy, contoso.pem)
    assert_decision(
        decision, reason="allowed_by_rule", rule="by-name", message="Allowed by rule by-name."
    )
    assert decision.trace is not None
    assert [r.outcome for r in decision.trace.rules] == ["false", "true", "skipped"]


def test_an_undefined_deny_rule_does_not_deny(compile_policy: Callable[[str], Policy]) -> None:
    policy = compile_policy(
        """
        policy: p
        mode: optional
        rules:
          - id: no-fabrikam
            effect: deny
            when: subject.O == "Fabrikam"
          - id: anonymous-reads
            effect: allow
            when: not present and request.method == "GET"
        """
    )
    decision = decide(policy, None, method="get")
    assert_decision(
        decision,
        reason="allowed_by_rule",
        rule="anonymous-reads",
        message="Allowed by rule anonymous-reads.",
    )
    assert decision.trace is not None
    assert decision.trace.rules[0].outcome == "undefined"


def test_a_rule_that_never_holds_denies_by_default(compile_policy: Callable[[str], Policy]) -> None:
    policy = compile_policy(
        """
        policy: p
        mode: optional
        rules:
          - id: no-fabrikam
            effect: deny
            when: subject.O == "Fabrikam"
        """
    )
    decision = decide(policy, None)
    assert_decision(
        decision,
        reason="no_matching_rule",
        message="No allow rule holds, and the policy has no allow rule, so the request is denied.",
    )


# -- the closest rule ---------------------------------------------------------------------------

CLOSEST = """
policy: p
rules:
  - id: one-part
    effect: allow
    when: valid and subject.O == "Fabrikam" and subject.CN == "api-client"
  - id: two-parts
    effect: allow
    when: |
      valid
      and subject.O == "Contoso Ltd"
      and subject.CN
          == "someone-else"
      and self_signed
  - id: also-two
    effect: allow
    when: valid and subject.O == "Contoso Ltd" and subject.CN == "x"
"""


def test_closest_rule_has_most_leading_parts_and_names_the_first_failing_one(
    compile_policy: Callable[[str], Policy], contoso: IssuedCertificate
) -> None:
    decision = decide(compile_policy(CLOSEST), contoso.pem)
    assert_decision(
        decision,
        reason="no_matching_rule",
        message=(
            "No allow rule holds; the closest is two-parts, where "
            '`subject.CN == "someone-else"` is false.'
        ),
        closest_rule="two-parts",  # the first of the two that got furthest
        failed_condition='subject.CN == "someone-else"',  # whitespace collapsed
    )


def test_closest_rule_undefined_part(
    compile_policy: Callable[[str], Policy], contoso: IssuedCertificate
) -> None:
    policy = compile_policy(
        """
        policy: p
        rules:
          - id: by-unit
            effect: allow
            when: valid and subject.OU == "Payments"
        """
    )
    decision = decide(policy, contoso.pem)
    assert_decision(
        decision,
        reason="no_matching_rule",
        message=(
            "No allow rule holds; the closest is by-unit, where "
            '`subject.OU == "Payments"` is undefined.'
        ),
        closest_rule="by-unit",
        failed_condition='subject.OU == "Payments"',
    )


def test_closest_rule_without_and_is_the_whole_condition(
    compile_policy: Callable[[str], Policy], contoso: IssuedCertificate
) -> None:
    policy = compile_policy(
        """
        policy: p
        rules:
          - id: either
            effect: allow
            when: subject.O == "Fabrikam" or expired
        """
    )
    decision = decide(policy, contoso.pem)
    assert decision.closest_rule == "either"
    assert decision.failed_condition == 'subject.O == "Fabrikam" or expired'
    assert decision.message.endswith('`subject.O == "Fabrikam" or expired` is false.')


def test_closest_rule_that_errors(compile_policy: Callable[[str], Policy], broken: bytes) -> None:
    error = subject_error(broken)
    policy = compile_policy(
        """
        policy: p
        rules:
          - id: by-name
            effect: allow
            when: issuer.CN == "Contoso Issuing CA" and subject.CN == "api-client"
        """
    )
    decision = decide(policy, broken)
    assert_decision(
        decision,
        reason="no_matching_rule",
        message=(
            "No allow rule holds; the closest is by-name, where "
            '`subject.CN == "api-client"` could not be evaluated.'
        ),
        errors=(f"rule by-name: {error}",),
        closest_rule="by-name",
        failed_condition='subject.CN == "api-client"',
    )


# -- fail closed on a certificate with an unreadable subject -----------------------------------


def test_broken_subject_allow_rule_never_allows_but_a_pin_still_works(
    compile_policy: Callable[[str], Policy], broken: bytes
) -> None:
    error = subject_error(broken)
    sha256 = hashlib.sha256(broken).hexdigest()
    policy = compile_policy(
        f"""
        policy: p
        rules:
          - id: by-name
            effect: allow
            when: subject.CN != "evil" or true
          - id: pinned
            effect: allow
            when: issuer.O == "Contoso Ltd" and fingerprint.sha256 == "{sha256}"
        """
    )
    decision = decide(policy, broken)
    assert_decision(
        decision,
        reason="allowed_by_rule",
        rule="pinned",
        message="Allowed by rule pinned.",
        errors=(f"rule by-name: {error}",),
    )
    assert decision.trace is not None
    assert decision.trace.rules[0].outcome == "error"
    # and with the pin removed, nothing allows
    unpinned = compile_policy(
        """
        policy: p
        rules:
          - id: by-name
            effect: allow
            when: not subject.CN == "evil"
          - id: self-signed
            effect: allow
            when: self_signed
        """
    )
    decision = decide(unpinned, broken)
    assert not decision.allowed
    assert decision.reason == "no_matching_rule"
    assert decision.errors == (f"rule by-name: {error}", f"rule self-signed: {error}")


def test_broken_subject_deny_rule_reading_only_the_issuer_does_not_error(
    compile_policy: Callable[[str], Policy], broken: bytes
) -> None:
    policy = compile_policy(
        """
        policy: p
        rules:
          - id: block
            effect: deny
            when: issuer.O == "Fabrikam"
          - id: ok
            effect: allow
            when: issuer.O == "Contoso Ltd" and valid
        """
    )
    decision = decide(policy, broken)
    assert_decision(decision, reason="allowed_by_rule", rule="ok", message="Allowed by rule ok.")


def test_broken_subject_facts_still_summarise(broken: bytes, orders: Policy) -> None:
    facts = read_certificate(broken)
    summary = facts.summary()
    assert summary["subject"] == f"<{subject_error(broken)}>"
    assert summary["issuer"] == "O=Contoso Ltd,CN=Contoso Issuing CA"
    assert summary["fingerprint.sha256"] == hashlib.sha256(broken).hexdigest()
    shown = orders.certificate_facts(facts, NOW)
    assert shown is not None
    assert shown["subject.O"] == {"error": subject_error(broken)}


# -- exclusion paths ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exclusions",
    [
        "/public;/health",
        "/public,/health",
        " /public ; /health ",
        "/public, /health;",
        "[/public, /health]",
        '["/PUBLIC", "/Health"]',
    ],
)
@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        ("/public", True),
        ("/public/", True),
        ("/public/a/b", True),
        ("/PUBLIC/Index.html", True),
        ("/Health", True),
        ("/health/live?verbose=1", True),
        ("/publicity", True),  # a plain prefix, as App Service documents
        ("/public?x=1", True),
        # an exclusion needs the path as written and as normalised to agree: these do not,
        # so they need a certificate (fail closed), whatever the server routes them to
        ("/%70ublic/x", False),
        ("//public//x", False),
        ("/admin/..%2Fpublic", False),
        ("/admin/../public", False),
        ("/./public/x", False),
        ("/orders", False),
        ("/", False),
        ("", False),
        ("/orders?next=/public", False),  # query strings are ignored
        ("/orders#/public", False),
        ("/pub", False),
        ("/public/../admin", False),  # dot segments are resolved first
        ("/public/./../admin", False),
        ("/public/%2e%2e/admin", False),
        ("/public/%2E%2E/admin", False),
        ("/public%2f..%2fadmin", False),
        ("/health/../../admin", False),
        ("/x/../public/y", False),  # as written it is under /x, not /public
        ("/../public", False),
        ("/public\\..\\admin", False),  # IIS routes backslashes as slashes
        ("/public/..%5cadmin", False),
        ("/public\\x", True),
    ],
)
def test_exclusion_paths(
    compile_policy: Callable[[str], Policy], exclusions: str, path: str, excluded: bool
) -> None:
    policy = compile_policy(
        f"policy: p\nexclusion_paths: {exclusions}\nrules:\n"
        "  - id: r\n    effect: allow\n    when: present\n"
    )
    decision = decide(policy, None, path)
    if excluded:
        assert decision.reason == "excluded_path"
        assert decision.allowed
    else:
        assert decision.reason == "missing_certificate"
        assert not decision.allowed


def test_exclusion_message_shows_the_normalised_path(orders: Policy) -> None:
    decision = decide(orders, None, "/HEALTH/./live?probe=1")
    assert decision.message == (
        "The path /HEALTH/live is excluded from client-certificate checks by /health."
    )


def test_an_exclusion_with_a_trailing_slash_excludes_only_below(
    compile_policy: Callable[[str], Policy],
) -> None:
    policy = compile_policy(
        "policy: p\nexclusion_paths: /public/\nrules:\n"
        "  - id: r\n    effect: allow\n    when: present\n"
    )
    assert decide(policy, None, "/public/x").reason == "excluded_path"
    assert decide(policy, None, "/publicity").reason == "missing_certificate"
    assert decide(policy, None, "/public").reason == "missing_certificate"


def test_no_path_means_no_exclusion(orders: Policy) -> None:
    decision = decide(orders, None, None)  # type: ignore[arg-type]
    assert decision.reason == "missing_certificate"


# -- modes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "mode"),
    [
        ("optional", "optional"),
        ("Optional", "optional"),
        ("optional_interactive_user", "optional_interactive_user"),
        ("OptionalInteractiveUser", "optional_interactive_user"),
    ],
)
def test_optional_modes_run_the_rules_without_a_certificate(
    compile_policy: Callable[[str], Policy],
    contoso: IssuedCertificate,
    written: str,
    mode: str,
) -> None:
    policy = compile_policy(
        f"""
        policy: p
        mode: {written}
        rules:
          - id: anonymous-reads
            effect: allow
            when: not present and request.method in ["GET", "HEAD"]
          - id: contoso
            effect: allow
            when: subject.O == "Contoso Ltd"
        """
    )
    assert policy.mode == mode
    decision = decide(policy, None, method="GET")
    assert_decision(
        decision,
        reason="allowed_by_rule",
        rule="anonymous-reads",
        message="Allowed by rule anonymous-reads.",
    )
    assert decision.certificate is None
    decision = decide(policy, None, method="POST")
    assert_decision(
        decision,
        reason="no_matching_rule",
        message=(
            "No allow rule holds; the closest is anonymous-reads, where "
            '`request.method in ["GET", "HEAD"]` is false.'
        ),
        closest_rule="anonymous-reads",
        failed_condition='request.method in ["GET", "HEAD"]',
    )
    assert decide(policy, contoso.pem, method="POST").rule == "contoso"
    # a certificate that cannot be read is refused in every mode
    assert decide(policy, b"\x30\x03\x02\x01", method="GET").reason == "malformed_certificate"


def test_required_is_the_default_mode(compile_policy: Callable[[str], Policy]) -> None:
    policy = compile_policy('policy: p\nrules:\n  - id: r\n    effect: allow\n    when: "true"\n')
    assert policy.mode == "required"
    assert decide(policy, None).reason == "missing_certificate"


# -- malformed certificates ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_pem(contoso: IssuedCertificate) -> bytes:
    return contoso.pem


def malformed_inputs(pem: bytes, der: bytes) -> dict[str, tuple[object, str | None]]:
    """Input -> the exact CertificateError text when it does not depend on cryptography."""
    body = b"".join(pem.splitlines()[1:-1])
    return {
        "garbage bytes": (b"\x00\x01garbage\xff", None),
        "truncated DER": (der[: len(der) // 2], None),
        "DER with one byte off": (der[:-1], None),
        "DER with trailing bytes": (der + b"\x00", None),
        "PEM with a garbage body": (
            b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
            None,
        ),
        "PEM with broken base64": (
            b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
            None,
        ),
        "PEM without END": (
            b"-----BEGIN CERTIFICATE-----\n" + body + b"\n",
            "the PEM certificate has no END CERTIFICATE line",
        ),
        "PEM after text": (b"hello\n" + pem, "text before -----BEGIN CERTIFICATE-----"),
        "PEM truncated": (pem[: len(pem) // 2] + b"\n-----END CERTIFICATE-----\n", None),
        "empty string": ("", "the certificate is empty"),
        "empty bytes": (b"", "the certificate is empty"),
        "whitespace": (" \r\n\t", "the certificate is empty"),
        "non-ASCII text": (
            "-----BEGIN CERTIFICATE-----\nMIIé\n-----END CERTIFICATE-----",
            "the certificate text holds non-ASCII characters; give PEM or DER",
        ),
        "oversized bytes": (
            b"\x30" * (MAX_CERTIFICATE_BYTES + 1),
            f"the certificate is {MAX_CERTIFICATE_BYTES + 1} bytes, "
            f"over the {MAX_CERTIFICATE_BYTES}-byte limit",
        ),
        "oversized PEM padded": (
            pem + b"\n" * MAX_CERTIFICATE_BYTES,
            f"the certificate is {len(pem) + MAX_CERTIFICATE_BYTES} bytes, "
            f"over the {MAX_CERTIFICATE_BYTES}-byte limit",
        ),
        "oversized text": (
            "A" * 70_000,
            f"the certificate is 70000 bytes, over the {MAX_CERTIFICATE_BYTES}-byte limit",
        ),
        "an int": (42, "a certificate must be PEM or DER bytes or text, not int"),
        "a list": ([pem], "a certificate must be PEM or DER bytes or text, not list"),
        "a dict": ({"pem": pem}, "a certificate must be PEM or DER bytes or text, not dict"),
        "a bool": (True, "a certificate must be PEM or DER bytes or text, not bool"),
        "a private key PEM": (
            b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n",
            None,
        ),
    }


MALFORMED_NAMES = list(malformed_inputs(b"-\nx\n-", b"x"))


@pytest.mark.parametrize("name", MALFORMED_NAMES)
@pytest.mark.parametrize("mode", ["required", "optional"])
def test_malformed_certificates_are_denied_never_raised(
    compile_policy: Callable[[str], Policy],
    contoso: IssuedCertificate,
    name: str,
    mode: str,
) -> None:
    cert, detail = malformed_inputs(contoso.pem, contoso.der)[name]
    policy = compile_policy(
        f'policy: p\nmode: {mode}\nrules:\n  - id: r\n    effect: allow\n    when: "true"\n'
    )
    decision = decide(policy, cert)
    assert decision.reason == "malformed_certificate", decision
    assert not decision.allowed
    assert decision.status == 403
    assert decision.rule is None
    assert decision.message.startswith("The client certificate could not be read: ")
    assert decision.message.endswith(".")
    if detail is not None:
        assert decision.message == f"The client certificate could not be read: {detail}."
    assert decision.trace is not None
    assert decision.trace.steps[-1].name == "certificate"
    assert decision.trace.steps[-1].outcome == "deny"


@pytest.mark.parametrize(
    "convert",
    [
        lambda c: c.pem,
        lambda c: c.pem.decode("ascii"),
        lambda c: c.der,
        lambda c: bytearray(c.der),
        lambda c: memoryview(c.pem),
        lambda c: c.certificate,
        lambda c: read_certificate(c.der),
        lambda c: b"\n\n" + c.pem + b"trailing words after the END line",
        lambda c: c.pem.replace(b"\n", b"\r\n"),
    ],
    ids=["pem", "text", "der", "bytearray", "memoryview", "x509", "facts", "padded", "crlf"],
)
def test_every_accepted_form_of_certificate(
    orders: Policy, contoso: IssuedCertificate, convert: Callable[[IssuedCertificate], object]
) -> None:
    decision = decide(orders, convert(contoso))
    assert decision.reason == "allowed_by_rule"
    assert decision.certificate is not None
    assert decision.certificate.sha256 == contoso.sha256


def test_a_der_certificate_whose_name_holds_the_pem_marker(orders: Policy) -> None:
    # DER bytes may contain "-----BEGIN CERTIFICATE-----" inside a name; still DER
    odd = make_certificate(
        {"CN": "-----BEGIN CERTIFICATE-----", "O": "Contoso Ltd"}, not_before=START, not_after=END
    )
    decision = decide(orders, odd.der)
    assert decision.reason == "no_matching_rule"
    assert decision.certificate is not None
    assert decision.certificate.subject == "O=Contoso Ltd,CN=-----BEGIN CERTIFICATE-----"
    assert decide(orders, odd.pem).failed_condition == 'subject.CN == "api-client"'


def test_a_trailing_dot_in_the_host_does_not_slip_past_a_deny_rule(
    compile_policy: Callable[[str], Policy], contoso: IssuedCertificate
) -> None:
    policy = compile_policy(
        """
        policy: p
        rules:
          - id: no-internal
            effect: deny
            when: request.host == "internal.contoso.com"
          - id: contoso
            effect: allow
            when: subject.O == "Contoso Ltd"
        """
    )
    for host in ("internal.contoso.com", "INTERNAL.contoso.com.", "internal.contoso.com.:443"):
        decision = decide(policy, contoso.pem, host=host)
        assert decision.reason == "denied_by_rule", host
    assert decide(policy, contoso.pem, host="api.contoso.com").reason == "allowed_by_rule"


# -- the shipped example policies at NOW --------------------------------------------------------


def shipped(name: str) -> bytes:
    return (POLICIES / "certs" / f"{name}.pem").read_bytes()


@pytest.mark.parametrize("path", shipped_policies(), ids=lambda p: p.name)
def test_shipped_policies_load(path: Path) -> None:
    policy = load_policy(path)
    # the README's policy keeps App Service's trust warning on purpose; the others silence it
    readme = ["trusted-anywhere", "renegotiation", "sha1-pin"]
    expected = readme if path.name == "partner-api.yaml" else []
    assert [w.code for w in policy.warnings] == expected
    assert policy.rules


def test_partner_api() -> None:
    policy = load_policy(POLICIES / "partner-api.yaml")
    decision = decide(policy, shipped("partner"))
    assert_decision(
        decision, reason="allowed_by_rule", rule="partner", message="Allowed by rule partner."
    )
    decision = decide(policy, shipped("fabrikam"))
    assert_decision(
        decision,
        reason="no_matching_rule",
        message=(
            "No allow rule holds; the closest is partner, where "
            '`issuer.O == "Microsoft Corp"` is false.'
        ),
        closest_rule="partner",
        failed_condition='issuer.O == "Microsoft Corp"',
    )
    assert decision.trace is not None
    partner_rule = decision.trace.rules[1]
    failed = [n for n in partner_rule.node.children if n.outcome == "false"]
    assert [(n.text, n.detail) for n in failed] == [
        ('issuer.O == "Microsoft Corp"', 'got "Fabrikam"')
    ]
    decision = decide(policy, shipped("expired"))
    assert_decision(
        decision,
        reason="no_matching_rule",
        message="No allow rule holds; the closest is partner, where `valid` is false.",
        closest_rule="partner",
        failed_condition="valid",
    )
    assert decision.trace is not None
    valid_node = decision.trace.rules[1].node.children[0]
    assert valid_node.detail == "not_after 2024-01-01T00:00:00Z is before now 2026-11-28T10:00:00Z"
    assert decide(policy, None).reason == "missing_certificate"
    assert decide(policy, None, "/Health/live").reason == "excluded_path"
    assert decide(policy, None, "/public/../orders").reason == "missing_certificate"


@pytest.mark.parametrize(
    ("policy_name", "cert", "reason", "rule", "failed"),
    [
        ("appservice-java", "partner", "allowed_by_rule", "java-sample", None),
        ("appservice-java", "fabrikam", "no_matching_rule", None, "fingerprint.sha256 in pinned"),
        ("appservice-java", "expired", "no_matching_rule", None, "valid"),
        ("appservice-java", None, "missing_certificate", None, None),
        ("appservice-nodejs", "partner", "allowed_by_rule", "nodejs-sample", None),
        (
            "appservice-nodejs",
            "fabrikam",
            "no_matching_rule",
            None,
            'fingerprint == "3B:E1:3D:ED:D9:6E:CA:3E:BB:82:18:B9:8B:5D:A2:DE:AA:9E:68:38"',
        ),
        ("appservice-python", "partner", "allowed_by_rule", "python-sample", None),
        ("appservice-python", None, "denied_by_rule", "no-certificate", None),
        ("appservice-webforms", "partner", "allowed_by_rule", "webforms-sample", None),
        (
            "appservice-webforms",
            "fabrikam",
            "no_matching_rule",
            None,
            'issuer.O == "Microsoft Corp"',
        ),
        ("appservice-webforms", "expired", "no_matching_rule", None, "valid"),
    ],
)
def test_app_service_sample_policies(
    policy_name: str, cert: str | None, reason: str, rule: str | None, failed: str | None
) -> None:
    policy = load_policy(POLICIES / f"{policy_name}.yaml")
    decision = decide(policy, shipped(cert) if cert else None)
    assert decision.reason == reason
    assert decision.rule == rule
    assert decision.failed_condition == failed


def test_webforms_accepts_the_expired_certificate_while_it_was_valid() -> None:
    policy = load_policy(POLICIES / "appservice-webforms.yaml")
    decision = decide(policy, shipped("expired"), now=datetime(2023, 6, 1, tzinfo=UTC))
    assert decision.reason == "allowed_by_rule"
    assert decision.rule == "webforms-sample"


# -- immutable results and a policy that cannot be changed -------------------------------------


def test_a_policy_refuses_every_assignment(orders: Policy) -> None:
    for name in ("name", "mode", "rules", "source", "trust", "_memo_windows", "anything"):
        with pytest.raises(AttributeError, match="immutable"):
            setattr(orders, name, None)
    with pytest.raises(AttributeError, match="immutable"):
        del orders.name
    with pytest.raises(TypeError):
        orders.sets["retired"] = 2  # type: ignore[index]
    assert orders.name == "orders"


def test_a_policy_can_be_weakly_referenced_and_copies_to_itself(orders: Policy) -> None:
    # apps cache per policy in a WeakKeyDictionary; immutable, a copy is the same policy
    kept: weakref.WeakKeyDictionary[Policy, str] = weakref.WeakKeyDictionary({orders: "x"})
    assert kept[orders] == "x" and weakref.ref(orders)() is orders
    assert copy.copy(orders) is orders and copy.deepcopy(orders) is orders


def test_a_decision_is_frozen_and_compared_without_its_trace_and_certificate(
    orders: Policy, contoso: IssuedCertificate
) -> None:
    plain = orders.evaluate(contoso.pem, path="/orders", now=NOW)
    explained = orders.evaluate(contoso.pem, path="/orders", now=NOW, explain=True)
    assert plain == explained and hash(plain) == hash(explained)
    assert plain.trace is None and explained.trace is not None
    assert plain != orders.evaluate(contoso.pem, path="/public", now=NOW)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plain.allowed = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        plain[0]  # type: ignore[index]
    with pytest.raises(TypeError):
        _ = plain < explained  # type: ignore[operator]
    fields = [f.name for f in dataclasses.fields(Decision)]
    assert fields == [
        "allowed",
        "reason",
        "message",
        "policy",
        "rule",
        "errors",
        "closest_rule",
        "failed_condition",
        "trace",
        "certificate",
        "identity",
    ]
    assert type(plain) is Decision
    built = Decision(True, "allowed_by_rule", "Allowed by rule contoso.", "orders", "contoso")
    assert built == plain and repr(built) == repr(plain)


def test_a_request_value_decides_as_the_keywords_do(contoso: IssuedCertificate) -> None:
    policy = policy_from_text(
        ORDERS.replace(
            "rules:", "certificate:\n  source: azure\n  trusted_proxies: [10.0.0.1]\nrules:"
        ),
        "orders.yaml",
    )
    value = base64.b64encode(contoso.der).decode()
    headers = [("X-ARR-ClientCert", value)]
    request = Request(headers=headers, peer="10.0.0.1", path="/orders", method="GET", now=NOW)
    by_value = policy.evaluate_request(request)
    by_keywords = policy.evaluate_request(
        headers=headers, remote_addr="10.0.0.1", path="/orders", method="GET", now=NOW
    )
    assert by_value == by_keywords and by_value.allowed
    assert policy.evaluate_request(request, explain=True).trace is not None
    stranger = dataclasses.replace(request, peer="192.0.2.7")
    assert policy.evaluate_request(stranger).reason == "missing_certificate"
    # never raises, even when called wrongly: a deny that says why
    both = policy.evaluate_request(request, path="/orders")
    assert (both.allowed, both.reason) == (False, "evaluation_error")
    assert "not both" in both.message
    not_a_request = policy.evaluate_request({"headers": headers})  # type: ignore[arg-type]
    assert (not_a_request.allowed, not_a_request.reason) == (False, "evaluation_error")
    with pytest.raises(TypeError):
        Request(headers)  # type: ignore[misc]  # keyword-only
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.path = "/admin"  # type: ignore[misc]


def test_the_returning_clients_lane_leaves_what_it_cannot_vouch_for_to_the_procedure(
    contoso: IssuedCertificate,
) -> None:
    """evaluate_request answers a returning client from its memos; an odd time or path on
    that lane is decided (and explained) by the full procedure, never raised."""
    policy = policy_from_text(
        ORDERS.replace(
            "rules:", "certificate:\n  source: azure\n  trusted_proxies: [10.0.0.1]\nrules:"
        ),
        "orders.yaml",
    )
    headers = [("X-ARR-ClientCert", base64.b64encode(contoso.der).decode())]
    request = Request(headers=headers, peer="10.0.0.1", path="/orders", now=NOW)
    for _ in range(3):  # seen twice: the header memo, the facts cache and the memo keep it
        assert policy.evaluate_request(request).allowed
    odd = dataclasses.replace(request, now="yesterday")  # type: ignore[arg-type]
    decision = policy.evaluate_request(odd)
    assert (decision.allowed, decision.reason) == (False, "evaluation_error")
    assert decision.errors == ("AttributeError: 'str' object has no attribute 'tzinfo'",)
    excluded = policy.evaluate_request(dataclasses.replace(request, path="/public/x"))
    assert excluded.reason == "excluded_path"
    naive = dataclasses.replace(request, now=NOW.replace(tzinfo=None))
    assert policy.evaluate_request(naive) == policy.evaluate_request(request)

    class NoOffset(tzinfo):  # a tzinfo that knows no offset: the time is as good as naive
        def utcoffset(self, dt: datetime | None) -> None:
            return None

    offsetless = dataclasses.replace(request, now=NOW.replace(tzinfo=NoOffset()))
    first = policy.evaluate_request(offsetless)  # the memo holds this client: it says "not me"
    assert first == policy.evaluate_request(naive) and first.allowed
