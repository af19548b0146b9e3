"""Policy file -> :class:`Document`: YAML with positions, validated against the schema.

The only module that imports yaml and jsonschema. Every value keeps the place it was
written, so a schema error points at the offending key or value, and a ``when:``
condition can point at a token inside a multi-line ``when: |`` block.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from policyengine.errors import Diagnostic, PolicyFileError, PolicySchemaError
from policyengine.language.ast import NamedSet, SetEntry
from policyengine.request.sources import SourceConfig
from policyengine.request.trust import TrustSettings
from policyengine.span import Source, Span, align_offsets

__all__ = ["MODES", "Document", "RuleSpec", "load_document", "parse_document"]

MAX_ALIAS_VALUES = 100_000
"""How many values YAML aliases may expand to: a guard against "billion laughs" files."""

MODES = ("required", "optional", "optional_interactive_user")
_MODE_SPELLINGS = {m.replace("_", ""): m for m in MODES}

Path_ = tuple[Any, ...]
Locator = Callable[[int, int], Span]


@dataclass(frozen=True, slots=True)
class RuleSpec:
    id: str
    effect: str
    when: str
    description: str
    span: Span
    """Where the rule's ``id`` is written."""
    when_span: Span
    locate: Locator
    """Offsets in ``when`` -> spans in the file."""
    silenced: tuple[tuple[str, Span], ...] = ()
    """Warning codes this rule accepts (its ``silence:``)."""


@dataclass(frozen=True, slots=True)
class TrustSection:
    """The ``trust:`` section: settings with files resolved, and where each entry is written."""

    settings: TrustSettings
    span: Span
    spans: dict[tuple[str, int], Span]
    """``(field, index)`` of an anchors / intermediates / crls entry -> where it is written."""


@dataclass(frozen=True, slots=True)
class Document:
    source: Source
    name: str
    description: str
    mode: str
    exclusion_paths: tuple[str, ...]
    exclusion_span: Span | None
    silenced: tuple[tuple[str, Span], ...]
    """Warning codes the policy accepts (``silence:``), each with where it is written."""
    trust: TrustSection | None
    """The ``trust:`` section, or None."""
    certificate: SourceConfig
    """Where the certificate comes from (the ``certificate:`` section, or its defaults)."""
    certificate_span: Span
    policy_span: Span
    """The ``policy:`` key: where warnings about the whole policy point."""
    """The ``certificate:`` key, or the ``policy:`` key when the section is left out."""
    sets: dict[str, NamedSet]
    rules: tuple[RuleSpec, ...]


@cache
def policy_schema() -> dict[str, Any]:
    text = resources.files("policyengine").joinpath("schema/policy.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def load_document(path: str | Path) -> Document:
    """Read and validate a policy file."""
    name = str(path)
    try:
        data = Path(path).read_bytes()
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # point at the first byte that is not UTF-8
        before = data[: exc.start].decode("utf-8")
        shown = Source(name, before + data[exc.start :].decode("utf-8", errors="replace"))
        span = shown.span_at(len(before))
        raise PolicyFileError(
            [
                Diagnostic(
                    span,
                    f"the policy file is not UTF-8 text ({exc.reason})",
                    "save the file as UTF-8",
                    code="file",
                )
            ]
        ) from None
    except OSError as exc:
        span = Source(name, "").file_span()
        reason = exc.strerror or str(exc)
        raise PolicyFileError(
            [
                Diagnostic(
                    span, f"cannot read the policy file: {reason}", "check the path", code="file"
                )
            ]
        ) from None
    return parse_document(text, name)


class _Positions:
    """Where each value (and each mapping key) of the document was written."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.constructor = yaml.SafeLoader("")
        self.seen: set[int] = set()
        self.repeated = 0
        self.values: dict[Path_, yaml.Node] = {}
        self.keys: dict[Path_, yaml.Node] = {}

    def scalar(self, node: yaml.Node, text_expected: bool = False) -> Any:
        """A scalar's value. Where the schema expects text (``text_expected``), a plain
        scalar is the text written unless it is a boolean, a null, or an integer in a form
        YAML 1.1 and 1.2 read alike (see :data:`_AGREED_INTEGER`)."""
        tag = str(node.tag)
        if tag.startswith(_PLAIN):
            tag = tag[len(_PLAIN) :]
            if text_expected and tag not in _NOT_TEXT and not _AGREED_INTEGER.fullmatch(node.value):
                return node.value
            node = yaml.ScalarNode(tag, node.value, node.start_mark, node.end_mark)
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError:
            return node.value
        except Exception as exc:  # PyYAML raises ValueError etc. for `2026-02-30`, `!!float x`
            shown = node.value if len(node.value) <= 40 else node.value[:40] + "…"
            kind = str(node.tag).rsplit(":", 1)[-1]
            raise PolicyFileError(
                [
                    Diagnostic(
                        self._node_span(node),
                        f"`{shown}` is not a valid YAML {kind} ({exc})",
                        "quote it to make it a string",
                        code="yaml",
                    )
                ]
            ) from None

    def value_span(self, path: Path_) -> Span:
        node = self.values.get(path)
        while node is None and path:
            path = path[:-1]
            node = self.values.get(path)
        if node is None:
            return self.source.file_span()
        return self._node_span(node)

    def key_span(self, path: Path_) -> Span:
        node = self.keys.get(path)
        return self._node_span(node) if node is not None else self.value_span(path)

    def _node_span(self, node: yaml.Node) -> Span:
        start, end = node.start_mark, node.end_mark
        length = end.index - start.index if end.line == start.line else 1
        return self.source.span_line_col(start.line + 1, start.column + 1, length)

    def locator(self, path: Path_, value: str) -> Locator:
        """Offsets into a string value -> spans at the place each character was written."""
        node = self.values[path]
        base = node.start_mark.index
        raw = self.source.text[base : node.end_mark.index]
        offsets = align_offsets(value, raw)
        source = self.source

        def locate(start: int, end: int) -> Span:
            start = max(0, min(start, len(value)))
            end = max(start + 1, min(end, len(value)))
            first = base + offsets[start]
            last = base + offsets[min(end, len(value)) - 1]
            span = source.span_at(first)
            same_line = source.text.find("\n", first, last) < 0
            length = (
                last - first + 1 if same_line else source.line_length(span.line) - span.column + 1
            )
            return source.span_at(first, max(1, length))

        return locate


def _build(
    node: yaml.Node,
    path: Path_,
    positions: _Positions,
    errors: list[Diagnostic],
    schema: dict[str, Any],
) -> Any:
    if any(positions.values.get(path[:depth]) is node for depth in range(len(path))):
        span = positions.key_span(path)
        message = "an alias refers to a value that contains it"
        errors.append(Diagnostic(span, message, "", code="yaml"))
        return None
    positions.values[path] = node
    if id(node) in positions.seen:
        positions.repeated += 1
        if positions.repeated > MAX_ALIAS_VALUES:
            raise PolicyFileError(
                [
                    Diagnostic(
                        positions.value_span(path),
                        f"aliases expand to more than {MAX_ALIAS_VALUES:,} values",
                        "write the values out, or use fewer nested aliases",
                        code="yaml",
                    )
                ]
            )
    else:
        positions.seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = positions.scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                span = positions._node_span(key_node)
                errors.append(Diagnostic(span, "keys must be plain names", "", code="yaml"))
                continue
            if key in result:
                first = positions.keys[(*path, key)]
                errors.append(
                    Diagnostic(
                        positions._node_span(key_node),
                        f"`{key}` is given twice",
                        f"the first is at line {first.start_mark.line + 1}; keep one",
                        code="duplicate-key",
                    )
                )
                continue
            positions.keys[(*path, key)] = key_node
            child = _property_schema(schema, key)
            result[key] = _build(value_node, (*path, key), positions, errors, child)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = _items_schema(schema)
        return [
            _build(item, (*path, i), positions, errors, items) for i, item in enumerate(node.value)
        ]
    return positions.scalar(node, _accepts_text(schema))


def _alternatives(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The schema and the alternatives it offers (``oneOf``, ``anyOf``)."""
    found = [schema]
    for keyword in ("oneOf", "anyOf"):
        for alternative in schema.get(keyword, []):
            if isinstance(alternative, dict):
                found.extend(_alternatives(alternative))
    return found


def _property_schema(schema: dict[str, Any], key: str) -> dict[str, Any]:
    """The schema of a mapping's value under ``key`` (empty when the schema says nothing)."""
    for alternative in _alternatives(schema):
        properties = alternative.get("properties", {})
        if key in properties:
            return dict(properties[key])
        additional = alternative.get("additionalProperties")
        if isinstance(additional, dict):
            return additional
    return {}


def _items_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema of a list's items (empty when the schema says nothing)."""
    for alternative in _alternatives(schema):
        items = alternative.get("items")
        if isinstance(items, dict):
            return items
    return {}


def _accepts_text(schema: dict[str, Any]) -> bool:
    """Whether the schema expects a string at this place (among other types or not)."""
    for alternative in _alternatives(schema):
        declared = alternative.get("type")
        if declared == "string" or (isinstance(declared, list) and "string" in declared):
            return True
    return False


def parse_document(text: str, name: str = "<policy>") -> Document:
    """Validate policy text; ``name`` is the file name used in messages."""
    data, positions = load_yaml(text, name, policy_schema(), "the policy file")
    return _document(data, positions)


_PLAIN = "tag:policyengine.invalid,2026:plain:"
"""Prefixed to the tag YAML resolves for a plain (unquoted, untagged) scalar, so that
building the document can tell ``12`` from ``!!int 12`` and read it by where it stands."""

_NOT_TEXT = frozenset(["tag:yaml.org,2002:bool", "tag:yaml.org,2002:null"])
"""Plain scalars refused where text is expected, as before: an unquoted ``yes``, ``NO``,
``off``, ``true`` or ``~`` is a boolean or a null to YAML 1.1, and likely not meant as text."""

_AGREED_INTEGER = re.compile(r"[-+]?(?:0|[1-9][0-9]*)|0x[0-9A-Fa-f]+")
"""Integers that YAML 1.1 and YAML 1.2 read alike: decimal without a leading zero, and
``0x`` hex. Every other number-like plain scalar (``12:34:56`` base 60, ``1_2_3``, ``017``
octal, ``0b101``, ``0o17``, ``1.5``, ``1e5``, a date) is read as the text written where the
schema expects text: YAML 1.1 and 1.2 disagree about them or read them as no integer."""


def _plain_loader(base: type[Any]) -> type[Any]:
    class Loader(base):  # type: ignore[misc]
        def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
            tag = super().resolve(kind, value, implicit)
            if kind is yaml.ScalarNode and implicit[0]:
                return _PLAIN + tag
            return tag

    Loader.__name__ = f"Plain{base.__name__}"
    return Loader


_SAFE_LOADER = _plain_loader(yaml.SafeLoader)
_FAST_LOADER = _plain_loader(yaml.CSafeLoader) if hasattr(yaml, "CSafeLoader") else None


def _compose(text: str) -> yaml.Node | None:
    """The YAML node tree, by libyaml when PyYAML has it (ten times faster on a policy of
    thousands of rules); on any problem, by the Python loader, whose messages say more."""
    if _FAST_LOADER is not None:
        try:
            return yaml.compose(text, Loader=_FAST_LOADER)
        except (yaml.YAMLError, RecursionError):
            pass
    return yaml.compose(text, Loader=_SAFE_LOADER)


def load_yaml(text: str, name: str, schema: dict[str, Any], what: str) -> tuple[Any, _Positions]:
    """YAML text -> data and where each value was written, validated against ``schema``.

    Every problem is a PolicyError naming the file, line and column (``what`` names the
    kind of file in messages: "the policy file", "the test file").
    """
    text = text.removeprefix("\ufeff")
    source = Source(name, text)
    try:
        root = _compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        at_end = mark is not None and not source.line_text(mark.line + 1).strip()
        if at_end and mark is exc.problem_mark and exc.context_mark and exc.context:
            # the problem is at the end of the file (an unclosed quote or bracket):
            # point at where the unfinished thing began, which has a line to show
            mark = exc.context_mark
            problem = f"{problem} {exc.context}"
        span = source.span_line_col(mark.line + 1, mark.column + 1) if mark else source.file_span()
        hint = "check the indentation and quoting on this line or the one before"
        raise PolicyFileError(
            [Diagnostic(span, f"not valid YAML: {problem}", hint, code="yaml")]
        ) from None
    except yaml.YAMLError as exc:
        raise PolicyFileError(
            [Diagnostic(source.file_span(), f"not valid YAML: {exc}", "", code="yaml")]
        ) from None
    except RecursionError:
        raise _too_deep(source) from None
    if root is None or (isinstance(root, yaml.ScalarNode) and root.value == "" and not root.style):
        # no document at all, or only `---`
        raise PolicyFileError(
            [
                Diagnostic(
                    source.file_span(),
                    f"{what} is empty",
                    "start with `policy: NAME` and a `rules:` list (see docs/policy-file.md)"
                    if what == "the policy file"
                    else "",
                    code="schema",
                )
            ]
        )
    positions = _Positions(source)
    errors: list[Diagnostic] = []
    try:
        data = _build(root, (), positions, errors, schema)
        if errors:
            raise PolicyFileError(errors)
        schema_errors = _schema_errors(data, positions, schema)
    except RecursionError:
        raise _too_deep(source) from None
    if schema_errors:
        raise PolicySchemaError(schema_errors)
    return data, positions


def _too_deep(source: Source) -> PolicyFileError:
    message = "the policy is nested too deeply"
    return PolicyFileError([Diagnostic(source.file_span(), message, "", code="yaml")])


def _schema_errors(data: Any, positions: _Positions, schema: dict[str, Any]) -> list[Diagnostic]:
    validator = jsonschema.Draft202012Validator(schema)
    found: list[Diagnostic] = []
    for error in sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.path]):
        found.extend(_translate(error, positions))
    found.sort(key=lambda d: (d.span.line, d.span.column))
    return found


def _where(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the policy"


def _translate(error: jsonschema.ValidationError, positions: _Positions) -> list[Diagnostic]:
    path: Path_ = tuple(error.absolute_path)
    where = _where(path)
    validator = error.validator
    span = positions.value_span(path)
    if validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = list(error.schema.get("properties", {}))  # type: ignore[union-attr]
        out = []
        for key in error.instance:
            if key in allowed:
                continue
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"did you mean `{close[0]}`?" if close else f"allowed: {', '.join(allowed)}"
            out.append(
                Diagnostic(
                    positions.key_span((*path, key)),
                    f"unknown key `{key}` in {where}",
                    hint,
                    code="schema",
                )
            )
        return out
    if validator == "required":
        missing = str(error.message).split("'")[1] if "'" in error.message else "?"
        hints = {
            "rules": "add a `rules:` list with at least one rule",
            "policy": "add `policy: NAME` at the top",
            "id": "give the rule an `id:`",
            "effect": "add `effect: allow` or `effect: deny`",
            "when": "add a `when:` condition, e.g. `when: valid`",
        }
        return [
            Diagnostic(span, f"{where} has no `{missing}`", hints.get(missing, ""), code="schema")
        ]
    last = path[-1] if path else ""
    if last == "mode":
        return [
            Diagnostic(
                span,
                f"unknown mode {json.dumps(error.instance)}",
                "use required, optional or optional_interactive_user "
                "(App Service's Required, Optional, OptionalInteractiveUser also work)",
                code="schema",
            )
        ]
    if last == "when" and validator == "pattern":
        rule_id = _rule_id(positions, path)
        return [
            Diagnostic(
                span,
                f"rule {rule_id}has an empty `when`",
                'write a condition, e.g. `when: valid and subject.CN == "api-client"`',
                code="schema",
            )
        ]
    if last in ("policy", "id") and validator == "pattern":
        return [
            Diagnostic(
                span,
                f"{where} {json.dumps(error.instance)} is not a valid name",
                "use letters, digits, `-`, `_` and `.`, starting with a letter or digit",
                code="schema",
            )
        ]
    if validator == "pattern" and last in ("header", "chain_header", "verify_header"):
        return [
            Diagnostic(
                span,
                f"{where} {json.dumps(error.instance)} is not an HTTP header name",
                "use letters, digits and `-`, e.g. X-SSL-Client-Cert",
                code="schema",
            )
        ]
    if "propertyNames" in error.schema_path:
        # jsonschema reports a bad key as a `pattern` error on the mapping holding it
        return [
            Diagnostic(
                positions.key_span((*path, error.instance)),
                f"set name {json.dumps(error.instance)} is not a valid name",
                "use letters, digits and `_`, not starting with a digit",
                code="schema",
            )
        ]
    if validator == "enum":
        choices = [str(o) for o in error.validator_value]  # type: ignore[union-attr]
        if len(choices) <= 3:
            options = " or ".join(f"`{o}`" for o in choices)
        else:
            options = "one of " + ", ".join(choices)
        close = difflib.get_close_matches(str(error.instance), choices, n=1)
        return [
            Diagnostic(
                span,
                f"{where} is {json.dumps(error.instance)}; it must be {options}",
                f"did you mean `{close[0]}`?" if close else "",
                code="schema",
            )
        ]
    if validator in ("type", "oneOf"):
        expected = _expected_type(error)
        return [
            Diagnostic(
                span,
                f"{where} must be {expected}, not {_type_name(error.instance)}",
                "",
                code="schema",
            )
        ]
    if validator == "minItems":
        return [
            Diagnostic(
                span,
                f"{where} is empty",
                "add at least one rule; without one every request is denied",
                code="schema",
            )
        ]
    return [Diagnostic(span, f"{where}: {error.message}", "", code="schema")]


def _rule_id(positions: _Positions, path: Path_) -> str:
    node = positions.values.get((*path[:-1], "id"))
    return f"`{node.value}` " if isinstance(node, yaml.ScalarNode) else ""


def _expected_type(error: jsonschema.ValidationError) -> str:
    names = {
        "string": "a string",
        "array": "a list",
        "object": "a mapping",
        "integer": "an integer",
    }
    schema = error.schema
    kinds: list[Any]
    if error.validator == "oneOf":
        kinds = [s.get("type") for s in schema.get("oneOf", [])]  # type: ignore[union-attr]
    else:
        declared = schema.get("type")  # type: ignore[union-attr]
        kinds = declared if isinstance(declared, list) else [declared]
    return " or ".join(names.get(str(k), str(k)) for k in kinds)


def _type_name(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "a number"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "a mapping"


def _trust_section(section: dict[str, Any] | None, positions: _Positions) -> TrustSection | None:
    if section is None:
        return None
    base = Path(positions.source.name).resolve().parent
    spans: dict[tuple[str, int], Span] = {}

    def files(field: str, path: tuple[str, ...]) -> tuple[Path, ...]:
        entries = (
            section.get(field, [])
            if field != "crls"
            else section.get("revocation", {}).get("crls", [])
        )
        for index in range(len(entries)):
            spans[(field, index)] = positions.value_span((*path, index))
        return tuple((base / entry) for entry in entries)

    revocation = section.get("revocation", {})
    mode = revocation.get("mode", "off")
    settings = TrustSettings(
        anchors=files("anchors", ("trust", "anchors")),
        intermediates=files("intermediates", ("trust", "intermediates")),
        header_intermediates=section.get("header_intermediates", True),
        max_chain_depth=section.get("max_chain_depth", 4),
        client_auth_eku=section.get("client_auth_eku", "required"),
        crls=files("crls", ("trust", "revocation", "crls")),
        revocation="off" if mode is False else mode,
        revocation_check=revocation.get("check", "chain"),
    )
    return TrustSection(settings, positions.key_span(("trust",)), spans)


def _certificate_section(
    section: dict[str, Any], positions: _Positions, errors: list[Diagnostic]
) -> SourceConfig:
    """The ``certificate:`` section as a SourceConfig; bad entries become diagnostics."""
    proxies = section.get("trusted_proxies")
    if proxies is not None:
        for index, entry in enumerate(proxies):
            if entry == "unix":
                continue
            try:
                ipaddress.ip_network(entry)
            except ValueError as exc:
                errors.append(
                    Diagnostic(
                        positions.value_span(("certificate", "trusted_proxies", index)),
                        f"trusted proxy {json.dumps(entry)} is not an address or network: {exc}",
                        "write an address (10.0.0.4, ::1) or a network (10.0.0.0/8), or unix",
                        code="schema",
                    )
                )
        if any(d.code == "schema" for d in errors):
            proxies = None
    try:
        return SourceConfig(
            source=section.get("source", "azure"),
            header=section.get("header"),
            trusted_proxies=tuple(proxies) if proxies is not None else None,
            max_header_bytes=section.get("max_header_bytes", 16384),
            max_chain_length=section.get("max_chain_length", 8),
            verify_header=section.get("verify_header"),
            chain_header=section.get("chain_header"),
        )
    except ValueError as exc:
        errors.append(
            Diagnostic(positions.value_span(("certificate",)), str(exc), "", code="schema")
        )
        return SourceConfig()


def _document(data: dict[str, Any], positions: _Positions) -> Document:
    errors: list[Diagnostic] = []
    spelled = str(data.get("mode", "required")).lower().replace("_", "").replace("-", "")
    mode = _MODE_SPELLINGS.get(spelled, "required")
    if spelled not in _MODE_SPELLINGS:  # the schema's `$` lets "required\n" through
        errors.append(
            Diagnostic(
                positions.value_span(("mode",)),
                f"unknown mode {json.dumps(data['mode'])}",
                "use required, optional or optional_interactive_user",
                code="schema",
            )
        )
    raw_paths = data.get("exclusion_paths", [])
    exclusion_paths: list[str] = []
    items = [raw_paths] if isinstance(raw_paths, str) else raw_paths
    for index, item in enumerate(items):
        path = ("exclusion_paths",) if isinstance(raw_paths, str) else ("exclusion_paths", index)
        for match in re.finditer(r"[^,;]+", item):
            part = match.group().strip()
            if not part:
                continue
            if not part.startswith("/"):
                start = match.start() + match.group().index(part)
                errors.append(
                    Diagnostic(
                        positions.locator(path, item)(start, start + len(part)),
                        f"exclusion path `{part}` does not start with `/`",
                        f"write `/{part}`",
                        code="schema",
                    )
                )
            exclusion_paths.append(part)
    exclusion_span = (
        positions.value_span(("exclusion_paths",)) if "exclusion_paths" in data else None
    )

    certificate = _certificate_section(data.get("certificate", {}), positions, errors)
    certificate_span = positions.key_span(
        ("certificate",) if "certificate" in data else ("policy",)
    )

    sets: dict[str, NamedSet] = {}
    for set_name, values in data.get("sets", {}).items():
        entries = tuple(
            SetEntry(value, positions.value_span(("sets", set_name, i)))
            for i, value in enumerate(values)
        )
        sets[set_name] = NamedSet(set_name, entries, positions.key_span(("sets", set_name)))

    rules: list[RuleSpec] = []
    seen: dict[str, Span] = {}
    for index, rule in enumerate(data["rules"]):
        rule_id = rule["id"]
        id_span = positions.value_span(("rules", index, "id"))
        if rule_id in seen:
            errors.append(
                Diagnostic(
                    id_span,
                    f"rule id `{rule_id}` is used twice",
                    f"the first is at line {seen[rule_id].line}; give each rule its own id",
                    code="duplicate-rule",
                )
            )
            continue
        seen[rule_id] = id_span
        when = rule["when"]
        rules.append(
            RuleSpec(
                id=rule_id,
                effect=rule["effect"],
                when=when,
                description=rule.get("description", ""),
                span=id_span,
                when_span=positions.value_span(("rules", index, "when")),
                locate=positions.locator(("rules", index, "when"), when),
                silenced=tuple(
                    (code, positions.value_span(("rules", index, "silence", i)))
                    for i, code in enumerate(rule.get("silence", []))
                ),
            )
        )
    if errors:
        raise PolicySchemaError(errors)
    return Document(
        source=positions.source,
        name=data["policy"],
        description=data.get("description", ""),
        mode=mode,
        exclusion_paths=tuple(exclusion_paths),
        exclusion_span=exclusion_span,
        silenced=tuple(
            (code, positions.value_span(("silence", i)))
            for i, code in enumerate(data.get("silence", []))
        ),
        trust=_trust_section(data.get("trust"), positions),
        certificate=certificate,
        certificate_span=certificate_span,
        policy_span=positions.key_span(("policy",)),
        sets=sets,
        rules=tuple(rules),
    )
