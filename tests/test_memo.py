"""The decision memo never changes a decision.

A policy that reads only the certificate keeps its outcome in its memo, by the
certificate's facts, with the span of time it holds for. These tests decide the same facts object
over and over at times on every side of each validity boundary, and compare with a
decision on facts never seen before (no memo to read).
"""

from __future__ import annotations

import base64
import gc
import weakref
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from policyengine import policy_from_text
from policyengine.request.certificate import read_certificate
from policyengine.request.sources import Forwarded
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


def test_a_fraction_of_a_second_decides_as_its_whole_second() -> None:
    """X.509 times are whole seconds and every comparison with them is made to the second:
    a time 5 ms (or 0.999999 s) past a boundary decides as the boundary's second does, with
    the memo and without, in either order."""
    compiled = policy_from_text(policy(*CONDITIONS), "memo.yaml")
    kept = read_certificate(CERT.der)
    fractions = (timedelta(milliseconds=5), timedelta(microseconds=999_999))
    times = sorted(
        {b + d + f for b in BOUNDARIES for d in (-SECOND, timedelta(0)) for f in fractions}
    )
    for now in [*times, *reversed(times)]:
        whole = now.replace(microsecond=0)
        expected = compiled.evaluate(read_certificate(CERT.der), now=whole)
        assert compiled.evaluate(kept, now=now) == expected, now
        assert compiled.evaluate(read_certificate(CERT.der), now=now) == expected, now
    expired = policy_from_text(policy("expired"), "expired.yaml")
    assert not expired.evaluate(CERT.der, now=NOT_AFTER + timedelta(milliseconds=5)).allowed
    assert expired.evaluate(CERT.der, now=NOT_AFTER + SECOND).allowed


def test_the_memo_is_kept_per_policy() -> None:
    allow = policy_from_text(policy('valid and subject.CN == "api-client"'), "a.yaml")
    deny = policy_from_text(policy('valid and subject.CN == "someone-else"'), "b.yaml")
    facts = read_certificate(CERT.der)
    now = NOT_BEFORE + WINDOW
    assert facts not in allow._memo and facts not in deny._memo
    assert allow.evaluate(facts, now=now).allowed
    assert not deny.evaluate(facts, now=now).allowed
    assert facts in allow._memo and facts in deny._memo  # each policy keeps its own
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
    assert facts not in compiled._memo and len(compiled._memo) == 0


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
    assert facts not in compiled._memo and len(compiled._memo) == 0


# -- the returning client's lane through evaluate_request --------------------------------
#
# evaluate_request answers a returning client (a trusted peer seen before, the certificate
# header once, its value decoded before, the decision kept) from the header memo and the
# decision memo alone. That every source's requests decide there as on the plain path is
# tests/test_caches_differential.py; these tests pin what the lane itself does.

OTHER = make_certificate({"CN": "someone-else", "O": "Contoso Ltd"})
CERT_B64 = base64.b64encode(CERT.der).decode()
OTHER_B64 = base64.b64encode(OTHER.der).decode()


def test_the_lane_is_taken_and_refuses_what_the_full_path_refuses() -> None:
    text = policy('valid and subject.CN == "api-client"').replace(
        "rules:", "certificate:\n  source: azure\n  trusted_proxies: [10.0.0.1]\nrules:"
    )
    compiled = policy_from_text(text, "lane.yaml")
    now = NOT_BEFORE + WINDOW
    headers = [("Host", "a"), ("X-ARR-ClientCert", CERT_B64)]
    assert compiled.evaluate_request(headers=headers, remote_addr="10.0.0.1", now=now).allowed
    memo = compiled._header_memo
    # seen once: the value is noted, not kept; recall hands back what it read
    note = "peer 10.0.0.1 is a trusted proxy (10.0.0.1/32)"
    assert memo.recall(compiled.source, headers, "10.0.0.1") == (note, CERT_B64)
    assert compiled.evaluate_request(headers=headers, remote_addr="10.0.0.1", now=now).allowed
    kept = memo.recall(compiled.source, headers, "10.0.0.1")
    assert isinstance(kept, Forwarded) and kept.leaf == CERT.der
    assert memo.recall(compiled.source, headers, "10.0.0.2") is None  # a peer not seen
    twice = [*headers, ("x-arr-clientcert", CERT_B64)]
    variant = [*headers, ("X_ARR_ClientCert", OTHER_B64)]
    for refused in (twice, variant):
        assert memo.recall(compiled.source, refused, "10.0.0.1") is None
        decision = compiled.evaluate_request(headers=refused, remote_addr="10.0.0.1", now=now)
        assert (decision.allowed, decision.reason) == (False, "duplicate_header")
    for odd in ([("Host",)], "X-ARR-ClientCert", None, iter(headers)):
        assert memo.recall(compiled.source, odd, "10.0.0.1") is None


def test_the_lane_takes_headers_as_an_asgi_server_hands_them_over() -> None:
    """Names and values as bytes (an ASGI scope's headers), read as latin-1 as the full
    path reads them: a returning client takes the lane, and a duplicate in bytes is still
    refused."""
    text = policy('valid and subject.CN == "api-client"').replace(
        "rules:", "certificate:\n  source: azure\n  trusted_proxies: [10.0.0.1]\nrules:"
    )
    compiled = policy_from_text(text, "lane.yaml")
    now = NOT_BEFORE + WINDOW
    headers = [(b"host", b"a"), (b"x-arr-clientcert", CERT_B64.encode())]
    for _ in range(2):
        assert compiled.evaluate_request(headers=headers, remote_addr="10.0.0.1", now=now).allowed
    kept = compiled._header_memo.recall(compiled.source, headers, "10.0.0.1")
    assert isinstance(kept, Forwarded) and kept.leaf == CERT.der
    twice = [*headers, (b"X-ARR-ClientCert", CERT_B64.encode())]
    assert compiled._header_memo.recall(compiled.source, twice, "10.0.0.1") is None
    decision = compiled.evaluate_request(headers=twice, remote_addr="10.0.0.1", now=now)
    assert (decision.allowed, decision.reason) == (False, "duplicate_header")


def test_facts_the_cache_lets_go_are_freed_at_once() -> None:
    """A kept decision refers to its facts, and the policy's memo keeps the decision by
    the facts; nothing refers back, so once the caches let them go the facts are freed at
    once, without the garbage collector."""
    compiled = policy_from_text(policy("valid"), "e.yaml", facts_cache_size=2)
    ders = [make_certificate({"CN": f"client-{n}"}).der for n in range(3)]
    now = datetime.now(UTC)
    gc.disable()
    try:
        compiled.evaluate(ders[0], now=now)  # noted; the second sighting is kept
        first = compiled.evaluate(ders[0], now=now)
        assert first.allowed and first.certificate is not None
        assert first.certificate in compiled._memo  # the decision is kept, by its facts
        kept = weakref.ref(first.certificate)
        del first
        for der in ders[1:]:  # the third certificate pushes the first out of the cache
            for _ in range(2):
                assert compiled.evaluate(der, now=now).allowed
        assert kept() is None
    finally:
        gc.enable()


def test_facts_read_for_one_decision_keep_no_memo() -> None:
    """Facts nobody keeps (no cache, a certificate object given, or bytes seen for the
    first time) get no memo: it would never be asked, and it would keep them alive."""
    ders = [make_certificate({"CN": f"client-{n}"}).der for n in range(2)]
    certificate = x509.load_der_x509_certificate(ders[1])
    now = datetime.now(UTC)
    uncached = policy_from_text(policy("valid"), "e.yaml", facts_cache_size=0)
    cached = policy_from_text(policy("valid"), "e.yaml")
    gc.disable()
    try:
        for compiled, cert in ((uncached, ders[0]), (cached, certificate), (cached, ders[0])):
            decision = compiled.evaluate(cert, now=now)
            assert decision.allowed and decision.certificate is not None
            assert decision.certificate not in compiled._memo
            freed = weakref.ref(decision.certificate)
            del decision
            assert freed() is None
        kept = cached.evaluate(ders[0], now=now)  # seen before: cached, and the memo kept
        assert kept.certificate is not None and kept.certificate in cached._memo
    finally:
        gc.enable()


def test_an_inventory_audit_leaves_nothing_for_the_garbage_collector(tmp_path: Path) -> None:
    from policyengine.tooling.inventory import audit

    for n in range(40):
        (tmp_path / f"c{n}.der").write_bytes(make_certificate({"CN": f"client-{n}"}).der)
    compiled = policy_from_text(policy('subject.CN == "client-3"'), "e.yaml")
    files = sorted(str(p) for p in tmp_path.iterdir())
    now = datetime.now(UTC)
    gc.collect()
    gc.disable()
    try:
        results = list(audit(compiled, files, at=now, window=timedelta(days=30)))
        assert [r.decision for r in results].count("allow") == 1
        assert gc.collect() == 0  # every facts object was freed as its result was made
    finally:
        gc.enable()


def test_a_flood_of_new_certificates_does_not_push_out_a_returning_client() -> None:
    """Clients that each call once (a scanner, an attacker minting certificates) pass
    through caches smaller than their number, and the client that keeps returning is
    still answered from them."""
    text = policy("valid").replace(
        "rules:", "certificate:\n  source: azure\n  trusted_proxies: [10.0.0.1]\nrules:"
    )
    compiled = policy_from_text(text, "flood.yaml", facts_cache_size=4)
    now = NOT_BEFORE + WINDOW
    returning = [("X-ARR-ClientCert", CERT_B64)]
    for _ in range(2):
        compiled.evaluate_request(headers=returning, remote_addr="10.0.0.1", now=now)
    first = compiled.evaluate_request(headers=returning, remote_addr="10.0.0.1", now=now)
    for _ in range(2):
        for n in range(12):  # three times the caches' size between two of its requests
            der = make_certificate(
                {"CN": f"one-off-{n}-{_}"}, not_before=NOT_BEFORE, not_after=NOT_AFTER
            ).der
            one_off = [("X-ARR-ClientCert", base64.b64encode(der).decode())]
            decision = compiled.evaluate_request(headers=one_off, remote_addr="10.0.0.1", now=now)
            assert decision.allowed
        kept = compiled._header_memo.recall(compiled.source, returning, "10.0.0.1")
        assert isinstance(kept, Forwarded)  # its header value is still decoded
        again = compiled.evaluate_request(headers=returning, remote_addr="10.0.0.1", now=now)
        assert again is first  # the kept decision, from the kept facts


def test_second_sighting_admits_on_the_second_sighting_and_stays_bounded() -> None:
    from policyengine.caches import BoundedCache

    door: BoundedCache[str, str] = BoundedCache(3, second_sighting=True)

    def admit(key: str) -> bool:
        return door.keep(key, key) is not None

    assert [admit(k) for k in ("a", "b", "a", "a")] == [False, False, True, True]
    assert admit("c") is False  # three noted: full
    assert admit("d") is False  # emptied, then d noted
    assert admit("a") is False  # a was forgotten with the rest
    assert admit("d") is True
    assert door._seen is not None and len(door._seen) <= 3


def test_a_returning_clients_oversized_header_is_refused_as_on_the_full_path() -> None:
    """The lane that goes on from what recall read checks the size as the full path does."""
    text = policy("valid").replace(
        "rules:",
        "certificate:\n  source: azure\n  trusted_proxies: [10.0.0.1]\n"
        "  max_header_bytes: 500\nrules:",
    )
    compiled = policy_from_text(text, "size.yaml")
    now = NOT_BEFORE + WINDOW
    small = [("X-ARR-ClientCert", CERT_B64[:100])]
    big = [("X-ARR-ClientCert", CERT_B64)]
    assert len(CERT_B64) > 500
    compiled.evaluate_request(headers=small, remote_addr="10.0.0.1", now=now)  # peer known
    memo = compiled._header_memo
    assert memo.recall(compiled.source, big, "10.0.0.1") == (
        "peer 10.0.0.1 is a trusted proxy (10.0.0.1/32)",
        CERT_B64,
    )
    lane = compiled.evaluate_request(headers=big, remote_addr="10.0.0.1", now=now)
    full = policy_from_text(text, "size.yaml").evaluate_request(
        headers=big, remote_addr="10.0.0.1", now=now
    )
    assert lane == full
    assert (lane.allowed, lane.reason) == (False, "header_too_large")
    assert lane.message == full.message and "X-ARR-ClientCert" in lane.message
