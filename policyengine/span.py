"""Where a piece of policy text came from, and how to point at it.

A :class:`Span` names a file, a 1-based line and column, and how many characters it covers
on that line. It renders the way compilers do::

    policies/partner-api.yaml:14:11: error: unknown attribute `subjet.CN`
       14 |       and subjet.CN == "nildevecc"
          |           ^^^^^^^^^

Spans never take part in equality of the nodes that carry them. A span refers to its
:class:`Source`; it does not copy the line it points at, so a policy written on one long
line costs one copy of that line however many spans point into it.

Owns :class:`Source`, :class:`Span` and their rendering. A shared leaf: imports nothing
of policyengine, so every stage may import it.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class Span:
    """A place in a source file: 1-based line and column, and a length on that line."""

    file: str
    line: int
    column: int
    length: int = 1
    source: Source | None = field(default=None, compare=False, repr=False)
    """The file's text the span points into (None for a span with no text to show)."""

    @property
    def text(self) -> str:
        """The whole source line the span starts on, without its line break."""
        return self.source.line_text(self.line) if self.source is not None else ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"

    def render(self) -> str:
        """The source line with a caret under the span, as two lines ready to print."""
        text = self.text
        if not text:
            return ""
        gutter = f"{self.line:>5} | "
        line = text.expandtabs(1)
        if not line.isascii():  # a lone surrogate cannot be printed: one U+FFFD in its place
            line = _SURROGATE.sub("\ufffd", line)
        width = max(1, min(self.length, len(line) - self.column + 1))
        pad = " " * (len(gutter) - 2) + "| "
        return f"{gutter}{line}\n{pad}{' ' * (self.column - 1)}{'^' * width}"


class Source:
    """A file's text, able to turn character offsets into spans."""

    __slots__ = ("_line_starts", "name", "text")

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text
        starts = [0]
        find = text.find
        index = find("\n")
        while index >= 0:  # str.find, not a loop over every character: 20x faster
            starts.append(index + 1)
            index = find("\n", index + 1)
        self._line_starts = starts

    def line_text(self, line: int) -> str:
        """The text of a 1-based line, without its line break."""
        if line < 1 or line > len(self._line_starts):
            return ""
        start = self._line_starts[line - 1]
        end = self._line_starts[line] - 1 if line < len(self._line_starts) else len(self.text)
        return self.text[start:end].rstrip("\r")

    def line_length(self, line: int) -> int:
        """The length of a 1-based line without its line break, without copying it."""
        if line < 1 or line > len(self._line_starts):
            return 0
        start = self._line_starts[line - 1]
        end = self._line_starts[line] - 1 if line < len(self._line_starts) else len(self.text)
        if end > start and self.text[end - 1] == "\r":
            end -= 1
        return end - start

    def span_at(self, offset: int, length: int = 1) -> Span:
        """The span starting at a 0-based character offset into the file."""
        offset = max(0, min(offset, len(self.text)))
        line_index = bisect.bisect_right(self._line_starts, offset) - 1
        column = offset - self._line_starts[line_index] + 1
        return self.span_line_col(line_index + 1, column, length)

    def span_line_col(self, line: int, column: int, length: int = 1) -> Span:
        """The span at a 1-based line and column."""
        return Span(self.name, line, column, max(1, length), self)

    def file_span(self) -> Span:
        """A span for the file as a whole (its first line)."""
        return self.span_line_col(1, 1)


def align_offsets(value: str, raw: str) -> list[int]:
    """Map each character of a YAML scalar's value to its offset in the scalar's raw text.

    YAML turns the raw text of a scalar into its value by removing quotes, indentation,
    escapes and folded line breaks, so the value is (nearly) a subsequence of the raw text.
    Matching greedily recovers where each value character was written, for every scalar
    style (plain, quoted, ``|`` and ``>`` blocks). A character that cannot be found (an
    escape such as ``\\x41``) maps to the last place found.
    """
    offsets: list[int] = []
    j = 0
    last = 0
    for char in value:
        k = j
        while k < len(raw) and raw[k] != char:
            k += 1
        if k < len(raw):
            offsets.append(k)
            last = k
            j = k + 1
        else:
            offsets.append(last)
    offsets.append(min(j, len(raw)))  # the end of the value
    return offsets
