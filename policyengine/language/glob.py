"""Glob patterns for ``matches``, matched in linear time without a regex engine.

- ``*`` matches any run of characters except a dot, so ``*.contoso.com`` matches
  ``api.contoso.com`` but not ``a.b.contoso.com`` (as a TLS wildcard does);
- ``**`` matches any run of characters, dots included;
- ``?`` matches one character except a dot;
- ``\\`` makes the next character literal (``\\*``, ``\\?``, ``\\\\``).

Matching is case-sensitive. Common shapes (no wildcard, one leading or trailing star)
compile to plain string tests; the rest run a set-of-states simulation whose cost is at
most the value's length times the pattern's, whatever the pattern: a policy author cannot
write a pattern that backtracks.

Owns the glob compiler the checker and compiler use. Imports nothing of policyengine
but ``errors``: no regex engine, no cryptography, nothing of ``evaluation/`` or ``request/``.
"""

from __future__ import annotations

from collections.abc import Callable

from policyengine.errors import GlobError

__all__ = ["MAX_PATTERN_LENGTH", "GlobError", "compile_glob", "literal_ends"]

MAX_PATTERN_LENGTH = 1024

_STAR = "star"
_GLOBSTAR = "globstar"
_ONE = "one"

Token = tuple[str, str]  # (kind, literal text); kind is "lit", _STAR, _GLOBSTAR or _ONE


def _tokenize(pattern: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            if i + 1 >= len(pattern):
                raise GlobError("the pattern ends with a lone `\\`; write `\\\\` for a backslash")
            tokens.append(("lit", pattern[i + 1]))
            i += 2
        elif char == "*":
            if pattern.startswith("**", i):
                tokens.append((_GLOBSTAR, ""))
                i += 2
                while i < len(pattern) and pattern[i] == "*":
                    i += 1
            else:
                tokens.append((_STAR, ""))
                i += 1
        elif char == "?":
            tokens.append((_ONE, ""))
            i += 1
        else:
            tokens.append(("lit", char))
            i += 1
    return tokens


def compile_glob(pattern: str) -> Callable[[str], bool]:
    """A function telling whether a string matches ``pattern``."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise GlobError(f"the pattern is longer than {MAX_PATTERN_LENGTH} characters")
    tokens = _tokenize(pattern)
    wildcards = [k for k, _ in tokens if k != "lit"]
    literal = "".join(text for kind, text in tokens if kind == "lit")
    if not wildcards:
        return literal.__eq__
    if len(wildcards) == 1 and tokens[0][0] in (_STAR, _GLOBSTAR) and len(tokens) > 1:
        suffix = "".join(text for _, text in tokens[1:])
        if tokens[0][0] == _GLOBSTAR:
            return lambda value: value.endswith(suffix)
        cut = len(suffix)
        return lambda value: value.endswith(suffix) and "." not in value[: len(value) - cut]
    if len(wildcards) == 1 and tokens[-1][0] in (_STAR, _GLOBSTAR) and len(tokens) > 1:
        prefix = "".join(text for _, text in tokens[:-1])
        if tokens[-1][0] == _GLOBSTAR:
            return lambda value: value.startswith(prefix)
        return lambda value: value.startswith(prefix) and "." not in value[len(prefix) :]
    return _Automaton(tokens).match


def literal_ends(pattern: str) -> tuple[str, str]:
    """The literal text every match of ``pattern`` starts with, and ends with: ``("client-",
    "")`` for ``client-*``, ``("", ".contoso.com")`` for ``*.contoso.com`` (what a rule
    index files a ``matches`` rule under)."""
    tokens = _tokenize(pattern)
    head: list[str] = []
    for kind, text in tokens:
        if kind != "lit":
            break
        head.append(text)
    if len(head) == len(tokens):  # no wildcard: the whole pattern, at both ends
        return "".join(head), "".join(head)
    tail: list[str] = []
    for kind, text in reversed(tokens):
        if kind != "lit":
            break
        tail.append(text)
    return "".join(head), "".join(reversed(tail))


class _Automaton:
    """Runs all paths through the pattern at once: one set of positions per character."""

    __slots__ = ("_end", "_tokens")

    def __init__(self, tokens: list[Token]) -> None:
        self._tokens = tokens
        self._end = len(tokens)

    def _closure(self, states: set[int]) -> set[int]:
        # a star may match nothing, so a position before a star also stands after it
        out = set(states)
        pending = list(states)
        while pending:
            i = pending.pop()
            if i < self._end and self._tokens[i][0] in (_STAR, _GLOBSTAR) and i + 1 not in out:
                out.add(i + 1)
                pending.append(i + 1)
        return out

    def match(self, value: str) -> bool:
        tokens = self._tokens
        states = self._closure({0})
        for char in value:
            following: set[int] = set()
            for i in states:
                if i == self._end:
                    continue
                kind, text = tokens[i]
                if kind == "lit":
                    if text == char:
                        following.add(i + 1)
                elif kind == _GLOBSTAR or (kind == _STAR and char != "."):
                    following.add(i)
                elif kind == _ONE and char != ".":
                    following.add(i + 1)
            if not following:
                return False
            states = self._closure(following)
        return self._end in states
