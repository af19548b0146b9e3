"""Policy text -> :class:`~policyengine.evaluation.engine.Policy`: the loading pipeline.

Loading runs once: document (YAML + schema, :mod:`policyengine.load.document`) -> parse
each ``when:`` -> check names and types -> compile to closures; then the trust section
is read, and the lint and source warnings are gathered, less those the policy silences.

The document is plain data; this module turns its sections into the objects the later
stages take: the ``certificate:`` section into the request side's ``SourceConfig`` (whose
own checks run while the document is read, so what it refuses is reported among the
document's errors), the ``trust:`` section into ``TrustSettings`` and a loaded
``TrustStore``, the ``sets:`` into the checker's named sets.

Owns: load_policy, policy_from_text, compile_document, check_policy, WARNING_CODES,
source_config, trust_settings, named_sets.
Must not import: yaml or jsonschema (they stay in document's helpers), integrations/,
tooling/, cli/.
"""

from __future__ import annotations

import difflib
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
from policyengine.evaluation.engine import Policy, Rule, SpeedLayers
from policyengine.evaluation.identity import IdentitySpec, Role
from policyengine.language import ast
from policyengine.language.checker import CheckResult, check
from policyengine.language.parser import parse
from policyengine.language.vocabulary import DEFAULT_PRINCIPAL
from policyengine.load.document import (
    CertificateSection,
    Document,
    IdentitySection,
    TrustSection,
    load_document,
    parse_document,
)
from policyengine.load.lint import POLICY_CODES, RULE_CODES, LintIdentity, LintRule, lint
from policyengine.request.sources import SourceConfig, trusted_from_anywhere
from policyengine.request.trust import OnlineRevocation, TrustSettings, TrustStore
from policyengine.span import Span

__all__ = [
    "WARNING_CODES",
    "check_policy",
    "compile_document",
    "load_policy",
    "named_sets",
    "policy_from_text",
    "source_config",
    "trust_settings",
]


def load_policy(path: str | Path, *, facts_cache_size: int = 4096) -> Policy:
    """Load, check and compile a policy file. Raises a :class:`PolicyError` subclass.

    ``facts_cache_size``: how many certificates' facts (and header values) the policy
    keeps, so a client that sends the same certificate again costs a lookup; each is kept
    from its second sighting on, so one-off certificates never push out a returning
    client (0 turns the caches off).
    """
    return compile_document(load_document(path, check_certificate=source_config), facts_cache_size)


def policy_from_text(text: str, name: str = "<policy>", *, facts_cache_size: int = 4096) -> Policy:
    """Load, check and compile policy text; ``name`` is used in messages as the file name."""
    document = parse_document(text, name, check_certificate=source_config)
    return compile_document(document, facts_cache_size)


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
    """Parse, check and compile a document's rules into a :class:`Policy`; ``index`` to
    ``der_names`` turn a speed layer off (:class:`~policyengine.evaluation.engine.SpeedLayers`)."""
    config = _source_config_at(document.certificate)
    parsed, roles = _parsed(document)
    result = check(
        parsed,
        named_sets(document),
        has_trust=document.trust is not None,
        identity=identity_decl(document.identity, roles),
    )
    if any(d.severity == "error" for d in result.diagnostics):
        ordered = sorted(result.diagnostics, key=lambda d: (d.span.line, d.span.column))
        raise PolicyCheckError(ordered)
    warnings = tuple(d for d in result.diagnostics if d.severity == "warning")
    trust_store, trust_warnings = _load_trust(document)
    lint_warnings = _lint(document, result)
    warnings = (
        _unsilenced(warnings + _source_warnings(document, config) + trust_warnings, document)
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
        source=config,
        rules=rules,
        warnings=warnings,
        trust_store=trust_store,
        facts_cache_size=facts_cache_size,
        layers=SpeedLayers(index, memo, recall, second_sighting, der_names),
        identity=_identity_spec(document.identity, result),
    )


def _parsed(
    document: Document,
) -> tuple[list[ast.Expr], tuple[tuple[str, Span, ast.Expr], ...]]:
    """Each rule's condition and each role's, parsed; every syntax error at once."""
    syntax_errors: list[Diagnostic] = []
    parsed: list[ast.Expr] = []
    roles: list[tuple[str, Span, ast.Expr]] = []
    for role in document.identity.roles:
        try:
            roles.append((role.name, role.span, parse(role.when, role.locate)))
        except PolicySyntaxError as exc:
            syntax_errors.extend(exc.diagnostics)
    for spec in document.rules:
        try:
            parsed.append(parse(spec.when, spec.locate))
        except PolicySyntaxError as exc:
            syntax_errors.extend(exc.diagnostics)
    if syntax_errors:
        raise PolicySyntaxError(syntax_errors)
    return parsed, tuple(roles)


def identity_decl(
    section: IdentitySection, roles: tuple[tuple[str, Span, ast.Expr], ...] = ()
) -> ast.IdentityDecl:
    """The ``identity:`` section as the checker takes it (``roles``: parsed conditions)."""
    principal = section.principal
    if principal is None:
        principal = tuple((name, section.span) for name in DEFAULT_PRINCIPAL)
    return ast.IdentityDecl(principal, section.groups, roles, declared=section.declared)


def _identity_spec(section: IdentitySection, result: CheckResult) -> IdentitySpec:
    texts = {role.name: role.when for role in section.roles}
    roles = [Role(name, texts[name], expr, compile_condition(expr)) for name, expr in result.roles]
    return IdentitySpec(result.principal, result.groups, roles, declared=section.declared)


def source_config(section: CertificateSection) -> SourceConfig:
    """The request side's SourceConfig for a ``certificate:`` section (``ValueError`` when
    it refuses one)."""
    return SourceConfig(
        source=section.source,
        header=section.header,
        trusted_proxies=section.trusted_proxies,
        max_header_bytes=section.max_header_bytes,
        max_chain_length=section.max_chain_length,
        verify_header=section.verify_header,
        chain_header=section.chain_header,
    )


def _source_config_at(section: CertificateSection) -> SourceConfig:
    """:func:`source_config`, its refusal a schema error at the section, where reading the
    document with the check in place reports it."""
    try:
        return source_config(section)
    except ValueError as exc:
        raise PolicySchemaError([Diagnostic(section.span, str(exc), "", code="schema")]) from None


def trust_settings(section: TrustSection) -> TrustSettings:
    """The request side's TrustSettings for a ``trust:`` section."""
    return TrustSettings(
        anchors=section.anchors,
        intermediates=section.intermediates,
        header_intermediates=section.header_intermediates,
        max_chain_depth=section.max_chain_depth,
        client_auth_eku=section.client_auth_eku,
        crls=section.crls,
        revocation=section.revocation,
        revocation_check=section.revocation_check,
        online=OnlineRevocation(sources=section.revocation_sources, **section.online),
    )


def named_sets(document: Document) -> dict[str, ast.NamedSet]:
    """The document's ``sets:`` as the checker takes them."""
    return {
        name: ast.NamedSet(
            name, tuple(ast.SetEntry(e.value, e.span) for e in spec.entries), spec.span
        )
        for name, spec in document.sets.items()
    }


WARNING_CODES = (
    "trusted-anywhere",
    "unused-set",
    "set-name",
    "trust-anchor",
    "trust-crl",
    "trust-revocation",
    *POLICY_CODES,
    *RULE_CODES,
)
"""Warnings ``check`` gives, by code; a policy's ``silence:`` names those it accepts."""


def _load_trust(document: Document) -> tuple[TrustStore | None, tuple[Diagnostic, ...]]:
    section = document.trust
    if section is None:
        return None, ()
    try:
        store = TrustStore.load(trust_settings(section))
    except TrustError as exc:
        span = section.spans.get((exc.field, exc.index), section.span)
        raise PolicyFileError([Diagnostic(span, str(exc), exc.hint, code="trust")]) from None
    warnings = []
    for field, index, message in store.problems(datetime.now(UTC)):
        hint, code = _TRUST_WARNINGS.get(field, _TRUST_WARNINGS["crls"])
        span = section.spans.get((field, index), section.span)
        warnings.append(Diagnostic(span, message, hint, severity="warning", code=code))
    return store, tuple(warnings)


_TRUST_WARNINGS = {
    "anchors": ("replace it, or remove it from the policy", "trust-anchor"),
    "crls": ("replace it, or remove it from the policy", "trust-crl"),
    "responder": (
        "add its host to fetch.allow_hosts, or name a responder there",
        "trust-revocation",
    ),
}
"""The hint and code of a trust store's problem, by the field it is about."""


def _lint(document: Document, result: CheckResult) -> tuple[Diagnostic, ...]:
    """Lint warnings, less those silenced by their rule or by the policy."""
    rules = [
        LintRule(spec.id, spec.effect, spec.span, expr)
        for spec, expr in zip(document.rules, result.expressions, strict=True)
    ]
    section = document.identity
    spans = {role.name: role.span for role in section.roles}
    roles = {name: (spans[name], expr) for name, expr in result.roles}
    names = section.principal is not None or bool(section.groups)
    identity = LintIdentity(section.span, names, roles)
    found = lint(
        rules,
        mode=document.mode,
        source=document.certificate.source,
        exclusion_paths=document.exclusion_paths,
        exclusion_span=document.exclusion_span,
        policy_span=document.policy_span,
        identity=identity,
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


def _source_warnings(document: Document, config: SourceConfig) -> tuple[Diagnostic, ...]:
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
