"""The CHECK stage: names resolved against the vocabulary and the sets, types checked,
constants normalised. Messages are pinned exactly.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable

import pytest

from policyengine import Policy, PolicyCheckError, PolicyError, policy_from_text
from policyengine.language import ast
from policyengine.language.checker import CheckResult, check
from policyengine.language.parser import parse
from policyengine.load.document import parse_document
from policyengine.load.loader import named_sets

SHA1 = "30757A2E831977D8BD9C8496E4C99AB26CB9622B"
SHA256 = "e2d65529f91ba9fc8a79f24d2a7fc2138043fefe478b7036994564dd54872298"


def policy(when: str, sets: str = "") -> str:
    """A one-rule policy; ``when`` is written on line 5 (line 5 + the lines of ``sets``)."""
    return f"policy: p\n{sets}rules:\n  - id: r1\n    effect: allow\n    when: {when}\n"


def check_error(text: str) -> PolicyCheckError:
    with pytest.raises(PolicyError) as info:
        policy_from_text(text, "test.yaml")
    assert type(info.value) is PolicyCheckError, str(info.value)
    return info.value


def errors_of(error: PolicyError) -> list[str]:
    return [d.render() for d in error.diagnostics if d.severity == "error"]


def only_error(text: str) -> str:
    """The one error a policy has, rendered."""
    found = errors_of(check_error(text))
    assert len(found) == 1, found
    return found[0]


def checked(text: str) -> CheckResult:
    """Run the checker directly, to see the resolved and normalised tree."""
    document = parse_document(textwrap.dedent(text).lstrip("\n"), "test.yaml")
    return check([parse(r.when, r.locate) for r in document.rules], named_sets(document))


# -- unknown names ----------------------------------------------------------------------


def test_misspelled_attribute() -> None:
    assert only_error(policy('subjet.CN == "nildevecc"')) == (
        "test.yaml:5:11: error: unknown name `subjet.CN`\n"
        '    5 |     when: subjet.CN == "nildevecc"\n'
        "      |           ^^^^^^^^^\n"
        "hint: did you mean `subject.CN`?"
    )


def test_attribute_in_the_wrong_case() -> None:
    assert only_error(policy('subject.cn == "nildevecc"')) == (
        "test.yaml:5:11: error: unknown name `subject.cn`\n"
        '    5 |     when: subject.cn == "nildevecc"\n'
        "      |           ^^^^^^^^^^\n"
        "hint: did you mean `subject.CN`?"
    )


def test_unknown_name_with_nothing_close() -> None:
    assert only_error(policy("frobnicate")) == (
        "test.yaml:5:11: error: unknown name `frobnicate`\n"
        "    5 |     when: frobnicate\n"
        "      |           ^^^^^^^^^^\n"
        "hint: it is neither an attribute (see docs/language.md) nor a set under `sets:`"
    )


def test_an_unquoted_word_compared_with_an_attribute_is_told_to_quote_it() -> None:
    assert only_error(policy("subject.CN == nildevecc")) == (
        "test.yaml:5:25: error: unknown name `nildevecc`\n"
        "    5 |     when: subject.CN == nildevecc\n"
        "      |                         ^^^^^^^^^\n"
        'hint: text is written in quotes: `subject.CN == "nildevecc"`'
    )


def test_a_type_is_named_with_its_article() -> None:
    assert only_error(policy("key.size")).splitlines()[0] == (
        "test.yaml:5:11: error: `key.size` is an int, not a condition"
    )
    assert only_error(policy('key.size startswith "2"')).splitlines()[0] == (
        "test.yaml:5:31: error: `startswith` applies to strings; `key.size` is an int"
    )


def test_keyword_in_the_wrong_case_used_as_a_value() -> None:
    assert only_error(policy("valid == True")) == (
        "test.yaml:5:20: error: unknown name `True`\n"
        "    5 |     when: valid == True\n"
        "      |                    ^^^^\n"
        "hint: keywords are lower case: write `true`"
    )


def test_unknown_name_inside_a_block_points_into_the_file() -> None:
    text = "policy: p\nrules:\n  - id: r1\n    effect: allow\n    when: |\n"
    text += '      valid\n      and isuer.O == "Microsoft Corp"\n'
    error = check_error(text)
    assert (error.span.line, error.span.column, error.span.length) == (7, 11, 7)
    assert error.diagnostics[0].hint == "did you mean `issuer.O`?"


def test_unknown_set() -> None:
    sets = f"sets:\n  partners: [{SHA1}]\n"
    text = policy("fingerprint in partnrs or fingerprint in partners", sets)
    assert only_error(text) == (
        "test.yaml:7:26: error: unknown name `partnrs`\n"
        "    7 |     when: fingerprint in partnrs or fingerprint in partners\n"
        "      |                          ^^^^^^^\n"
        "hint: did you mean `partners`?"
    )


# -- type errors ------------------------------------------------------------------------


def test_timestamp_compared_with_a_string() -> None:
    assert only_error(policy('not_after == "x"')) == (
        'test.yaml:5:24: error: `not_after` is a timestamp but `"x"` is a string\n'
        '    5 |     when: not_after == "x"\n'
        "      |                        ^^^\n"
        "hint: compare it with a timestamp such as 2026-01-01T00:00:00Z"
    )


def test_string_ordered_against_a_number() -> None:
    assert only_error(policy("subject.CN > 3")) == (
        "test.yaml:5:24: error: `>` does not apply to `subject.CN`, a string\n"
        "    5 |     when: subject.CN > 3\n"
        "      |                        ^\n"
        "hint: order comparisons work on numbers, timestamps and durations; use `==` or `in`"
    )


def test_boolean_compared_with_a_string() -> None:
    assert only_error(policy('valid == "yes"')) == (
        'test.yaml:5:20: error: `valid` is a bool but `"yes"` is a string\n'
        '    5 |     when: valid == "yes"\n'
        "      |                    ^^^^^\n"
        "hint: compare it with a bool such as true"
    )


def test_string_compared_with_an_int_uses_the_right_article() -> None:
    assert only_error(policy("subject.CN == 3")) == (
        "test.yaml:5:25: error: `subject.CN` is a string but `3` is an int\n"
        "    5 |     when: subject.CN == 3\n"
        "      |                         ^\n"
        'hint: compare it with a string such as "text"'
    )


def test_timestamp_compared_with_a_duration() -> None:
    assert errors_of(check_error(policy("not_after < 30d"))) == [
        "test.yaml:5:23: error: `not_after` is a timestamp but `30d` is a duration\n"
        "    5 |     when: not_after < 30d\n"
        "      |                       ^^^\n"
        "hint: compare it with a timestamp such as 2026-01-01T00:00:00Z"
    ]


def test_impossible_date() -> None:
    assert only_error(policy("not_after < 2026-13-01")) == (
        "test.yaml:5:23: error: `2026-13-01` is not a valid timestamp\n"
        "    5 |     when: not_after < 2026-13-01\n"
        "      |                       ^^^^^^^^^^"
    )


def test_duration_too_long() -> None:
    assert only_error(policy("expires within 99999999999d")) == (
        "test.yaml:5:26: error: `99999999999d` is too long a duration\n"
        "    5 |     when: expires within 99999999999d\n"
        "      |                          ^^^^^^^^^^^^"
    )


def test_two_attributes_of_different_types() -> None:
    assert only_error(policy("not_after == subject.CN")) == (
        "test.yaml:5:24: error: cannot compare `not_after` (timestamp) with `subject.CN` (string)\n"
        "    5 |     when: not_after == subject.CN\n"
        "      |                        ^^^^^^^^^^"
    )


def test_string_operator_on_a_serial() -> None:
    assert only_error(policy('serial startswith "1A"')) == (
        "test.yaml:5:29: error: `startswith` applies to strings; `serial` is a serial\n"
        '    5 |     when: serial startswith "1A"\n'
        "      |                             ^^^^\n"
        "hint: use `==` or `in`"
    )


def test_membership_on_a_boolean() -> None:
    assert only_error(policy("valid in [true]")) == (
        "test.yaml:5:11: error: `in` does not apply to `valid`, a bool\n"
        "    5 |     when: valid in [true]\n"
        "      |           ^^^^^\n"
        "hint: membership works on strings, numbers, serials and fingerprints"
    )


def test_list_with_a_wrong_item() -> None:
    assert only_error(policy('subject.CN in ["a", 1]')) == (
        "test.yaml:5:31: error: `subject.CN` is a string but `1` is an int\n"
        '    5 |     when: subject.CN in ["a", 1]\n'
        "      |                               ^\n"
        'hint: compare it with a string such as "text"'
    )


def test_list_with_equals() -> None:
    assert only_error(policy('subject.CN == ["a"]')) == (
        "test.yaml:5:25: error: a list can only be used with `in` or `not in`, not `==`\n"
        '    5 |     when: subject.CN == ["a"]\n'
        "      |                         ^^^^^\n"
        'hint: write `subject.CN in ["a"]`'
    )


def test_in_with_a_single_valued_attribute_on_the_right() -> None:
    text = "policy: p\nrules:\n  - id: r1\n    effect: allow\n    when: |\n"
    text += '      "api" in subject\n'
    assert only_error(text) == (
        "test.yaml:6:16: error: `in` needs a list, a set or a multi-valued attribute on its "
        "right; `subject` holds one string\n"
        '    6 |       "api" in subject\n'
        "      |                ^^^^^^^\n"
        'hint: for a substring write `subject contains "api"`'
    )


def test_a_constant_on_both_sides() -> None:
    text = "policy: p\nrules:\n  - id: r1\n    effect: allow\n    when: |\n"
    text += '      "a" == "b"\n'
    assert only_error(text) == (
        'test.yaml:6:7: error: `"a"` is a constant; the left side of `==` must be an attribute\n'
        '    6 |       "a" == "b"\n'
        "      |       ^^^\n"
        'hint: e.g. `subject.CN == "api-client"`'
    )


def test_constant_on_the_left_is_flipped() -> None:
    result = checked(
        """
        policy: p
        rules:
          - id: r1
            effect: allow
            when: 2026-01-01 < not_after and "x" == subject.CN
        """
    )
    assert result.diagnostics == ()
    both = result.expressions[0]
    assert isinstance(both, ast.And)
    ordered, equal = both.operands
    assert isinstance(ordered, ast.Compare)
    assert ordered.op == ">"
    assert isinstance(ordered.left, ast.AttributeRef)
    assert ordered.left.name == "not_after"
    assert isinstance(equal, ast.Compare)
    assert isinstance(equal.left, ast.AttributeRef)
    assert equal.left.name == "subject.CN"


# -- things that are not conditions -----------------------------------------------------


def test_set_used_as_a_condition() -> None:
    sets = "sets:\n  partners: [a]\n"
    assert only_error(policy("partners", sets)) == (
        "test.yaml:7:11: error: `partners` is a set, not a condition\n"
        "    7 |     when: partners\n"
        "      |           ^^^^^^^^\n"
        "hint: test membership, e.g. `fingerprint in partners`"
    )


def test_string_attribute_used_as_a_condition() -> None:
    assert only_error(policy("valid and subject.CN")) == (
        "test.yaml:5:21: error: `subject.CN` is a string, not a condition\n"
        "    5 |     when: valid and subject.CN\n"
        "      |                     ^^^^^^^^^^\n"
        'hint: compare it, e.g. `subject.CN == "api-client"`'
    )


def test_timestamp_attribute_used_as_a_condition() -> None:
    error = check_error(policy("not not_after"))
    assert error.diagnostics[0].message == "`not_after` is a timestamp, not a condition"
    assert error.diagnostics[0].hint == "compare it, e.g. `not_after >= 2027-06-30`"


def test_value_used_as_a_condition() -> None:
    assert only_error(policy("'\"x\"'")) == (
        'test.yaml:5:12: error: `"x"` is a value, not a condition\n'
        "    5 |     when: '\"x\"'\n"
        "      |            ^^^\n"
        'hint: compare it with an attribute, e.g. `subject.CN == "api-client"`'
    )


def test_boolean_literal_is_a_condition() -> None:
    result = checked(policy("valid and true"))
    assert result.diagnostics == ()


def test_set_compared_with_equals() -> None:
    sets = "sets:\n  names: [a]\n"
    assert only_error(policy("subject.CN == names", sets)) == (
        "test.yaml:7:25: error: a set can only be used with `in` or `not in`, not `==`\n"
        "    7 |     when: subject.CN == names\n"
        "      |                         ^^^^^\n"
        "hint: e.g. `fingerprint in names`"
    )


# -- fingerprints -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    ['"xyz"', f'"{SHA1[:-2]}"', f'"{SHA1}00"', f'"{SHA1[:-1]}G"'],
)
def test_fingerprint_literal_that_is_not_a_fingerprint(written: str) -> None:
    text = policy(f"fingerprint == {written}")
    assert only_error(text) == (
        f"test.yaml:5:26: error: `{written}` is not a fingerprint\n"
        f"    5 |     when: fingerprint == {written}\n"
        f"      |                          {'^' * len(written)}\n"
        "hint: write 40 (SHA-1) or 64 (SHA-256) hex digits, with or without colons"
    )


def test_fingerprint_written_as_a_number() -> None:
    assert only_error(policy("fingerprint == 42")) == (
        "test.yaml:5:26: error: a fingerprint is written as a quoted hex string, not `42`\n"
        "    5 |     when: fingerprint == 42\n"
        "      |                          ^^"
    )


def test_sha256_literal_compared_with_sha1() -> None:
    assert only_error(policy(f'fingerprint.sha1 == "{SHA256}"')) == (
        f'test.yaml:5:31: error: `"{SHA256}"` is a SHA256 fingerprint but `fingerprint.sha1` '
        "is SHA1\n"
        f'    5 |     when: fingerprint.sha1 == "{SHA256}"\n'
        f"      |                               {'^' * 66}\n"
        "hint: compare it with `fingerprint.sha256` or `fingerprint`"
    )


def test_sha1_literal_compared_with_sha256() -> None:
    error = check_error(policy(f'fingerprint.sha256 != "{SHA1}"'))
    assert error.diagnostics[0].message == (
        f'`"{SHA1}"` is a SHA1 fingerprint but `fingerprint.sha256` is SHA256'
    )
    assert error.diagnostics[0].hint == "compare it with `fingerprint.sha1` or `fingerprint`"


def test_fingerprints_of_unknown_algorithm_compared_with_each_other() -> None:
    assert only_error(policy("fingerprint == fingerprint.sha1")) == (
        "test.yaml:5:26: error: compare fingerprints of one algorithm, e.g. `.sha256`\n"
        "    5 |     when: fingerprint == fingerprint.sha1\n"
        "      |                          ^^^^^^^^^^^^^^^^"
    )


def test_fingerprint_literals_are_normalised() -> None:
    colons = ":".join(SHA1[i : i + 2] for i in range(0, 40, 2)).lower()
    when = f'fingerprint == "{colons}" or fingerprint.sha256 == "{SHA256.upper()}"'
    result = checked(policy(when))
    assert result.diagnostics == ()
    either = result.expressions[0]
    assert isinstance(either, ast.Or)
    values = [c.right.value for c in either.operands]  # type: ignore[union-attr]
    assert values == [SHA1.lower(), SHA256]


def test_bad_fingerprint_set_entries_point_at_their_lines() -> None:
    text = textwrap.dedent(
        f"""\
        policy: p
        sets:
          partners:
            - {SHA1}
            - not-a-fingerprint   # a typo
            - "{SHA256}"
            - 12345
        rules:
          - id: r1
            effect: allow
            when: valid and fingerprint in partners
        """
    )
    error = check_error(text)
    assert errors_of(error) == [
        'test.yaml:5:7: error: in set `partners`: "not-a-fingerprint" is not a fingerprint\n'
        "    5 |     - not-a-fingerprint   # a typo\n"
        "      |       ^^^^^^^^^^^^^^^^^\n"
        "hint: write 40 (SHA-1) or 64 (SHA-256) hex digits, with or without colons",
        "test.yaml:7:7: error: in set `partners`: a fingerprint is written as a quoted hex "
        "string, not `12345`\n"
        "    7 |     - 12345\n"
        "      |       ^^^^^\n"
        "hint: `partners` is compared with `fingerprint` at test.yaml:11:36",
    ]
    assert [d.code for d in error.diagnostics] == ["set-entry", "set-entry"]


def test_sha1_entry_in_a_set_compared_with_sha256() -> None:
    sets = f"sets:\n  pins:\n    - {SHA256}\n    - {SHA1}\n"
    assert only_error(policy("fingerprint.sha256 in pins", sets)) == (
        f'test.yaml:5:7: error: in set `pins`: "{SHA1}" is a SHA1 fingerprint but '
        "`fingerprint.sha256` is SHA256\n"
        f"    5 |     - {SHA1}\n"
        f"      |       {'^' * 40}\n"
        "hint: compare it with `fingerprint.sha1` or `fingerprint`"
    )


def test_fingerprint_set_entries_are_normalised() -> None:
    result = checked(
        policy(
            "fingerprint in partners",
            f'sets:\n  partners:\n    - "{SHA1.lower()}"\n    - "{SHA256.upper()}"\n',
        )
    )
    assert result.diagnostics == ()
    compare = result.expressions[0]
    assert isinstance(compare, ast.Compare)
    assert isinstance(compare.right, ast.SetRef)
    assert compare.right.values == (SHA1.lower(), SHA256)  # and no unused-set warning above


# -- serials ----------------------------------------------------------------------------


def test_serial_set_entries_in_every_spelling() -> None:
    result = checked(
        """
        policy: p
        sets:
          retired:
            - "0x1A2B3C"     # hex with 0x
            - "4D5E6F"       # hex without
            - "1a:2b:3c"     # with colons
            - 0x1F           # a YAML integer written in hex
            - 255            # a YAML integer: decimal
            - "0X0a"
        rules:
          - id: r1
            effect: deny
            when: serial in retired
        """
    )
    assert result.diagnostics == ()
    compare = result.expressions[0]
    assert isinstance(compare, ast.Compare)
    assert isinstance(compare.right, ast.SetRef)
    assert compare.right.values == (0x1A2B3C, 0x4D5E6F, 0x1A2B3C, 0x1F, 255, 0x0A)


@pytest.mark.parametrize(
    ("when", "value"),
    [('serial == "0x1A"', 0x1A), ("serial == 26", 26), ("serial == 0x1A", 0x1A)],
)
def test_serial_literals(when: str, value: int) -> None:
    result = checked(policy(when))
    assert result.diagnostics == ()
    compare = result.expressions[0]
    assert isinstance(compare, ast.Compare)
    assert isinstance(compare.right, ast.Literal)
    assert compare.right.value == value


def test_bad_serial_set_entries() -> None:
    sets = "sets:\n  retired: ['0xZZ', '', 'fine1a']\n"
    error = check_error(policy("serial in retired", sets))
    assert errors_of(error) == [
        'test.yaml:3:13: error: in set `retired`: "0xZZ" is not a serial number\n'
        "    3 |   retired: ['0xZZ', '', 'fine1a']\n"
        "      |             ^^^^^^\n"
        'hint: write hex text such as "0x1A2B3C" or "1a:2b:3c", or a decimal integer',
        'test.yaml:3:21: error: in set `retired`: "" is not a serial number\n'
        "    3 |   retired: ['0xZZ', '', 'fine1a']\n"
        "      |                     ^^\n"
        'hint: write hex text such as "0x1A2B3C" or "1a:2b:3c", or a decimal integer',
        'test.yaml:3:25: error: in set `retired`: "fine1a" is not a serial number\n'
        "    3 |   retired: ['0xZZ', '', 'fine1a']\n"
        "      |                         ^^^^^^^^\n"
        'hint: write hex text such as "0x1A2B3C" or "1a:2b:3c", or a decimal integer',
    ]


def test_serial_compared_with_a_boolean() -> None:
    assert only_error(policy("serial == true")) == (
        "test.yaml:5:21: error: `true` is not a serial number\n"
        "    5 |     when: serial == true\n"
        "      |                     ^^^^\n"
        'hint: write hex text such as "0x1A2B3C" or "1a:2b:3c", or a decimal integer'
    )


# -- globs ------------------------------------------------------------------------------


def test_glob_with_a_trailing_backslash() -> None:
    assert only_error(policy('subject.CN matches "api-\\\\"')) == (
        "test.yaml:5:30: error: the pattern ends with a lone `\\`; write `\\\\` for a backslash\n"
        '    5 |     when: subject.CN matches "api-\\\\"\n'
        "      |                              ^^^^^^^^\n"
        'hint: see "Glob patterns" in docs/language.md'
    )


def test_glob_with_an_escaped_star_is_fine() -> None:
    assert checked(policy('subject.CN matches "a\\\\*"')).diagnostics == ()


def test_matches_needs_a_quoted_pattern() -> None:
    assert only_error(policy("subject.CN matches subject.O")) == (
        "test.yaml:5:30: error: `matches` takes a quoted glob pattern such as "
        '"*.contoso.com"\n'
        "    5 |     when: subject.CN matches subject.O\n"
        "      |                              ^^^^^^^^^"
    )


def test_invalid_glob_under_a_quantifier() -> None:
    error = check_error(policy('any subject.OU matches "a\\\\"'))
    assert error.diagnostics[0].message == (
        "the pattern ends with a lone `\\`; write `\\\\` for a backslash"
    )
    assert (error.span.line, error.span.column) == (5, 34)


# -- quantifiers ------------------------------------------------------------------------


def test_any_on_a_single_valued_attribute() -> None:
    assert only_error(policy('any subject == "x"')) == (
        "test.yaml:5:15: error: `any` needs a multi-valued attribute; `subject` is not one\n"
        '    5 |     when: any subject == "x"\n'
        "      |               ^^^^^^^\n"
        "hint: multi-valued attributes are the subject.* and issuer.* names, san.*, eku, "
        "key_usage and certificate_policies"
    )


def test_all_on_a_request_attribute() -> None:
    error = check_error(policy('all request.path startswith "/api"'))
    assert error.diagnostics[0].message == (
        "`all` needs a multi-valued attribute; `request.path` is not one"
    )
    assert (error.span.line, error.span.column, error.span.length) == (5, 15, 12)


def test_quantifiers_on_multi_valued_attributes() -> None:
    sets = "sets:\n  units: [Payments, Billing]\n"
    result = checked(policy('any subject.OU in units and all subject.OU endswith "ing"', sets))
    assert result.diagnostics == ()


def test_bad_set_entry_under_a_quantifier() -> None:
    sets = "sets:\n  units: [Payments, 2]\n"
    assert only_error(policy("any subject.OU in units", sets)) == (
        "test.yaml:3:21: error: in set `units`: `subject.OU` is a string but `2` is an int\n"
        "    3 |   units: [Payments, 2]\n"
        "      |                     ^\n"
        'hint: compare it with a string such as "text"'
    )


# -- set names and unused sets ----------------------------------------------------------


@pytest.mark.parametrize(
    ("set_name", "what"),
    [("valid", "an attribute"), ("subject", "an attribute"), ("any", "a keyword")],
)
def test_set_named_like_an_attribute_or_keyword(set_name: str, what: str) -> None:
    error = check_error(policy("valid", f"sets:\n  {set_name}: [a]\n"))
    assert errors_of(error) == [
        f"test.yaml:3:3: error: set `{set_name}` has the name of {what}\n"
        f"    3 |   {set_name}: [a]\n"
        f"      |   {'^' * len(set_name)}\n"
        f"hint: rename the set, e.g. `{set_name}_set`"
    ]
    assert error.diagnostics[0].code == "set-name"


def test_unused_set_is_a_warning_not_an_error(
    compile_policy: Callable[[str], Policy],
) -> None:
    compiled = compile_policy(
        """
        policy: p
        sets:
          partners: [a]
          retired: ["0x1"]
        rules:
          - id: r1
            effect: deny
            when: serial in retired
        """
    )
    unused = [w for w in compiled.warnings if w.code != "trusted-anywhere"]
    assert [w.render() for w in unused] == [
        "test.yaml:3:3: warning: set `partners` is never used\n"
        "    3 |   partners: [a]\n"
        "      |   ^^^^^^^^\n"
        "hint: use it in a rule (e.g. `fingerprint in partners`) or remove it"
    ]
    assert unused[0].severity == "warning"
    assert unused[0].code == "unused-set"


def test_no_warning_when_every_set_is_used(compile_policy: Callable[[str], Policy]) -> None:
    compiled = compile_policy(
        """
        policy: p
        sets:
          names: [a]
        rules:
          - id: r1
            effect: allow
            when: subject.CN in names
        """
    )
    assert "unused-set" not in {w.code for w in compiled.warnings}


# -- several errors at once -------------------------------------------------------------


def test_several_errors_are_reported_together_in_file_order() -> None:
    text = textwrap.dedent(
        """\
        policy: p
        rules:
          - id: r1
            effect: allow
            when: subjet.CN == "x" and not_after == "x"
          - id: r2
            effect: deny
            when: |
              valid == 1
              or fingerprint == "xyz"
        """
    )
    error = check_error(text)
    assert [(d.span.line, d.span.column) for d in error.diagnostics] == [
        (5, 11),
        (5, 45),
        (9, 16),
        (10, 25),
    ]
    assert [d.message for d in error.diagnostics] == [
        "unknown name `subjet.CN`",
        '`not_after` is a timestamp but `"x"` is a string',
        "`valid` is a bool but `1` is an int",
        '`"xyz"` is not a fingerprint',
    ]
    assert str(error) == "\n\n".join(d.render() for d in error.diagnostics)


def test_the_resolved_tree() -> None:
    result = checked(policy("valid and subject.CN in names", "sets:\n  names: [a, b]\n"))
    both = result.expressions[0]
    assert isinstance(both, ast.And)
    flag, member = both.operands
    assert isinstance(flag, ast.AttributeRef)
    assert flag.attribute.name == "valid"
    assert isinstance(member, ast.Compare)
    assert isinstance(member.left, ast.AttributeRef)
    assert isinstance(member.right, ast.SetRef)
    assert member.right.values == ("a", "b")


def test_quantifier_compared_with_an_attribute() -> None:
    # the compiler compares each value with a constant; an attribute there used to crash it
    assert only_error(policy("any issuer.C == issuer")) == (
        "test.yaml:5:27: error: `any` compares each value with a constant, a list or a set, "
        "not with `issuer`\n"
        "    5 |     when: any issuer.C == issuer\n"
        "      |                           ^^^^^^\n"
        'hint: e.g. `any issuer.C == "US"`'
    )
    error = check_error(policy("all subject.OU in issuer.OU"))
    assert error.diagnostics[0].message == (
        "`all` compares each value with a constant, a list or a set, not with `issuer.OU`"
    )
