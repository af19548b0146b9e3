"""The warnings of ``policyengine check``: every code, what triggers it, what must not.

Each lint code of ``policyengine/lint.py`` (and the policy-wide warnings ``engine.py`` adds)
gets a policy that triggers it, with the place it points at and the words of its message
and hint, and near misses that must stay silent. Then ``silence:`` at both levels, and the
command line (``check --strict``, ``--format json``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import NOW, run_cli
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from policyengine import Diagnostic, PolicySchemaError, policy_from_text
from policyengine.load.lint import POLICY_CODES, RULE_CODES
from policyengine.load.loader import WARNING_CODES
from policyengine.testing import IssuedCertificate, make_certificate

CERT = make_certificate(
    {"CN": "client-1", "O": "Contoso"},
    not_before=datetime(2025, 1, 1, tzinfo=UTC),
    not_after=datetime(2099, 12, 31, tzinfo=UTC),
    serial=0x1A,
)
"""A real client certificate: its fingerprints are the pins in the policies below."""

SHA1 = CERT.sha1
SHA256 = CERT.sha256
SHA1_COLONS = ":".join(SHA1[i : i + 2] for i in range(0, 40, 2)).upper()
SHA256_COLONS = ":".join(SHA256[i : i + 2] for i in range(0, 64, 2)).upper()

HEAD = "policy: p\nsilence: [trusted-anywhere]\n"
"""Two lines; the policy-wide trusted-anywhere warning (the azure default) is not the topic."""

GOOD = f'valid and issuer.O == "Contoso" and fingerprint.sha256 == "{SHA256}"'
"""An allow rule no lint code has anything to say about (an issuer check alone is no guard:
anyone can make a certificate naming any issuer; the pin is)."""

Rule = str | tuple[str, str]
"""A rule's condition (an allow rule), or ``(effect, condition)``."""


# -- helpers --------------------------------------------------------------------------------------


def policy_text(*rules: Rule, head: str = HEAD) -> str:
    """``head`` then ``rules:``, with the rules named r1, r2, ... in order.

    Rule n's ``id:`` is on line ``rule_line(n, head)`` (its value at column 9) and its
    ``when:`` two lines below (the condition starting at column 11).
    """
    lines = [head.rstrip("\n"), "rules:"]
    for n, rule in enumerate(rules, 1):
        effect, when = ("allow", rule) if isinstance(rule, str) else rule
        lines += [f"  - id: r{n}", f"    effect: {effect}", f"    when: {when}"]
    return "\n".join(lines) + "\n"


def rule_line(n: int, head: str = HEAD) -> int:
    return head.count("\n") + 2 + 3 * (n - 1)


def rule_id(n: int, head: str = HEAD) -> tuple[int, int]:
    """Where rule n's id is written: rule warnings point there."""
    return rule_line(n, head), 9


def in_when(n: int, when: str, fragment: str) -> tuple[int, int]:
    """Where ``fragment`` is written in rule n (after ``HEAD``), whose condition is ``when``."""
    return rule_line(n) + 2, 11 + when.index(fragment)


def warnings(text: str) -> tuple[Diagnostic, ...]:
    return policy_from_text(text, "p.yaml").warnings


def codes(text: str) -> list[str]:
    return [w.code for w in warnings(text)]


def places(text: str) -> list[tuple[str, int, int]]:
    return [(w.code, w.span.line, w.span.column) for w in warnings(text)]


def only(text: str, code: str) -> Diagnostic:
    """The one warning with ``code``."""
    found = [w for w in warnings(text) if w.code == code]
    assert len(found) == 1, places(text)
    return found[0]


def with_policy_silence(text: str, code: str) -> str:
    if "\nsilence: [" in text:
        return text.replace("\nsilence: [", f"\nsilence: [{code}, ", 1)
    return text.replace("policy: p\n", f"policy: p\nsilence: [{code}]\n", 1)


def with_rule_silence(text: str, rule: str, code: str) -> str:
    marker = f"  - id: {rule}\n"
    assert marker in text
    return text.replace(marker, f"{marker}    silence: [{code}]\n", 1)


# -- the warnings, each triggered -----------------------------------------------------------------


@dataclass(frozen=True)
class Trigger:
    code: str
    text: str
    at: tuple[int, int]
    message: tuple[str, ...]
    hint: tuple[str, ...]
    rule: str | None = None
    """The rule the warning is about; None for a warning about the policy."""


RENEGOTIATION_HINT = ("mode required or optional without exclusion paths", "HEAD request")
OPTIONAL_HINT = ('`not present and request.method == "GET"`', "or use mode required")
SHA1_HINT = ("pin the SHA-256 fingerprint", "`policyengine inspect CERT`")
VALIDITY_HINT = ("add `valid`", "`trusted`", "whole chain")
ANY_HINT = (
    "anyone can make a certificate",
    "`trusted`",
    "`fingerprint in` pin",
    "`proxy.verified`",
)
NEVER_HINT = ("fix the condition, or remove the rule",)
NO_VALIDITY_WORDS = ("does not check that the certificate is valid",)
ANY_WORDS = ("admits a certificate from any issuer", "no fingerprint pin, no trust anchor")

PINNED_SHA1 = f'valid and issuer.O == "Contoso" and fingerprint.sha1 == "{SHA1}"'
PINNED_COLONS = f'valid and issuer.O == "Contoso" and fingerprint == "{SHA1_COLONS}"'
PINNED_LIST = f'valid and fingerprint in ["{SHA256}", "{SHA1}"]'
SAME_CN = 'valid and subject.CN == "a" and subject.CN == "b"'

TRIGGERS = [
    # -- about the policy
    Trigger(
        "identity-unverified",
        policy_text(
            'valid and principal == "client-1"',
            head=HEAD + "identity:\n  principal: [subject.CN]\n",
        ),
        (3, 1),  # the identity: key
        ("the principal and groups come from the certificate", "allow rule `r1`", "any issuer"),
        ("give `r1` `trusted`", "`fingerprint in` pin", "`proxy.verified`"),
    ),
    Trigger(
        "identity-unverified",
        policy_text(
            f'\'"partner" in roles and fingerprint.sha256 == "{SHA256}"\'',
            'valid and subject.O == "Contoso"',
            head=HEAD + 'identity:\n  roles:\n    partner: subject.O == "Contoso"\n',
        ),
        (5, 5),  # the role's name
        ("role `partner` is granted by what the certificate says", "allow rule `r2`"),
        ("add `and trusted`", "to role `partner`"),
    ),
    Trigger(
        "set-name",
        policy_text(GOOD + " and subject.CN in roles", head=HEAD + "sets:\n  roles: [admin]\n"),
        (4, 3),  # the set's name
        ("set `roles` has the name of the identity attribute `roles`", "the rules read the set"),
        ("rename the set (e.g. `roles_set`)", "`identity:` section"),
    ),
    Trigger(
        "renegotiation",
        policy_text(GOOD, head=HEAD + "exclusion_paths: /public;/health\n"),
        (3, 18),  # the exclusion paths
        ("exclusion paths make App Service renegotiate TLS", "TLS 1.3", "HTTP/2", "100 KB"),
        (*RENEGOTIATION_HINT, "`Expect: 100-continue`"),
    ),
    Trigger(
        "renegotiation",
        policy_text("present and " + GOOD, head=HEAD + "mode: optional_interactive_user\n"),
        (1, 1),  # no exclusion paths: the policy
        ("the optional_interactive_user mode make App Service renegotiate TLS",),
        RENEGOTIATION_HINT,
    ),
    Trigger(
        "renegotiation",
        policy_text(
            "present and " + GOOD,
            head=HEAD + "mode: OptionalInteractiveUser\nexclusion_paths: [/public]\n",
        ),
        (4, 18),
        ("exclusion paths and the optional_interactive_user mode make App Service renegotiate",),
        RENEGOTIATION_HINT,
    ),
    Trigger(
        "optional-no-present",
        policy_text(GOOD, head=HEAD + "mode: optional\n"),
        (1, 1),
        ("mode optional lets requests without a certificate reach the rules", "`present`"),
        OPTIONAL_HINT,
    ),
    Trigger(
        "optional-no-present",
        policy_text(GOOD, head="policy: p\nmode: Optional\ncertificate:\n  source: nginx\n"),
        (1, 1),
        ("mode optional lets requests without a certificate reach the rules",),
        OPTIONAL_HINT,
    ),
    # -- about a rule
    Trigger(
        "sha1-pin",
        policy_text(PINNED_SHA1),
        in_when(1, PINNED_SHA1, f'"{SHA1}"'),  # the pin itself
        ("a SHA-1 fingerprint pin",),
        SHA1_HINT,
        "r1",
    ),
    Trigger(
        "sha1-pin",
        policy_text(GOOD, PINNED_COLONS),  # `fingerprint` tells SHA-1 by its length
        in_when(2, PINNED_COLONS, f'"{SHA1_COLONS}"'),
        ("a SHA-1 fingerprint pin",),
        SHA1_HINT,
        "r2",
    ),
    Trigger(
        "sha1-pin",
        policy_text(PINNED_LIST),  # only the SHA-1 item of a list
        in_when(1, PINNED_LIST, f'"{SHA1}"'),
        ("a SHA-1 fingerprint pin",),
        SHA1_HINT,
        "r1",
    ),
    Trigger(
        "sha1-pin",
        policy_text(("deny", f'fingerprint.sha1 == "{SHA1}"'), GOOD),  # deny rules pin too
        in_when(1, f'fingerprint.sha1 == "{SHA1}"', f'"{SHA1}"'),
        ("a SHA-1 fingerprint pin",),
        SHA1_HINT,
        "r1",
    ),
    Trigger(
        "no-validity",
        policy_text('issuer.O == "Contoso"'),
        rule_id(1),
        ("allow rule `r1`", *NO_VALIDITY_WORDS),
        VALIDITY_HINT,
        "r1",
    ),
    Trigger(
        "no-validity",
        policy_text(GOOD, 'not_before <= 2026-01-01 and issuer.O == "Contoso"'),
        rule_id(2),  # not_before alone says nothing of expiry
        ("allow rule `r2`", *NO_VALIDITY_WORDS),
        VALIDITY_HINT,
        "r2",
    ),
    Trigger(
        "any-certificate",
        policy_text('valid and subject.CN == "client-1"'),
        rule_id(1),
        ("allow rule `r1`", *ANY_WORDS, "no proxy verification"),
        ANY_HINT,
        "r1",
    ),
    Trigger(
        "any-certificate",
        policy_text(GOOD, 'valid and serial == 0x1A and subject.O == "Contoso"'),
        rule_id(2),  # a serial is no pin: anyone can mint one
        ("allow rule `r2`", *ANY_WORDS),
        ANY_HINT,
        "r2",
    ),
    Trigger(
        "any-certificate",
        policy_text('valid and issuer == "O=Contoso,CN=Contoso CA"'),
        rule_id(1),  # an issuer check alone is no guard: anyone can name any issuer
        ("allow rule `r1`", *ANY_WORDS),
        ANY_HINT,
        "r1",
    ),
    Trigger(
        "any-certificate",
        policy_text(f'{GOOD} or valid and subject.CN == "client-1"'),
        in_when(1, f'{GOOD} or valid and subject.CN == "client-1"', "valid and subject.CN"),
        (  # one branch of the rule is pinned, the other is not: the other is named
            "allow rule `r1` admits a certificate from any issuer through its branch "
            '`valid and subject.CN == "client-1"`, which holds without `trusted`, a '
            "fingerprint pin or `proxy.verified`",
        ),
        ANY_HINT,
        "r1",
    ),
    Trigger(
        "any-certificate",
        policy_text(f'valid and (subject.CN == "a" or fingerprint.sha256 == "{SHA256}")'),
        in_when(1, f'valid and (subject.CN == "a" or fingerprint.sha256 == "{SHA256}")', "valid"),
        ('through its branch `valid and subject.CN == "a"`',),  # spread over the line
        ANY_HINT,
        "r1",
    ),
    Trigger(
        "any-certificate",
        policy_text(f'valid and not (fingerprint.sha256 != "{SHA256}" and subject.CN != "a")'),
        in_when(
            1, f'valid and not (fingerprint.sha256 != "{SHA256}" and subject.CN != "a")', "valid"
        ),
        ('through its branch `valid and not subject.CN != "a"`',),  # De Morgan
        ANY_HINT,
        "r1",
    ),
    Trigger(
        "dn-substring",
        policy_text(GOOD + ' and subject contains "OU=Payments"'),
        in_when(1, GOOD + ' and subject contains "OU=Payments"', "subject contains"),
        (
            '`subject contains "OU=Payments"` matches text anywhere in the whole subject name',
            'a CN of "x,OU=Payments"',
        ),
        ('`"Payments" in subject.OU`',),
        "r1",
    ),
    Trigger(
        "dn-substring",
        policy_text(GOOD, ("deny", 'not issuer startswith "CN=Contoso CA"')),
        in_when(2, 'not issuer startswith "CN=Contoso CA"', "issuer startswith"),
        ('`issuer startswith "CN=Contoso CA"` matches text anywhere in the whole issuer name',),
        ("compare the attribute itself",),
        "r2",
    ),
    Trigger(
        "never-holds",
        policy_text('"false"'),
        rule_id(1),
        ("rule `r1` can never hold: it requires `false`",),
        NEVER_HINT,
        "r1",
    ),
    Trigger(
        "never-holds",
        policy_text(GOOD + " and false"),
        rule_id(1),
        ("rule `r1` can never hold: it requires `false`",),
        NEVER_HINT,
        "r1",
    ),
    Trigger(
        "never-holds",
        policy_text(GOOD, GOOD + " and path excluded"),
        rule_id(2),
        ("rule `r2` can never hold", "excluded paths are allowed before any rule runs"),
        NEVER_HINT,
        "r2",
    ),
    Trigger(
        "never-holds",
        policy_text(SAME_CN + ' and issuer.O == "Contoso"'),
        rule_id(1),
        ('rule `r1` can never hold: `subject.CN` cannot equal both "a" and "b"',),
        NEVER_HINT,
        "r1",
    ),
    Trigger(
        "never-holds",
        policy_text('valid and issuer.O == "Contoso" and not valid'),
        rule_id(1),
        ("rule `r1` can never hold: it requires both `valid` and its negation",),
        NEVER_HINT,
        "r1",
    ),
    Trigger(
        "never-holds",
        policy_text(GOOD, ("deny", 'subject.O == "X" and not subject.O == "X"')),
        rule_id(2),  # deny rules too
        ('rule `r2` can never hold: it requires both `subject.O == "X"` and its negation',),
        NEVER_HINT,
        "r2",
    ),
    Trigger(
        "shadowed",
        policy_text(GOOD, GOOD + ' and subject.CN == "client-1"'),
        rule_id(2),
        ("allow rule `r2` is shadowed by `r1` (line 4): whenever it holds, `r1` holds first",),
        ("remove it, or make it less strict than the earlier rule",),
        "r2",
    ),
    # -- the policy-wide warnings engine.py adds
    Trigger(
        "trusted-anywhere",
        policy_text(GOOD, head="policy: p\n"),
        (1, 1),
        ("the azure source believes X-ARR-ClientCert from any peer by default",),
        ("reachable only through App Service",),
    ),
    Trigger(
        "unused-set",
        policy_text(GOOD, head=HEAD + "sets:\n  partners: [a]\n"),
        (4, 3),
        ("set `partners` is never used",),
        ("use it in a rule", "or remove it"),
    ),
]

TRUST_CODES = {"trust-anchor", "trust-crl", "trust-revocation"}
"""Triggered by test_trust_warnings, which needs certificate files."""


def trigger_id(case: Trigger) -> str:
    return case.code


@pytest.mark.parametrize("case", TRIGGERS, ids=trigger_id)
def test_warning(case: Trigger) -> None:
    warning = only(case.text, case.code)
    assert (warning.span.file, warning.span.line, warning.span.column) == ("p.yaml", *case.at)
    assert warning.severity == "warning"
    for words in case.message:
        assert words in warning.message
    for words in case.hint:
        assert words in warning.hint


def test_every_code_is_triggered_here() -> None:
    assert set(WARNING_CODES) == {case.code for case in TRIGGERS} | TRUST_CODES
    assert {*POLICY_CODES, *RULE_CODES} <= set(WARNING_CODES)


def test_docs_list_every_code() -> None:
    docs = (Path(__file__).resolve().parent.parent / "docs" / "testing.md").read_text()
    for code in WARNING_CODES:
        assert f"`{code}`" in docs, code


def test_a_rule_gets_its_warnings_in_order() -> None:
    when = (
        f'subject.CN == "a" and fingerprint.sha1 == "{SHA1}" and subject.CN == "b" '
        'and subject contains "OU=Ops"'
    )
    text = policy_text(GOOD, when)
    assert places(text) == [
        ("sha1-pin", *in_when(2, when, f'"{SHA1}"')),
        ("no-validity", *rule_id(2)),
        ("dn-substring", *in_when(2, when, "subject contains")),
        ("never-holds", *rule_id(2)),
    ]  # pinned: no any-certificate


def test_a_clean_policy_has_no_warnings() -> None:
    assert warnings(policy_text(GOOD, f'valid and fingerprint.sha256 == "{SHA256}"')) == ()


# -- near misses ----------------------------------------------------------------------------------


SILENT = [
    # renegotiation: only App Service renegotiates, and only for these two causes
    (
        "renegotiation",
        policy_text(GOOD, head="policy: p\ncertificate:\n  source: nginx\nexclusion_paths: /a\n"),
    ),
    ("renegotiation", policy_text("present and " + GOOD, head=HEAD + "mode: optional\n")),
    ("renegotiation", policy_text(GOOD, head=HEAD + "mode: required\n")),
    ("renegotiation", policy_text(GOOD, head=HEAD + "exclusion_paths: []\n")),
    # optional-no-present
    ("optional-no-present", policy_text(GOOD)),  # mode required
    ("optional-no-present", policy_text("present and " + GOOD, head=HEAD + "mode: optional\n")),
    (  # the shipped appservice-python pattern: a deny rule says what happens without one
        "optional-no-present",
        policy_text(("deny", "not present"), GOOD, head=HEAD + "mode: optional\n"),
    ),
    (
        "optional-no-present",
        policy_text(("deny", 'subject.O == "X"'), head=HEAD + "mode: optional\n"),
    ),  # no allow rule: nothing to say
    # sha1-pin
    ("sha1-pin", policy_text(f'valid and fingerprint.sha256 == "{SHA256}"')),
    ("sha1-pin", policy_text(f'valid and fingerprint == "{SHA256_COLONS}"')),
    ("sha1-pin", policy_text(f'{GOOD} and subject_key_id == "{"1a" * 20}"')),  # 40 hex, no pin
    ("sha1-pin", policy_text(f'{GOOD} and serial == "{"1a" * 20}"')),
    (
        "sha1-pin",
        policy_text("valid and fingerprint in pins", head=HEAD + f'sets:\n  pins: ["{SHA256}"]\n'),
    ),
    # no-validity: any of valid, trusted, expired, not_yet_valid, not_after, expires within
    ("no-validity", policy_text(GOOD)),
    ("no-validity", policy_text('not expired and issuer.O == "Contoso"')),
    ("no-validity", policy_text('not not_yet_valid and issuer.O == "Contoso"')),
    ("no-validity", policy_text('not_after >= 2027-01-01 and issuer.O == "Contoso"')),
    ("no-validity", policy_text('expires within 365d and issuer.O == "Contoso"')),
    ("no-validity", policy_text(GOOD, ("deny", 'subject.CN == "x"'))),  # deny rules need none
    # any-certificate: every branch has a pin, a trust anchor or the proxy's verification
    ("any-certificate", policy_text(GOOD)),
    ("any-certificate", policy_text(f"{GOOD} or false")),  # a branch that never holds
    ("any-certificate", policy_text(f"{GOOD} or valid and path excluded")),
    (  # every branch pinned, however the rule is written
        "any-certificate",
        policy_text(
            f'valid and (subject.CN == "a" or subject.CN == "b") and fingerprint == "{SHA256}"'
        ),
    ),
    (
        "any-certificate",
        policy_text(f'valid and not (fingerprint.sha256 != "{SHA256}" or subject.CN == "a")'),
    ),
    (
        "any-certificate",
        policy_text(
            'valid and proxy.verified and subject.O == "Contoso"',
            head="policy: p\ncertificate:\n  source: nginx\n  trusted_proxies: [10.0.0.1]\n",
        ),
    ),
    (
        "any-certificate",
        policy_text(
            f"not present or {GOOD}", head=HEAD + "mode: optional\n"
        ),  # the first branch admits only requests without a certificate
    ),
    ("any-certificate", policy_text(f'valid and fingerprint.sha256 == "{SHA256}"')),
    ("any-certificate", policy_text(f'valid and fingerprint == "{SHA256}"')),
    (
        "any-certificate",
        policy_text("valid and fingerprint in pins", head=HEAD + f'sets:\n  pins: ["{SHA256}"]\n'),
    ),
    ("any-certificate", policy_text(GOOD, ("deny", 'subject.CN == "x"'))),
    # dn-substring: the whole name compared whole, or an attribute compared
    ("dn-substring", policy_text(GOOD + ' and subject == "CN=client-1,O=Contoso"')),
    ("dn-substring", policy_text(GOOD + ' and "Payments" in subject.OU')),
    ("dn-substring", policy_text(GOOD + ' and subject.CN contains "client"')),
    ("dn-substring", policy_text(GOOD + ' and issuer.O startswith "Contoso"')),
    # never-holds
    ("never-holds", policy_text(GOOD + " or false")),
    ("never-holds", policy_text(GOOD + " and not path excluded")),
    ("never-holds", policy_text(GOOD + ' and subject.CN == "a" and subject.CN == "a"')),
    ("never-holds", policy_text(GOOD + ' and (subject.CN == "a" or subject.CN == "b")')),
    ("never-holds", policy_text(GOOD + ' and subject.CN == "a" and issuer.CN == "b"')),
    ("never-holds", policy_text(GOOD + ' and subject.CN == "a" and not subject.CN == "b"')),
    ("never-holds", policy_text(GOOD + " and not expired")),
    ("never-holds", policy_text(GOOD + ' and serial == "0x1A" and serial == 26')),  # one number
    (  # one fingerprint, written two ways
        "never-holds",
        policy_text(f'{GOOD} and fingerprint == "{SHA256}" and fingerprint == "{SHA256_COLONS}"'),
    ),
    # shadowed: see SHADOWS below
    # policy-wide
    ("trusted-anywhere", policy_text(GOOD, head="policy: p\ncertificate:\n  source: nginx\n")),
    (
        "unused-set",
        policy_text("valid and fingerprint in pins", head=HEAD + f'sets:\n  pins: ["{SHA256}"]\n'),
    ),
]


@pytest.mark.parametrize(("code", "text"), SILENT, ids=[code for code, _ in SILENT])
def test_near_miss_is_silent(code: str, text: str) -> None:
    assert code not in codes(text), places(text)


def test_serial_written_two_ways_is_one_number() -> None:
    """The never-holds near miss above: the rule does hold."""
    text = policy_text(GOOD + ' and serial == "0x1A" and serial == 26')
    assert policy_from_text(text, "p.yaml").evaluate(CERT.pem, path="/", now=NOW).rule == "r1"


# -- bugs: warnings that fire wrongly -------------------------------------------------------------


def test_fingerprint_pinned_by_its_sha1_and_its_sha256_can_hold() -> None:
    """`fingerprint` compares by the pin's length: SHA-1 and SHA-256 are two facts, not one."""
    when = f'valid and fingerprint == "{SHA1}" and fingerprint == "{SHA256}"'
    policy = policy_from_text(policy_text(when), "p.yaml")
    assert policy.evaluate(CERT.pem, path="/", now=NOW).rule == "r1"  # it holds
    assert [w.code for w in policy.warnings] == ["sha1-pin"]  # and so is no never-holds


def test_an_allow_rule_for_requests_without_a_certificate_checks_no_certificate() -> None:
    """The optional-no-present hint's own advice (docs/policy-file.md gives it too): such a
    rule admits no certificate at all, so no-validity and any-certificate are wrong."""
    head = HEAD + "mode: optional\n"
    text = policy_text('not present and request.method == "GET"', GOOD, head=head)
    assert (
        "not present and request.method"
        in only(policy_text(GOOD, head=head), "optional-no-present").hint
    )
    policy = policy_from_text(text, "p.yaml")
    stranger = make_certificate(  # any issuer, expired: the rule must not admit it
        {"CN": "anyone"},
        not_before=datetime(2023, 1, 1, tzinfo=UTC),
        not_after=datetime(2024, 1, 1, tzinfo=UTC),
    )
    assert policy.evaluate(stranger.pem, path="/", method="GET", now=NOW).rule is None
    assert policy.evaluate(None, path="/", method="GET", now=NOW).rule == "r1"
    assert places(text) == []


def test_a_dn_substring_is_forgeable_and_the_attribute_form_is_not() -> None:
    """Why dn-substring warns: a CN can carry the text the whole subject is searched for."""
    forged = make_certificate(
        {"CN": "x,OU=Payments", "O": "Contoso"},
        not_before=datetime(2026, 1, 1, tzinfo=UTC),
        not_after=datetime(2027, 1, 1, tzinfo=UTC),
    )
    pin = f'valid and fingerprint.sha256 == "{forged.sha256}"'
    substring = policy_text(f'{pin} and subject contains "OU=Payments"')
    attribute = policy_text(f'{pin} and "Payments" in subject.OU')
    assert codes(substring) == ["dn-substring"]
    assert codes(attribute) == []
    at = {"path": "/", "now": NOW}
    assert policy_from_text(substring, "p.yaml").evaluate(forged.pem, **at).allowed
    assert not policy_from_text(attribute, "p.yaml").evaluate(forged.pem, **at).allowed


# -- with a trust: section ------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    root: Path
    not_a_ca: Path
    old_root: Path
    fresh_crl: Path
    stale_crl: Path
    forged_crl: Path


def _crl(issuer: IssuedCertificate, next_update: datetime, signer: IssuedCertificate) -> bytes:
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(datetime(2024, 1, 1, tzinfo=UTC))
        .next_update(next_update)
        .add_extension(x509.CRLNumber(1), critical=False)  # RFC 5280 requires one
        .sign(signer.key, hashes.SHA256())
    )
    return crl.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Anchors and CRLs, as files: a trust: section names files."""
    folder = tmp_path_factory.mktemp("pki")
    far = datetime(2099, 1, 1, tzinfo=UTC)
    root = make_certificate({"CN": "Lint Root"}, ca=True, not_after=far)
    impostor = make_certificate({"CN": "Lint Root"}, ca=True, not_after=far)  # another key
    old_root = make_certificate(
        {"CN": "Old Root"},
        ca=True,
        not_before=datetime(2020, 1, 1, tzinfo=UTC),
        not_after=datetime(2024, 1, 1, tzinfo=UTC),
    )
    files = {
        "root.pem": root.pem,
        "not-a-ca.pem": make_certificate({"CN": "Not A CA"}).pem,
        "old-root.pem": old_root.pem,
        "fresh.crl": _crl(root, far, root),
        "stale.crl": _crl(root, datetime(2024, 6, 1, tzinfo=UTC), root),
        "forged.crl": _crl(root, far, impostor),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return Pki(*(folder / name for name in files))


def trust_head(anchors: Sequence[Path], crls: Sequence[Path] = ()) -> str:
    lines = [HEAD.rstrip("\n"), "trust:", "  anchors:", *(f"    - {a}" for a in anchors)]
    if crls:
        lines += ["  revocation:", "    mode: soft", "    crls:", *(f"      - {c}" for c in crls)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "when",
    [
        'trusted and subject.CN == "client-1"',  # trusted: validity along the chain, an anchor
        'valid and chain.issuer.subject.O == "Contoso"',  # an issuer check
        f'valid and chain.root.fingerprint == "{SHA256}"',  # a pin
    ],
)
def test_trust_attributes_count(pki: Pki, when: str) -> None:
    assert places(policy_text(when, head=trust_head([pki.root]))) == []


def test_an_or_branch_without_trust_is_named_and_does_admit_a_self_made_certificate(
    pki: Pki,
) -> None:
    """The review's case: the rule as a whole mentions `trusted`, but its first branch,
    `valid`, holds for any certificate at all."""
    head = trust_head([pki.root])
    when = 'valid or subject.CN == "x" and trusted'
    text = policy_text(when, head=head)
    warning = only(text, "any-certificate")
    assert (warning.span.line, warning.span.column, warning.span.length) == (
        rule_line(1, head) + 2,
        11 + when.index("valid"),
        len("valid"),
    )
    assert warning.message == (
        "allow rule `r1` admits a certificate from any issuer through its branch `valid`, "
        "which holds without `trusted`, a fingerprint pin or `proxy.verified`"
    )
    stranger = make_certificate(
        {"CN": "anyone"},
        not_before=datetime(2026, 1, 1, tzinfo=UTC),
        not_after=datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert policy_from_text(text, "p.yaml").evaluate(stranger.pem, path="/", now=NOW).allowed


@pytest.mark.parametrize(
    ("when", "branch"),
    [
        ('trusted or subject.CN == "client-1"', 'subject.CN == "client-1"'),
        (
            'chain.length <= 3 or valid and subject.O == "Contoso"',
            'valid and subject.O == "Contoso"',
        ),
        ("not trusted and valid or trusted", "not trusted and valid"),
        ("trusted == false and valid or trusted", "trusted == false and valid"),
    ],
)
def test_a_branch_that_holds_without_trust_is_named(pki: Pki, when: str, branch: str) -> None:
    head = trust_head([pki.root])
    warning = only(policy_text(when, head=head), "any-certificate")
    assert f"through its branch `{branch}`," in warning.message
    assert warning.span.column == 11 + when.index(branch.split()[0])


@pytest.mark.parametrize(
    "when",
    [
        'trusted or chain.root.subject.CN == "Lint Root"',  # chain.* needs a trusted chain
        'not revoked and subject.CN == "client-1"',  # revoked: undefined without a chain
        f'trusted or valid and fingerprint.sha256 == "{SHA256}"',
        'not (not trusted or subject.CN == "x")',  # De Morgan: trusted and not ...
        "trusted == true and valid or trusted != false",
    ],
)
def test_every_branch_guarded_is_silent(pki: Pki, when: str) -> None:
    assert "any-certificate" not in codes(policy_text(when, head=trust_head([pki.root])))


def test_a_rule_with_an_astronomical_normal_form_is_linted_in_one_walk() -> None:
    """500 two-way choices make 2**500 branches: lint must not write them out."""
    choices = [f'(subject.CN == "a{i}" or fingerprint.sha256 == "{SHA256}")' for i in range(500)]
    open_rule = "valid and " + " and ".join(choices)
    warning = only(policy_text(open_rule), "any-certificate")
    assert 'through its branch `valid and subject.CN == "a0" and subject.CN == "a1"' in (
        warning.message
    )
    assert "…`" in warning.message  # the branch is quoted, clipped
    guarded = f'valid and fingerprint.sha256 == "{SHA256}" and ' + " and ".join(
        f'(subject.CN == "a{i}" or subject.O == "b{i}")' for i in range(500)
    )
    assert "any-certificate" not in codes(policy_text(guarded))


def test_trust_warnings(pki: Pki) -> None:
    head = trust_head(
        [pki.root, pki.not_a_ca, pki.old_root], [pki.fresh_crl, pki.stale_crl, pki.forged_crl]
    )
    found = warnings(policy_text('trusted and subject.CN == "client-1"', head=head))
    # HEAD is lines 1-2, trust: 3, anchors: 4, the anchors 5-7, revocation 8-10, the CRLs 11-13
    assert [(w.code, w.span.line, w.span.column, w.message) for w in found] == [
        ("trust-anchor", 6, 7, "anchor CN=Not A CA is not a CA certificate"),
        ("trust-anchor", 7, 7, "anchor CN=Old Root expired on 2024-01-01T00:00:00Z"),
        ("trust-crl", 12, 9, "CRL stale.crl expired on 2024-06-01T00:00:00Z"),
        ("trust-crl", 13, 9, "CRL forged.crl is not signed by a known CA (CN=Lint Root)"),
    ]
    assert {w.hint for w in found} == {"replace it, or remove it from the policy"}
    silenced = with_policy_silence(policy_text(GOOD, head=head), "trust-crl")
    assert codes(silenced) == ["trust-anchor", "trust-anchor"]


def test_no_trust_warnings_for_a_sound_trust_section(pki: Pki) -> None:
    head = trust_head([pki.root], [pki.fresh_crl])
    assert places(policy_text('trusted and subject.CN == "client-1"', head=head)) == []


# -- shadowed -------------------------------------------------------------------------------------


CN = ' and subject.CN == "client-1"'

SHADOWS: list[tuple[list[Rule], list[tuple[int, int]]]] = [
    # (rules, [(shadowed rule, the first earlier rule that shadows it)])
    ([GOOD, GOOD + CN], [(2, 1)]),
    ([GOOD, GOOD], [(2, 1)]),  # the same rule twice
    (  # the order of the parts
        [GOOD, f'fingerprint.sha256 == "{SHA256}" and issuer.O == "Contoso" and valid'],
        [(2, 1)],
    ),
    (  # spelling does not matter
        [GOOD, f"valid and issuer.O=='Contoso' and fingerprint.sha256=='{SHA256.upper()}'"],
        [(2, 1)],
    ),
    ([GOOD, GOOD, GOOD], [(2, 1), (3, 1)]),  # only the first shadowing rule is named
    ([GOOD, ("deny", 'subject.CN == "x"'), GOOD + CN], [(3, 1)]),  # a deny rule in between
    ([GOOD + CN, GOOD], []),  # an earlier stricter rule does not shadow a looser one
    ([("deny", GOOD), GOOD + CN], []),  # deny rules never shadow
    ([GOOD, ("deny", GOOD + CN)], []),  # ... nor are shadowed
    ([("deny", GOOD), ("deny", GOOD)], []),
    ([GOOD + ' and subject.CN == "a"', GOOD + ' and subject.O == "b"'], []),  # overlap only
    ([GOOD + CN, 'valid and subject.O == "x"' + CN], []),  # shares parts, lacks one
]


@pytest.mark.parametrize(("rules", "expected"), SHADOWS)
def test_shadowed(rules: list[Rule], expected: list[tuple[int, int]]) -> None:
    found = [w for w in warnings(policy_text(*rules)) if w.code == "shadowed"]
    assert [(w.span.line, w.span.column) for w in found] == [rule_id(n) for n, _ in expected]
    assert [w.message for w in found] == [
        f"allow rule `r{n}` is shadowed by `r{by}` (line {rule_line(by)}): whenever it holds, "
        f"`r{by}` holds first"
        for n, by in expected
    ]


@pytest.mark.parametrize("first", ["issuer", "subject"])
def test_the_first_of_two_shadowing_rules_is_named(first: str) -> None:
    """Each earlier rule is filed under its rarest part; the one reported is still the
    earliest, whichever part the later rule's lookup reaches first."""
    by_issuer = 'valid and issuer.O == "Contoso"'
    by_subject = 'valid and subject.CN == "client-1"'
    earlier = [by_issuer, by_subject] if first == "issuer" else [by_subject, by_issuer]
    text = policy_text(*earlier, GOOD + CN)
    shadowed = only(text, "shadowed")
    assert shadowed.span.line == rule_line(3)
    assert "is shadowed by `r1` (line 4)" in shadowed.message


def test_one_duplicate_among_thousands_of_rules() -> None:
    """Guards the linear-time lookup: it must still find the one earlier rule, and only it."""
    rules = [f'valid and subject.CN == "client-{n}"' for n in range(1, 3001)]
    head = "policy: p\nsilence: [trusted-anywhere, any-certificate]\n"
    text = policy_text(*rules, 'valid and subject.CN == "client-1234"', head=head)
    found = warnings(text)
    assert [(w.code, w.span.line, w.span.column) for w in found] == [
        ("shadowed", *rule_id(3001, head))
    ]
    assert found[0].message == (
        f"allow rule `r3001` is shadowed by `r1234` (line {rule_line(1234, head)}): whenever it "
        "holds, `r1234` holds first"
    )


# -- silence: -------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", TRIGGERS, ids=trigger_id)
def test_policy_silence_silences_the_code_everywhere(case: Trigger) -> None:
    before = codes(case.text)
    assert codes(with_policy_silence(case.text, case.code)) == [
        code for code in before if code != case.code
    ]


RULE_TRIGGERS = [case for case in TRIGGERS if case.rule is not None]


@pytest.mark.parametrize("case", RULE_TRIGGERS, ids=trigger_id)
def test_rule_silence_silences_the_code_of_that_rule(case: Trigger) -> None:
    assert case.rule is not None
    before = Counter(codes(case.text))
    after = Counter(codes(with_rule_silence(case.text, case.rule, case.code)))
    assert after == before - Counter({case.code: 1})


def test_rule_silence_leaves_other_rules_and_other_codes() -> None:
    text = policy_text('subject.CN == "a"', 'subject.CN == "b"')
    assert places(text) == [
        ("no-validity", *rule_id(1)),
        ("any-certificate", *rule_id(1)),
        ("no-validity", *rule_id(2)),
        ("any-certificate", *rule_id(2)),
    ]
    quiet = with_rule_silence(text, "r1", "no-validity")
    assert places(quiet) == [
        ("any-certificate", *rule_id(1)),
        ("no-validity", rule_line(2) + 1, 9),  # one line lower: r1's silence: line
        ("any-certificate", rule_line(2) + 1, 9),
    ]


@pytest.mark.parametrize(
    ("code", "head"),
    [
        ("optional-no-present", HEAD + "mode: optional\n"),
        ("renegotiation", HEAD + "exclusion_paths: /public\n"),
        ("unused-set", HEAD + "sets:\n  partners: [a]\n"),
    ],
)
def test_a_rule_cannot_silence_a_policy_warning(code: str, head: str) -> None:
    text = with_rule_silence(policy_text(GOOD, head=head), "r1", code)
    assert code in codes(text)


@pytest.mark.parametrize("code", WARNING_CODES)
def test_every_code_can_be_silenced(code: str) -> None:
    assert warnings(with_policy_silence(policy_text(GOOD), code)) == ()
    assert warnings(with_rule_silence(policy_text(GOOD), "r1", code)) == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            with_rule_silence(policy_text(GOOD), "r1", "no-validty"),
            (5, 15, "unknown warning code `no-validty`", "did you mean `no-validity`?"),
        ),
        (
            with_rule_silence(policy_text(GOOD, GOOD), "r2", "shadow"),
            (8, 15, "unknown warning code `shadow`", "did you mean `shadowed`?"),
        ),
        (
            policy_text(GOOD, head="policy: p\nsilence: [trusted-anywhere, sha1pin]\n"),
            (2, 29, "unknown warning code `sha1pin`", "did you mean `sha1-pin`?"),
        ),
        (
            with_rule_silence(policy_text(GOOD), "r1", "everything"),
            (5, 15, "unknown warning code `everything`", "codes: " + ", ".join(WARNING_CODES)),
        ),
    ],
)
def test_an_unknown_code_in_silence_is_an_error(
    text: str, expected: tuple[int, int, str, str]
) -> None:
    with pytest.raises(PolicySchemaError) as caught:
        policy_from_text(text, "p.yaml")
    assert [
        (d.code, d.severity, d.span.line, d.span.column, d.message, d.hint)
        for d in caught.value.diagnostics
    ] == [("schema", "error", *expected)]


# -- policyengine check ---------------------------------------------------------------------------


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str], str]:
    def write(text: str) -> str:
        path = tmp_path / "p.yaml"
        path.write_text(text)
        return str(path)

    return write


SHADOWING = policy_text(GOOD, GOOD + CN)
SHADOWED_MESSAGE = (
    "allow rule `r2` is shadowed by `r1` (line 4): whenever it holds, `r1` holds first"
)


def test_check_reports_warnings_and_passes(write: Callable[[str], str]) -> None:
    path = write(SHADOWING)
    result = run_cli("check", path)
    assert result.returncode == 0, result.stdout
    assert result.stdout == (
        f"{path}:7:9: warning: {SHADOWED_MESSAGE}\n"
        "    7 |   - id: r2\n"
        "      |         ^^\n"
        "hint: remove it, or make it less strict than the earlier rule\n"
        "\n"
        f"{path}: ok (2 rules, 1 warning(s))\n"
    )


def test_check_strict_fails_on_a_warning(write: Callable[[str], str]) -> None:
    path = write(SHADOWING)
    result = run_cli("check", "--strict", path)
    assert result.returncode == 1
    assert f"{path}:7:9: warning: {SHADOWED_MESSAGE}\n" in result.stdout
    assert result.stdout.endswith(f"{path}: 1 warning(s), failed under --strict\n")


def test_check_strict_passes_without_warnings(write: Callable[[str], str]) -> None:
    path = write(policy_text(GOOD, GOOD + CN, head=HEAD.replace("]", ", shadowed]")))
    result = run_cli("check", "--strict", path)
    assert result.returncode == 0, result.stdout
    assert result.stdout == f"{path}: ok (2 rules)\n"


@pytest.mark.parametrize("strict", [False, True])
def test_check_json(write: Callable[[str], str], strict: bool) -> None:
    path = write(SHADOWING)
    result = run_cli("check", "--format", "json", *(["--strict"] if strict else []), path)
    assert result.returncode == (1 if strict else 0)
    assert json.loads(result.stdout) == [
        {
            "file": path,
            "valid": True,  # it loads; --strict fails it all the same
            "diagnostics": [
                {
                    "file": path,
                    "line": 7,
                    "column": 9,
                    "severity": "warning",
                    "code": "shadowed",
                    "message": SHADOWED_MESSAGE,
                    "hint": "remove it, or make it less strict than the earlier rule",
                }
            ],
        }
    ]


def test_check_json_gives_every_code_its_place(write: Callable[[str], str]) -> None:
    when = f'subject.CN == "a" and fingerprint.sha1 == "{SHA1}" and subject.CN == "b"'
    head = HEAD + "mode: optional\n"
    path = write(policy_text(GOOD, when, head=head))
    result = run_cli("check", "--format", "json", path)
    assert result.returncode == 0
    assert [
        (d["code"], d["line"], d["column"]) for d in json.loads(result.stdout)[0]["diagnostics"]
    ] == [
        ("optional-no-present", 1, 1),
        ("sha1-pin", rule_line(2, head) + 2, 11 + when.index(f'"{SHA1}"')),
        ("no-validity", *rule_id(2, head)),
        ("never-holds", *rule_id(2, head)),
    ]


def test_check_rejects_an_unknown_silenced_code(write: Callable[[str], str]) -> None:
    path = write(with_rule_silence(policy_text(GOOD), "r1", "no-validty"))
    result = run_cli("check", "--format", "json", path)
    assert result.returncode == 1
    [report] = json.loads(result.stdout)
    assert report["valid"] is False
    assert [(d["severity"], d["code"], d["line"], d["column"]) for d in report["diagnostics"]] == [
        ("error", "schema", 5, 15)
    ]
