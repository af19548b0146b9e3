"""The LOAD stage: YAML with positions + JSON Schema -> Document.

Every error names the file, the line and the column, shows the source line with a caret
under the offending key or value, and says what to do. The texts are pinned exactly.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import shipped_policies

from policyengine import (
    PolicyError,
    PolicyFileError,
    PolicySchemaError,
    load_policy,
    policy_from_text,
)
from policyengine.load.document import (
    MODES,
    CertificateSection,
    load_document,
    parse_document,
)
from policyengine.load.loader import compile_document

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"

RULE = """\
rules:
  - id: r1
    effect: allow
    when: valid
"""


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def fails(text: str, kind: type[PolicyError]) -> PolicyError:
    """Load policy text named test.yaml; it must fail with exactly ``kind``."""
    with pytest.raises(PolicyError) as info:
        policy_from_text(dedent(text), "test.yaml")
    assert type(info.value) is kind, str(info.value)
    return info.value


def positions(error: PolicyError) -> list[tuple[int, int]]:
    return [(d.span.line, d.span.column) for d in error.diagnostics]


# -- the exception tree -----------------------------------------------------------------


def test_error_classes_are_policy_errors() -> None:
    assert issubclass(PolicyFileError, PolicyError)
    assert issubclass(PolicySchemaError, PolicyError)
    assert not issubclass(PolicySchemaError, PolicyFileError)


# -- unknown keys -----------------------------------------------------------------------


def test_unknown_top_level_key_suggests_the_known_one() -> None:
    error = fails(
        """
        policy: p
        rulez:
          - id: r1
            effect: allow
            when: valid
        """,
        PolicySchemaError,
    )
    assert str(error) == (
        "test.yaml:1:1: error: the policy has no `rules`\n"
        "    1 | policy: p\n"
        "      | ^\n"
        "hint: add a `rules:` list with at least one rule\n"
        "\n"
        "test.yaml:2:1: error: unknown key `rulez` in the policy\n"
        "    2 | rulez:\n"
        "      | ^^^^^\n"
        "hint: did you mean `rules`?"
    )
    assert positions(error) == [(1, 1), (2, 1)]
    assert error.diagnostics[1].span.length == len("rulez")
    assert error.diagnostics[1].code == "schema"


def test_unknown_top_level_key_without_a_close_match_lists_the_allowed_keys() -> None:
    error = fails("policy: p\nzzz: 1\n" + RULE, PolicySchemaError)
    assert str(error) == (
        "test.yaml:2:1: error: unknown key `zzz` in the policy\n"
        "    2 | zzz: 1\n"
        "      | ^^^\n"
        "hint: allowed: policy, description, mode, exclusion_paths, certificate, trust, silence, "
        "identity, sets, rules"
    )


def test_unknown_key_inside_a_rule() -> None:
    error = fails(
        """
        policy: p
        rules:
          - id: r1
            effect: allow
            when: valid
            descripton: partners only
        """,
        PolicySchemaError,
    )
    assert str(error) == (
        "test.yaml:6:5: error: unknown key `descripton` in rules[0]\n"
        "    6 |     descripton: partners only\n"
        "      |     ^^^^^^^^^^\n"
        "hint: did you mean `description`?"
    )
    assert error.span.line == 6
    assert error.span.column == 5


# -- wrong types ------------------------------------------------------------------------


def test_rules_that_is_a_number() -> None:
    error = fails("policy: p\nrules: 3\n", PolicySchemaError)
    assert str(error) == (
        "test.yaml:2:8: error: rules must be a list, not a number\n"
        "    2 | rules: 3\n"
        "      |        ^"
    )


def test_sets_that_is_a_list() -> None:
    error = fails("policy: p\nsets: [a, b]\n" + RULE, PolicySchemaError)
    assert str(error) == (
        "test.yaml:2:7: error: sets must be a mapping, not a list\n"
        "    2 | sets: [a, b]\n"
        "      |       ^^^^^^"
    )
    assert positions(error) == [(2, 7)]


def test_a_rule_that_is_not_a_mapping() -> None:
    error = fails(RULE.replace("rules:\n", "policy: p\nrules:\n") + "  - 5\n", PolicySchemaError)
    assert str(error) == (
        "test.yaml:6:5: error: rules[1] must be a mapping, not a number\n"
        "    6 |   - 5\n"
        "      |     ^"
    )


def test_when_that_yaml_reads_as_a_boolean() -> None:
    error = fails(
        """
        policy: p
        rules:
          - id: r1
            effect: allow
            when: true
        """,
        PolicySchemaError,
    )
    assert str(error) == (
        "test.yaml:5:11: error: rules[0].when must be a string, not a boolean\n"
        "    5 |     when: true\n"
        "      |           ^^^^"
    )


def test_exclusion_paths_that_is_a_number() -> None:
    error = fails("policy: p\nexclusion_paths: 3\n" + RULE, PolicySchemaError)
    assert str(error) == (
        "test.yaml:2:18: error: exclusion_paths must be a string or a list, not a number\n"
        "    2 | exclusion_paths: 3\n"
        "      |                  ^"
    )


def test_effect_that_is_neither_allow_nor_deny() -> None:
    error = fails(
        """
        policy: p
        rules:
          - id: r1
            effect: permit
            when: valid
        """,
        PolicySchemaError,
    )
    assert str(error) == (
        'test.yaml:4:13: error: rules[0].effect is "permit"; it must be `allow` or `deny`\n'
        "    4 |     effect: permit\n"
        "      |             ^^^^^^"
    )


def test_invalid_policy_name_and_rule_id() -> None:
    error = fails(
        """
        policy: -bad
        rules:
          - id: "r 1"
            effect: allow
            when: valid
        """,
        PolicySchemaError,
    )
    assert str(error) == (
        'test.yaml:1:9: error: policy "-bad" is not a valid name\n'
        "    1 | policy: -bad\n"
        "      |         ^^^^\n"
        "hint: use letters, digits, `-`, `_` and `.`, starting with a letter or digit\n"
        "\n"
        'test.yaml:3:9: error: rules[0].id "r 1" is not a valid name\n'
        '    3 |   - id: "r 1"\n'
        "      |         ^^^^^\n"
        "hint: use letters, digits, `-`, `_` and `.`, starting with a letter or digit"
    )


def test_invalid_set_name_points_at_the_key() -> None:
    error = fails(
        """
        policy: p
        sets:
          partners: [a]
          1bad: [b]
        rules:
          - id: r1
            effect: allow
            when: subject.CN in partners
        """,
        PolicySchemaError,
    )
    assert str(error) == (
        'test.yaml:4:3: error: set name "1bad" is not a valid name\n'
        "    4 |   1bad: [b]\n"
        "      |   ^^^^\n"
        "hint: use letters, digits and `_`, not starting with a digit"
    )


def test_a_key_that_is_not_a_name() -> None:
    error = fails("policy: p\n? [a, b]\n: c\n" + RULE, PolicyFileError)
    assert str(error) == (
        "test.yaml:2:3: error: keys must be plain names\n    2 | ? [a, b]\n      |   ^^^^^^"
    )


def test_the_document_must_be_a_mapping() -> None:
    error = fails("- policy: p\n", PolicySchemaError)
    assert str(error) == (
        "test.yaml:1:1: error: the policy must be a mapping, not a list\n"
        "    1 | - policy: p\n"
        "      | ^"
    )


# -- duplicates -------------------------------------------------------------------------


def test_duplicate_rule_id_points_at_the_second_and_names_the_first() -> None:
    error = fails(
        """
        policy: p
        rules:
          - id: partner
            effect: allow
            when: valid
          - id: other
            effect: allow
            when: valid
          - id: partner
            effect: deny
            when: expired
        """,
        PolicySchemaError,
    )
    assert str(error) == (
        "test.yaml:9:9: error: rule id `partner` is used twice\n"
        "    9 |   - id: partner\n"
        "      |         ^^^^^^^\n"
        "hint: the first is at line 3; give each rule its own id"
    )
    assert error.diagnostics[0].code == "duplicate-rule"


def test_duplicate_yaml_key() -> None:
    error = fails(
        """
        policy: p
        rules:
          - id: r1
            effect: allow
            effect: deny
            when: valid
        """,
        PolicyFileError,
    )
    assert str(error) == (
        "test.yaml:5:5: error: `effect` is given twice\n"
        "    5 |     effect: deny\n"
        "      |     ^^^^^^\n"
        "hint: the first is at line 4; keep one"
    )
    assert error.diagnostics[0].code == "duplicate-key"


def test_duplicate_top_level_key() -> None:
    error = fails("policy: p\npolicy: q\n" + RULE, PolicyFileError)
    assert positions(error) == [(2, 1)]
    assert error.diagnostics[0].message == "`policy` is given twice"
    assert error.diagnostics[0].hint == "the first is at line 1; keep one"


# -- empty and missing things -----------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "caret"),
    [('""', "^^"), ('"  "', "^^^^"), ("''", "^^")],
)
def test_empty_when(written: str, caret: str) -> None:
    error = fails(
        f"""
        policy: p
        rules:
          - id: r1
            effect: allow
            when: {written}
        """,
        PolicySchemaError,
    )
    assert str(error) == (
        "test.yaml:5:11: error: rule `r1` has an empty `when`\n"
        f"    5 |     when: {written}\n"
        f"      |           {caret}\n"
        'hint: write a condition, e.g. `when: valid and subject.CN == "api-client"`'
    )


def test_when_with_no_value_is_empty_not_a_string() -> None:
    error = fails(
        """
        policy: p
        rules:
          - id: r1
            effect: allow
            when:
        """,
        PolicySchemaError,
    )
    assert error.diagnostics[0].message == "rules[0].when must be a string, not empty"
    assert positions(error) == [(5, 10)]


def test_missing_rules() -> None:
    error = fails("policy: p\ndescription: nothing else\n", PolicySchemaError)
    assert str(error) == (
        "test.yaml:1:1: error: the policy has no `rules`\n"
        "    1 | policy: p\n"
        "      | ^\n"
        "hint: add a `rules:` list with at least one rule"
    )


def test_missing_policy_name() -> None:
    error = fails(RULE, PolicySchemaError)
    assert error.diagnostics[0].message == "the policy has no `policy`"
    assert error.diagnostics[0].hint == "add `policy: NAME` at the top"


def test_rule_missing_its_effect() -> None:
    error = fails(
        """
        policy: p
        rules:
          - id: r1
            when: valid
        """,
        PolicySchemaError,
    )
    assert str(error) == (
        "test.yaml:3:5: error: rules[0] has no `effect`\n"
        "    3 |   - id: r1\n"
        "      |     ^\n"
        "hint: add `effect: allow` or `effect: deny`"
    )


def test_empty_rules_list() -> None:
    error = fails("policy: p\nrules: []\n", PolicySchemaError)
    assert str(error) == (
        "test.yaml:2:8: error: rules is empty\n"
        "    2 | rules: []\n"
        "      |        ^^\n"
        "hint: add at least one rule; without one every request is denied"
    )


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_empty_file(text: str) -> None:
    error = fails(text, PolicyFileError)
    assert error.diagnostics[0].message == "the policy file is empty"
    assert error.diagnostics[0].hint == (
        "start with `policy: NAME` and a `rules:` list (see docs/policy-file.md)"
    )
    assert positions(error) == [(1, 1)]
    assert str(error).startswith("test.yaml:1:1: error: the policy file is empty")


def test_empty_file_renders_without_a_source_line() -> None:
    error = fails("", PolicyFileError)
    assert str(error) == (
        "test.yaml:1:1: error: the policy file is empty\n"
        "hint: start with `policy: NAME` and a `rules:` list (see docs/policy-file.md)"
    )


# -- mode -------------------------------------------------------------------------------


def test_invalid_mode() -> None:
    error = fails("policy: p\nmode: sometimes\n" + RULE, PolicySchemaError)
    assert str(error) == (
        'test.yaml:2:7: error: unknown mode "sometimes"\n'
        "    2 | mode: sometimes\n"
        "      |       ^^^^^^^^^\n"
        "hint: use required, optional or optional_interactive_user "
        "(App Service's Required, Optional, OptionalInteractiveUser also work)"
    )


def test_mode_that_is_not_a_string() -> None:
    error = fails("policy: p\nmode: 3\n" + RULE, PolicySchemaError)
    assert error.diagnostics[0].message == "unknown mode 3"
    assert positions(error) == [(2, 7)]


@pytest.mark.parametrize(
    ("written", "mode"),
    [
        ("required", "required"),
        ("Required", "required"),
        ("REQUIRED", "required"),
        ("optional", "optional"),
        ("OPTIONAL", "optional"),
        ("Optional", "optional"),
        ("OptionalInteractiveUser", "optional_interactive_user"),
        ("optionalinteractiveuser", "optional_interactive_user"),
        ("optional_interactive_user", "optional_interactive_user"),
        ("Optional_Interactive_User", "optional_interactive_user"),
        ("optional-interactive-user", "optional_interactive_user"),
    ],
)
def test_mode_accepts_app_service_spellings(written: str, mode: str) -> None:
    policy = policy_from_text(f"policy: p\nmode: {written}\n" + RULE, "test.yaml")
    assert policy.mode == mode
    assert mode in MODES


def test_mode_defaults_to_required() -> None:
    assert policy_from_text("policy: p\n" + RULE).mode == "required"


@pytest.mark.parametrize("written", ["optional interactive user", "optional__interactive_user"])
def test_mode_rejects_near_misses(written: str) -> None:
    error = fails(f"policy: p\nmode: {written}\n" + RULE, PolicySchemaError)
    assert error.diagnostics[0].message == f'unknown mode "{written}"'


# -- exclusion paths --------------------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    [
        "/public;/health",
        "/public,/health",
        "/public; /health",
        "' /public , /health ,'",
        "/public;;/health;",
    ],
)
def test_exclusion_paths_as_a_separated_string(written: str) -> None:
    document = parse_document(f"policy: p\nexclusion_paths: {written}\n" + RULE, "test.yaml")
    assert document.exclusion_paths == ("/public", "/health")
    assert document.exclusion_span is not None
    assert (document.exclusion_span.line, document.exclusion_span.column) == (2, 18)


def test_exclusion_paths_as_a_list() -> None:
    document = parse_document(
        dedent(
            """
            policy: p
            exclusion_paths:
              - /public
              - /health;/status
            """
        )
        + RULE,
        "test.yaml",
    )
    assert document.exclusion_paths == ("/public", "/health", "/status")


def test_no_exclusion_paths() -> None:
    document = parse_document("policy: p\n" + RULE, "test.yaml")
    assert document.exclusion_paths == ()
    assert document.exclusion_span is None


def test_exclusion_path_in_a_string_must_start_with_a_slash() -> None:
    error = fails("policy: p\nexclusion_paths: /public; health\n" + RULE, PolicySchemaError)
    assert str(error) == (
        "test.yaml:2:27: error: exclusion path `health` does not start with `/`\n"
        "    2 | exclusion_paths: /public; health\n"
        "      |                           ^^^^^^\n"
        "hint: write `/health`"
    )


def test_exclusion_path_in_a_list_must_start_with_a_slash() -> None:
    error = fails(
        dedent(
            """
            policy: p
            exclusion_paths:
              - /public
              - health
              - "/x;status"
            """
        )
        + RULE,
        PolicySchemaError,
    )
    assert str(error) == (
        "test.yaml:4:5: error: exclusion path `health` does not start with `/`\n"
        "    4 |   - health\n"
        "      |     ^^^^^^\n"
        "hint: write `/health`\n"
        "\n"
        "test.yaml:5:9: error: exclusion path `status` does not start with `/`\n"
        '    5 |   - "/x;status"\n'
        "      |         ^^^^^^\n"
        "hint: write `/status`"
    )


# -- YAML syntax ------------------------------------------------------------------------


def test_yaml_indentation_error_points_at_the_problem() -> None:
    error = fails(
        """
        policy: p
        rules:
          - id: r1
           effect: allow
            when: valid
        """,
        PolicyFileError,
    )
    assert str(error) == (
        "test.yaml:4:4: error: not valid YAML: expected <block end>, "
        "but found '<block mapping start>'\n"
        "    4 |    effect: allow\n"
        "      |    ^\n"
        "hint: check the indentation and quoting on this line or the one before"
    )
    assert error.diagnostics[0].code == "yaml"


def test_yaml_mapping_value_where_none_is_allowed() -> None:
    error = fails("policy: p: q\n" + RULE, PolicyFileError)
    assert str(error) == (
        "test.yaml:1:10: error: not valid YAML: mapping values are not allowed here\n"
        "    1 | policy: p: q\n"
        "      |          ^\n"
        "hint: check the indentation and quoting on this line or the one before"
    )


def test_unclosed_yaml_quote_points_at_where_it_opens() -> None:
    # YAML finds the problem at the end of the file, where there is nothing to show;
    # the message points at the quote that is never closed
    error = fails(
        """
        policy: p
        rules:
          - id: r1
            effect: allow
            when: "valid
        """,
        PolicyFileError,
    )
    assert str(error) == (
        "test.yaml:5:11: error: not valid YAML: found unexpected end of stream "
        "while scanning a quoted scalar\n"
        '    5 |     when: "valid\n'
        "      |           ^\n"
        "hint: check the indentation and quoting on this line or the one before"
    )


def test_unclosed_yaml_bracket_points_at_where_it_opens() -> None:
    error = fails("policy: p\nsets:\n  a: [1, 2\n", PolicyFileError)
    assert positions(error) == [(3, 6)]
    assert error.diagnostics[0].message == (
        "not valid YAML: expected ',' or ']', but got '<stream end>' while parsing a flow sequence"
    )


# -- reading files ----------------------------------------------------------------------


def test_file_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(PolicyFileError) as info:
        load_policy(missing)
    assert str(info.value) == (
        f"{missing}:1:1: error: cannot read the policy file: No such file or directory\n"
        "hint: check the path"
    )
    assert info.value.diagnostics[0].code == "file"
    assert info.value.span.file == str(missing)


def test_file_that_is_not_utf8_points_at_the_first_bad_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(
        b'policy: p\nrules:\n  - id: r1\n    effect: allow\n    when: subject.CN == "caf\xe9"\n'
    )
    with pytest.raises(PolicyFileError) as info:
        load_document(path)
    assert str(info.value) == (
        f"{path}:5:29: error: the policy file is not UTF-8 text (invalid continuation byte)\n"
        '    5 |     when: subject.CN == "caf\ufffd"\n'
        "      |                             ^\n"
        "hint: save the file as UTF-8"
    )
    assert positions(info.value) == [(5, 29)]


def test_load_document_names_the_file_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("policy: p\nrulez: []\n", encoding="utf-8")
    with pytest.raises(PolicySchemaError) as info:
        load_policy(path)
    assert [str(d.span) for d in info.value.diagnostics] == [f"{path}:1:1", f"{path}:2:1"]


def test_crlf_line_endings_keep_positions() -> None:
    text = "policy: p\r\nrules:\r\n  - id: r1\r\n    effect: allow\r\n    when: valid\r\n"
    error = fails(text + "    wen: x\r\n", PolicySchemaError)
    assert str(error) == (
        "test.yaml:6:5: error: unknown key `wen` in rules[0]\n"
        "    6 |     wen: x\n"
        "      |     ^^^\n"
        "hint: did you mean `when`?"
    )


# -- the Document -----------------------------------------------------------------------


def test_document_fields_and_rule_spans() -> None:
    document = parse_document(
        dedent(
            """
            policy: partner-api
            description: Partners
            sets:
              partners: [a, b]
            rules:
              - id: r1
                effect: deny
                description: first
                when: expired
              - id: r2
                effect: allow
                when: |
                  valid
                  and subject.CN in partners
            """
        ),
        "p.yaml",
    )
    assert document.name == "partner-api"
    assert document.description == "Partners"
    assert document.mode == "required"
    assert [r.id for r in document.rules] == ["r1", "r2"]
    assert [r.effect for r in document.rules] == ["deny", "allow"]
    assert document.rules[0].description == "first"
    assert document.rules[1].when == "valid\nand subject.CN in partners\n"
    assert [(r.span.line, r.span.column) for r in document.rules] == [(6, 9), (10, 9)]
    located = document.rules[1].locate(10, 17)  # `subject`, on the block's second line
    assert (located.line, located.column, located.length) == (14, 11, 7)
    assert located.text == "      and subject.CN in partners"
    partners = document.sets["partners"]
    assert [e.value for e in partners.entries] == ["a", "b"]
    assert [(e.span.line, e.span.column) for e in partners.entries] == [(4, 14), (4, 17)]
    assert (partners.span.line, partners.span.column) == (4, 3)


# -- the schema -------------------------------------------------------------------------


def test_schema_copies_are_byte_identical() -> None:
    top = (ROOT / "schema" / "policy.schema.json").read_bytes()
    packaged = (ROOT / "policyengine" / "schema" / "policy.schema.json").read_bytes()
    assert top == packaged


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = json.loads((ROOT / "schema" / "policy.schema.json").read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert jsonschema.validators.validator_for(schema) is jsonschema.Draft202012Validator
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("path", shipped_policies(), ids=lambda p: p.name)
def test_shipped_policies_fit_the_schema(path: Path) -> None:
    schema = json.loads((ROOT / "schema" / "policy.schema.json").read_text(encoding="utf-8"))
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(data)
    load_policy(path)


def test_the_minimal_policy_from_the_issue_loads_as_written() -> None:
    """partner-api.yaml as the issue wrote it: without the two pins for certs/partner.pem."""
    lines = (POLICIES / "partner-api.yaml").read_text(encoding="utf-8").splitlines(keepends=True)
    pins = [line for line in lines if line.lstrip().startswith("- ") and "certs/partner" in line]
    assert len(pins) == 2
    text = "".join(line for line in lines if line not in pins)
    policy = policy_from_text(text, "partner-api.yaml")
    assert policy.name == "partner-api"
    assert policy.description == "Partners calling the orders API"
    assert policy.mode == "required"
    assert policy.exclusion_paths == ("/public", "/health")
    assert policy.sets == {"partners": 2, "revoked_serials": 2}
    assert [(r.id, r.effect) for r in policy.rules] == [
        ("revoked-partner", "deny"),
        ("partner", "allow"),
    ]
    # the only warning: App Service's header is believed from any peer (the azure default)
    # and lint's: App Service renegotiates TLS for exclusion paths; SHA-1 pins
    assert [w.code for w in policy.warnings] == ["trusted-anywhere", "renegotiation", "sha1-pin"]


# -- plain data ---------------------------------------------------------------------------


def test_the_document_is_plain_data_and_loads_no_engine_or_request_module() -> None:
    """Reading a policy file into a Document needs neither the language, the engine nor
    the request side: importing it in a fresh interpreter loads none of them, nor
    cryptography or lark."""
    probe = "import json, sys, policyengine.load.document\nprint(json.dumps(sorted(sys.modules)))\n"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = json.loads(result.stdout)
    assert "policyengine.load.document" in loaded
    forbidden = (
        "cryptography",
        "lark",
        "policyengine.language",
        "policyengine.evaluation",
        "policyengine.request",
    )
    assert [m for m in loaded if any(m == f or m.startswith(f + ".") for f in forbidden)] == []


def test_a_certificate_section_the_source_refuses_is_an_error_among_the_documents() -> None:
    """What the request side refuses in a ``certificate:`` section is reported at the
    section, with the document's other errors and in their order; a document compiled
    without that check meets it, at the same place, when it is compiled."""
    text = (
        "policy: p\n"
        "certificate:\n"
        "  source: nginx\n"
        "rules:\n"
        "  - {id: r, effect: allow, when: valid}\n"
        "  - {id: r, effect: allow, when: valid}\n"
    )

    def refuse(section: CertificateSection) -> None:
        raise ValueError(f"no {section.source} here")

    with pytest.raises(PolicySchemaError) as caught:
        parse_document(text, "p.yaml", check_certificate=refuse)
    found = [(d.span.line, d.span.column, d.message) for d in caught.value.diagnostics]
    assert found == [(3, 3, "no nginx here"), (6, 10, "rule id `r` is used twice")]

    document = parse_document(text.rsplit("  - ", 1)[0], "p.yaml")
    unusable = replace(document, certificate=replace(document.certificate, max_header_bytes=0))
    with pytest.raises(PolicySchemaError) as compiled:
        compile_document(unusable)
    (diagnostic,) = compiled.value.diagnostics
    assert (diagnostic.span.line, diagnostic.span.column) == (3, 3)
    assert diagnostic.message == "max_header_bytes must be positive"
