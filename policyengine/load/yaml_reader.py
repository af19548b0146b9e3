"""YAML text -> plain data and where each value was written (the only yaml import).

Owns the YAML-with-positions reader: composing the node tree (by libyaml when PyYAML has
it), building plain Python data from it while recording where every value and mapping key
stands, the guards against alias bombs and self-containing aliases, and the rule that where
the schema expects text, a plain scalar is the text written (YAML 1.1 reads ``12:34:56``,
``017``, ``NO`` as numbers and booleans). It reads the schema only to know where text is
expected; validating against the schema is :mod:`policyengine.load.schema`'s job.

Must not import: jsonschema, the rest of policyengine.load, evaluation/, request/,
language/, integrations/, tooling/, cli/.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import yaml

from policyengine.errors import Diagnostic, PolicyFileError
from policyengine.span import Source, Span, align_offsets

__all__ = ["MAX_ALIAS_VALUES", "Locator", "Path_", "Positions", "read_yaml", "too_deep"]

MAX_ALIAS_VALUES = 100_000
"""How many values YAML aliases may expand to: a guard against "billion laughs" files."""

Path_ = tuple[Any, ...]
Locator = Callable[[int, int], Span]


class Positions:
    """Where each value (and each mapping key) of the document was written."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.constructor = yaml.SafeLoader("")
        self.seen: set[int] = set()
        self.repeated = 0
        self.values: dict[Path_, yaml.Node] = {}
        self.keys: dict[Path_, yaml.Node] = {}
        self._schemas: dict[tuple[int, object], Any] = {}

    def under(self, schema: dict[str, Any], key: str | bool | None) -> Any:
        """What the schema says below ``schema``: of the value under mapping key ``key``,
        of a list's items (None), or whether it expects text here (True); looked up once
        for each place of the schema, not once per value of a long list."""
        memo = (id(schema), key)  # the schema outlives the reading: its ids are stable
        found = self._schemas.get(memo, _UNSEEN)
        if found is _UNSEEN:
            if key is None:
                found = _items_schema(schema)
            elif isinstance(key, str):
                found = _property_schema(schema, key)
            else:
                found = _accepts_text(schema)
            self._schemas[memo] = found
        return found

    def scalar(self, node: yaml.Node, text_expected: bool = False) -> Any:
        """A scalar's value. Where the schema expects text (``text_expected``), a plain
        scalar is the text written unless it is a boolean, a null, or an integer in a form
        YAML 1.1 and 1.2 read alike (see :data:`_AGREED_INTEGER`)."""
        tag = str(node.tag)
        if tag == _STR:  # quoted (or tagged !!str): the text written, as PyYAML reads it
            return node.value
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
                        self.node_span(node),
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
        return self.node_span(node)

    def key_span(self, path: Path_) -> Span:
        node = self.keys.get(path)
        return self.node_span(node) if node is not None else self.value_span(path)

    def written_text(self, path: Path_) -> str | None:
        """The text of the scalar written at ``path``, or None when there is none."""
        node = self.values.get(path)
        return node.value if isinstance(node, yaml.ScalarNode) else None

    def node_span(self, node: yaml.Node) -> Span:
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
    positions: Positions,
    errors: list[Diagnostic],
    schema: dict[str, Any],
) -> Any:
    if id(node) in positions.seen:  # an alias: only a node seen before can contain itself
        if any(positions.values.get(path[:depth]) is node for depth in range(len(path))):
            span = positions.key_span(path)
            message = "an alias refers to a value that contains it"
            errors.append(Diagnostic(span, message, "", code="yaml"))
            return None
        positions.values[path] = node
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
        positions.values[path] = node
        positions.seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = positions.scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                span = positions.node_span(key_node)
                errors.append(Diagnostic(span, "keys must be plain names", "", code="yaml"))
                continue
            if key in result:
                first = positions.keys[(*path, key)]
                errors.append(
                    Diagnostic(
                        positions.node_span(key_node),
                        f"`{key}` is given twice",
                        f"the first is at line {first.start_mark.line + 1}; keep one",
                        code="duplicate-key",
                    )
                )
                continue
            positions.keys[(*path, key)] = key_node
            child = positions.under(schema, key)
            result[key] = _build(value_node, (*path, key), positions, errors, child)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = positions.under(schema, None)
        return [
            _build(item, (*path, i), positions, errors, items) for i, item in enumerate(node.value)
        ]
    return positions.scalar(node, positions.under(schema, True))


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
            return properties[key]  # type: ignore[no-any-return]
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


_PLAIN = "tag:policyengine.invalid,2026:plain:"
"""Prefixed to the tag YAML resolves for a plain (unquoted, untagged) scalar, so that
building the document can tell ``12`` from ``!!int 12`` and read it by where it stands."""

_STR = "tag:yaml.org,2002:str"
_UNSEEN = object()

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
        except (yaml.YAMLError, RecursionError, UnicodeEncodeError):  # a lone surrogate, say
            pass
    return yaml.compose(text, Loader=_SAFE_LOADER)


def read_yaml(text: str, name: str, schema: dict[str, Any], what: str) -> tuple[Any, Positions]:
    """YAML text -> data and where each value was written; ``schema`` says where text is
    expected. Every problem is a PolicyFileError naming the file, line and column
    (``what`` names the kind of file in messages: "the policy file", "the test file")."""
    text = text.removeprefix("\ufeff")
    source = Source(name, text)
    root = _root(text, source)
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
    positions = Positions(source)
    errors: list[Diagnostic] = []
    try:
        data = _build(root, (), positions, errors, schema)
    except RecursionError:
        raise too_deep(source) from None
    if errors:
        raise PolicyFileError(errors)
    return data, positions


def _root(text: str, source: Source) -> yaml.Node | None:
    """The document's root node; a YAML error becomes a PolicyFileError at its place."""
    try:
        return _compose(text)
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
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, at its place
        span = source.span_at(min(exc.position, max(len(text) - 1, 0)))
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        message = f"not valid YAML: character U+{code:04X} is not allowed"
        hint = "remove it, or write it as an escape (\\uXXXX) in a double-quoted string"
        raise PolicyFileError([Diagnostic(span, message, hint, code="yaml")]) from None
    except yaml.YAMLError as exc:
        raise PolicyFileError(
            [Diagnostic(source.file_span(), f"not valid YAML: {exc}", "", code="yaml")]
        ) from None
    except RecursionError:
        raise too_deep(source) from None


def too_deep(source: Source) -> PolicyFileError:
    message = "the policy is nested too deeply"
    return PolicyFileError([Diagnostic(source.file_span(), message, "", code="yaml")])
