"""The shortcuts that make large policies load faster, each against the plain path.

- the schema check of long sets (``load.schema._sets_checked``) against the validator over
  every entry: the same diagnostics, for entries of every kind;
- the traced closures, compiled when a condition is first explained: the same traces;
- the YAML reader's fast paths (quoted text, the alias check only for a node seen before,
  the schema looked up once per place) and the line table of ``span.Source``.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from policyengine import policy_from_text
from policyengine.errors import Diagnostic, PolicyError, PolicyFileError
from policyengine.load import schema as schema_module
from policyengine.load.schema import policy_schema, schema_errors
from policyengine.load.yaml_reader import read_yaml
from policyengine.span import Source
from policyengine.testing import make_certificate

ENTRIES = st.one_of(
    st.text(max_size=8),
    st.integers(),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["a", "b"]), st.integers(), max_size=1),
)
SETS = st.dictionaries(
    st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True),
    st.one_of(st.lists(ENTRIES, max_size=6), st.integers(), st.text(max_size=3)),
    max_size=4,
)


def _diagnostics(text: str) -> list[tuple[int, int, str, str]]:
    data, positions = read_yaml(text, "sets.yaml", policy_schema(), "the policy file")
    found = schema_errors(data, positions, policy_schema())
    return [_shown(d) for d in found]


def _shown(diagnostic: Diagnostic) -> tuple[int, int, str, str]:
    return (diagnostic.span.line, diagnostic.span.column, diagnostic.message, diagnostic.hint)


def _policy_with(sets: dict[str, Any]) -> str:
    body = {"policy": "p", "sets": sets, "rules": [{"id": "r", "effect": "allow", "when": "valid"}]}
    return yaml.safe_dump(body, sort_keys=False)


@settings(max_examples=150, deadline=None)
@given(SETS)
def test_the_set_shortcut_says_what_the_validator_says_of_every_entry(
    sets: dict[str, Any],
) -> None:
    text = _policy_with(sets)
    shortcut = _diagnostics(text)
    plain = pytest.MonkeyPatch()
    plain.setattr(schema_module, "_sets_checked", lambda data, schema: data)
    try:
        validated = _diagnostics(text)
    finally:
        plain.undo()
    assert shortcut == validated


def test_a_wrong_entry_deep_in_a_long_set_is_found_at_its_line() -> None:
    entries = [f"p{n:039x}" for n in range(5000)]
    text = _policy_with({"pins": entries})
    text = text.replace(f"- {entries[3210]}\n", "- yes\n", 1)
    with pytest.raises(PolicyError) as caught:
        policy_from_text(text, "pins.yaml")
    line = text.splitlines().index("  - yes") + 1
    assert str(caught.value).splitlines()[0] == (
        f"pins.yaml:{line}:5: error: sets.pins[3210] must be a string or an integer, not a boolean"
    )


def test_the_shortcut_stands_aside_when_the_schema_asks_more_of_a_set() -> None:
    schema = policy_schema()
    stricter = {**schema, "properties": {**schema["properties"]}}
    declared = schema["properties"]["sets"]
    stricter["properties"]["sets"] = {
        **declared,
        "additionalProperties": {**declared["additionalProperties"], "maxItems": 2},
    }
    data = {"sets": {"pins": ["a", "b", "c"]}}
    assert schema_module._sets_checked(data, stricter) is data
    assert schema_module._sets_checked(data, schema) == {"sets": {"pins": []}}
    validator = jsonschema.Draft202012Validator(stricter)
    assert "maxItems" in [e.validator for e in validator.iter_errors(data)]


TRACED = """
policy: traced
sets:
  partners: ["{pin}"]
rules:
  - id: blocked
    effect: deny
    when: subject.OU == "blocked" or not valid
  - id: partner
    effect: allow
    when: valid and (subject.CN == "api" or subject.CN startswith "api-")
      and fingerprint in partners
  - id: anyone
    effect: allow
    when: not present
"""


def test_traces_are_compiled_when_first_explained_and_read_as_before() -> None:
    cert = make_certificate({"CN": "api-7", "O": "Contoso"})
    policy = policy_from_text(TRACED.replace("{pin}", cert.sha1), "traced.yaml")
    assert all(rule.condition._traced is None for rule in policy.rules)
    plain = policy.evaluate(cert.der, path="/")
    assert all(rule.condition._traced is None for rule in policy.rules)  # not by deciding
    first = policy.evaluate(cert.der, path="/", explain=True)
    assert [rule.condition._traced is not None for rule in policy.rules] == [True, True, False]
    again = policy.evaluate(cert.der, path="/", explain=True)
    assert first.trace is not None and again.trace is not None
    assert first.trace.to_dict() == again.trace.to_dict()
    assert (first.allowed, first.rule, first.reason) == (plain.allowed, plain.rule, plain.reason)
    rendered = first.trace.to_dict()["rules"]
    assert [(r["rule"], r["outcome"]) for r in rendered][:2] == [
        ("blocked", "undefined"),  # no OU: undefined, so the deny does not hold
        ("partner", "true"),
    ]


@pytest.mark.parametrize(
    ("written", "read"),
    [('"017"', "017"), ("'12:34:56'", "12:34:56"), ("!!str 12", "12"), ('""', "")],
)
def test_quoted_and_tagged_text_is_read_as_written(written: str, read: str) -> None:
    text = f"policy: p\ndescription: {written}\nrules: []\n"
    data, _ = read_yaml(text, "p.yaml", policy_schema(), "the policy file")
    assert data["description"] == read


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("policy: p\nsets: &s {a: *s}\nrules: []\n", 11),
        ("policy: p\nsets: {a: &s [x, *s]}\nrules: []\n", 11),
    ],
)
def test_an_alias_inside_its_own_value_is_an_error_at_its_place(text: str, column: int) -> None:
    with pytest.raises(PolicyFileError) as caught:
        read_yaml(text, "alias.yaml", policy_schema(), "the policy file")
    assert str(caught.value).splitlines()[0] == (
        f"alias.yaml:2:{column}: error: an alias refers to a value that contains it"
    )


def test_an_alias_used_twice_but_not_inside_itself_is_read() -> None:
    text = "policy: p\nsets:\n  a: &s [x, y]\n  b: *s\nrules: []\n"
    data, _ = read_yaml(text, "alias.yaml", policy_schema(), "the policy file")
    assert data["sets"] == {"a": ["x", "y"], "b": ["x", "y"]}


def test_aliases_expanding_past_the_bound_are_refused() -> None:
    levels = ["  a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"  a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 6)]
    text = "policy: p\nsets:\n" + "\n".join(levels) + "\nrules: []\n"
    with pytest.raises(PolicyFileError, match="aliases expand to more than 100,000 values"):
        read_yaml(text, "laughs.yaml", policy_schema(), "the policy file")


@given(st.text(alphabet="ab\n\r", max_size=40))
def test_the_line_table_agrees_with_splitting_the_text(text: str) -> None:
    source = Source("t", text)
    lines = text.split("\n")
    assert [source.line_text(n + 1) for n in range(len(lines))] == [
        line.rstrip("\r") for line in lines
    ]
    assert source.line_text(len(lines) + 1) == ""
