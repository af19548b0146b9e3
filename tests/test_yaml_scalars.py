"""Unquoted values where the schema expects text are the text written (issue 14, item 7).

YAML 1.1, which PyYAML implements, reads an unquoted ``12:34:56`` as the base-60 integer
45296, ``1_2_3`` as 123, ``017`` as octal 15 and ``0b101`` as 5: a revoked serial written
that way never matched, and the policy loaded without a word. Where the schema expects
text (set entries, names, descriptions, file names), a plain scalar is now the text as
written, unless it is an integer in a form YAML 1.1 and 1.2 read alike (``12345``,
``0x1A``); booleans and nulls there are still refused, with their place. Every case runs
with libyaml's loader (the default) and with PyYAML's pure-Python one (the fallback).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from conftest import NOW
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from policyengine import PolicyError, PolicySchemaError, policy_from_text
from policyengine.load import yaml_reader
from policyengine.load.document import parse_document
from policyengine.testing import make_certificate


@pytest.fixture(params=["libyaml", "pure-python"], autouse=True)
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "pure-python":
        monkeypatch.setattr(yaml_reader, "_FAST_LOADER", None)
    elif yaml_reader._FAST_LOADER is None:  # pragma: no cover - PyYAML without libyaml
        pytest.skip("PyYAML is built without libyaml")
    yield request.param


def _deny_set(entry: str, attribute: str = "serial") -> str:
    return textwrap.dedent(
        f"""\
        policy: revocations
        sets:
          listed:
            - {entry}
        rules:
          - id: listed
            effect: deny
            when: {attribute} in listed
          - id: anyone-valid
            effect: allow
            when: valid
        """
    )


def _certificate(serial: int) -> x509.Certificate:
    return make_certificate(
        {"CN": "client"},
        serial=serial,
        not_before=datetime(2026, 1, 1, tzinfo=UTC),
        not_after=datetime(2027, 1, 1, tzinfo=UTC),
    ).certificate


@pytest.mark.parametrize(
    ("written", "serial"),
    [
        ("12:34:56", 0x123456),  # YAML 1.1: base 60, 45296
        ("017", 0x17),  # YAML 1.1: octal 15; YAML 1.2: decimal 17
        ("0b101", 0x0B101),  # YAML 1.1: binary 5
        ("1e5", 0x1E5),  # YAML 1.2: a float
        ("0x1A", 0x1A),  # read alike by both: the number 26
        ("12345", 12345),  # a decimal integer, as docs/language.md says
    ],
)
def test_unquoted_serial_in_a_deny_set_matches_the_certificate_as_written(
    written: str, serial: int
) -> None:
    policy = policy_from_text(_deny_set(written), "revocations.yaml")
    decision = policy.evaluate(_certificate(serial), path="/", now=NOW)
    assert (decision.reason, decision.rule) == ("denied_by_rule", "listed")


def test_unquoted_base_60_serial_is_the_same_entry_as_the_quoted_text() -> None:
    unquoted = parse_document(_deny_set("12:34:56"), "revocations.yaml")
    quoted = parse_document(_deny_set('"12:34:56"'), "revocations.yaml")
    assert unquoted.sets["listed"].entries == quoted.sets["listed"].entries
    assert unquoted.sets["listed"].entries[0].value == "12:34:56"


def test_a_certificate_whose_serial_is_the_base_60_reading_is_not_denied() -> None:
    policy = policy_from_text(_deny_set("12:34:56"), "revocations.yaml")
    decision = policy.evaluate(_certificate(45296), path="/", now=NOW)
    assert decision.allowed


@pytest.mark.parametrize("written", ["1_2_3", "0o17", "1.5", "0x1A_2B"])
def test_unquoted_entry_that_is_no_serial_as_written_is_an_error_at_its_place(
    written: str,
) -> None:
    with pytest.raises(PolicyError) as caught:
        policy_from_text(_deny_set(written), "revocations.yaml")
    assert str(caught.value).splitlines()[0] == (
        f'revocations.yaml:4:7: error: in set `listed`: "{written}" is not a serial number'
    )


@pytest.mark.parametrize("written", ["NO", "yes", "off", "True"])
def test_unquoted_boolean_in_a_set_is_still_refused_with_its_place(written: str) -> None:
    with pytest.raises(PolicySchemaError) as caught:
        policy_from_text(_deny_set(written), "revocations.yaml")
    assert str(caught.value) == (
        "revocations.yaml:4:7: error: sets.listed[0] must be a string or an integer, "
        "not a boolean\n"
        f"    4 |     - {written}\n"
        f"      |       {'^' * len(written)}"
    )


def test_explicitly_tagged_number_where_text_is_expected_is_an_error_at_its_place() -> None:
    text = "policy: !!int 12\nrules: [{id: r, effect: allow, when: valid}]\n"
    with pytest.raises(PolicySchemaError) as caught:
        policy_from_text(text, "tagged.yaml")
    assert str(caught.value).splitlines()[0] == (
        "tagged.yaml:1:9: error: policy must be a string, not a number"
    )


def test_unquoted_key_identifier_of_digit_pairs_matches_as_written() -> None:
    # every pair is 00..59: YAML 1.1 reads the whole as one base-60 integer
    written = "12:34:56:10:20:30:40:50"
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime(2026, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2027, 1, 1, tzinfo=UTC))
        .add_extension(x509.SubjectKeyIdentifier(bytes.fromhex(written.replace(":", ""))), False)
        .sign(key, hashes.SHA256())
    )
    policy = policy_from_text(_deny_set(written, "subject_key_id"), "keys.yaml")
    decision = policy.evaluate(certificate, path="/", now=NOW)
    assert (decision.reason, decision.rule) == ("denied_by_rule", "listed")


def test_unquoted_fingerprint_of_digit_pairs_loads_as_written() -> None:
    # a SHA-1 fingerprint whose pairs are all 00..59 (a base-60 integer to YAML 1.1)
    written = ":".join(f"{n:02d}" for n in range(10, 30))
    document = parse_document(_deny_set(written, "fingerprint"), "pins.yaml")
    assert document.sets["listed"].entries[0].value == written
    policy = policy_from_text(_deny_set(written, "fingerprint"), "pins.yaml")
    assert policy.evaluate(_certificate(1), path="/", now=NOW).allowed


def test_unquoted_text_in_a_string_set_matches_as_written() -> None:
    policy = policy_from_text(_deny_set("12:30", "subject.O"), "orgs.yaml")
    certificate = make_certificate(
        {"CN": "client", "O": "12:30"},
        not_before=datetime(2026, 1, 1, tzinfo=UTC),
        not_after=datetime(2027, 1, 1, tzinfo=UTC),
    ).certificate
    decision = policy.evaluate(certificate, path="/", now=NOW)
    assert (decision.reason, decision.rule) == ("denied_by_rule", "listed")


@pytest.mark.parametrize(
    ("line", "field", "value"),
    [
        ("description: 12:30", "description", "12:30"),
        ("description: 2026-02-30", "description", "2026-02-30"),  # was a bad-date error
        ("description: 1.5", "description", "1.5"),
    ],
)
def test_unquoted_number_like_text_in_a_text_field_is_the_text_written(
    line: str, field: str, value: str
) -> None:
    text = f"policy: p\n{line}\nrules: [{{id: r, effect: allow, when: valid}}]\n"
    assert getattr(parse_document(text, "p.yaml"), field) == value


def test_unquoted_rule_id_with_underscores_is_the_text_written() -> None:
    text = "policy: p\nrules: [{id: 1_000, effect: allow, when: valid}]\n"
    assert parse_document(text, "p.yaml").rules[0].id == "1_000"


def test_numbers_where_the_schema_expects_numbers_read_as_before() -> None:
    text = (
        "policy: p\n"
        "certificate: {max_header_bytes: 16_384}\n"
        "rules: [{id: r, effect: allow, when: valid}]\n"
    )
    assert parse_document(text, "p.yaml").certificate.max_header_bytes == 16384


# -- YAML's own tags where the schema wants text: a schema error, never a crash ------------

RULE = "  - id: r\n    effect: allow\n    when: valid\n"


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (f"policy: p\nmode: !!binary aGk=\nrules:\n{RULE}", (2, 7), "unknown mode \"b'hi'\""),
        (
            "policy: p\nrules:\n  - id: r\n    effect: !!timestamp 2026-01-01\n    when: valid\n",
            (4, 13),
            'rules[0].effect is "datetime.date(2026, 1, 1)"; it must be `allow` or `deny`',
        ),
        (
            f"policy: p\ncertificate:\n  source: !!binary aGk=\nrules:\n{RULE}",
            (3, 11),
            "certificate.source is \"b'hi'\"; it must be one of azure,",
        ),
        (
            f"policy: p\ncertificate:\n  header: !!binary aGk=\nrules:\n{RULE}",
            (3, 11),
            "certificate.header must be a string, not YAML's bytes (a !!tag)",
        ),
        (
            f"policy: p\ntrust:\n  anchors: [!!timestamp 2026-01-01]\nrules:\n{RULE}",
            (3, 13),
            "trust.anchors[0] must be a string, not YAML's date (a !!tag)",
        ),
    ],
)
def test_a_yaml_tag_where_text_is_due_is_a_schema_error_at_its_place(
    text: str, where: tuple[int, int], message: str
) -> None:
    with pytest.raises(PolicySchemaError) as raised:  # json.dumps of bytes once crashed here
        policy_from_text(text, "p.yaml")
    first = raised.value.diagnostics[0]
    assert (first.span.line, first.span.column) == where
    assert first.message.startswith(message)


@pytest.mark.parametrize(
    ("text", "where", "code"),
    [
        ("\ud800policy: p\nrules: []\n", (1, 1), "D800"),  # a lone surrogate: libyaml raised
        (f"policy: p\nrules:\n{RULE}".replace("valid", 'subject.CN == "a\udc80"'), (5, 27), "DC80"),
        ("policy: p\x07\nrules: []\n", (1, 10), "0007"),
    ],
)
def test_a_character_yaml_refuses_is_an_error_at_its_place(
    text: str, where: tuple[int, int], code: str
) -> None:
    with pytest.raises(PolicyError) as raised:
        policy_from_text(text, "p.yaml")
    first = raised.value.diagnostics[0]
    assert (first.span.line, first.span.column) == where
    assert first.message == f"not valid YAML: character U+{code} is not allowed"
    str(raised.value).encode("utf-8")  # printable: the surrogate is shown as U+FFFD
