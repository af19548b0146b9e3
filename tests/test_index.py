"""The rule index never changes a decision: indexed, linear and explained evaluations agree.

Policies are generated with many rules keyed on ``==`` and ``in`` (CN, O, fingerprints),
``startswith``, ``endswith``, ``matches`` and disjunctions of these,
mixed with parts that read other facts (validity, extensions, the key, a multi-valued OU),
and evaluated against ordinary certificates and the hostile corpus, whose broken names and
extensions make rules fail. Every decision field is compared: allowed, reason, message,
rule, errors, closest rule and failed condition.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime

import hostile
from conftest import NOW, VALID_AT_NOW
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from policyengine import Policy
from policyengine.evaluation.context import Context
from policyengine.evaluation.index import INDEX_THRESHOLD
from policyengine.load.document import parse_document
from policyengine.load.loader import compile_document
from policyengine.request.certificate import CertificateFacts, read_certificate
from policyengine.testing import make_certificate

# every certificate here is decided at NOW: valid around it unless a test says otherwise
make_certificate = functools.partial(make_certificate, **VALID_AT_NOW)
CNS = ("c0", "c1", "c2", "c3", "hostile")
ORGS = ("Contoso Ltd", "Fabrikam", "Zoë Ltd")


@functools.cache
def pool() -> tuple[CertificateFacts, ...]:
    """Certificates the generated policies are evaluated against."""
    made = [
        make_certificate({"CN": cn, "O": org})
        for cn in CNS[:4]
        for org in ORGS[:2]
        if (cn, org) != ("c3", "Fabrikam")
    ]
    made.append(make_certificate([("CN", "c1"), ("CN", "c2"), ("O", "Contoso Ltd")]))
    made.append(make_certificate([("O", "Contoso Ltd"), ("OU", "a"), ("OU", "b")]))
    made.append(
        make_certificate(
            {"CN": "c0", "O": "Contoso Ltd"},
            not_before=datetime(2020, 1, 1, tzinfo=UTC),
            not_after=datetime(2021, 1, 1, tzinfo=UTC),
        )
    )
    ders = [c.der for c in made]
    ders += [m.der for m in hostile.corpus() if m.readable]
    return tuple(read_certificate(der) for der in ders)


@functools.cache
def pins() -> tuple[str, ...]:
    facts = pool()
    return tuple(f.sha1 for f in facts[::3]) + tuple(f.sha256 for f in facts[1::4])


def quoted(text: str) -> str:
    return '"' + text + '"'


AFFIXES = (
    'subject.CN startswith "c"',
    'subject.CN startswith "c1"',
    'subject.CN startswith "hos"',
    'subject.CN startswith "x"',
    'subject.CN endswith "1"',
    'subject.CN endswith "ile"',
    'subject.CN matches "c*"',
    'subject.CN matches "*2"',
    'subject.CN matches "c?"',
    'subject.CN matches "h*le"',
    'subject.CN matches "**"',
    'subject.CN matches "c3"',
    'issuer.O startswith "Zo"',
    'issuer.O endswith "Ltd"',
    'issuer.O matches "*Ltd"',
)
"""Prefix, suffix and glob keys (and ``**``, which is no key)."""
SIMPLE_KEYS = st.one_of(
    st.sampled_from(CNS).map(lambda cn: f"subject.CN == {quoted(cn)}"),
    st.lists(st.sampled_from(CNS), min_size=1, max_size=3).map(
        lambda cns: "subject.CN in [" + ", ".join(quoted(c) for c in cns) + "]"
    ),
    st.sampled_from(ORGS).map(lambda org: f"issuer.O == {quoted(org)}"),
    st.integers(0, 100).map(lambda i: f"fingerprint == {quoted(pins()[i % len(pins())])}"),
    st.just("fingerprint in pinned"),
    st.just("fingerprint.sha256 in pinned256"),
    st.sampled_from(AFFIXES),
)
KEY_PARTS = st.one_of(
    SIMPLE_KEYS,
    st.lists(SIMPLE_KEYS, min_size=2, max_size=3).map(lambda keys: "(" + " or ".join(keys) + ")"),
)
OTHER_PARTS = st.sampled_from(
    (
        "valid",
        "not expired",
        '"clientAuth" in eku',
        'subject.OU == "a"',
        'any subject.OU == "b"',
        "key.size >= 2048",
        'issuer.CN startswith "c"',
        'request.path startswith "/admin"',
        'signature.hash == "sha256"',
    )
)


@st.composite
def rule_texts(draw: st.DrawFn) -> str:
    before = draw(st.lists(OTHER_PARTS, max_size=2))
    after = draw(st.lists(OTHER_PARTS, max_size=2))
    key = draw(KEY_PARTS)
    parts = [*before, key, *after]
    if draw(st.integers(0, 9)) == 0:
        return f"({parts[0]}) or ({key})"  # no key in the first branch: scanned every time
    if draw(st.integers(0, 9)) == 0:  # a key in each branch, one a conjunction
        return f"({' and '.join(parts)}) or ({draw(KEY_PARTS)})"
    return " and ".join(parts)


@st.composite
def policies(draw: st.DrawFn) -> str:
    count = draw(st.integers(INDEX_THRESHOLD, 3 * INDEX_THRESHOLD))
    lines = ["policy: generated", "mode: optional", "sets:", "  pinned:"]
    lines += [f"    - {pin}" for pin in pins()]
    lines.append("  pinned256:")
    lines += [f"    - {pin}" for pin in pins() if len(pin) == 64]
    lines.append("rules:")
    for number in range(count):
        effect = "deny" if draw(st.integers(0, 5)) == 0 else "allow"
        when = draw(rule_texts()).replace("'", "''")
        lines += [f"  - id: r{number}", f"    effect: {effect}", f"    when: '{when}'"]
    return "\n".join(lines) + "\n"


def compiled(text: str, index: bool) -> Policy:
    document = parse_document(text, "generated.yaml")
    return compile_document(document, index=index)


def agree(text: str, certificates: tuple[object, ...], paths: tuple[str, ...]) -> list[str]:
    """Decide every certificate on every path three ways; what was seen, for statistics."""
    indexed, linear = compiled(text, True), compiled(text, False)
    seen = []
    if indexed._allow_index is not None or indexed._deny_index is not None:
        seen.append("indexed")
    for cert in certificates:
        for path in paths:
            fast = indexed.evaluate(cert, path=path, now=NOW)
            slow = linear.evaluate(cert, path=path, now=NOW)
            explained = indexed.evaluate(cert, path=path, now=NOW, explain=True)
            assert fast == slow, (cert, path)
            assert fast.message == slow.message
            assert explained == fast
            seen.append(fast.reason)
            if fast.errors:
                seen.append("with errors")
    return seen


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies())
def test_indexed_decisions_equal_the_linear_scan(text: str) -> None:
    for seen in set(agree(text, (*pool(), None), ("/admin/x",))):
        event(seen)


def pinned_names(count: int) -> str:
    rules = "".join(
        f'  - id: client-{n}\n    effect: allow\n    when: valid and subject.CN == "client-{n}"\n'
        for n in range(count)
    )
    return f"policy: many\nrules:\n{rules}"


def test_thousands_of_rules_pinning_names_agree_with_the_scan() -> None:
    last = make_certificate({"CN": "client-1999"})
    middle = make_certificate({"CN": "client-1234"})
    unknown = make_certificate({"CN": "stranger"})
    expired = make_certificate(
        {"CN": "client-1999"},
        not_before=datetime(2020, 1, 1, tzinfo=UTC),
        not_after=datetime(2021, 1, 1, tzinfo=UTC),
    )
    broken = next(m for m in hostile.corpus() if m.name == "invalid UTF-8 in the subject CN")
    certificates = (last.der, middle.der, unknown.der, expired.der, broken.der, None)
    seen = agree(pinned_names(2000), certificates, ("/",))
    assert seen.count("allowed_by_rule") == 2 and seen.count("no_matching_rule") == 3
    assert "missing_certificate" in seen


def test_the_index_tests_only_the_rules_filed_under_the_value_read() -> None:
    policy = compiled(pinned_names(1000), True)
    index = policy._allow_index
    assert index is not None and index.keyed == 1000
    facts = read_certificate(make_certificate({"CN": "client-998"}).der)
    ctx = Context(facts, NOW, "/")
    assert index.candidates(ctx) == (998,)
    assert policy.evaluate(facts, now=NOW).rule == "client-998"
    stranger = read_certificate(make_certificate({"CN": "stranger"}).der)
    assert index.candidates(Context(stranger, NOW, "/")) == ()
    # of 1000 rules with the same part before their key, the first is the closest
    assert index.closest_candidates(Context(stranger, NOW, "/")) == (0,)
    denied = policy.evaluate(stranger, now=NOW)
    assert denied.closest_rule == "client-0"
    assert denied.failed_condition == 'subject.CN == "client-0"'


def test_a_broken_fact_read_by_an_indexed_rule_falls_back_to_the_scan() -> None:
    policy = compiled(pinned_names(100), True)
    index = policy._allow_index
    assert index is not None
    broken = next(m for m in hostile.corpus() if m.name == "invalid UTF-8 in the subject CN")
    ctx = Context(read_certificate(broken.der), NOW, "/")
    assert index.candidates(ctx) is None
    decision = policy.evaluate(broken.der, now=NOW)
    assert decision.reason == "no_matching_rule"
    assert len(decision.errors) == 100
    assert decision.errors[0].startswith("rule client-0: the subject name cannot be read")


def test_few_rules_are_scanned_without_an_index() -> None:
    assert compiled(pinned_names(INDEX_THRESHOLD - 1), True)._allow_index is None
    assert compiled(pinned_names(INDEX_THRESHOLD), True)._allow_index is not None


def test_rules_without_a_key_keep_their_place_among_indexed_ones() -> None:
    rules = pinned_names(20).replace(
        "  - id: client-5\n    effect: allow\n",
        "  - id: anyone-valid\n    effect: allow\n    when: valid\n"
        "  - id: client-5\n    effect: allow\n",
    )
    policy = compiled(rules, True)
    facts = read_certificate(make_certificate({"CN": "client-3"}).der)
    assert policy.evaluate(facts, now=NOW).rule == "client-3"
    facts = read_certificate(make_certificate({"CN": "client-7"}).der)
    assert policy.evaluate(facts, now=NOW).rule == "anyone-valid"


def test_the_index_notes_facts_seen_twice_and_keeps_none_seen_once() -> None:
    """The index remembers which facts it has checked (its note of readable certificate
    attributes) from the second request on, by the facts' DER; a certificate seen once,
    however many times the index is asked about it in that request, is not kept alive."""
    import weakref

    rules = "".join(
        f'  - id: r{n}\n    effect: allow\n    when: valid and subject.CN == "c-{n}"\n'
        for n in range(INDEX_THRESHOLD + 2)
    )
    policy = compile_document(
        parse_document(f"policy: p\nrules:\n{rules}", "p.yaml"), facts_cache_size=0, memo=False
    )
    index = policy._allow_index
    assert index is not None
    once = read_certificate(make_certificate({"CN": "nobody"}, **VALID_AT_NOW).der)
    assert not policy.evaluate(once, now=NOW).allowed  # candidates, then the closest rule
    freed = weakref.ref(once)
    del once
    assert freed() is None and len(index._readable) == 0
    returning = read_certificate(make_certificate({"CN": "c-1"}, **VALID_AT_NOW).der)
    for _ in range(2):
        assert policy.evaluate(returning, now=NOW).allowed
    assert index._read_before(returning.der) is returning
