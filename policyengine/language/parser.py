"""Text of a ``when:`` condition -> syntax tree. The only module that imports lark.

The grammar lives in ``grammar.lark`` beside this file. Lark's errors become
:class:`~policyengine.errors.PolicySyntaxError` pointing at the offending token in the
policy file, with a hint where a common slip is recognised (``AND``, ``=``, ``&&``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)
from lark.tree import Meta

from policyengine.errors import Diagnostic, PolicySyntaxError
from policyengine.language import ast
from policyengine.span import Span
from policyengine.values import parse_duration, parse_timestamp

__all__ = ["KEYWORDS", "Locator", "parse"]

Locator = Callable[[int, int], Span]
"""Turns a start and end offset in the condition text into a span in the policy file."""

KEYWORDS = frozenset(
    [
        "and",
        "or",
        "not",
        "in",
        "any",
        "all",
        "true",
        "false",
        "expires",
        "within",
        "path",
        "excluded",
        "startswith",
        "endswith",
        "contains",
        "matches",
    ]
)


@cache
def _parser() -> Lark:
    grammar = resources.files("policyengine.language").joinpath("grammar.lark").read_text()
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=False)


def parse(text: str, locate: Locator) -> ast.Expr:
    """Parse one condition. Raises PolicySyntaxError pointing into the policy file.

    Conditions that differ only in their string literals (generated from a partner list:
    ``subject.CN == "client-17"``) share a *shape*: the text with each string's content
    blanked, length kept. A shape is parsed once (:func:`_shaped`); each condition of it
    is that tree with its own strings, spans and text (:func:`_fill`), which costs a
    tenth of a parse. The tree is the one :func:`parse_text` builds, spans included.
    """
    shape = _STRING.sub(_blank, text)
    try:
        template = _shaped(shape)
    except PolicySyntaxError:  # reported with the condition's own text
        return parse_text(text, locate)
    return _fill(template, text, shape, locate)  # type: ignore[no-any-return]


MAX_DEPTH = 256
"""Nodes nested deeper than this are refused when parsed: every stage after the parser
(the checker, the linter, the compiler, the index) walks the tree recursively, and
``not not ... not x`` 360 deep overflowed the linter's (a RecursionError out of
load_policy). No policy needs more; a role inlined in a rule is bounded apart
(``lint._INLINE_DEPTH``)."""


def parse_text(text: str, locate: Locator) -> ast.Expr:
    """Parse one condition with lark, no shape shared."""
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as error:
        raise PolicySyntaxError([_diagnostic(text, error, locate)]) from None
    try:
        result: ast.Expr = _Builder(text, locate).transform(tree)
    except VisitError as error:
        if isinstance(error.orig_exc, PolicySyntaxError):
            raise error.orig_exc from None
        if isinstance(error.orig_exc, RecursionError):
            raise _too_deep(text, locate) from None
        raise
    except RecursionError:
        raise _too_deep(text, locate) from None
    if _depth(result) > MAX_DEPTH:
        raise _too_deep(text, locate)
    return result


def _depth(tree: ast.Expr) -> int:
    """How deep the tree's nodes nest, counted without recursion."""
    deepest = 0
    pending: list[tuple[object, int]] = [(tree, 1)]
    while pending:
        node, depth = pending.pop()
        deepest = max(deepest, depth)
        for child in ast.children(node):
            pending.append((child, depth + 1))
    return deepest


_STRING = re.compile(r"""(?:"(?:[^"\\\n]|\\.)*")|(?:'(?:[^'\\\n]|\\.)*')""")
"""The grammar's STRING terminal: where a string literal is (nothing else holds a quote)."""


def _blank(match: re.Match[str]) -> str:
    quote, body = match.group()[0], match.group()[1:-1]
    return quote + "x" * len(body) + quote


@lru_cache(maxsize=4096)
def _shaped(shape: str) -> ast.Expr:
    """The tree of a shape, its spans marks of offsets (file "", line start, column end)."""
    return parse_text(shape, lambda start, end: Span("", start, end, 0))


def _fill(node: Any, text: str, shape: str, locate: Locator) -> Any:
    """``node`` of a shape's tree for the condition ``text``: its own strings, spans and
    source text at the same offsets (a string's length is kept in its shape)."""
    if isinstance(node, tuple):
        return tuple(_fill(item, text, shape, locate) for item in node)
    if not isinstance(node, ast.Node):
        return node
    changes: dict[str, Any] = {}
    for name in node.__dataclass_fields__:
        value = getattr(node, name)
        if name == "span":
            start, end = value.line, value.column
            changes["span"] = locate(start, end)
            written = text[start:end]
            changes["text"] = written if node.text == shape[start:end] else written.strip()
        elif name != "text":
            changes[name] = _fill(value, text, shape, locate)
    if isinstance(node, ast.Literal) and node.kind == "string":
        changes["value"] = _unquote(changes["text"])
    return type(node)(**changes)


def _too_deep(text: str, locate: Locator) -> PolicySyntaxError:
    return PolicySyntaxError(
        [
            Diagnostic(
                locate(0, len(text)),
                "the condition is nested too deeply",
                "write it with fewer nested `not` and parentheses",
                code="syntax",
            )
        ]
    )


_TOKEN_NAMES = {
    "NAME": "a name",
    "STRING": "a string",
    "INT": "a number",
    "DURATION": "a duration such as 30d",
    "TIMESTAMP": "a timestamp such as 2026-01-01T00:00:00Z",
    "$END": "the end of the condition",
}


_OPERATORS = frozenset(
    ["==", "!=", "<", "<=", ">", ">=", "in", "startswith", "endswith", "contains", "matches"]
)


def _describe_expected(expected: set[str]) -> str:
    words: set[str] = set()
    for name in expected:
        if name in _TOKEN_NAMES:
            words.add(_TOKEN_NAMES[name])
            continue
        try:
            pattern = _parser().get_terminal(name).pattern
        except KeyError:
            continue
        if pattern.type == "str":
            words.add(f"`{pattern.value}`")
    if not words:
        return ""
    operators = {w for w in words if w.strip("`") in _OPERATORS}
    if len(operators) > 2:
        words = (words - operators) | {"an operator such as `==` or `in`"}
    ordered = sorted(words, key=lambda w: (not w.startswith("`"), w))
    if len(ordered) > 8:
        ordered = [*ordered[:8], "…"]
    return "expected " + ", ".join(ordered)


def _diagnostic(text: str, error: UnexpectedInput, locate: Locator) -> Diagnostic:
    hint = ""
    if isinstance(error, UnexpectedEOF) or (
        isinstance(error, UnexpectedToken) and error.token.type == "$END"
    ):
        # lark's end token borrows the last token's place: point there, not at a comment
        last_end = getattr(getattr(error, "token", None), "end_pos", None)
        offset = last_end if last_end is not None else len(text.rstrip())
        span = locate(max(0, offset - 1), offset)
        message = "the condition ends too early"
        expected = _describe_expected(set(getattr(error, "expected", ()) or ()))
        if expected:
            message += f"; {expected}"
        return Diagnostic(span, message, "finish the condition", code="syntax")
    if isinstance(error, UnexpectedCharacters):
        offset = error.pos_in_stream or 0
        char = text[offset] if offset < len(text) else ""
        span = locate(offset, offset + 1)
        if char in "\"'":
            message = "a string is not closed"
            hint = f"end the string with {char} on the same line"
        elif _slip_hint(_slip_at(text, offset)):
            written = _slip_at(text, offset)
            span = locate(offset, offset + len(written))
            message = f"unexpected `{written}`"
            hint = _slip_hint(written)
        else:
            message = f"unexpected character `{char}`"
            expected = _describe_expected(set(error.allowed or ()))
            hint = expected and f"{expected}"
        return Diagnostic(span, message, hint, code="syntax")
    assert isinstance(error, UnexpectedToken)
    token = error.token
    start = token.start_pos if token.start_pos is not None else 0
    value = str(token)
    span = locate(start, start + max(1, len(value)))
    message = f"unexpected `{value}`"
    expected = _describe_expected(set(error.expected or ()))
    if expected:
        message += f"; {expected}"
    hint = _slip_hint(value)
    before = text[:start].split()
    if not hint and before and before[-1].isalpha() and (hint := _slip_hint(before[-1])):
        # `NOT valid` and `adn valid` lex the slip as a name: it is the word before this
        # token, and the caret goes under it
        slip = text.rfind(before[-1], 0, start)
        span = locate(slip, slip + len(before[-1]))
        message = f"unexpected `{value}` after `{before[-1]}`"
    if not hint and text[:start].rstrip().endswith("path"):
        hint = "`path` only begins `path excluded`; the request path is `request.path`"
    return Diagnostic(span, message, hint, code="syntax")


def _slip_at(text: str, offset: int) -> str:
    """The operator-like characters written at ``offset``: `&&`, `||`, or one character."""
    two = text[offset : offset + 2]
    return two if two in ("&&", "||") else text[offset : offset + 1]


_WORD_OPERATORS = {
    "equals": "==",
    "equal": "==",
    "eq": "==",
    "is": "==",
    "ne": "!=",
    "neq": "!=",
    "lt": "<",
    "le": "<=",
    "gt": ">",
    "ge": ">=",
}
"""Operators other languages spell as words, and the symbol this one writes."""

_CONNECTIVES = ("and", "or", "not", "in")


def _near_keyword(word: str) -> str | None:
    """The keyword a misspelt word most likely is: `adn` -> `and`, `contain` -> `contains`."""
    word = word.lower()
    if word in KEYWORDS:
        return None
    for keyword in _CONNECTIVES:  # short words: a swapped letter is the usual slip
        if sorted(word) == sorted(keyword):
            return keyword
    close = difflib.get_close_matches(word, sorted(KEYWORDS), n=1, cutoff=0.8)
    return close[0] if close else None


def _slip_hint(value: str) -> str:
    if value.lower() in KEYWORDS and value != value.lower():
        return f"keywords are lower case: write `{value.lower()}`"
    if value.lower() in _WORD_OPERATORS:
        return f"compare with `{_WORD_OPERATORS[value.lower()]}`"
    if value.isalpha() and (keyword := _near_keyword(value)):
        return f"did you mean `{keyword}`?"
    if value.startswith("&&"):
        return "write `and`"
    if value.startswith("||"):
        return "write `or`"
    if value == "=":
        return "compare with `==`"
    if value.startswith("!") and not value.startswith("!="):
        return "negate with `not`"
    return ""


@v_args(meta=True)
class _Builder(Transformer[Token, Any]):
    """Lark tree -> syntax tree nodes, each with its span and source text."""

    def __init__(self, text: str, locate: Locator) -> None:
        super().__init__()
        self._text = text
        self._locate = locate

    def _where(self, meta: Meta) -> dict[str, Any]:
        if getattr(meta, "empty", True):
            return {"span": self._locate(0, len(self._text)), "text": self._text.strip()}
        return {
            "span": self._locate(meta.start_pos, meta.end_pos),
            "text": self._text[meta.start_pos : meta.end_pos],
        }

    def _token_where(self, token: Token) -> dict[str, Any]:
        start = token.start_pos or 0
        end = token.end_pos if token.end_pos is not None else start + len(token)
        return {"span": self._locate(start, end), "text": str(token)}

    def or_expr(self, meta: Meta, children: list[ast.Expr]) -> ast.Or:
        return ast.Or(operands=tuple(children), **self._where(meta))

    def and_expr(self, meta: Meta, children: list[ast.Expr]) -> ast.And:
        return ast.And(operands=tuple(children), **self._where(meta))

    def negation(self, meta: Meta, children: list[Any]) -> ast.Not:
        return ast.Not(operand=children[-1], **self._where(meta))

    def comparison(self, meta: Meta, children: list[Any]) -> ast.Compare:
        left, op, right = children
        return ast.Compare(op=op, left=left, right=right, **self._where(meta))

    def quantified(self, meta: Meta, children: list[Any]) -> ast.Quantified:
        quantifier, subject, op, right = children
        return ast.Quantified(
            quantifier=quantifier, subject=subject, op=op, right=right, **self._where(meta)
        )

    def quantifier(self, meta: Meta, children: list[Token]) -> str:
        return str(children[0])

    def op(self, meta: Meta, children: list[Token]) -> str:
        return " ".join(str(c) for c in children)

    def expires_within(self, meta: Meta, children: list[Token]) -> ast.ExpiresWithin:
        token = children[-1]
        duration = ast.Literal(
            value=parse_duration(str(token)), kind="duration", **self._token_where(token)
        )
        return ast.ExpiresWithin(duration=duration, **self._where(meta))

    def path_excluded(self, meta: Meta, children: list[Token]) -> ast.PathExcluded:
        return ast.PathExcluded(**self._where(meta))

    def name(self, meta: Meta, children: list[Token]) -> ast.Name:
        return ast.Name(name=str(children[0]), **self._token_where(children[0]))

    def list_literal(self, meta: Meta, children: list[Any]) -> ast.ListLiteral:
        items = tuple(c for c in children if isinstance(c, ast.Literal))
        return ast.ListLiteral(items=items, **self._where(meta))

    def string(self, meta: Meta, children: list[Token]) -> ast.Literal:
        token = children[0]
        return ast.Literal(value=_unquote(str(token)), kind="string", **self._token_where(token))

    def integer(self, meta: Meta, children: list[Token]) -> ast.Literal:
        token = children[0]
        text = str(token)
        try:
            value = int(text[2:], 16) if text.startswith("0x") else int(text)
        except ValueError:  # over Python's limit on the digits of a decimal integer
            where = self._token_where(token)["span"]
            message = f"the number has {len(text)} digits, too many"
            raise PolicySyntaxError([Diagnostic(where, message, "", code="syntax")]) from None
        return ast.Literal(value=value, kind="int", **self._token_where(token))

    def duration(self, meta: Meta, children: list[Token]) -> ast.Literal:
        token = children[0]
        value = parse_duration(str(token))
        return ast.Literal(value=value, kind="duration", **self._token_where(token))

    def timestamp(self, meta: Meta, children: list[Token]) -> ast.Literal:
        token = children[0]
        value = parse_timestamp(str(token))
        return ast.Literal(value=value, kind="timestamp", **self._token_where(token))

    def true(self, meta: Meta, children: list[Token]) -> ast.Literal:
        return ast.Literal(value=True, kind="bool", **self._token_where(children[0]))

    def false(self, meta: Meta, children: list[Token]) -> ast.Literal:
        return ast.Literal(value=False, kind="bool", **self._token_where(children[0]))


_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t", "r": "\r"}


def _unquote(token: str) -> str:
    """The value of a quoted string literal: escapes \\" \\' \\\\ \\n \\t \\r and \\uXXXX."""
    body = token[1:-1]
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char != "\\" or i + 1 >= len(body):
            out.append(char)
            i += 1
            continue
        code = body[i + 1]
        if code in _ESCAPES:
            out.append(_ESCAPES[code])
            i += 2
        elif code == "u" and _is_hex(body[i + 2 : i + 6]):
            out.append(chr(int(body[i + 2 : i + 6], 16)))
            i += 6
        else:
            # an unknown escape stays as written, so `matches "a\*b"` keeps its literal star
            out.append(body[i : i + 2])
            i += 2
    return "".join(out)


def _is_hex(text: str) -> bool:
    return len(text) == 4 and all(c in "0123456789abcdefABCDEF" for c in text)
