"""Policy text -> :class:`~policyengine.evaluation.engine.Policy`: the loading pipeline.

Loading runs once: document (YAML + schema, :mod:`policyengine.load.document`) -> parse
each ``when:`` -> check names and types -> compile to closures; then the trust section
is read, and the lint and source warnings are gathered, less those the policy silences.

Owns: load_policy, policy_from_text, compile_document, check_policy, WARNING_CODES.
Must not import: integrations, tooling, cli.
"""

from __future__ import annotations

import difflib
import gc
from datetime import UTC, datetime
from pathlib import Path

from policyengine.errors import (
    Diagnostic,
    PolicyCheckError,
    PolicyError,
    PolicyFileError,
    PolicySchemaError,
    PolicySyntaxError,
    TrustError,
)
from policyengine.evaluation.compiler import compile_condition
from policyengine.evaluation.engine import Policy, Rule
from policyengine.language import ast
from policyengine.language.checker import check
from policyengine.language.parser import parse
from policyengine.load.document import Document, load_document, parse_document
from policyengine.load.lint import POLICY_CODES, RULE_CODES, LintRule, lint
from policyengine.request.sources import trusted_from_anywhere
from policyengine.request.trust import TrustStore
from policyengine.span import Span

__all__ = ["WARNING_CODES", "check_policy", "compile_document", "load_policy", "policy_from_text"]


def load_policy(path: str | Path, *, facts_cache_size: int = 4096) -> Policy:
    """Load, check and compile a policy file. Raises a :class:`PolicyError` subclass.

    ``facts_cache_size``: how many certificates' facts (and header values) the policy
    keeps, so a client that sends the same certificate again costs a lookup; each is kept
    from its second sighting on, so one-off certificates never push out a returning
    client (0 turns the caches off).
    """
    return compile_document(load_document(path), facts_cache_size)


def policy_from_text(text: str, name: str = "<policy>", *, facts_cache_size: int = 4096) -> Policy:
    """Load, check and compile policy text; ``name`` is used in messages as the file name."""
    return compile_document(parse_document(text, name), facts_cache_size)


def compile_document(
    document: Document,
    facts_cache_size: int = 4096,
    *,
    index: bool = True,
    memo: bool = True,
    recall: bool = True,
    second_sighting: bool = True,
    der_names: bool = True,
) -> Policy:
    """``index`` to ``der_names``: the speed layers a test or benchmark may turn off to
    compare with the plain path (see :class:`~policyengine.evaluation.engine.Policy`)."""
    layers = {
        "memo": memo,
        "recall": recall,
        "second_sighting": second_sighting,
        "der_names": der_names,
    }
    # compiling allocates many small objects that all live on: the cyclic collector would
    # walk them again and again (a third of the time for a policy of 10,000 rules)
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _compile(document, facts_cache_size, index, layers)
    finally:
        if collecting:
            gc.enable()


def _compile(
    document: Document, facts_cache_size: int, index: bool, layers: dict[str, bool]
) -> Policy:
    syntax_errors: list[Diagnostic] = []
    parsed: list[ast.Expr] = []
    for spec in document.rules:
        try:
            parsed.append(parse(spec.when, spec.locate))
        except PolicySyntaxError as exc:
            syntax_errors.extend(exc.diagnostics)
    if syntax_errors:
        raise PolicySyntaxError(syntax_errors)
    result = check(parsed, document.sets, has_trust=document.trust is not None)
    if any(d.severity == "error" for d in result.diagnostics):
        ordered = sorted(result.diagnostics, key=lambda d: (d.span.line, d.span.column))
        raise PolicyCheckError(ordered)
    warnings = tuple(d for d in result.diagnostics if d.severity == "warning")
    trust_store, trust_warnings = _load_trust(document)
    lint_warnings = _lint(document, result.expressions)
    warnings = (
        _unsilenced(warnings + _source_warnings(document) + trust_warnings, document)
        + lint_warnings
    )
    rules = tuple(
        Rule(
            id=spec.id,
            effect=spec.effect,
            when=spec.when,
            description=spec.description,
            span=spec.span,
            condition=compile_condition(expr),
            expression=expr,
        )
        for spec, expr in zip(document.rules, result.expressions, strict=False)
    )
    return Policy(
        name=document.name,
        description=document.description,
        mode=document.mode,
        file=document.source.name,
        exclusion_paths=document.exclusion_paths,
        sets={name: len(s.entries) for name, s in document.sets.items()},
        source=document.certificate,
        rules=rules,
        warnings=warnings,
        trust_store=trust_store,
        facts_cache_size=facts_cache_size,
        index=index,
        memo=layers["memo"],
        recall=layers["recall"],
        second_sighting=layers["second_sighting"],
        der_names=layers["der_names"],
    )


WARNING_CODES = (
    "trusted-anywhere",
    "unused-set",
    "trust-anchor",
    "trust-crl",
    *POLICY_CODES,
    *RULE_CODES,
)
"""Warnings ``check`` gives, by code; a policy's ``silence:`` names those it accepts."""


def _load_trust(document: Document) -> tuple[TrustStore | None, tuple[Diagnostic, ...]]:
    section = document.trust
    if section is None:
        return None, ()
    try:
        store = TrustStore.load(section.settings)
    except TrustError as exc:
        span = section.spans.get((exc.field, exc.index), section.span)
        raise PolicyFileError([Diagnostic(span, str(exc), exc.hint, code="trust")]) from None
    warnings = tuple(
        Diagnostic(
            section.spans.get((field, index), section.span),
            message,
            "replace it, or remove it from the policy",
            severity="warning",
            code="trust-anchor" if field == "anchors" else "trust-crl",
        )
        for field, index, message in store.problems(datetime.now(UTC))
    )
    return store, warnings


def _lint(document: Document, expressions: tuple[ast.Expr, ...]) -> tuple[Diagnostic, ...]:
    """Lint warnings, less those silenced by their rule or by the policy."""
    rules = [
        LintRule(spec.id, spec.effect, spec.span, expr)
        for spec, expr in zip(document.rules, expressions, strict=True)
    ]
    found = lint(
        rules,
        mode=document.mode,
        source=document.certificate.source,
        exclusion_paths=document.exclusion_paths,
        exclusion_span=document.exclusion_span,
        policy_span=document.policy_span,
    )
    _check_codes([pair for spec in document.rules for pair in spec.silenced])
    by_rule = {spec.id: {code for code, _ in spec.silenced} for spec in document.rules}
    silenced = {code for code, _ in document.silenced}
    return tuple(
        warning
        for rule_id, warning in found
        if warning.code not in silenced
        and (rule_id is None or warning.code not in by_rule.get(rule_id, set()))
    )


def _check_codes(silenced: list[tuple[str, Span]]) -> None:
    problems = []
    for code, span in silenced:
        if code not in WARNING_CODES:
            close = difflib.get_close_matches(code, WARNING_CODES, n=1)
            hint = f"did you mean `{close[0]}`?" if close else f"codes: {', '.join(WARNING_CODES)}"
            problems.append(Diagnostic(span, f"unknown warning code `{code}`", hint, code="schema"))
    if problems:
        raise PolicySchemaError(problems)


def _unsilenced(warnings: tuple[Diagnostic, ...], document: Document) -> tuple[Diagnostic, ...]:
    _check_codes(list(document.silenced))
    silenced = {code for code, _ in document.silenced}
    return tuple(w for w in warnings if w.code not in silenced)


def _source_warnings(document: Document) -> tuple[Diagnostic, ...]:
    config = document.certificate
    if not trusted_from_anywhere(config):
        return ()
    span = document.certificate_span
    header = config.header_name
    if config.trusted_proxies is None:
        message = f"the {config.source} source believes {header} from any peer by default"
    else:
        message = f"trusted_proxies lets any peer set {header}"
    hint = (
        "that is safe only if nothing but the proxy can reach the app; otherwise list the "
        "proxy's addresses in certificate.trusted_proxies"
    )
    if config.record.anywhere_hint:
        hint = config.record.anywhere_hint
    return (Diagnostic(span, message, hint, severity="warning", code="trusted-anywhere"),)


def check_policy(path: str | Path) -> tuple[Policy | None, tuple[Diagnostic, ...]]:
    """Load a policy for ``policyengine check``: the policy (or None) and every diagnostic."""
    try:
        policy = load_policy(path)
    except PolicyError as exc:
        return None, exc.diagnostics
    return policy, policy.warnings
