"""``policyengine test``: test files that pin what a policy decides, and their coverage.

A test file (``*.test.yaml``, validated by ``schema/policy-test.schema.json``) names a
policy and lists cases: a certificate (a file, a header as a proxy sends it, or none), a
request, an evaluation time, and the expected decision (and optionally reason and rule).
:func:`run_files` runs them and returns results; the CLI prints them like pytest does, or as
JUnit XML. Coverage records, from the explain trace of every case, which rules and which
predicates inside them were never evaluated, or only ever came out one way.

Owns policy test files, their runner, JUnit XML and coverage. May import ``load/``,
``evaluation/``, ``request/``; must not import ``integrations/`` or ``cli/``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from policyengine.errors import Diagnostic, PolicyError, PolicyFileError
from policyengine.evaluation.decision import Decision
from policyengine.evaluation.engine import Policy
from policyengine.evaluation.trace import TraceNode, render_text
from policyengine.load.document import load_yaml
from policyengine.load.loader import load_policy
from policyengine.span import Span
from policyengine.values import as_utc, parse_timestamp

__all__ = ["CaseResult", "Coverage", "FileResult", "discover", "run_file", "run_files"]


@cache
def _schema() -> dict[str, Any]:
    text = resources.files("policyengine").joinpath("schema/policy-test.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@dataclass(frozen=True, slots=True)
class CaseResult:
    name: str
    passed: bool
    span: Span
    message: str = ""
    """Why it failed: expected vs got."""
    decision: Decision | None = None


@dataclass(slots=True)
class Coverage:
    """Per rule and per predicate (by rule and source position): the outcomes seen."""

    rules: dict[str, set[str]] = field(default_factory=dict)
    predicates: dict[tuple[str, int, int, str], set[str]] = field(default_factory=dict)

    def add(self, decision: Decision) -> None:
        if decision.trace is None:
            return
        for rule in decision.trace.rules:
            self.rules.setdefault(rule.rule, set()).add(rule.outcome)
            if rule.outcome == "skipped":
                continue  # its node is the whole condition, not evaluated
            for node in _leaves(rule.node):
                line = node.span.line if node.span else 0
                column = node.span.column if node.span else 0
                key = (rule.rule, line, column, " ".join(node.text.split()))
                self.predicates.setdefault(key, set()).add(node.outcome)

    def gaps(self, policy: Policy) -> list[str]:
        """Sentences for what the cases never exercised."""
        found = []
        for rule in policy.rules:
            outcomes = self.rules.get(rule.id, set()) - {"skipped"}
            if not outcomes:
                found.append(f"rule {rule.id} (line {rule.span.line}) is never evaluated")
            elif outcomes == {"true"}:
                found.append(f"rule {rule.id} (line {rule.span.line}) always holds")
            elif "true" not in outcomes:
                found.append(f"rule {rule.id} (line {rule.span.line}) never holds")
        for (rule_id, line, column, text), outcomes in sorted(self.predicates.items()):
            seen = outcomes - {"skipped"}
            where = f"{rule_id} line {line}:{column}"
            if not seen:
                found.append(f"`{text}` in {where} is never evaluated")
            elif len(seen) == 1:
                (only,) = seen
                found.append(f"`{text}` in {where} is only ever {only}")
        return found


def _leaves(node: TraceNode) -> Iterator[TraceNode]:
    if node.kind == "test":
        yield node
    for child in node.children:
        yield from _leaves(child)


@dataclass(slots=True)
class FileResult:
    path: Path
    policy: Policy | None = None
    cases: list[CaseResult] = field(default_factory=list)
    error: PolicyError | None = None
    coverage: Coverage = field(default_factory=Coverage)

    @property
    def passed(self) -> int:
        return sum(1 for c in self.cases if c.passed)

    @property
    def failed(self) -> int:
        return sum(1 for c in self.cases if not c.passed) + (1 if self.error else 0)


def discover(paths: Iterable[str | Path]) -> list[Path]:
    """Every ``*.test.yaml`` at or under the paths given, sorted.

    Raises FileNotFoundError for a path that does not exist.
    """
    found: set[Path] = set()
    for entry in paths:
        path = Path(entry)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder")
        if path.is_dir():
            found.update(p for p in path.rglob("*.test.yaml") if p.is_file())
        else:
            found.add(path)
    return sorted(found)


def run_files(paths: Iterable[Path]) -> list[FileResult]:
    return [run_file(path) for path in paths]


def run_file(path: Path) -> FileResult:
    """Run every case of one test file; problems with the file are a result, not a raise."""
    result = FileResult(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        span = Span(str(path), 1, 1)
        result.error = PolicyFileError([Diagnostic(span, f"cannot read the test file: {exc}")])
        return result
    try:
        data, positions = load_yaml(text, str(path), _schema(), "the test file")
        policy_path = path.parent / data["policy"]
        result.policy = load_policy(policy_path)
    except PolicyError as exc:
        result.error = exc
        return result
    default_at = data.get("at")
    for index, case in enumerate(data["cases"]):
        span = positions.value_span(("cases", index, "name"))
        try:
            outcome = _run_case(result.policy, path.parent, case, default_at)
        except _CaseError as exc:
            result.cases.append(CaseResult(case["name"], False, span, str(exc)))
            continue
        result.coverage.add(outcome)
        problem = _compare(case["expect"], outcome)
        result.cases.append(CaseResult(case["name"], not problem, span, problem, outcome))
    return result


class _CaseError(Exception):
    """A case that cannot be run as written (a missing file, a bad time)."""


def _run_case(policy: Policy, base: Path, case: dict[str, Any], default_at: object) -> Decision:
    at_text = case.get("at", default_at)
    now: datetime | None = None
    if isinstance(at_text, datetime):
        now = as_utc(at_text)  # YAML reads an unquoted timestamp as one
    elif at_text is not None:
        now = parse_timestamp(str(at_text))
        if now is None:
            raise _CaseError(f"`at: {at_text}` is not a timestamp such as 2026-01-01T00:00:00Z")
    request = case.get("request", {})
    common: dict[str, Any] = {
        "path": request.get("path", "/"),
        "method": request.get("method", "GET"),
        "host": request.get("host"),
        "now": now,
        "explain": True,
    }
    header = case.get("header")
    if header is not None:
        value = header.get("value")
        if "file" in header:
            value = _read(base / header["file"]).decode("latin-1").rstrip("\r\n")
        if value is None:
            raise _CaseError("a header needs `value` or `file`")
        return policy.evaluate_header(
            value, source=header.get("source"), peer=request.get("peer"), **common
        )
    if "headers" in request or "peer" in request:
        headers = list(request.get("headers", {}).items())
        if "cert" in case:
            raise _CaseError("give the certificate in `request.headers` or `cert`, not both")
        return policy.evaluate_request(headers=headers, remote_addr=request.get("peer"), **common)
    cert = _read(base / case["cert"]) if "cert" in case else None
    return policy.evaluate(cert, **common)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _CaseError(f"cannot read {path}: {exc.strerror or exc}") from None


def _compare(expect: dict[str, Any], decision: Decision) -> str:
    wrong = []
    if expect["decision"] != decision.effect:
        wrong.append(f"decision {expect['decision']}, got {decision.effect}")
    if "reason" in expect and expect["reason"] != decision.reason:
        wrong.append(f"reason {expect['reason']}, got {decision.reason}")
    if "rule" in expect and expect["rule"] != decision.rule:
        wrong.append(f"rule {expect['rule']}, got {decision.rule}")
    wrong.extend(_identity_differences(expect, decision))
    if not wrong:
        return ""
    return "expected " + "; ".join(wrong) + f" ({decision.message})"


def _identity_differences(expect: dict[str, Any], decision: Decision) -> list[str]:
    """What the decision's identity has other than the case expects (``principal``,
    ``groups``, ``roles``); a decision without one has no principal, groups or roles."""
    identity = decision.identity
    got: dict[str, Any] = {
        "principal": identity.principal if identity is not None else None,
        "groups": list(identity.groups) if identity is not None else [],
        "roles": list(identity.roles) if identity is not None else [],
    }
    wrong = []
    for key, value in got.items():
        if key in expect and expect[key] != value:
            wrong.append(f"{key} {json.dumps(expect[key])}, got {json.dumps(value)}")
    return wrong


# -- reports ----------------------------------------------------------------------------------


def render_results(results: list[FileResult], *, coverage: bool = False) -> str:
    """pytest-like text: a line per file, then each failure with its trace, then a summary."""
    lines = []
    for result in results:
        marks = "".join("." if c.passed else "F" for c in result.cases)
        if result.error is not None:
            marks += "E"
        lines.append(f"{result.path} {marks}")
    failures = [(r, c) for r in results for c in r.cases if not c.passed]
    errors = [r for r in results if r.error is not None]
    if failures or errors:
        lines.append("")
        lines.append("FAILURES")
    for result in errors:
        lines.append(f"ERROR {result.path}")
        lines.append(str(result.error))
        lines.append("")
    for _result, case in failures:
        lines.append(f"FAILED {case.span} {case.name}: {case.message}")
        if case.decision is not None and case.decision.trace is not None:
            lines.append(render_text(case.decision.trace))
        lines.append("")
    if coverage:
        lines.append("")
        lines.append("COVERAGE")
        for result in results:
            if result.policy is None:
                continue
            gaps = result.coverage.gaps(result.policy)
            lines.append(f"{result.policy.file}: {'fully covered' if not gaps else ''}".rstrip())
            lines.extend(f"  {gap}" for gap in gaps)
    passed = sum(r.passed for r in results)
    failed = sum(r.failed for r in results)
    lines.append("")
    lines.append(f"{passed} passed, {failed} failed")
    return "\n".join(lines)


def junit_xml(results: list[FileResult]) -> str:
    """The results as JUnit XML, one testsuite per test file."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>']
    total = sum(len(r.cases) + (1 if r.error else 0) for r in results)
    failures = sum(r.failed for r in results)
    out.append(f'<testsuites name="policyengine" tests="{total}" failures="{failures}">')
    for result in results:
        count = len(result.cases) + (1 if result.error else 0)
        out.append(
            f'  <testsuite name={quoteattr(str(result.path))} tests="{count}" '
            f'failures="{result.failed}">'
        )
        if result.error is not None:
            out.append(f'    <testcase classname={quoteattr(str(result.path))} name="load">')
            out.append(
                f"      <failure message={quoteattr('the test file or policy cannot be used')}>"
                f"{escape(str(result.error))}</failure>"
            )
            out.append("    </testcase>")
        for case in result.cases:
            out.append(
                f"    <testcase classname={quoteattr(str(result.path))} name={quoteattr(case.name)}"
                + ("/>" if case.passed else ">")
            )
            if not case.passed:
                body = case.message
                if case.decision is not None and case.decision.trace is not None:
                    body += "\n" + render_text(case.decision.trace)
                out.append(
                    f"      <failure message={quoteattr(case.message)}>{escape(body)}</failure>"
                )
                out.append("    </testcase>")
        out.append("  </testsuite>")
    out.append("</testsuites>")
    return "\n".join(out) + "\n"
