"""The decision memo never changes a decision.

A policy that reads only the certificate keeps its outcome on the certificate's facts,
with the time signature it was reached under. These tests decide the same facts object
over and over at times on every side of each validity boundary, and compare with a
decision on facts never seen before (no memo to read).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policyengine import policy_from_text
from policyengine.certificate import read_certificate
from policyengine.testing import make_certificate

NOT_BEFORE = datetime(2026, 1, 1, tzinfo=UTC)
NOT_AFTER = datetime(2027, 1, 1, tzinfo=UTC)
CERT = make_certificate(
    {"CN": "api-client", "O": "Contoso Ltd"}, not_before=NOT_BEFORE, not_after=NOT_AFTER
)
SECOND = timedelta(seconds=1)
WINDOW = timedelta(days=30)
BOUNDARIES = (NOT_BEFORE, NOT_AFTER, NOT_AFTER - WINDOW, NOT_AFTER - timedelta(days=7))
TIMES = sorted({b + d for b in BOUNDARIES for d in (-SECOND, timedelta(0), SECOND)})

CONDITIONS = (
    "valid",
    "expired",
    "not_yet_valid",
    "not expired",
    "expires within 30d",
    "expires within 7d",
    'valid and subject.CN == "api-client"',
    "valid and not expires within 30d",
    'expired or subject.O == "Fabrikam"',
)


def policy(*conditions: str) -> str:
    rules = "".join(
        f"  - id: r{n}\n    effect: {'deny' if n % 3 == 2 else 'allow'}\n    when: {c}\n"
        for n, c in enumerate(conditions)
    )
    return f"policy: memo\nrules:\n{rules}"


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.sampled_from(CONDITIONS), min_size=1, max_size=4),
    st.lists(st.sampled_from(TIMES), min_size=2, max_size=12),
)
def test_a_remembered_decision_equals_a_fresh_one(
    conditions: list[str], times: list[datetime]
) -> None:
    compiled = policy_from_text(policy(*conditions), "memo.yaml")
    kept = read_certificate(CERT.der)
    for now in times:
        remembered = compiled.evaluate(kept, now=now)
        fresh = compiled.evaluate(read_certificate(CERT.der), now=now)
        assert remembered == fresh, now
        assert remembered.certificate is kept


def test_every_boundary_in_order_and_back() -> None:
    compiled = policy_from_text(policy(*CONDITIONS), "memo.yaml")
    kept = read_certificate(CERT.der)
    seen = set()
    for now in [*TIMES, *reversed(TIMES)]:
        decision = compiled.evaluate(kept, now=now)
        assert decision == compiled.evaluate(read_certificate(CERT.der), now=now), now
        seen.add((decision.reason, decision.rule))
    assert len(seen) >= 3  # the boundaries really change the outcome


def test_the_memo_is_kept_on_the_facts_per_policy() -> None:
    allow = policy_from_text(policy('valid and subject.CN == "api-client"'), "a.yaml")
    deny = policy_from_text(policy('valid and subject.CN == "someone-else"'), "b.yaml")
    facts = read_certificate(CERT.der)
    now = NOT_BEFORE + WINDOW
    assert facts.decisions == {}
    assert allow.evaluate(facts, now=now).allowed
    assert not deny.evaluate(facts, now=now).allowed
    assert len(facts.decisions) == 2
    assert allow.evaluate(facts, now=now).allowed
    assert not deny.evaluate(facts, now=now).allowed


@pytest.mark.parametrize(
    "condition",
    [
        'valid and request.path startswith "/admin"',
        'valid and request.method == "GET"',
        'valid and request.host == "api.contoso.com"',
    ],
)
def test_a_policy_that_reads_the_request_is_not_remembered(condition: str) -> None:
    compiled = policy_from_text(policy(condition), "r.yaml")
    facts = read_certificate(CERT.der)
    now = NOT_BEFORE + WINDOW
    matching = {"path": "/admin/x", "method": "get", "host": "API.contoso.com"}
    other = {"path": "/public", "method": "POST", "host": "evil.example"}
    for _ in range(2):
        assert compiled.evaluate(facts, now=now, **matching).allowed
        assert not compiled.evaluate(facts, now=now, **other).allowed
    assert facts.decisions == {}


def test_explain_reads_no_memo_and_decides_alike() -> None:
    compiled = policy_from_text(policy(*CONDITIONS), "memo.yaml")
    facts = read_certificate(CERT.der)
    for now in TIMES:
        plain = compiled.evaluate(facts, now=now)
        explained = compiled.evaluate(facts, now=now, explain=True)
        assert explained == plain
        assert explained.trace is not None and plain.trace is None


def test_a_remembered_decision_still_honours_exclusion_paths() -> None:
    text = policy('valid and subject.CN == "api-client"').replace(
        "rules:", "mode: required\nexclusion_paths: /public\nrules:"
    )
    compiled = policy_from_text(text, "x.yaml")
    facts = read_certificate(CERT.der)
    now = NOT_BEFORE + WINDOW
    assert compiled.evaluate(facts, path="/orders", now=now).reason == "allowed_by_rule"
    assert compiled.evaluate(facts, path="/public/x", now=now).reason == "excluded_path"
    assert compiled.evaluate(None, path="/public/x", now=now).reason == "excluded_path"


def test_a_naive_time_is_utc_for_a_remembered_decision_too() -> None:
    compiled = policy_from_text(policy("valid"), "n.yaml")
    facts = read_certificate(CERT.der)
    inside = NOT_AFTER - SECOND
    assert compiled.evaluate(facts, now=inside).allowed
    assert not compiled.evaluate(facts, now=(NOT_AFTER + SECOND).replace(tzinfo=None)).allowed
    assert compiled.evaluate(facts, now=inside.replace(tzinfo=None)).allowed


def test_a_bad_time_for_a_remembered_decision_is_a_deny_not_an_exception() -> None:
    compiled = policy_from_text(policy("valid"), "t.yaml")
    facts = read_certificate(CERT.der)
    assert compiled.evaluate(facts, now=NOT_BEFORE + WINDOW).allowed
    decision = compiled.evaluate(facts, now="yesterday")  # type: ignore[arg-type]
    assert (decision.allowed, decision.reason) == (False, "evaluation_error")


def test_a_policy_that_reads_the_proxys_verdict_is_not_remembered() -> None:
    text = policy("valid and proxy.verified").replace(
        "rules:", "certificate:\n  source: nginx\nrules:"
    )
    compiled = policy_from_text(text, "p.yaml")
    facts = read_certificate(CERT.der)
    now = NOT_BEFORE + WINDOW
    # evaluate() has no proxy: proxy.verified is undefined, so the rule does not hold
    assert not compiled.evaluate(facts, now=now).allowed
    assert facts.decisions == {}
