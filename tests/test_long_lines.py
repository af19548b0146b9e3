"""A policy written on one long line: spans refer to the source, they do not copy the line.

A JSON-style policy is one line however long it is. Every value, set entry and token of a
condition has a span pointing at that line; were each span to keep its own copy of the line,
memory would grow with the square of the line's length (8,000 pins on one 0.54 MB line once
peaked at 4.2 GB). Each case is loaded in a child process whose address space is capped, so
a regression fails the test with MemoryError instead of exhausting the machine; the child
measures its peak with tracemalloc.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from policyengine import PolicyError, policy_from_text
from policyengine.span import Source

PEAK_LIMIT = 200 * 1024 * 1024
"""The most a 1 MB one-line policy may take to load, in bytes (tracemalloc's peak)."""

_CHILD = textwrap.dedent(
    """
    import resource, sys, tracemalloc
    limit = 1536 * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from policyengine import policy_from_text
    text = open(sys.argv[1], encoding="utf-8").read()
    tracemalloc.start()
    try:
        policy = policy_from_text(text, "one-line.json")
    except MemoryError:
        print("MemoryError")
        raise SystemExit(0)
    print(tracemalloc.get_traced_memory()[1], len(policy.rules))
    """
)


def _peak(text: str, tmp_path: Path) -> tuple[int, int]:
    """Load ``text`` in a capped child process: (peak bytes, number of rules)."""
    path = tmp_path / "one-line.json"
    path.write_text(text, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout.split()
    assert out[0] != "MemoryError", "loading the policy ran out of memory"
    return int(out[0]), int(out[1])


def _one_line(document: dict[str, object]) -> str:
    # a line break at the end, as editors and `json.dump(...); print()` leave it: the
    # line is then a slice of the file, not the file itself
    return json.dumps(document) + "\n"


def test_one_megabyte_line_of_fingerprint_pins_loads_in_bounded_memory(tmp_path: Path) -> None:
    pins = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(15_500)]
    text = _one_line(
        {
            "policy": "pins",
            "sets": {"pins": pins},
            "rules": [{"id": "pinned", "effect": "allow", "when": "valid and fingerprint in pins"}],
        }
    )
    assert len(text) > 1_000_000
    peak, rules = _peak(text, tmp_path)
    assert rules == 1
    assert peak < PEAK_LIMIT, f"peak {peak / 1e6:.0f} MB"


def test_twenty_thousand_and_terms_on_one_line_load_in_bounded_memory(tmp_path: Path) -> None:
    when = " and ".join(f'subject.CN != "x{i}"' for i in range(20_000))
    text = _one_line(
        {"policy": "terms", "rules": [{"id": "r", "effect": "allow", "when": "valid and " + when}]}
    )
    peak, rules = _peak(text, tmp_path)
    assert rules == 1
    assert peak < PEAK_LIMIT, f"peak {peak / 1e6:.0f} MB"


def test_a_span_points_at_its_source_line_without_copying_it() -> None:
    line = "x" * 100_000
    source = Source("long.json", f"{line}\nsecond line\n")
    spans = [source.span_at(offset) for offset in range(0, 100_000, 1_000)]
    assert all(span.source is source for span in spans)
    assert spans[3].text == line  # read from the source when asked for
    assert source.span_at(100_001).text == "second line"
    assert source.line_length(1) == 100_000
    assert spans[3] == source.span_line_col(1, 3001)  # equality ignores the source


def test_an_error_on_a_long_line_still_shows_the_line_and_a_caret() -> None:
    text = _one_line({"policy": "p", "rules": [{"id": "r", "effect": "allow", "when": "vald"}]})
    with pytest.raises(PolicyError) as caught:
        policy_from_text(text, "one-line.json")
    message = str(caught.value)
    assert message.startswith("one-line.json:1:")
    assert "    1 | {" in message
    assert "^^^^" in message
