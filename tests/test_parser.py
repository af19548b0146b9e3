"""The PARSE stage: the text of a ``when:`` condition -> syntax tree.

Precedence, every operator and literal, and syntax errors whose position is the place in
the YAML file (not in the condition), with the caret under the offending token.
"""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta

import pytest

from policyengine import PolicyError, PolicySyntaxError, policy_from_text
from policyengine.language import ast
from policyengine.language.parser import KEYWORDS, parse
from policyengine.load.document import parse_document
from policyengine.span import Source, Span

UTC = UTC
HERE = Span("x", 1, 1)
"""A span for hand-built nodes; spans take no part in equality."""


def p(text: str) -> ast.Expr:
    """Parse a condition on its own, as if it were the whole file `when`."""
    source = Source("when", text)
    return parse(text, lambda start, end: source.span_at(start, max(1, end - start)))


def syntax_error(text: str) -> PolicySyntaxError:
    with pytest.raises(PolicySyntaxError) as info:
        p(text)
    assert len(info.value.diagnostics) == 1
    return info.value


def policy_error(text: str) -> PolicySyntaxError:
    with pytest.raises(PolicyError) as info:
        policy_from_text(textwrap.dedent(text).lstrip("\n"), "test.yaml")
    assert type(info.value) is PolicySyntaxError, str(info.value)
    return info.value


# hand-built nodes


def name(n: str) -> ast.Name:
    return ast.Name(name=n, span=HERE, text="")


def lit(value: object, kind: str) -> ast.Literal:
    return ast.Literal(value=value, kind=kind, span=HERE, text="")


def s(value: str) -> ast.Literal:
    return lit(value, "string")


def i(value: int) -> ast.Literal:
    return lit(value, "int")


def cmp(left: ast.Operand, op: str, right: ast.Operand) -> ast.Compare:
    return ast.Compare(op=op, left=left, right=right, span=HERE, text="")


def and_(*operands: ast.Expr) -> ast.And:
    return ast.And(operands=operands, span=HERE, text="")


def or_(*operands: ast.Expr) -> ast.Or:
    return ast.Or(operands=operands, span=HERE, text="")


def not_(operand: ast.Expr) -> ast.Not:
    return ast.Not(operand=operand, span=HERE, text="")


def lst(*items: ast.Literal) -> ast.ListLiteral:
    return ast.ListLiteral(items=items, span=HERE, text="")


# -- precedence and grouping ------------------------------------------------------------


def test_not_binds_tighter_than_and_which_binds_tighter_than_or() -> None:
    assert p("a or b and not c") == or_(name("a"), and_(name("b"), not_(name("c"))))
    assert p("not a and b or c") == or_(and_(not_(name("a")), name("b")), name("c"))


def test_and_and_or_chains_are_flat() -> None:
    assert p("a and b and c") == and_(name("a"), name("b"), name("c"))
    assert p("a or b or c") == or_(name("a"), name("b"), name("c"))


def test_parentheses_override_precedence() -> None:
    assert p("(a or b) and c") == and_(or_(name("a"), name("b")), name("c"))
    assert p("not (a or b)") == not_(or_(name("a"), name("b")))
    assert p("((a))") == name("a")


def test_not_binds_tighter_than_a_comparison_operand_does_not() -> None:
    assert p('not subject.CN == "x"') == not_(cmp(name("subject.CN"), "==", s("x")))
    assert p("not not a") == not_(not_(name("a")))


def test_parenthesised_text_parses_like_the_explicit_form() -> None:
    assert p("a or b and c") == p("a or (b and c)")
    assert p("a or b and c") != p("(a or b) and c")


# -- operators --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "op",
    ["==", "!=", "<", "<=", ">", ">=", "startswith", "endswith", "contains", "matches"],
)
def test_binary_operators(op: str) -> None:
    assert p(f'x {op} "v"') == cmp(name("x"), op, s("v"))
    if not op.isalpha():
        assert p(f'x{op}"v"') == cmp(name("x"), op, s("v"))


def test_in_and_not_in() -> None:
    assert p('x in ["a", "b"]') == cmp(name("x"), "in", lst(s("a"), s("b")))
    assert p("x not in partners") == cmp(name("x"), "not in", name("partners"))
    assert p('x not   in ["a"]') == cmp(name("x"), "not in", lst(s("a")))
    assert p('"Payments" in subject.OU') == cmp(s("Payments"), "in", name("subject.OU"))


def test_not_in_is_not_a_negation() -> None:
    assert p("not x in s") == not_(cmp(name("x"), "in", name("s")))
    assert p("x not in s") != p("not x in s")


# -- literals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ('"plain"', "plain"),
        ("'single'", "single"),
        ('""', ""),
        ("''", ""),
        (r'"say \"hi\""', 'say "hi"'),
        (r"'it\'s'", "it's"),
        ('"it\'s"', "it's"),
        ("'say \"hi\"'", 'say "hi"'),
        (r'"back\\slash"', "back\\slash"),
        (r'"a\nb\tc\rd"', "a\nb\tc\rd"),
        (r'"caf\u00e9"', "café"),
        (r'"\q"', "\\q"),  # an unknown escape stays as written
        ('"café"', "café"),
        ('"# not a comment"', "# not a comment"),
    ],
)
def test_string_literals(written: str, value: str) -> None:
    assert p(f"x == {written}") == cmp(name("x"), "==", s(value))


@pytest.mark.parametrize(
    ("written", "value"),
    [("0", 0), ("2048", 2048), ("010", 10), ("0x1F", 31), ("0x1a2B3c", 0x1A2B3C)],
)
def test_integer_literals(written: str, value: int) -> None:
    assert p(f"x == {written}") == cmp(name("x"), "==", i(value))


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("15m", timedelta(minutes=15)),
        ("45s", timedelta(seconds=45)),
        ("2w", timedelta(weeks=2)),
        ("0d", timedelta(0)),
    ],
)
def test_duration_literals(written: str, value: timedelta) -> None:
    assert p(f"x < {written}") == cmp(name("x"), "<", lit(value, "duration"))


def test_a_duration_too_long_to_represent_parses_to_none_for_the_checker() -> None:
    assert p("x < 99999999999d") == cmp(name("x"), "<", lit(None, "duration"))


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("2026-01-01T00:00:00Z", datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-01-01t00:00:00z", datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-01-01T02:00:00+02:00", datetime(2026, 1, 1, tzinfo=UTC)),
        ("2025-12-31T19:00:00-05:00", datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-06-30", datetime(2026, 6, 30, tzinfo=UTC)),
        ("2026-01-01T10:30Z", datetime(2026, 1, 1, 10, 30, tzinfo=UTC)),
        ("2026-01-01T00:00:00.250Z", datetime(2026, 1, 1, 0, 0, 0, 250000, tzinfo=UTC)),
    ],
)
def test_timestamp_literals(written: str, value: datetime) -> None:
    parsed = p(f"not_after >= {written}")
    assert parsed == cmp(name("not_after"), ">=", lit(value, "timestamp"))
    assert isinstance(parsed, ast.Compare)
    assert isinstance(parsed.right, ast.Literal)
    assert parsed.right.value.tzinfo is UTC  # type: ignore[attr-defined]


def test_an_impossible_date_parses_to_none_for_the_checker() -> None:
    assert p("x < 2026-13-01") == cmp(name("x"), "<", lit(None, "timestamp"))


def test_boolean_literals() -> None:
    assert p("valid == true") == cmp(name("valid"), "==", lit(True, "bool"))
    assert p("valid != false") == cmp(name("valid"), "!=", lit(False, "bool"))
    assert p("true") == lit(True, "bool")
    assert p("trueish") == name("trueish")


def test_list_literals() -> None:
    assert p("x in []") == cmp(name("x"), "in", lst())
    assert p('x in ["a"]') == cmp(name("x"), "in", lst(s("a")))
    assert p('x in ["a", "b",]') == cmp(name("x"), "in", lst(s("a"), s("b")))
    assert p("x in [\n  1,\n  0x2,\n]") == cmp(name("x"), "in", lst(i(1), i(2)))
    mixed = p("x in [1, 30d, true]")
    assert mixed == cmp(
        name("x"), "in", lst(i(1), lit(timedelta(days=30), "duration"), lit(True, "bool"))
    )


# -- quantifiers and special forms ------------------------------------------------------


@pytest.mark.parametrize("quantifier", ["any", "all"])
def test_quantifiers(quantifier: str) -> None:
    assert p(f'{quantifier} subject.OU == "Payments"') == ast.Quantified(
        quantifier=quantifier,
        subject=name("subject.OU"),
        op="==",
        right=s("Payments"),
        span=HERE,
        text="",
    )
    assert p(f"{quantifier} subject.OU not in allowed") == ast.Quantified(
        quantifier=quantifier,
        subject=name("subject.OU"),
        op="not in",
        right=name("allowed"),
        span=HERE,
        text="",
    )


def test_quantifier_inside_boolean_logic() -> None:
    parsed = p('valid and not any subject.OU startswith "Test"')
    assert isinstance(parsed, ast.And)
    negated = parsed.operands[1]
    assert isinstance(negated, ast.Not)
    assert isinstance(negated.operand, ast.Quantified)


def test_expires_within() -> None:
    expected = ast.ExpiresWithin(duration=lit(timedelta(days=30), "duration"), span=HERE, text="")
    assert p("expires within 30d") == expected
    assert p("not expires within 12h") == not_(
        ast.ExpiresWithin(duration=lit(timedelta(hours=12), "duration"), span=HERE, text="")
    )


def test_path_excluded() -> None:
    assert p("path excluded") == ast.PathExcluded(span=HERE, text="")
    assert p("path excluded or valid") == or_(ast.PathExcluded(span=HERE, text=""), name("valid"))


# -- comments and names -----------------------------------------------------------------


def test_comments_run_to_the_end_of_the_line() -> None:
    text = "valid      # the certificate is in date\nand expired  # and also not\n# last\n"
    assert p(text) == and_(name("valid"), name("expired"))


@pytest.mark.parametrize(
    "written",
    [
        "valid",
        "not_yet_valid",
        "_private",
        "subject.CN",
        "fingerprint.sha256",
        "request.path",
        "subject.2.5.4.3",
        "issuer.1.2.840.113549.1.9.1",
    ],
)
def test_names(written: str) -> None:
    assert p(f'{written} == "x"') == cmp(name(written), "==", s("x"))


def test_capitalised_true_is_a_name_not_a_literal() -> None:
    assert p("True") == name("True")


# -- spans and source text --------------------------------------------------------------


def test_nodes_keep_their_source_text_and_span() -> None:
    parsed = p('valid and subject.CN == "x"')
    assert isinstance(parsed, ast.And)
    assert parsed.text == 'valid and subject.CN == "x"'
    compare = parsed.operands[1]
    assert isinstance(compare, ast.Compare)
    assert compare.text == 'subject.CN == "x"'
    assert (compare.span.column, compare.span.length) == (11, 17)
    assert isinstance(compare.left, ast.Name)
    assert (compare.left.span.column, compare.left.span.length) == (11, 10)
    assert isinstance(compare.right, ast.Literal)
    assert compare.right.text == '"x"'
    assert (compare.right.span.column, compare.right.span.length) == (25, 3)


def test_equality_ignores_spans() -> None:
    document = parse_document(
        textwrap.dedent(
            """\
            policy: p
            rules:
              - id: one
                effect: allow
                when: valid and subject.CN == "x"
              - id: two
                effect: allow
                when: |
                  valid
                    and subject.CN == 'x'   # same meaning, other place
            """
        ),
        "test.yaml",
    )
    one, two = (parse(rule.when, rule.locate) for rule in document.rules)
    assert one == two
    assert hash(one) == hash(two)
    assert isinstance(one, ast.And)
    assert isinstance(two, ast.And)
    assert (one.operands[1].span.line, one.operands[1].span.column) == (5, 21)
    assert (two.operands[1].span.line, two.operands[1].span.column) == (10, 13)
    assert one.operands[1].text == 'subject.CN == "x"'
    assert two.operands[1].text == "subject.CN == 'x'"


def test_the_same_text_parsed_at_another_place_is_equal() -> None:
    text = 'valid and subject.CN in ["a", "b"]'
    source = Source("far.yaml", "\n" * 40 + " " * 9 + text)
    far = parse(text, lambda start, end: source.span_at(40 + 9 + start, max(1, end - start)))
    near = p(text)
    assert far == near
    assert isinstance(far, ast.And)
    assert isinstance(near, ast.And)
    assert (far.span.line, far.span.column) == (41, 10)
    assert (near.span.line, near.span.column) == (1, 1)
    assert far.span != near.span


def test_keywords() -> None:
    assert {"and", "or", "not", "in", "any", "all", "true", "false"} <= KEYWORDS
    assert {"expires", "within", "path", "excluded", "matches", "contains"} <= KEYWORDS


# -- syntax errors on a bare condition --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "column", "message", "hint"),
    [
        (
            "valid AND expired",
            7,
            "unexpected `AND`; expected `)`, `and`, `not`, `or`, an operator such as `==` or `in`",
            "keywords are lower case: write `and`",
        ),
        (
            "valid Or expired",
            7,
            "unexpected `Or`; expected `)`, `and`, `not`, `or`, an operator such as `==` or `in`",
            "keywords are lower case: write `or`",
        ),
        (
            "x IN [1]",
            3,
            "unexpected `IN`; expected `)`, `and`, `not`, `or`, an operator such as `==` or `in`",
            "keywords are lower case: write `in`",
        ),
        (
            "NOT valid",
            1,
            "unexpected `valid` after `NOT`",
            "keywords are lower case: write `not`",
        ),
        ("adn trusted", 1, "unexpected `trusted` after `adn`", "did you mean `and`?"),
        (
            "trusted adn valid",
            9,
            "unexpected `adn`; expected `)`, `and`, `not`, `or`, an operator such as `==` or `in`",
            "did you mean `and`?",
        ),
        (
            'subject.CN equals "x"',
            12,
            "unexpected `equals`; expected `)`, `and`, `not`, `or`, "
            "an operator such as `==` or `in`",
            "compare with `==`",
        ),
        (
            'subject.CN contain "x"',
            12,
            "unexpected `contain`; expected `)`, `and`, `not`, `or`, "
            "an operator such as `==` or `in`",
            "did you mean `contains`?",
        ),
        (
            'ANY subject.OU == "x"',
            1,
            "unexpected `subject.OU` after `ANY`",
            "keywords are lower case: write `any`",
        ),
        ('subject.CN = "x"', 12, "unexpected `=`", "compare with `==`"),
        ("valid && expired", 7, "unexpected `&&`", "write `and`"),
        ("valid || expired", 7, "unexpected `||`", "write `or`"),
        ("!valid", 1, "unexpected `!`", "negate with `not`"),
        (
            "valid & expired",
            7,
            "unexpected character `&`",
            "expected `)`, `and`, `not`, `or`, an operator such as `==` or `in`",
        ),
        ('x == "abc', 6, "a string is not closed", 'end the string with " on the same line'),
        ("x == 'abc", 6, "a string is not closed", "end the string with ' on the same line"),
        (
            "valid and",
            9,
            "the condition ends too early; expected `(`, `[`, `all`, `any`, `expires`, "
            "`false`, `not`, `path`, …",
            "finish the condition",
        ),
        (
            "subject.CN ==",
            13,
            "the condition ends too early; expected `[`, `false`, `true`, "
            "a duration such as 30d, a name, a number, a string, "
            "a timestamp such as 2026-01-01T00:00:00Z",
            "finish the condition",
        ),
        ("(valid", 6, "the condition ends too early; expected `)`", "finish the condition"),
        ("x in [1", 7, "the condition ends too early; expected `,`, `]`", "finish the condition"),
        ("valid)", 6, "unexpected `)`; expected the end of the condition", ""),
        (
            'path == "/admin"',
            6,
            "unexpected `==`; expected `excluded`",
            "`path` only begins `path excluded`; the request path is `request.path`",
        ),
        ("expires within 30", 16, "unexpected `30`; expected a duration such as 30d", ""),
        ("expires within 30y", 16, "unexpected `30`; expected a duration such as 30d", ""),
        ("any == 1", 5, "unexpected `==`; expected a name", ""),
        ("x not 1", 7, "unexpected `1`; expected `in`", ""),
        (
            "x in [,]",
            7,
            "unexpected `,`; expected `]`, `false`, `true`, a duration such as 30d, "
            "a number, a string, a timestamp such as 2026-01-01T00:00:00Z",
            "",
        ),
        (
            "x == -1",
            6,
            "unexpected character `-`",
            "expected `[`, a duration such as 30d, a name, a number, a string, "
            "a timestamp such as 2026-01-01T00:00:00Z",
        ),
    ],
)
def test_syntax_errors(text: str, column: int, message: str, hint: str) -> None:
    diagnostic = syntax_error(text).diagnostics[0]
    assert diagnostic.message == message
    assert diagnostic.hint == hint
    assert (diagnostic.span.line, diagnostic.span.column) == (1, column)
    assert diagnostic.code == "syntax"
    assert diagnostic.severity == "error"


def test_the_caret_covers_the_whole_offending_token() -> None:
    error = syntax_error("valid AND expired")
    assert str(error) == (
        "when:1:7: error: unexpected `AND`; expected `)`, `and`, `not`, `or`, "
        "an operator such as `==` or `in`\n"
        "    1 | valid AND expired\n"
        "      |       ^^^\n"
        "hint: keywords are lower case: write `and`"
    )


def test_ending_early_points_at_the_last_token_not_at_a_trailing_comment() -> None:
    error = syntax_error("valid and   # more to come\n# really\n")
    assert str(error) == (
        "when:1:9: error: the condition ends too early; expected `(`, `[`, `all`, `any`, "
        "`expires`, `false`, `not`, `path`, …\n"
        "    1 | valid and   # more to come\n"
        "      |         ^\n"
        "hint: finish the condition"
    )


# -- syntax errors inside a policy file: positions are in the YAML file -----------------


def test_error_in_a_literal_block_points_into_the_file() -> None:
    error = policy_error(
        """
        policy: p
        rules:
          - id: r1
            effect: allow
            when: |
              valid
              and subject.CN == "nildevecc"
              AND expired
        """
    )
    assert str(error) == (
        "test.yaml:8:7: error: unexpected `AND`; expected `)`, `,`, `]`, `and`, `not`, `or`, "
        "an operator such as `==` or `in`\n"
        "    8 |       AND expired\n"
        "      |       ^^^\n"
        "hint: keywords are lower case: write `and`"
    )
    assert error.span.line == 8
    assert error.span.column == 7


def test_error_in_a_folded_block_points_into_the_file() -> None:
    error = policy_error(
        """
        policy: p
        rules:
          - id: r1
            effect: allow
            when: >
              valid
              and subject.CN == "x
        """
    )
    assert str(error) == (
        "test.yaml:7:25: error: a string is not closed\n"
        '    7 |       and subject.CN == "x\n'
        "      |                         ^\n"
        'hint: end the string with " on the same line'
    )


def test_error_in_a_double_quoted_when_counts_escapes() -> None:
    error = policy_error(
        r"""
        policy: p
        rules:
          - id: r1
            effect: allow
            when: "subject.CN == \"caf\u00e9\" && valid"
        """
    )
    assert str(error) == (
        "test.yaml:5:40: error: unexpected `&&`\n"
        '    5 |     when: "subject.CN == \\"caf\\u00e9\\" && valid"\n'
        "      |                                        ^^\n"
        "hint: write `and`"
    )


def test_error_in_a_double_quoted_when_with_an_equals_sign() -> None:
    error = policy_error(
        """
        policy: p
        rules:
          - id: r1
            effect: allow
            when: "valid and subject.CN = 'x'"
        """
    )
    assert str(error) == (
        "test.yaml:5:33: error: unexpected `=`\n"
        "    5 |     when: \"valid and subject.CN = 'x'\"\n"
        "      |                                 ^\n"
        "hint: compare with `==`"
    )


def test_error_in_a_single_quoted_when_with_doubled_quotes() -> None:
    error = policy_error(
        """
        policy: p
        rules:
          - id: r1
            effect: allow
            when: 'subject.CN == ''x'' AND valid'
        """
    )
    assert error.span.line == 5
    assert error.span.column == 32
    assert error.span.render() == (
        "    5 |     when: 'subject.CN == ''x'' AND valid'\n"
        "      |                                ^^^"
    )


def test_error_on_the_second_line_of_a_quoted_when() -> None:
    error = policy_error(
        """
        policy: p
        rules:
          - id: r1
            effect: allow
            when: "valid and
              expired AND present"
        """
    )
    assert (error.span.line, error.span.column, error.span.length) == (6, 15, 3)
    assert error.span.text == '      expired AND present"'


def test_error_in_a_plain_multi_line_when() -> None:
    error = policy_error(
        """
        policy: p
        rules:
          - id: r1
            effect: allow
            when: valid and
              subject.CN == 'x' AND expired
        """
    )
    assert (error.span.line, error.span.column, error.span.length) == (6, 25, 3)


def test_a_when_that_ends_early_points_at_its_last_token_in_the_file() -> None:
    error = policy_error(
        """
        policy: p
        rules:
          - id: r1
            effect: allow
            when: |
              valid
              and (subject.CN == "x"
              # the closing parenthesis is missing
        """
    )
    assert str(error) == (
        "test.yaml:7:28: error: the condition ends too early; expected `)`\n"
        '    7 |       and (subject.CN == "x"\n'
        "      |                            ^\n"
        "hint: finish the condition"
    )


def test_syntax_errors_of_every_rule_are_reported_together() -> None:
    error = policy_error(
        """
        policy: p
        rules:
          - id: r1
            effect: allow
            when: valid AND expired
          - id: r2
            effect: allow
            when: valid
          - id: r3
            effect: deny
            when: subject.CN = "x"
        """
    )
    assert [(d.span.line, d.span.column) for d in error.diagnostics] == [(5, 17), (11, 22)]
    assert [d.message.split(";")[0] for d in error.diagnostics] == [
        "unexpected `AND`",
        "unexpected `=`",
    ]


def test_crlf_file_positions() -> None:
    text = "policy: p\r\nrules:\r\n  - id: r1\r\n    effect: allow\r\n    when: |\r\n"
    text += "      valid\r\n      AND x\r\n"
    with pytest.raises(PolicySyntaxError) as info:
        policy_from_text(text, "test.yaml")
    assert (info.value.span.line, info.value.span.column) == (7, 7)
    assert info.value.span.text == "      AND x"


SHAPED = [
    'subject.CN == "client-17"',
    'subject.CN == "client-18"',
    "subject.CN == 'single \\' quoted'",
    'issuer.O == "Zoë \\"Ltd\\"" and subject.CN in ["a", \'b\', "c\\\\d"]',
    '  valid and (subject.CN startswith "api-" or subject.CN matches "*.contoso.com")  ',
    'not (request.path startswith "/admin") and key.size >= 2048',
    'any subject.OU == "x" and expires within 30d and not_after < 2030-01-01T00:00:00Z',
    'subject.CN == "\\u00e9t\\u00e9" or fingerprint in partners',
    'subject.CN == ""',
]


def _spans(node: object) -> list[tuple[str, object, object]]:
    return [
        (type(n).__name__, n.span, n.text)  # type: ignore[attr-defined]
        for n in ast.walk(node)
        if isinstance(n, ast.Node)
    ]


@pytest.mark.parametrize("text", SHAPED)
def test_a_condition_parsed_from_its_shape_is_the_one_lark_builds(text: str) -> None:
    """The tree, every span and every node's text: as a parse of the condition itself,
    whichever condition of the shape was parsed first."""
    from policyengine.language.parser import parse_text

    def locate(start: int, end: int) -> Span:
        return Span("p.yaml", 7, 10 + start, end - start)

    twin = text.replace("client-17", "client-99")  # one shape, parsed first
    assert parse(twin, locate) == parse_text(twin, locate)
    shaped, direct = parse(text, locate), parse_text(text, locate)
    assert shaped == direct
    assert _spans(shaped) == _spans(direct)


def test_a_shape_that_does_not_parse_reports_the_condition_s_own_text() -> None:
    with pytest.raises(PolicySyntaxError) as caught:
        policy_from_text(
            'policy: p\nrules:\n  - id: r\n    effect: allow\n    when: subject.CN = "x"\n'
        )
    assert 'subject.CN = "x"' in str(caught.value)


@pytest.mark.parametrize("depth", [256, 400, 5000])
def test_a_condition_nested_too_deep_for_the_later_stages_is_an_error_not_a_crash(
    depth: int,
) -> None:
    """``not`` 400 deep parsed, then overflowed the linter's recursion (a RecursionError
    out of load_policy); past 256 levels it is refused where it is written."""
    when = "not " * depth + 'subject.CN == "a"'
    with pytest.raises(PolicySyntaxError) as caught:
        policy_from_text(f"policy: p\nrules:\n  - id: r\n    effect: allow\n    when: '{when}'\n")
    assert "the condition is nested too deeply" in str(caught.value)


def test_two_hundred_and_fifty_levels_of_nesting_are_accepted() -> None:
    when = "not " * 250 + 'subject.CN == "a"'
    policy_from_text(f"policy: p\nrules:\n  - id: r\n    effect: allow\n    when: '{when}'\n")
