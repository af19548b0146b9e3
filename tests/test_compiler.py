"""The compiled conditions: every operator on present and absent values, three-valued logic,
multi-valued names, fingerprints, serials, validity, globs, and the explain trace.

Each condition is compiled into a one-rule policy (mode ``optional``, so rules also run
without a certificate) and evaluated twice, plain and explained; the helper checks that
both agree and returns the three-valued result (True, False or None for undefined) with the
rule's trace node.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from conftest import NOW
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policyengine import Policy, policy_from_text, read_certificate
from policyengine.evaluation.context import Context
from policyengine.evaluation.trace import TraceNode, render_text
from policyengine.language.glob import compile_glob
from policyengine.testing import IssuedCertificate, make_certificate

UTC = UTC
START = datetime(2025, 1, 1, tzinfo=UTC)
END = datetime(2027, 1, 1, tzinfo=UTC)
OUTCOME_VALUES = {"true": True, "false": False, "undefined": None}


# -- certificates -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def contoso(ca: IssuedCertificate) -> IssuedCertificate:
    """CN=api-client, O=Contoso Ltd, OU=Payments, C=US, issued by the CA; 2025..2027."""
    return make_certificate(
        [
            ("CN", "api-client"),
            ("O", "Contoso Ltd"),
            ("OU", "Payments"),
            ("C", "US"),
            ("emailAddress", "svc@contoso.com"),
        ],
        issuer=ca,
        not_before=START,
        not_after=END,
        serial=0x1A2B3D,
    )


@pytest.fixture(scope="module")
def two_ous(ca: IssuedCertificate) -> IssuedCertificate:
    return make_certificate(
        [("CN", "api-client"), ("O", "Contoso Ltd"), ("OU", "Payments"), ("OU", "Billing")],
        issuer=ca,
        not_before=START,
        not_after=END,
    )


@pytest.fixture(scope="module")
def two_cns() -> IssuedCertificate:
    return make_certificate(
        [("CN", "a"), ("CN", "b"), ("O", "Contoso Ltd")], not_before=START, not_after=END
    )


@pytest.fixture(scope="module")
def fabrikam() -> IssuedCertificate:
    return make_certificate({"CN": "nildevecc", "O": "Fabrikam"}, not_before=START, not_after=END)


# -- helpers ------------------------------------------------------------------------------------


def make_policy(when: str, sets: dict[str, list[object]] | None = None) -> Policy:
    text = "policy: t\nmode: optional\n"
    if sets:
        text += f"sets: {json.dumps(sets)}\n"
    text += "rules:\n  - id: r\n    effect: allow\n    when: |\n"
    text += textwrap.indent(when.strip(), "      ") + "\n"
    return policy_from_text(text, "t.yaml")


@dataclass
class Outcome:
    value: bool | None
    node: TraceNode

    @property
    def detail(self) -> str:
        return self.node.detail


def run(
    when: str,
    cert: object = None,
    *,
    sets: dict[str, list[object]] | None = None,
    path: str = "/orders",
    method: str = "GET",
    host: str | None = "api.contoso.com",
    now: datetime = NOW,
) -> Outcome:
    """Evaluate ``when`` plain and explained; check they agree; the result and trace node."""
    if isinstance(cert, IssuedCertificate):
        cert = cert.pem
    policy = make_policy(when, sets)
    explained = policy.evaluate(cert, path=path, method=method, host=host, now=now, explain=True)
    plain = policy.evaluate(cert, path=path, method=method, host=host, now=now)
    assert plain == explained
    assert explained.trace is not None
    node = explained.trace.rules[0].node
    assert node.outcome in OUTCOME_VALUES, node
    value = OUTCOME_VALUES[node.outcome]
    assert explained.allowed is (value is True)
    # the plain closure itself gives the same three-valued answer
    facts = None if cert is None else read_certificate(cert)
    ctx = Context(facts, now, path, method, host or "")
    if host and host == host.strip().lower().rstrip(".") and ":" not in host and method.isupper():
        assert policy.rules[0].condition.test(ctx) is value
    return Outcome(value, node)


def value(when: str, cert: object = None, **kwargs: object) -> bool | None:
    return run(when, cert, **kwargs).value  # type: ignore[arg-type]


# -- three-valued logic ------------------------------------------------------------------------

UNDEFINED = 'subject.L == "Redmond"'  # the certificates below have no L


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("true", True),
        ("false", False),
        (UNDEFINED, None),
        (f"not {UNDEFINED}", None),
        (f"not ({UNDEFINED})", None),
        ("not true", False),
        ("not false", True),
        (f"{UNDEFINED} and false", False),
        (f"false and {UNDEFINED}", False),
        (f"{UNDEFINED} and true", None),
        (f"true and {UNDEFINED}", None),
        (f"{UNDEFINED} and {UNDEFINED}", None),
        ("true and true", True),
        (f"true and {UNDEFINED} and false", False),  # the n-ary path
        (f"true and {UNDEFINED} and true", None),
        ("true and true and true", True),
        (f"{UNDEFINED} or true", True),
        (f"true or {UNDEFINED}", True),
        (f"{UNDEFINED} or false", None),
        (f"false or {UNDEFINED}", None),
        ("false or false", False),
        (f"false or {UNDEFINED} or true", True),
        (f"not ({UNDEFINED} or true)", False),
        (f"not ({UNDEFINED} and true)", None),
    ],
)
def test_kleene_logic(contoso: IssuedCertificate, when: str, expected: bool | None) -> None:
    assert value(when, contoso) is expected


def test_undefined_is_not_false_in_the_trace(contoso: IssuedCertificate) -> None:
    outcome = run(f"not {UNDEFINED}", contoso)
    assert outcome.node.kind == "not"
    assert outcome.node.outcome == "undefined"
    assert outcome.node.children[0].outcome == "undefined"
    assert outcome.node.children[0].detail == "undefined: the subject has no L"


# -- string operators, present and absent ------------------------------------------------------

STRING_CASES = [
    ('subject.O == "Contoso Ltd"', True),
    ('subject.O == "contoso ltd"', False),  # case-sensitive
    ('subject.O != "Contoso Ltd"', False),
    ('subject.O != "Fabrikam"', True),
    ('subject.O startswith "Contoso"', True),
    ('subject.O startswith "Ltd"', False),
    ('subject.O endswith " Ltd"', True),
    ('subject.O endswith "Contoso"', False),
    ('subject.O contains "toso L"', True),
    ('subject.O contains "Fabrikam"', False),
    ('subject.O matches "Contoso*"', True),
    ('subject.O matches "Fabrikam*"', False),
    ('subject.O in ["Fabrikam", "Contoso Ltd"]', True),
    ('subject.O in ["Fabrikam"]', False),
    ('subject.O not in ["Fabrikam"]', True),
    ('subject.O not in ["Contoso Ltd", "Fabrikam"]', False),
    ("subject.O in orgs", True),
    ("subject.O not in orgs", False),
    ('subject.emailAddress endswith "@contoso.com"', True),
    ('subject.C == "US"', True),
    ('issuer.CN == "Contoso Issuing CA"', True),
    ('"Payments" in subject.OU', True),
    ('"Billing" in subject.OU', False),
    ('"Billing" not in subject.OU', True),
    ('any subject.OU == "Payments"', True),
    ('all subject.OU == "Payments"', True),
    ('any subject.OU startswith "Pay"', True),
    ('any subject.OU in ["Billing"]', False),
    ('all subject.OU not in ["Billing"]', True),
]


@pytest.mark.parametrize(("when", "expected"), STRING_CASES)
def test_string_operators_on_a_present_value(
    contoso: IssuedCertificate, when: str, expected: bool
) -> None:
    assert value(when, contoso, sets={"orgs": ["Contoso Ltd", "Fabrikam"]}) is expected


@pytest.mark.parametrize(("when", "_"), STRING_CASES)
def test_every_operator_is_undefined_without_a_certificate(when: str, _: bool) -> None:
    outcome = run(when, None, sets={"orgs": ["Contoso Ltd", "Fabrikam"]})
    assert outcome.value is None
    assert "no certificate was presented" in outcome.detail


@pytest.mark.parametrize(
    "when",
    [
        'subject.L == "Redmond"',
        'subject.L != "Redmond"',
        'subject.L startswith "R"',
        'subject.L endswith "d"',
        'subject.L contains "e"',
        'subject.L matches "*"',
        'subject.L in ["Redmond"]',
        'subject.L not in ["Redmond"]',
        'all subject.L == "Redmond"',
        'all subject.L != "Redmond"',
        'issuer.OU == "x"',
    ],
)
def test_an_attribute_the_certificate_lacks_is_undefined(
    contoso: IssuedCertificate, when: str
) -> None:
    outcome = run(when, contoso)
    assert outcome.value is None
    assert outcome.detail.startswith("undefined: ")


def test_membership_over_no_values_is_false_not_undefined(contoso: IssuedCertificate) -> None:
    # an empty list of values is a fact: nothing is in it, `any` finds nothing
    assert value('"Redmond" in subject.L', contoso) is False
    assert value('"Redmond" not in subject.L', contoso) is True
    assert value('any subject.L == "Redmond"', contoso) is False
    # but `all` over nothing would be vacuously true: undefined instead
    outcome = run('all subject.L == "Redmond"', contoso)
    assert outcome.value is None
    assert outcome.detail == ("undefined: subject.L has no values, and `all` needs at least one")


# -- several values of one name attribute -------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ('subject.OU == "Payments"', None),
        ('subject.OU != "Payments"', None),
        ('subject.OU != "Nope"', None),
        ('subject.OU startswith "Pay"', None),
        ('subject.OU in ["Payments", "Billing"]', None),
        ('"Payments" in subject.OU', True),
        ('"Billing" in subject.OU', True),
        ('"Sales" in subject.OU', False),
        ('"Sales" not in subject.OU', True),
        ('"Billing" not in subject.OU', False),
        ('any subject.OU == "Billing"', True),
        ('any subject.OU == "Sales"', False),
        ('all subject.OU == "Billing"', False),
        ('all subject.OU in ["Payments", "Billing"]', True),
        ('all subject.OU in ["Payments"]', False),
        ("all subject.OU in units", True),
        ('any subject.OU not in ["Payments"]', True),
        ('all subject.OU != "Sales"', True),
        ('all subject.OU matches "*ing"', False),
        ('any subject.OU matches "*ing"', True),
        ('all subject.OU contains "i"', False),
        ('subject.CN == "api-client"', True),  # one CN: unaffected
    ],
)
def test_two_ous(two_ous: IssuedCertificate, when: str, expected: bool | None) -> None:
    assert value(when, two_ous, sets={"units": ["Billing", "Payments"]}) is expected


def test_two_cns_are_ambiguous_and_the_trace_says_so(two_cns: IssuedCertificate) -> None:
    outcome = run('subject.CN == "a"', two_cns)
    assert outcome.value is None
    assert outcome.detail == "undefined: the subject has 2 CN values ('a', 'b'); ambiguous"
    assert value('subject.CN != "a"', two_cns) is None
    assert value('subject.CN == "b"', two_cns) is None
    assert value('"a" in subject.CN', two_cns) is True
    assert value('"b" in subject.CN', two_cns) is True
    assert value('any subject.CN == "a"', two_cns) is True
    assert value('all subject.CN == "a"', two_cns) is False
    assert value('all subject.CN in ["a", "b"]', two_cns) is True
    # an ambiguous value stays undefined under `not`: two CNs never pass as "not the bad one"
    assert value('not subject.CN == "evil"', two_cns) is None


def test_multi_valued_probe_shows_every_value(two_ous: IssuedCertificate) -> None:
    assert run('"Sales" in subject.OU', two_ous).detail == 'subject.OU is ["Payments", "Billing"]'
    assert run('any subject.OU == "Sales"', two_ous).detail == 'values ["Payments", "Billing"]'


# -- timestamps ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("not_after == 2027-01-01T00:00:00Z", True),
        ("not_after == 2027-01-01", True),
        ("not_after == 2027-01-01T01:00:00+01:00", True),  # same instant
        ("not_after != 2027-01-01", False),
        ("not_after < 2027-01-01", False),
        ("not_after <= 2027-01-01", True),
        ("not_after > 2027-01-01", False),
        ("not_after >= 2027-01-01", True),
        ("not_after > 2026-12-31T23:59:59Z", True),
        ("not_before < 2025-01-01T00:00:01Z", True),
        ("not_before >= 2025-01-01T00:00:01Z", False),
        ("2027-06-30 > not_after", True),  # constant on the left is flipped
        ("not_before < not_after", True),
        ("not_after < not_before", False),
    ],
)
def test_timestamp_comparisons(contoso: IssuedCertificate, when: str, expected: bool) -> None:
    assert value(when, contoso) is expected
    assert value(when, None) is None


def test_timestamp_probe_shows_the_value(contoso: IssuedCertificate) -> None:
    assert run("not_after > 2027-06-30", contoso).detail == "got 2027-01-01T00:00:00Z"


# -- serials ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("serial == 0x1A2B3D", True),
        ("serial == 0x1a2b3d", True),
        ("serial == 1715005", True),
        ('serial == "1A2B3D"', True),
        ('serial == "0x1a2b3d"', True),
        ('serial == "1a:2b:3d"', True),
        ('serial == "1A 2B 3D"', True),
        ("serial == 0x1A2B3C", False),
        ("serial != 0x1A2B3C", True),
        ("serial != 1715005", False),
        ('serial in ["0x1A2B3C", "1a:2b:3d"]', True),
        ("serial in [1715005]", True),
        ("serial in [0x1A2B3C, 42]", False),
        ("serial not in [0x1A2B3C, 42]", True),
        ("serial in retired", True),
        ("serial not in retired", False),
        ("serial in other", False),
        ("serial not in other", True),
    ],
)
def test_serial(contoso: IssuedCertificate, when: str, expected: bool) -> None:
    sets: dict[str, list[object]] = {
        "retired": ["0x0BAD", 1715005, "ff:ee"],  # an int entry matches 0x1A2B3D
        "other": ["0x1A2B3C", "4D5E6F", 42],
    }
    assert value(when, contoso, sets=sets) is expected
    assert value(when, None, sets=sets) is None


def test_serial_in_set_with_hex_text_entries(contoso: IssuedCertificate) -> None:
    for entry in ("1A2B3D", "0x1a2b3d", "1a:2b:3d", "1A 2B 3D", 1715005):
        assert value("serial in s", contoso, sets={"s": ["0x01", entry]}) is True, entry


def test_serial_probe_is_upper_hex(contoso: IssuedCertificate) -> None:
    assert run("serial == 1", contoso).detail == "got 1A2B3D"
    assert run("serial in [1, 2]", contoso).detail == "got 1A2B3D; not in the list (2 entries)"


# -- fingerprints -------------------------------------------------------------------------------


def colons(digest: str) -> str:
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2)).upper()


def spaced(digest: str) -> str:
    return " ".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def test_fingerprint_equality_in_any_spelling(contoso: IssuedCertificate) -> None:
    sha1, sha256 = contoso.sha1, contoso.sha256
    for spelling in (sha1, sha1.upper(), colons(sha1), spaced(sha1), "\u200e" + sha1.upper()):
        assert value(f'fingerprint == "{spelling}"', contoso) is True, spelling
        assert value(f'fingerprint.sha1 == "{spelling}"', contoso) is True, spelling
        assert value(f'fingerprint != "{spelling}"', contoso) is False, spelling
    for spelling in (sha256, sha256.upper(), colons(sha256), spaced(sha256)):
        assert value(f'fingerprint == "{spelling}"', contoso) is True, spelling
        assert value(f'fingerprint.sha256 == "{spelling}"', contoso) is True, spelling
        assert value(f'fingerprint.sha256 != "{spelling}"', contoso) is False, spelling


def test_fingerprint_unicode_escape_of_a_direction_mark(contoso: IssuedCertificate) -> None:
    # what a thumbprint copied from Windows' certificate manager looks like
    assert value(f'fingerprint == "\\u200e{contoso.sha1.upper()}"', contoso) is True


def test_fingerprint_length_selects_the_algorithm(
    contoso: IssuedCertificate, fabrikam: IssuedCertificate
) -> None:
    # a 40-digit pin is compared with the SHA-1, a 64-digit one with the SHA-256
    assert value(f'fingerprint == "{contoso.sha1}"', contoso) is True
    assert value(f'fingerprint == "{contoso.sha256}"', contoso) is True
    assert value(f'fingerprint == "{fabrikam.sha1}"', contoso) is False
    assert value(f'fingerprint == "{fabrikam.sha256}"', contoso) is False
    assert value(f'fingerprint != "{fabrikam.sha256}"', contoso) is True
    # a SHA-256 pin whose first 40 digits happen to be the SHA-1 is not the SHA-1
    forged = contoso.sha1 + "0" * 24
    assert value(f'fingerprint == "{forged}"', contoso) is False


def test_fingerprint_absent(contoso: IssuedCertificate) -> None:
    for when in (
        f'fingerprint == "{contoso.sha1}"',
        f'fingerprint != "{contoso.sha1}"',
        f'fingerprint.sha256 == "{contoso.sha256}"',
        "fingerprint in pins",
        "fingerprint not in pins",
        "fingerprint.sha1 in [" + json.dumps(contoso.sha1) + "]",
    ):
        outcome = run(when, None, sets={"pins": [contoso.sha1]})
        assert outcome.value is None, when
        assert outcome.detail == "undefined: no certificate was presented", when


def test_fingerprint_in_a_set_mixing_sha1_and_sha256(
    contoso: IssuedCertificate, fabrikam: IssuedCertificate, two_cns: IssuedCertificate
) -> None:
    pins: dict[str, list[object]] = {
        "pins": [colons(contoso.sha1), spaced(fabrikam.sha256).upper(), "00" * 20]
    }
    assert value("fingerprint in pins", contoso, sets=pins) is True
    assert value("fingerprint in pins", fabrikam, sets=pins) is True
    assert value("fingerprint in pins", two_cns, sets=pins) is False
    assert value("fingerprint not in pins", two_cns, sets=pins) is True
    assert value("fingerprint not in pins", contoso, sets=pins) is False
    outcome = run("fingerprint in pins", contoso, sets=pins)
    assert outcome.detail == (
        f"got sha1 {contoso.sha1}, sha256 {contoso.sha256}; in set pins (3 entries)"
    )


def test_fingerprint_of_one_algorithm_in_a_set(
    contoso: IssuedCertificate, fabrikam: IssuedCertificate
) -> None:
    pins: dict[str, list[object]] = {"pins": [contoso.sha256.upper(), colons(fabrikam.sha256)]}
    assert value("fingerprint.sha256 in pins", contoso, sets=pins) is True
    assert value("fingerprint.sha256 in pins", fabrikam, sets=pins) is True
    sha1_only: dict[str, list[object]] = {"pins": [fabrikam.sha1]}
    assert value("fingerprint.sha1 in pins", contoso, sets=sha1_only) is False
    assert value("fingerprint.sha1 not in pins", contoso, sets=sha1_only) is True
    assert value("fingerprint in pins", fabrikam, sets=sha1_only) is True


def test_fingerprint_in_a_list(contoso: IssuedCertificate) -> None:
    listed = f'["{"ab" * 20}", "{colons(contoso.sha256)}"]'
    assert value(f"fingerprint in {listed}", contoso) is True
    assert value(f'fingerprint in ["{"ab" * 20}"]', contoso) is False


# -- validity -----------------------------------------------------------------------------------

SECOND = timedelta(seconds=1)


@pytest.mark.parametrize(
    ("now", "valid", "expired", "not_yet_valid"),
    [
        (START - SECOND, False, False, True),
        (START, True, False, False),  # inclusive at both ends
        (START + SECOND, True, False, False),
        (NOW, True, False, False),
        (END - SECOND, True, False, False),
        (END, True, False, False),
        (END + SECOND, False, True, False),
    ],
)
def test_validity_edges(
    contoso: IssuedCertificate,
    now: datetime,
    valid: bool,
    expired: bool,
    not_yet_valid: bool,
) -> None:
    assert value("valid", contoso, now=now) is valid
    assert value("expired", contoso, now=now) is expired
    assert value("not_yet_valid", contoso, now=now) is not_yet_valid
    assert value("not valid", contoso, now=now) is (not valid)


def test_validity_without_a_certificate() -> None:
    for when in ("valid", "expired", "not_yet_valid", "not valid", "expires within 30d"):
        outcome = run(when, None)
        assert outcome.value is None, when
    assert run("valid", None).detail == "no certificate was presented"


def test_validity_sentences(expired: IssuedCertificate, contoso: IssuedCertificate) -> None:
    assert run("valid", expired).detail == (
        "not_after 2024-01-01T00:00:00Z is before now 2026-11-28T10:00:00Z"
    )
    assert run("expired", expired).value is True
    early = datetime(2024, 6, 1, tzinfo=UTC)
    assert run("valid", contoso, now=early).detail == (
        "not_before 2025-01-01T00:00:00Z is after now 2024-06-01T00:00:00Z"
    )
    assert run("valid", contoso).detail == (
        "not_before 2025-01-01T00:00:00Z <= now 2026-11-28T10:00:00Z "
        "<= not_after 2027-01-01T00:00:00Z"
    )


def test_naive_now_is_utc(contoso: IssuedCertificate) -> None:
    policy = make_policy("expired")
    naive = datetime(2027, 1, 1, 0, 0, 1)
    assert policy.evaluate(contoso.pem, now=naive).allowed
    assert not policy.evaluate(contoso.pem, now=naive - SECOND).allowed


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (END - timedelta(days=31), False),
        (END - timedelta(days=30) - SECOND, False),
        (END - timedelta(days=30), True),  # not_after is exactly 30 days away
        (END - timedelta(days=1), True),
        (END - SECOND, True),
        (END, False),  # expires now: already over, not "within"
        (END + timedelta(days=1), False),
    ],
)
def test_expires_within_edges(contoso: IssuedCertificate, now: datetime, expected: bool) -> None:
    assert value("expires within 30d", contoso, now=now) is expected


def test_expires_within_units_and_sentences(contoso: IssuedCertificate) -> None:
    now = END - timedelta(days=10)
    assert value("expires within 2w", contoso, now=now) is True
    assert value("expires within 240h", contoso, now=now) is True
    assert value("expires within 239h", contoso, now=now) is False
    assert value("expires within 14400m", contoso, now=now) is True
    assert value("expires within 864000s", contoso, now=now) is True
    assert value("expires within 863999s", contoso, now=now) is False
    assert run("expires within 30d", contoso, now=now).detail == (
        "not_after 2027-01-01T00:00:00Z is 10d from now (window 30d)"
    )
    assert run("expires within 30d", contoso, now=END - timedelta(hours=5)).detail == (
        "not_after 2027-01-01T00:00:00Z is 5h from now (window 30d)"
    )
    assert run("expires within 30d", contoso, now=END + SECOND).detail == (
        "not_after 2027-01-01T00:00:00Z has passed"
    )
    assert run("expires within 30d", None).detail == "undefined: no certificate was presented"


# -- self_signed and present --------------------------------------------------------------------


def test_self_signed(
    fabrikam: IssuedCertificate, contoso: IssuedCertificate, ca: IssuedCertificate
) -> None:
    outcome = run("self_signed", fabrikam)
    assert outcome.value is True
    assert outcome.detail == (
        "subject equals issuer and the certificate's own key verifies its signature"
    )
    assert value("self_signed", ca) is True
    outcome = run("self_signed", contoso)
    assert outcome.value is False
    assert outcome.detail == "subject differs from issuer"
    assert value("not self_signed", contoso) is True
    assert value("self_signed", None) is None


def test_same_name_signed_by_another_key_is_not_self_signed() -> None:
    authority = make_certificate({"CN": "twin"}, ca=True, not_before=START, not_after=END)
    impostor = make_certificate({"CN": "twin"}, issuer=authority, not_before=START, not_after=END)
    assert impostor.certificate.subject == impostor.certificate.issuer
    outcome = run("self_signed", impostor)
    assert outcome.value is False
    assert outcome.detail == (
        "subject equals issuer but the certificate's own key does not verify its signature"
    )


def test_present(contoso: IssuedCertificate) -> None:
    outcome = run("present", contoso)
    assert outcome.value is True
    assert outcome.detail == "a certificate was presented"
    outcome = run("present", None)
    assert outcome.value is False  # a fact, not undefined
    assert outcome.detail == "no certificate was presented"
    assert value("not present", None) is True
    assert value('not present or subject.O == "Contoso Ltd"', None) is True
    assert value('present and subject.O == "Contoso Ltd"', None) is False


# -- the request --------------------------------------------------------------------------------


def test_request_path_is_normalised() -> None:
    outcome = run('request.path == "/admin"', None, path="/public/../admin?x=1")
    assert outcome.value is True
    assert outcome.detail == 'got "/admin"'
    assert value('request.path == "/a/b"', None, path="//a/./b#frag") is True
    assert value('request.path == "/a b"', None, path="/a%20b") is True
    assert value('request.path startswith "/orders"', None, path="/orders/1") is True


def test_request_method_is_upper_case() -> None:
    assert value('request.method == "POST"', None, method="post") is True
    assert value('request.method in ["GET", "HEAD"]', None, method="head") is True
    assert value('request.method == "post"', None, method="post") is False
    assert run('request.method == "GET"', None, method="get").detail == 'got "GET"'


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("api.contoso.com", "api.contoso.com"),
        ("API.Contoso.COM", "api.contoso.com"),
        ("api.contoso.com:8443", "api.contoso.com"),
        ("API.CONTOSO.COM:443", "api.contoso.com"),
        ("  api.contoso.com  ", "api.contoso.com"),
        ("[::1]:8443", "[::1]"),
        ("api.contoso.com.", "api.contoso.com"),  # the fully qualified spelling
        ("API.contoso.com.:443", "api.contoso.com"),
        ("[::1]", "[::1]"),
    ],
)
def test_request_host_is_lower_case_without_port(host: str, expected: str) -> None:
    outcome = run(f'request.host == "{expected}"', None, host=host)
    assert outcome.value is True
    assert outcome.detail == f'got "{expected}"'


def test_request_host_absent_is_undefined() -> None:
    outcome = run('request.host == "api.contoso.com"', None, host=None)
    assert outcome.value is None
    assert outcome.detail == "undefined: no host was given"
    assert value('request.host != "api.contoso.com"', None, host="") is None


def test_path_excluded_is_false_for_requests_that_reach_the_rules() -> None:
    outcome = run("path excluded", None)
    assert outcome.value is False
    assert outcome.detail == 'path "/orders" matches no exclusion path'


# -- globs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("*.contoso.com", "api.contoso.com", True),
        ("*.contoso.com", "a.b.contoso.com", False),  # `*` does not cross a dot
        ("*.contoso.com", "contoso.com", False),
        ("*.contoso.com", "api.contoso.com.evil", False),
        ("**.contoso.com", "a.b.contoso.com", True),  # `**` does
        ("**.contoso.com", "api.contoso.com", True),
        ("**.contoso.com", "contoso.com", False),
        ("api.*", "api.contoso", True),
        ("api.*", "api.contoso.com", False),
        ("api.**", "api.contoso.com", True),
        ("api-?.contoso.com", "api-1.contoso.com", True),
        ("api-?.contoso.com", "api-12.contoso.com", False),
        ("api-?.contoso.com", "api-.contoso.com", False),
        ("api?contoso.com", "api.contoso.com", False),  # `?` is not a dot either
        ("*-*.contoso.com", "eu-west.contoso.com", True),
        ("*-*.contoso.com", "euwest.contoso.com", False),
        ("*-*.contoso.com", "eu.x-west.contoso.com", False),
        ("a**b*c", "a.x.b.yc", False),
        ("a**b*c", "a.x.byyc", True),
        ("api.contoso.com", "api.contoso.com", True),
        ("api.contoso.com", "api.contoso.co", False),
        ("**", "anything.at.all", True),
        ("*", "no-dots", True),
        ("*", "one.dot", False),
    ],
)
def test_glob(pattern: str, host: str, expected: bool) -> None:
    assert value(f'request.host matches "{pattern}"', None, host=host) is expected
    assert compile_glob(pattern)(host) is expected


def test_glob_is_case_sensitive_and_escapes_wildcards(contoso: IssuedCertificate) -> None:
    policy_cert = make_certificate(
        [("CN", "a*b"), ("O", "what?"), ("OU", "back\\slash")], not_before=START, not_after=END
    )
    # in the policy language `\\` is one backslash, so `\\*` reaches the glob as `\*`
    assert value('subject.CN matches "a\\\\*b"', policy_cert) is True
    assert value('subject.O matches "what\\\\?"', policy_cert) is True
    assert value('subject.OU == "back\\\\slash"', policy_cert) is True
    assert value('subject.OU matches "back\\\\\\\\slash"', policy_cert) is True
    assert compile_glob("a\\*b")("a*b") is True
    assert compile_glob("a\\*b")("axb") is False
    assert compile_glob("a\\*b")("ab") is False
    assert compile_glob("what\\?")("whatx") is False
    assert compile_glob("x\\*y*")("x*yz") is True
    assert compile_glob("x\\*y*")("xayz") is False
    assert value('subject.O matches "contoso*"', contoso) is False
    assert value('subject.O matches "Contoso*"', contoso) is True


def test_glob_pathological_pattern_is_linear() -> None:
    pattern = "*a*a*a*a*a*a*a*a*b"
    match = compile_glob(pattern)
    assert match("a" * 20_000) is False
    assert match("a" * 20_000 + "b") is True
    assert match("ab" * 10 + "a" * 20_000) is False  # must end in b
    assert match("ab" * 8) is True  # eight a's, each followed by anything, then a final b
    assert match("ab" * 7) is False  # only seven a's
    host = "a" * 5_000
    assert value(f'request.host matches "{pattern}"', None, host=host) is False
    assert value(f'request.host matches "{pattern}"', None, host=host + "b") is True
    globstar = compile_glob("**a**a**a**a**a**a**a**a**b")
    assert globstar("a." * 10_000) is False


# -- attribute against attribute ----------------------------------------------------------------


def test_attribute_against_attribute(
    contoso: IssuedCertificate, fabrikam: IssuedCertificate, two_cns: IssuedCertificate
) -> None:
    assert value("subject.CN == issuer.CN", fabrikam) is True  # self-signed
    assert value("subject.CN == issuer.CN", contoso) is False
    assert value("subject.CN != issuer.CN", contoso) is True
    assert value("subject.O == issuer.O", contoso) is True
    assert value("issuer.CN startswith subject.O", contoso) is False
    assert value("issuer.CN contains issuer.O", contoso) is False
    assert value("issuer.O endswith subject.C", contoso) is False
    assert value("subject.CN == issuer.CN", None) is None
    assert value("subject.L == issuer.L", contoso) is None  # both absent
    outcome = run("subject.CN == issuer.CN", two_cns)
    assert outcome.value is None
    assert outcome.detail == (
        "subject.CN undefined: the subject has 2 CN values ('a', 'b'); ambiguous, "
        "issuer.CN undefined: the issuer has 2 CN values ('a', 'b'); ambiguous"
    )
    assert run("subject.CN == issuer.CN", contoso).detail == (
        'subject.CN "api-client", issuer.CN "Contoso Issuing CA"'
    )
    assert value("fingerprint.sha256 == fingerprint.sha256", contoso) is True


def test_attribute_membership_in_a_multi_valued_attribute(two_ous: IssuedCertificate) -> None:
    cert = make_certificate(
        [("CN", "Billing"), ("OU", "Payments"), ("OU", "Billing")],
        not_before=START,
        not_after=END,
    )
    assert value("subject.CN in subject.OU", cert) is True
    assert value("subject.CN not in subject.OU", cert) is False
    assert value("subject.CN in subject.OU", two_ous) is False


# -- the trace ----------------------------------------------------------------------------------


def test_and_short_circuits_and_marks_the_rest_skipped(fabrikam: IssuedCertificate) -> None:
    outcome = run(
        'subject.O == "Microsoft Corp" and valid and (subject.CN == "x" or expired)', fabrikam
    )
    node = outcome.node
    assert (node.kind, node.outcome) == ("and", "false")
    first, second, third = node.children
    assert (first.outcome, first.detail) == ("false", 'got "Fabrikam"')
    assert first.text == 'subject.O == "Microsoft Corp"'
    assert (second.text, second.outcome, second.detail) == ("valid", "skipped", "")
    assert (third.kind, third.outcome) == ("or", "skipped")
    assert [c.outcome for c in third.children] == ["skipped", "skipped"]
    text = render_text(_trace_of('subject.O == "Microsoft Corp" and valid', fabrikam))
    assert 'subject.O == "Microsoft Corp"  ✗  got "Fabrikam"' in text
    assert "valid  ·  not evaluated" in text


def test_or_short_circuits(fabrikam: IssuedCertificate) -> None:
    node = run('subject.O == "Fabrikam" or expired or self_signed', fabrikam).node
    assert (node.kind, node.outcome) == ("or", "true")
    assert [c.outcome for c in node.children] == ["true", "skipped", "skipped"]


def test_undefined_does_not_short_circuit(fabrikam: IssuedCertificate) -> None:
    node = run(f'{UNDEFINED} and subject.O == "Fabrikam" and expired', fabrikam).node
    assert [c.outcome for c in node.children] == ["undefined", "true", "false"]
    assert node.outcome == "false"
    node = run(f'{UNDEFINED} or subject.O == "Fabrikam"', fabrikam).node
    assert [c.outcome for c in node.children] == ["undefined", "true"]
    assert node.outcome == "true"


def test_trace_nodes_carry_spans_and_text(fabrikam: IssuedCertificate) -> None:
    node = run('valid and subject.O == "Fabrikam"', fabrikam).node
    assert node.span is not None and node.span.file == "t.yaml"
    second = node.children[1]
    assert second.span is not None
    assert (second.span.line, second.span.column) == (7, 17)
    assert second.to_dict() == {
        "kind": "test",
        "text": 'subject.O == "Fabrikam"',
        "outcome": "true",
        "detail": 'got "Fabrikam"',
        "line": 7,
        "column": 17,
    }


def test_membership_probes(contoso: IssuedCertificate) -> None:
    outcome = run("subject.O in orgs", contoso, sets={"orgs": ["A", "Contoso Ltd", "A"]})
    assert outcome.detail == 'got "Contoso Ltd"; in set orgs (2 entries)'
    outcome = run('subject.O not in ["Fabrikam"]', contoso)
    assert outcome.detail == 'got "Contoso Ltd"; not in the list (1 entry)'
    assert outcome.value is True
    outcome = run('subject.O in ["Fabrikam"]', None)
    assert outcome.detail == "undefined: no certificate was presented"


def _trace_of(when: str, cert: IssuedCertificate):  # type: ignore[no-untyped-def]
    decision = make_policy(when).evaluate(cert.pem, path="/", now=NOW, explain=True)
    assert decision.trace is not None
    return decision.trace


# -- a certificate whose subject cannot be read -------------------------------------------------


def broken_subject(ca: IssuedCertificate) -> bytes:
    """DER of a certificate whose subject CN is a UTF8String holding invalid UTF-8."""
    leaf = make_certificate({"CN": "QQQQbroken"}, issuer=ca, not_before=START, not_after=END)
    good = b"\x0c\x0aQQQQbroken"
    assert leaf.der.count(good) == 1
    der = leaf.der.replace(good, b"\x0c\x0a\xff\xfeQQbroken")
    cert = x509.load_der_x509_certificate(der)
    with pytest.raises(ValueError):
        _ = cert.subject
    assert cert.issuer == ca.certificate.subject
    return der


def test_reading_a_broken_subject_is_an_error_and_plain_short_circuits(
    ca: IssuedCertificate,
) -> None:
    der = broken_subject(ca)
    facts = read_certificate(der)
    ctx = Context(facts, NOW, "/", "GET", "h")
    erroring = make_policy('subject.CN == "x"').rules[0].condition
    with pytest.raises(Exception, match="the subject name cannot be read"):
        erroring.test(ctx)
    node = erroring.trace(ctx)
    assert node.outcome == "error"
    assert node.detail.startswith("the subject name cannot be read: ")
    # the plain closure stops at the first false part and never reads the subject
    guarded = make_policy('issuer.CN == "nope" and subject.CN == "x"').rules[0].condition
    assert guarded.test(ctx) is False
    node = guarded.trace(ctx)
    assert [c.outcome for c in node.children] == ["false", "skipped"]
    unguarded = make_policy('issuer.CN == "Contoso Issuing CA" and subject.CN == "x"')
    node = unguarded.rules[0].condition.trace(ctx)
    assert (node.outcome, [c.outcome for c in node.children]) == ("error", ["true", "error"])
    negated = make_policy('not subject.CN == "x"').rules[0].condition.trace(ctx)
    assert negated.outcome == "error"
    # other facts are still readable
    assert value(f'fingerprint == "{_sha256(der)}"', der) is True
    assert value(f"serial == {read_certificate(der).serial}", der) is True


def _sha256(der: bytes) -> str:
    import hashlib

    return hashlib.sha256(der).hexdigest()


# -- plain and explained evaluation agree -------------------------------------------------------

ATOMS = [
    "valid",
    "expired",
    "not_yet_valid",
    "present",
    "self_signed",
    "expires within 400d",
    'subject.CN == "a"',
    'subject.CN == "api-client"',
    'subject.O == "Contoso Ltd"',
    'subject.O != "Fabrikam"',
    'subject.OU in ["Payments", "Billing"]',
    '"Billing" in subject.OU',
    'any subject.OU == "Payments"',
    'all subject.OU startswith "B"',
    'subject.L == "x"',
    "subject.CN == issuer.CN",
    'issuer.CN matches "*CA"',
    "serial in retired",
    "fingerprint in pins",
    'request.method == "GET"',
    'request.path startswith "/admin"',
    'request.host endswith ".contoso.com"',
    "not_after > 2026-12-31",
]


def _expression() -> st.SearchStrategy[str]:
    leaf = st.sampled_from(ATOMS)

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            inner.map(lambda e: f"not ({e})"),
            st.lists(inner, min_size=2, max_size=3).map(
                lambda es: " and ".join(f"({e})" for e in es)
            ),
            st.lists(inner, min_size=2, max_size=3).map(
                lambda es: " or ".join(f"({e})" for e in es)
            ),
        )

    return st.recursive(leaf, extend, max_leaves=5)


@pytest.fixture(scope="module")
def cert_pool(
    ca: IssuedCertificate,
    contoso: IssuedCertificate,
    two_ous: IssuedCertificate,
    two_cns: IssuedCertificate,
    fabrikam: IssuedCertificate,
) -> list[object]:
    return [None, contoso.pem, two_ous.der, two_cns.pem, fabrikam.pem, broken_subject(ca), b"junk"]


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    deny=_expression(),
    allow=st.lists(_expression(), min_size=1, max_size=2),
    cert_index=st.integers(0, 6),
    path=st.sampled_from(["/orders", "/admin/x", "/public/../admin", "/public/a"]),
    method=st.sampled_from(["GET", "post"]),
    now=st.sampled_from([NOW, START - SECOND, END + SECOND]),
)
def test_plain_and_explained_decisions_agree(
    cert_pool: list[object],
    contoso: IssuedCertificate,
    deny: str,
    allow: list[str],
    cert_index: int,
    path: str,
    method: str,
    now: datetime,
) -> None:
    rules = [("d", "deny", deny)] + [(f"a{i}", "allow", w) for i, w in enumerate(allow)]
    text = "policy: p\nmode: optional\nexclusion_paths: /public\n"
    text += f"sets: {json.dumps({'retired': [1715005], 'pins': [contoso.sha256]})}\n"
    text += "rules:\n"
    for rule_id, effect, when in rules:
        text += f"  - id: {rule_id}\n    effect: {effect}\n    when: {json.dumps(when)}\n"
    policy = policy_from_text(text, "p.yaml")
    cert = cert_pool[cert_index]
    kwargs = {"path": path, "method": method, "host": "api.contoso.com", "now": now}
    plain = policy.evaluate(cert, **kwargs)  # type: ignore[arg-type]
    explained = policy.evaluate(cert, explain=True, **kwargs)  # type: ignore[arg-type]
    assert (plain.allowed, plain.reason, plain.rule) == (
        explained.allowed,
        explained.reason,
        explained.rule,
    )
    assert plain == explained
    assert plain.reason != "evaluation_error"


def test_an_escaped_star_in_a_policy_string_is_a_literal_star() -> None:
    star = make_certificate({"CN": "a*b"})
    other = make_certificate({"CN": "axxb"})
    assert value(r'subject.CN matches "a\*b"', star.pem) is True
    assert value(r'subject.CN matches "a\*b"', other.pem) is False
    assert value(r'subject.CN matches "a*b"', other.pem) is True
