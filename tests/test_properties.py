"""Property tests: random policy text never crashes the loader, random requests never crash
the engine or allow by accident, and explain=True decides exactly as explain=False.

Every property runs with a bounded number of examples so the whole file stays well under a
minute on two cores.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from policyengine import Decision, Policy, PolicyError, policy_from_text
from policyengine.errors import GlobError
from policyengine.evaluation.decision import (
    ALLOWED_BY_RULE,
    EVALUATION_ERROR,
    EXCLUDED_PATH,
    MALFORMED_CERTIFICATE,
    REASONS,
)
from policyengine.language.glob import compile_glob
from policyengine.language.vocabulary import VOCABULARY, Type
from policyengine.testing import make_certificate

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = [p for p in sorted(ROOT.glob("policies/*.yaml")) if not p.name.endswith(".test.yaml")]
POLICY_TEXTS = {str(p): p.read_text(encoding="utf-8") for p in SHIPPED}
LOADED = {name: policy_from_text(text, name) for name, text in POLICY_TEXTS.items()}

UTC = UTC
CERT = make_certificate(
    [
        ("CN", "nildevecc"),
        ("O", "Microsoft Corp"),
        ("OU", "Payments"),
        ("OU", "Billing"),
        ("emailAddress", "svc@contoso.com"),
    ],
    not_before=datetime(2025, 1, 1, tzinfo=UTC),
    not_after=datetime(2099, 12, 31, tzinfo=UTC),
    serial=0x1A2B3D,
)
CA = make_certificate({"CN": "Contoso CA", "O": "Contoso Ltd"}, ca=True)
ISSUED = make_certificate(
    {"CN": "api-client", "O": "Contoso Ltd", "DC": "contoso"},
    issuer=CA,
    not_before=datetime(2026, 1, 1, tzinfo=UTC),
    not_after=datetime(2027, 1, 1, tzinfo=UTC),
)
AMBIGUOUS = make_certificate([("CN", "a"), ("CN", "b"), ("O", "Microsoft Corp")])
# the last byte of the DER is inside the signature: the result still parses, but no longer
# verifies, so `self_signed` is false for it
BROKEN_SIGNATURE = CERT.der[:-1] + bytes([CERT.der[-1] ^ 0x01])

PEM_BEGIN = "-----BEGIN CERTIFICATE-----"
PEM_END = "-----END CERTIFICATE-----"
WHEN_TEMPLATE = """\
policy: generated
description: a policy around one generated condition
mode: {mode}
exclusion_paths: /health
sets:
  pins:
    - {sha1}
    - "{sha256}"
  serials: ["0x1A2B3C", "{serial:X}", {serial}]
  names: [nildevecc, "Microsoft Corp"]
rules:
  - id: generated
    effect: {effect}
    when: {when}
  - id: fallback
    effect: allow
    when: valid and subject.CN == "nobody"
"""


def check_diagnostics(exc: PolicyError, name: str, text: str) -> None:
    """A PolicyError names the file and points at real places in it."""
    assert exc.diagnostics, "a PolicyError without diagnostics"
    # YAML also breaks lines at \r, NEL and the Unicode separators: the most lines it can see
    lines = len(re.findall("\r\n|[\n\r\x85\u2028\u2029]", text)) + 1
    for diagnostic in exc.diagnostics:
        span = diagnostic.span
        assert span.file == name
        assert span.line >= 1, diagnostic
        assert span.column >= 1, diagnostic
        assert span.line <= lines, (diagnostic, lines)
        assert diagnostic.severity in ("error", "warning")
        assert diagnostic.message
        head = f"{name}:{span.line}:{span.column}: {diagnostic.severity}: "
        assert diagnostic.render().startswith(head)
    assert any(d.severity == "error" for d in exc.diagnostics)
    assert name in str(exc)


def load_or_error(text: str, name: str) -> Policy | None:
    """The policy, or None after checking the PolicyError; any other exception propagates."""
    try:
        policy = policy_from_text(text, name)
    except PolicyError as exc:
        event(f"raises {type(exc).__name__}")
        check_diagnostics(exc, name, text)
        return None
    event("loads")
    assert isinstance(policy, Policy)
    assert policy.rules
    for warning in policy.warnings:
        assert warning.severity == "warning"
        assert warning.span.line >= 1 and warning.span.column >= 1
    return policy


def assert_sound(decision: object, policy: Policy) -> None:
    """A decision that is well-formed, and an allow only for an allowing reason."""
    assert isinstance(decision, Decision)
    assert decision.reason in REASONS
    assert decision.policy == policy.name
    assert isinstance(decision.message, str) and decision.message
    if decision.allowed:
        assert decision.reason in (EXCLUDED_PATH, ALLOWED_BY_RULE), decision
    if decision.reason == ALLOWED_BY_RULE:
        assert decision.allowed
        assert decision.rule in {r.id for r in policy.rules if r.effect == "allow"}
    if decision.reason == EXCLUDED_PATH:
        assert decision.allowed and policy.exclusion_paths


# -- 1a: arbitrary text -------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.text())
@example("")
@example("policy: p\nrules: &a [*a]\n")
@example("policy: p\nrules: " + "[" * 2000 + "]" * 2000 + "\n")
@example("policy: 2026-02-30\nrules: []\n")
@example("policy: !!float abc\nrules: []\n")
@example("policy: !!timestamp abc\nrules: []\n")
@example("policy: !!bool abc\nrules: []\n")
@example("policy: !!int 0x\nrules: []\n")
def test_arbitrary_text_loads_or_raises_policy_error(text: str) -> None:
    load_or_error(text, "random.yaml")


# -- 1b: mutations of the shipped policies ------------------------------------------------------


def _without_comments(text: str) -> str:
    return "\n".join(line for line in text.split("\n") if not line.lstrip().startswith("#"))


MUTANT = str(ROOT / "policies" / "mutant.yaml")
"""Mutants are named as if beside the shipped policies, so their certs/ paths resolve."""
MUTATION_BASES = sorted(
    {text for text in POLICY_TEXTS.values()} | {_without_comments(t) for t in POLICY_TEXTS.values()}
)
YAML_CHARACTERS = st.sampled_from([*":-#'\"[]{}|>&*!%@`,?~ \t\\\n\r", "\x00", "\u2028"])
TOKENS = st.sampled_from(
    [
        *sorted(VOCABULARY),
        "and",
        "or",
        "not",
        "in",
        "not in",
        "any",
        "all",
        "expires within",
        "path excluded",
        "==",
        "!=",
        "<",
        "<=",
        ">",
        ">=",
        "=",
        "&&",
        "startswith",
        "matches",
        "contains",
        "true",
        "false",
        "null",
        "~",
        "30d",
        "0x1A",
        "9" * 30,
        "2026-02-30",
        "2026-01-01T00:00:00Z",
        "9999-12-31T23:59:59-01:00",
        "999999999w",
        "[]",
        "[",
        "(",
        ")",
        '"',
        "'",
        '"x"',
        "AND",
        "partners",
        "revoked_serials",
        "policy:",
        "rules:",
        "- id: x",
        "effect: deny",
        "when:",
        "mode: optional",
        "sets:",
        "exclusion_paths:",
        "&a",
        "*a",
        "!!binary",
        "|",
        ">",
        "{}",
    ]
)


@st.composite
def mutated_policies(draw: st.DrawFn) -> str:
    lines = draw(st.sampled_from(MUTATION_BASES)).split("\n")
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            lines = [""]
        in_rules = [k for k, text in enumerate(lines) if "when" in text or text.startswith("     ")]
        if in_rules and draw(st.booleans()):
            i = draw(st.sampled_from(in_rules))  # where the conditions are
        else:
            i = draw(st.integers(0, len(lines) - 1))
        line = lines[i]
        j = draw(st.integers(0, len(line)))
        kind = draw(
            st.sampled_from(
                [
                    "delete-char",
                    "insert-char",
                    "replace-char",
                    "insert-token",
                    "replace-word",
                    "delete-line",
                    "duplicate-line",
                    "insert-line",
                    "swap-lines",
                    "indent",
                    "dedent",
                    "truncate",
                ]
            )
        )
        char = draw(YAML_CHARACTERS | st.characters())
        if kind == "delete-char":
            lines[i] = line[:j] + line[j + 1 :]
        elif kind == "insert-char":
            lines[i] = line[:j] + char + line[j:]
        elif kind == "replace-char":
            lines[i] = line[:j] + char + line[j + 1 :]
        elif kind == "insert-token":
            lines[i] = line[:j] + draw(TOKENS) + line[j:]
        elif kind == "replace-word":
            words = re.split(r"(\s+)", line)
            k = draw(st.integers(0, len(words) - 1))
            words[k] = draw(TOKENS)
            lines[i] = "".join(words)
        elif kind == "delete-line":
            del lines[i]
        elif kind == "duplicate-line":
            lines.insert(i, line)
        elif kind == "insert-line":
            lines.insert(i, draw(st.text(max_size=30) | TOKENS))
        elif kind == "swap-lines":
            k = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[k] = lines[k], lines[i]
        elif kind == "indent":
            lines[i] = " " * draw(st.integers(1, 6)) + line
        elif kind == "dedent":
            lines[i] = line[draw(st.integers(1, 6)) :] if line[:1] == " " else line.lstrip()
        else:
            lines = [*lines[:i], line[:j]]
    return "\n".join(lines)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_policies())
@example('policy: p\nmode: "required\\n"\nrules:\n  - id: r\n    effect: allow\n    when: valid\n')
@example(
    "\ud800policy: p\nrules:\n  - id: r\n    effect: allow\n    when: valid\n"
)  # libyaml raised
@example(
    "policy: p\nsets:\n  s: [" + "9" * 5000 + "]\nrules:\n  - id: r\n    effect: allow\n"
    "    when: serial in s\n"
)
def test_mutated_policies_load_or_raise_policy_error(text: str) -> None:
    policy = load_or_error(text, MUTANT)
    if policy is not None:
        for cert in (CERT.pem, None, b"junk"):
            assert_sound(policy.evaluate(cert, path="/orders", explain=True), policy)


def test_the_mutation_bases_load() -> None:
    """The unmutated policies load, so every mutation starts from a valid policy."""
    for text in MUTATION_BASES:
        assert isinstance(policy_from_text(text, MUTANT), Policy)


# -- 1c: conditions generated from the grammar --------------------------------------------------

NAMES = st.sampled_from(sorted(VOCABULARY)) | st.sampled_from(
    ["pins", "serials", "names", "unknown", "subjet.CN", "Valid", "subject.XX", "request"]
)
STRING_CHARACTERS = st.characters(max_codepoint=0xFFFF, exclude_categories=["Cs"])


def quote(value: str, mark: str = '"') -> str:
    """A string literal of the policy language whose value is ``value``."""
    escaped = value.replace("\\", "\\\\").replace(mark, "\\" + mark)
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return mark + escaped + mark


@st.composite
def timestamps(draw: st.DrawFn, valid: bool = False) -> str:
    """Timestamp tokens; unless ``valid``, with out-of-range fields and extreme offsets."""
    if valid:
        moment = draw(
            st.datetimes(datetime(1950, 1, 1), datetime(2200, 1, 1), timezones=st.just(UTC))
        )
        if draw(st.booleans()):
            return moment.strftime("%Y-%m-%d")
        offset = draw(st.integers(-14 * 60, 14 * 60))
        local = moment + timedelta(minutes=offset)
        sign = "+" if offset >= 0 else "-"
        zone = "Z" if offset == 0 else f"{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"
        return local.strftime("%Y-%m-%dT%H:%M:%S") + zone
    year = draw(st.sampled_from([0, 1, 9999]) | st.integers(0, 9999))
    month, day = draw(st.integers(0, 19)), draw(st.integers(0, 39))
    text = f"{year:04d}-{month:02d}-{day:02d}"
    if draw(st.booleans()):
        text += f"T{draw(st.integers(0, 29)):02d}:{draw(st.integers(0, 69)):02d}"
        if draw(st.booleans()):
            text += f":{draw(st.integers(0, 69)):02d}"
            if draw(st.booleans()):
                text += "." + "1" * draw(st.integers(1, 9))
        text += draw(
            st.sampled_from(["Z", "z"])
            | st.builds(
                lambda s, h, m: f"{s}{h:02d}:{m:02d}",
                st.sampled_from("+-"),
                st.sampled_from([0, 1, 23]) | st.integers(0, 29),
                st.integers(0, 69),
            )
        )
    return text


def _hex_digest(length: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789abcdefABCDEF", min_size=length, max_size=length)


BIG_NUMBERS = st.sampled_from([0, 999999999, 10**9, 10**12]) | st.integers(0, 10**12)
LITERALS = st.one_of(
    st.text(STRING_CHARACTERS, max_size=10).map(quote),
    st.text(STRING_CHARACTERS, max_size=10).map(lambda s: quote(s, "'")),
    st.sampled_from(
        [
            '"nildevecc"',
            '"0x1A2B3D"',
            '"a\\u00e9b"',
            '"\\q"',
            f'"{CERT.sha256}"',
            f"'{CERT.sha1.upper()}'",
            '"*.contoso.com"',
            '"\\\\"',
            '"a\\"b"',
        ]
    ),
    st.integers(0, 2**200).map(str),
    st.integers(0, 2**200).map(hex),
    st.just("9" * 5000),
    st.builds(lambda n, unit: f"{n}{unit}", BIG_NUMBERS, st.sampled_from("wdhms")),
    timestamps(),
    st.sampled_from(["true", "false"]),
)
LISTS = st.lists(LITERALS, max_size=4).flatmap(
    lambda items: st.sampled_from(["", ","]).map(
        lambda tail: "[" + ", ".join(items) + (tail if items else "") + "]"
    )
)
OPERANDS = NAMES | LITERALS | LISTS
OPERATORS = st.sampled_from(
    [
        "==",
        "!=",
        "<",
        "<=",
        ">",
        ">=",
        "in",
        "not in",
        "startswith",
        "endswith",
        "contains",
        "matches",
    ]
)
LEAVES = st.one_of(
    st.tuples(OPERANDS, OPERATORS, OPERANDS).map(" ".join),
    st.tuples(st.sampled_from(["any", "all"]), NAMES, OPERATORS, OPERANDS).map(" ".join),
    st.builds(lambda n, unit: f"expires within {n}{unit}", BIG_NUMBERS, st.sampled_from("wdhms")),
    st.just("path excluded"),
    OPERANDS,
)
CONDITIONS = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.tuples(inner, inner).map(" and ".join),
        st.tuples(inner, inner).map(" or ".join),
        inner.map("not {}".format),
        inner.map("({})".format),
    ),
    max_leaves=6,
)


def embed(condition: str, style: str) -> str:
    """A ``when:`` value holding ``condition``, written as YAML in the given style."""
    if style == "block":
        return "|\n      " + condition + "\n      # a comment line inside the block"
    if style == "folded":
        return ">-\n      " + condition.replace(" and ", "\n      and ")
    return json.dumps(condition, ensure_ascii=style == "ascii")


def policy_around(
    condition: str, style: str = "ascii", effect: str = "allow", mode: str = "required"
) -> str:
    return WHEN_TEMPLATE.format(
        mode=mode,
        effect=effect,
        when=embed(condition, style),
        sha1=CERT.sha1.upper(),
        sha256=CERT.sha256,
        serial=CERT.certificate.serial_number,
    )


def test_the_template_loads() -> None:
    policy = policy_from_text(policy_around("valid"), "generated.yaml")
    assert policy.evaluate(CERT.pem, path="/orders").allowed


@settings(max_examples=350, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    CONDITIONS,
    st.sampled_from(["ascii", "unicode", "block", "folded"]),
    st.sampled_from(["allow", "deny"]),
)
@example("expires within 999999999w", "ascii", "allow")
@example("not_after < 9999-12-31T23:59:59-01:00", "ascii", "allow")
@example("not_before > 0001-01-01T00:00:00+01:00", "ascii", "deny")
@example("serial == " + "9" * 5000, "ascii", "deny")
@example("not " * 1000 + "valid", "ascii", "deny")
@example("(" * 500 + "valid" + ")" * 500, "block", "allow")
def test_generated_conditions_load_or_raise_policy_error(
    condition: str, style: str, effect: str
) -> None:
    text = policy_around(condition, style, effect)
    policy = load_or_error(text, "generated.yaml")
    if policy is not None:
        for cert in (CERT.der, ISSUED.pem, None):
            decision = policy.evaluate(cert, path="/orders", now=datetime(2026, 6, 1, tzinfo=UTC))
            assert_sound(decision, policy)
            assert decision.reason != EVALUATION_ERROR, decision


# -- 2: random requests ----------------------------------------------------------------------


@st.composite
def mutated_bytes(draw: st.DrawFn, original: bytes) -> bytes:
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "truncate", "append", "insert", "delete"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[at:]
        elif kind == "append":
            data += draw(st.binary(min_size=1, max_size=64))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[at : at + draw(st.integers(1, 8))]
    return bytes(data)


def _b64_lines(der: bytes) -> bytes:
    encoded = base64.b64encode(der)
    return b"\n".join(encoded[i : i + 64] for i in range(0, len(encoded), 64))


def pem_of(der: bytes) -> bytes:
    return b"%s\n%s\n%s\n" % (PEM_BEGIN.encode(), _b64_lines(der), PEM_END.encode())


MUTATED_DER = mutated_bytes(CERT.der)
MUTATED_PEM = st.one_of(
    mutated_bytes(CERT.pem),  # the armor and the base64 text themselves
    MUTATED_DER.map(pem_of),  # well-formed armor around a damaged certificate
    mutated_bytes(CERT.pem).map(lambda b: b.decode("latin-1")),
)
CERTIFICATE_INPUTS = st.one_of(
    st.none(),
    st.binary(max_size=1024),
    st.text(max_size=200),
    st.text(max_size=200).map(lambda t: f"{PEM_BEGIN}\n{t}\n{PEM_END}\n"),
    MUTATED_DER,
    MUTATED_PEM,
    st.sampled_from(
        [
            CERT.der,
            CERT.pem,
            CERT.pem.decode(),
            ISSUED.der,
            AMBIGUOUS.pem,
            BROKEN_SIGNATURE,
            b"\x00" * 70000,
            b" \n\t",
        ]
    ),
)
REQUEST_TEXT = st.one_of(
    st.none(),
    st.text(),
    st.text(st.characters(max_codepoint=0x9F), max_size=20),  # control characters, NUL
    st.builds(lambda part, n: part * n, st.text(min_size=1, max_size=6), st.integers(1, 20000)),
    st.sampled_from(
        [
            "/",
            "/health",
            "/HEALTH/x",
            "/public/../admin",
            "/%2e%2e/health",
            "",
            "/orders?x=/health",
            "\x00/health",
            "[::1]:443",
            "API.example.com:8443",
        ]
    ),
)
OFFSETS = st.builds(
    timezone,
    st.timedeltas(
        min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
    ),
)
ANY_MOMENT = st.none() | st.datetimes(timezones=OFFSETS | st.just(UTC))
ORDINARY_MOMENT = st.datetimes(datetime(1950, 1, 1), datetime(2200, 1, 1), timezones=OFFSETS)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(sorted(LOADED)),
    CERTIFICATE_INPUTS,
    REQUEST_TEXT,
    REQUEST_TEXT,
    REQUEST_TEXT,
    ANY_MOMENT,
    st.booleans(),
)
def test_evaluate_never_raises(
    name: str,
    cert: object,
    path: str | None,
    method: str | None,
    host: str | None,
    now: datetime | None,
    explain: bool,
) -> None:
    policy = LOADED[name]
    decision = policy.evaluate(cert, path=path, method=method, host=host, now=now, explain=explain)
    assert_sound(decision, policy)
    if explain:
        assert decision.trace is not None
    ordinary = now is None or 1 < now.year < 9999
    if ordinary:
        # fail closed is the last resort, not how ordinary input is handled
        assert decision.reason != EVALUATION_ERROR, decision


PINNED_POLICIES = [
    policy_from_text(text, "pinned.yaml")
    for text in (
        f"policy: pinned-sha256\nmode: optional\nrules:\n  - id: pin\n    effect: allow\n"
        f'    when: fingerprint.sha256 == "{CERT.sha256}"\n',
        f"policy: pinned-sha1\nmode: required\nrules:\n  - id: pin\n    effect: allow\n"
        f'    when: fingerprint == "{":".join(re.findall("..", CERT.sha1.upper()))}"\n',
        f"policy: pinned-set\nmode: optional_interactive_user\nsets:\n  pins:\n"
        f"    - {CERT.sha1}\n    - {CERT.sha256.upper()}\n"
        f"rules:\n  - id: pin\n    effect: allow\n    when: fingerprint in pins\n",
    )
]


def _der_of(cert: bytes | str) -> bytes | None:
    """The DER the engine would fingerprint, worked out independently of it."""
    data = cert.encode("latin-1") if isinstance(cert, str) else cert
    if PEM_BEGIN.encode() not in data:
        return data
    try:
        loaded = x509.load_pem_x509_certificate(data)
    except (ValueError, x509.InvalidVersion):  # a mutated version field is not a ValueError
        return None
    return loaded.public_bytes(serialization.Encoding.DER)


def test_the_pins_allow_the_original() -> None:
    for policy in PINNED_POLICIES:
        for cert in (CERT.der, CERT.pem, CERT.pem.decode()):
            decision = policy.evaluate(cert, path="/orders", now=datetime(2026, 1, 1, tzinfo=UTC))
            assert decision.allowed, decision
        assert not policy.evaluate(ISSUED.der, path="/").allowed
        assert not policy.evaluate(BROKEN_SIGNATURE, path="/").allowed


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(PINNED_POLICIES),
    MUTATED_DER | MUTATED_PEM,
    REQUEST_TEXT,
    ANY_MOMENT,
    st.booleans(),
)
@example(PINNED_POLICIES[0], CERT.der + b"\x00", "/", None, False)
@example(PINNED_POLICIES[0], CERT.pem + b"junk", "/", None, False)
def test_a_mutated_certificate_never_matches_a_pin(
    policy: Policy, cert: bytes | str, path: str | None, now: datetime | None, explain: bool
) -> None:
    decision = policy.evaluate(cert, path=path, now=now, explain=explain)
    assert_sound(decision, policy)
    event(f"{decision.reason}")
    if now is None or 1 < now.year < 9999:
        assert decision.reason != EVALUATION_ERROR, decision
    if decision.allowed:
        assert decision.certificate is not None
        assert decision.certificate.der == CERT.der
        assert _der_of(cert) == CERT.der
    elif _der_of(cert) == CERT.der and decision.reason != EVALUATION_ERROR:
        # the same certificate (say, text after the PEM armor) is allowed, unless the
        # engine refused to read the input at all
        assert decision.reason == MALFORMED_CERTIFICATE, decision


# -- 3: explain=True decides as explain=False ----------------------------------------------------

# these policies have no trust: section, so the trust attributes (trusted, chain.*) are out
# (and no roles: a role name in a rule must be one the policy defines; see test_identity.py)
WITHOUT_TRUST = {n: a for n, a in VOCABULARY.items() if not n.startswith("chain.") and n != "roles"}
STRING_ATTRIBUTES = sorted(n for n, a in WITHOUT_TRUST.items() if a.type is Type.STRING)
MULTI_ATTRIBUTES = sorted(n for n, a in WITHOUT_TRUST.items() if a.multi)
WORDS = st.sampled_from(
    [
        "nildevecc",
        "Microsoft Corp",
        "Payments",
        "Billing",
        "svc@contoso.com",
        "contoso",
        "",
        "a",
        "/orders",
        "GET",
        "api.contoso.com",
        "CN=nildevecc",
        "Contoso Ltd",
        "api-client",
        "nil",
    ]
) | st.text(STRING_CHARACTERS, max_size=6)
STRINGS = WORDS.map(quote)
GLOBS = (
    st.lists(
        st.sampled_from(["a", "nil", "devecc", ".", "*", "**", "?", "\\*", "\\\\", "contoso", "/"]),
        max_size=5,
    )
    .map("".join)
    .filter(lambda p: _glob_ok(p))
    .map(quote)
)


def _glob_ok(pattern: str) -> bool:
    try:
        compile_glob(pattern)
    except GlobError:
        return False
    return True


def _string_lists(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.lists(inner, max_size=3).map(lambda items: "[" + ", ".join(items) + "]")


SERIALS = st.one_of(
    st.sampled_from(
        [
            str(CERT.certificate.serial_number),
            '"0x1A2B3D"',
            '"1a:2b:3d"',
            "0x1A2B3D",
            '"0x1A2B3C"',
            "0",
        ]
    ),
    st.integers(0, 2**64).map(str),
)


def _colons(digest: str) -> str:
    return ":".join(re.findall("..", digest))


SHA1S = (
    st.sampled_from([CERT.sha1, ISSUED.sha1, "0" * 40])
    .flatmap(lambda d: st.sampled_from([d, d.upper(), _colons(d), _colons(d).upper()]))
    .map(quote)
)
SHA256S = (
    st.sampled_from([CERT.sha256, ISSUED.sha256, "f" * 64])
    .flatmap(lambda d: st.sampled_from([d, d.upper(), _colons(d)]))
    .map(quote)
)
ORDERS = st.sampled_from(["<", "<=", ">", ">=", "==", "!="])
TYPED_LEAVES = st.one_of(
    st.sampled_from(
        [
            "valid",
            "expired",
            "not_yet_valid",
            "self_signed",
            "present",
            "path excluded",
            "true",
            "false",
            "not_before < not_after",
            "subject.CN == issuer.CN",
            "subject.O != issuer.O",
            "fingerprint.sha1 == fingerprint.sha1",
            "subject endswith subject.O",
        ]
    ),
    st.builds("expires within {}{}".format, st.integers(0, 10**5), st.sampled_from("wdhms")),
    st.builds(
        "{} {} {}".format,
        st.sampled_from(STRING_ATTRIBUTES),
        st.sampled_from(["==", "!=", "startswith", "endswith", "contains"]),
        STRINGS,
    ),
    st.builds("{} == {}".format, STRINGS, st.sampled_from(STRING_ATTRIBUTES)),
    st.builds("{} matches {}".format, st.sampled_from(STRING_ATTRIBUTES), GLOBS),
    st.builds(
        "{} {} {}".format,
        st.sampled_from(STRING_ATTRIBUTES),
        st.sampled_from(["in", "not in"]),
        _string_lists(STRINGS) | st.just("names"),
    ),
    st.builds(
        "{} {} {}".format,
        STRINGS,
        st.sampled_from(["in", "not in"]),
        st.sampled_from(MULTI_ATTRIBUTES),
    ),
    st.builds(
        "{} {} {} {}".format,
        st.sampled_from(["any", "all"]),
        st.sampled_from(MULTI_ATTRIBUTES),
        st.sampled_from(["==", "!=", "startswith", "endswith", "contains"]),
        STRINGS,
    ),
    st.builds(
        "{} {} matches {}".format,
        st.sampled_from(["any", "all"]),
        st.sampled_from(MULTI_ATTRIBUTES),
        GLOBS,
    ),
    st.builds(
        "{} {} {} {}".format,
        st.sampled_from(["any", "all"]),
        st.sampled_from(MULTI_ATTRIBUTES),
        st.sampled_from(["in", "not in"]),
        _string_lists(STRINGS) | st.just("names"),
    ),
    st.builds(
        "{} {} {}".format,
        st.sampled_from(["not_before", "not_after"]),
        ORDERS,
        timestamps(valid=True),
    ),
    st.builds(
        "{} {} {}".format,
        timestamps(valid=True),
        ORDERS,
        st.sampled_from(["not_before", "not_after"]),
    ),
    st.builds("serial {} {}".format, st.sampled_from(["==", "!="]), SERIALS),
    st.builds(
        "serial {} {}".format,
        st.sampled_from(["in", "not in"]),
        _string_lists(SERIALS) | st.just("serials"),
    ),
    st.builds(
        "{} {} {}".format,
        st.sampled_from(["fingerprint", "fingerprint.sha1"]),
        st.sampled_from(["==", "!="]),
        SHA1S,
    ),
    st.builds(
        "{} {} {}".format,
        st.sampled_from(["fingerprint", "fingerprint.sha256"]),
        st.sampled_from(["==", "!="]),
        SHA256S,
    ),
    st.builds(
        "fingerprint {} {}".format,
        st.sampled_from(["in", "not in"]),
        _string_lists(SHA1S | SHA256S) | st.just("pins"),
    ),
    st.builds(
        "fingerprint.sha256 {} {}".format, st.sampled_from(["in", "not in"]), _string_lists(SHA256S)
    ),
)
TYPED_CONDITIONS = st.recursive(
    TYPED_LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=3).map(" and ".join),
        st.lists(inner, min_size=2, max_size=3).map(" or ".join),
        inner.map("not {}".format),
        inner.map("({})".format),
    ),
    max_leaves=8,
)
RULES = st.lists(
    st.tuples(st.sampled_from(["allow", "deny"]), TYPED_CONDITIONS), min_size=1, max_size=3
)


def policy_of_rules(rules: list[tuple[str, str]], mode: str) -> str:
    head = policy_around("true", mode=mode).split("rules:\n")[0]
    body = "".join(
        f"  - id: rule-{i}\n    effect: {effect}\n    when: {json.dumps(condition)}\n"
        for i, (effect, condition) in enumerate(rules)
    )
    return head + "rules:\n" + body


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    RULES,
    st.sampled_from(["required", "optional", "optional_interactive_user"]),
    st.sampled_from([CERT.der, CERT.pem, ISSUED.pem, AMBIGUOUS.der, BROKEN_SIGNATURE, None]),
    st.sampled_from(["/orders", "/health", "/admin/x", None]),
    st.sampled_from(["GET", "post", "", None]),
    st.sampled_from(["api.contoso.com:443", "API.CONTOSO.COM", None]),
    ORDINARY_MOMENT,
)
def test_explain_decides_as_the_plain_evaluation(
    rules: list[tuple[str, str]],
    mode: str,
    cert: bytes | None,
    path: str | None,
    method: str | None,
    host: str | None,
    now: datetime,
) -> None:
    text = policy_of_rules(rules, mode)
    policy = policy_from_text(text, "typed.yaml")  # every generated condition is well-typed
    plain = policy.evaluate(cert, path=path, method=method, host=host, now=now)
    traced = policy.evaluate(cert, path=path, method=method, host=host, now=now, explain=True)
    assert_sound(plain, policy)
    assert_sound(traced, policy)
    assert plain.reason != EVALUATION_ERROR, plain
    assert (traced.allowed, traced.reason, traced.rule) == (plain.allowed, plain.reason, plain.rule)
    assert traced.closest_rule == plain.closest_rule
    assert traced.failed_condition == plain.failed_condition
    assert plain.trace is None and traced.trace is not None
