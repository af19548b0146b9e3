"""Policy file -> :class:`Document`: plain data, each value with the place it was written.

Owns the policy file's shape after the schema: the :class:`Document` and its sections
(rules, sets, the ``certificate:`` and ``trust:`` sections) as frozen plain data, and the
checks the schema cannot express (the mode's spellings, exclusion paths, trusted proxy
addresses, duplicate rule ids). Reading YAML with positions is
:mod:`policyengine.load.yaml_reader`'s job, the schema and its messages
:mod:`policyengine.load.schema`'s; turning the plain sections into the engine's and the
request side's objects (``SourceConfig``, ``TrustSettings``, the checker's sets) is
:mod:`policyengine.load.loader`'s.

Must not import: evaluation/, request/, language/ (the document holds no engine or request
objects), integrations/, tooling/, cli/; yaml and jsonschema only through the two modules
above.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policyengine.errors import Diagnostic, PolicyFileError, PolicySchemaError
from policyengine.load.schema import policy_schema, schema_errors
from policyengine.load.yaml_reader import Locator, Positions, read_yaml, too_deep
from policyengine.span import Source, Span
from policyengine.values import parse_duration

__all__ = [
    "MODES",
    "CertificateCheck",
    "CertificateSection",
    "Document",
    "EntrySpec",
    "IdentitySection",
    "RoleSpec",
    "RuleSpec",
    "SetSpec",
    "TrustSection",
    "load_document",
    "load_yaml",
    "parse_document",
]

MODES = ("required", "optional", "optional_interactive_user")
_MODE_SPELLINGS = {m.replace("_", ""): m for m in MODES}


@dataclass(frozen=True, slots=True)
class RuleSpec:
    id: str
    effect: str
    when: str
    description: str
    span: Span
    """Where the rule's ``id`` is written."""
    locate: Locator
    """Offsets in ``when`` -> spans in the file."""
    silenced: tuple[tuple[str, Span], ...] = ()
    """Warning codes this rule accepts (its ``silence:``)."""


@dataclass(frozen=True, slots=True)
class EntrySpec:
    """One entry of a ``sets:`` list, as written (its place takes no part in equality)."""

    value: object
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class SetSpec:
    """One set of the ``sets:`` section: its name, entries and where its name is written."""

    name: str
    entries: tuple[EntrySpec, ...]
    span: Span = field(compare=False)


@dataclass(frozen=True, slots=True)
class CertificateSection:
    """The ``certificate:`` section as written; None takes the source's default."""

    span: Span = field(compare=False)
    """Where an error about the whole section points (the section's value)."""
    source: str = "azure"
    header: str | None = None
    trusted_proxies: tuple[str, ...] | None = None
    max_header_bytes: int = 16384
    max_chain_length: int = 8
    verify_header: str | None = None
    chain_header: str | None = None


CertificateCheck = Callable[[CertificateSection], object]
"""Raises ``ValueError`` when a certificate section cannot be used. The loader passes one
that builds the request side's ``SourceConfig``, so that what it refuses is reported at the
section, in its place among the document's other errors."""


@dataclass(frozen=True, slots=True)
class TrustSection:
    """The ``trust:`` section with files resolved against the policy's folder, and where
    each entry is written."""

    anchors: tuple[Path, ...]
    intermediates: tuple[Path, ...]
    header_intermediates: bool
    max_chain_depth: int
    client_auth_eku: str
    crls: tuple[Path, ...]
    revocation: str
    revocation_check: str
    revocation_sources: tuple[str, ...]
    """``ocsp``, ``crls``: the kinds of evidence in the order asked."""
    online: dict[str, Any]
    """``ocsp:`` and ``fetch:`` read: ``responder``, ``timeout`` and ``max_age`` (seconds),
    ``allow_hosts``, ``max_bytes``; those left out are absent."""
    span: Span
    spans: dict[tuple[str, int], Span]
    """``(field, index)`` of an anchors / intermediates / crls entry -> where it is written."""


@dataclass(frozen=True, slots=True)
class RoleSpec:
    """One role of the ``identity:`` section: its name and the condition that grants it."""

    name: str
    when: str
    span: Span
    """Where the role's name is written."""
    locate: Locator
    """Offsets in ``when`` -> spans in the file."""


@dataclass(frozen=True, slots=True)
class IdentitySection:
    """The ``identity:`` section (or its defaults): attribute names, each with its place."""

    principal: tuple[tuple[str, Span], ...] | None
    """None: the default (``DEFAULT_PRINCIPAL`` of the vocabulary)."""
    groups: tuple[tuple[str, Span], ...]
    roles: tuple[RoleSpec, ...]
    span: Span
    """The ``identity:`` key, or the ``policy:`` key when the section is left out."""
    declared: bool
    """Whether the policy has an ``identity:`` section."""


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
    certificate: CertificateSection
    """Where the certificate comes from (the ``certificate:`` section, or its defaults)."""
    certificate_span: Span
    """The ``certificate:`` key, or the ``policy:`` key when the section is left out."""
    policy_span: Span
    """The ``policy:`` key: where warnings about the whole policy point."""
    sets: dict[str, SetSpec]
    rules: tuple[RuleSpec, ...]
    identity: IdentitySection
    """Who the certificate names (the ``identity:`` section, or its defaults)."""


def load_document(
    path: str | Path, *, check_certificate: CertificateCheck | None = None
) -> Document:
    """Read and validate a policy file (``check_certificate``: see :data:`CertificateCheck`)."""
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
    return parse_document(text, name, check_certificate=check_certificate)


def parse_document(
    text: str, name: str = "<policy>", *, check_certificate: CertificateCheck | None = None
) -> Document:
    """Validate policy text; ``name`` is the file name used in messages."""
    data, positions = load_yaml(text, name, policy_schema(), "the policy file")
    return _document(data, positions, check_certificate)


def load_yaml(text: str, name: str, schema: dict[str, Any], what: str) -> tuple[Any, Positions]:
    """YAML text -> data and where each value was written, validated against ``schema``.

    Every problem is a PolicyError naming the file, line and column (``what`` names the
    kind of file in messages: "the policy file", "the test file").
    """
    data, positions = read_yaml(text, name, schema, what)
    try:
        found = schema_errors(data, positions, schema)
    except RecursionError:
        raise too_deep(positions.source) from None
    if found:
        raise PolicySchemaError(found)
    return data, positions


def _document(
    data: dict[str, Any], positions: Positions, check_certificate: CertificateCheck | None
) -> Document:
    errors: list[Diagnostic] = []
    mode = _mode(data, positions, errors)
    exclusion_paths = _exclusion_paths(data.get("exclusion_paths", []), positions, errors)
    certificate = _certificate_section(
        data.get("certificate", {}), positions, errors, check_certificate
    )
    sets = _sets(data.get("sets", {}), positions)
    rules = _rules(data["rules"], positions, errors)
    if errors:
        raise PolicySchemaError(errors)
    return Document(
        source=positions.source,
        name=data["policy"],
        description=data.get("description", ""),
        mode=mode,
        exclusion_paths=exclusion_paths,
        exclusion_span=(
            positions.value_span(("exclusion_paths",)) if "exclusion_paths" in data else None
        ),
        silenced=_silenced(data.get("silence", []), ("silence",), positions),
        trust=_trust_section(data.get("trust"), positions),
        certificate=certificate,
        certificate_span=positions.key_span(
            ("certificate",) if "certificate" in data else ("policy",)
        ),
        policy_span=positions.key_span(("policy",)),
        sets=sets,
        rules=rules,
        identity=_identity_section(data.get("identity"), positions),
    )


def _mode(data: dict[str, Any], positions: Positions, errors: list[Diagnostic]) -> str:
    spelled = str(data.get("mode", "required")).lower().replace("_", "").replace("-", "")
    if spelled not in _MODE_SPELLINGS:  # the schema's `$` lets "required\n" through
        errors.append(
            Diagnostic(
                positions.value_span(("mode",)),
                f"unknown mode {json.dumps(data['mode'])}",
                "use required, optional or optional_interactive_user",
                code="schema",
            )
        )
    return _MODE_SPELLINGS.get(spelled, "required")


def _exclusion_paths(
    raw_paths: str | list[str], positions: Positions, errors: list[Diagnostic]
) -> tuple[str, ...]:
    """The paths of ``exclusion_paths`` (a list, or one string split at ``,`` and ``;``)."""
    found: list[str] = []
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
            found.append(part)
    return tuple(found)


def _certificate_section(
    section: dict[str, Any],
    positions: Positions,
    errors: list[Diagnostic],
    check: CertificateCheck | None,
) -> CertificateSection:
    """The ``certificate:`` section; bad entries become diagnostics."""
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
    span = positions.value_span(("certificate",))
    written = CertificateSection(
        span=span,
        source=section.get("source", "azure"),
        header=section.get("header"),
        trusted_proxies=tuple(proxies) if proxies is not None else None,
        max_header_bytes=section.get("max_header_bytes", 16384),
        max_chain_length=section.get("max_chain_length", 8),
        verify_header=section.get("verify_header"),
        chain_header=section.get("chain_header"),
    )
    if check is not None:
        try:
            check(written)
        except ValueError as exc:
            errors.append(Diagnostic(span, str(exc), "", code="schema"))
            return CertificateSection(span=span)
    return written


def _sets(section: dict[str, list[object]], positions: Positions) -> dict[str, SetSpec]:
    return {
        name: SetSpec(
            name,
            tuple(
                EntrySpec(value, positions.value_span(("sets", name, i)))
                for i, value in enumerate(values)
            ),
            positions.key_span(("sets", name)),
        )
        for name, values in section.items()
    }


def _rules(
    written: list[dict[str, Any]], positions: Positions, errors: list[Diagnostic]
) -> tuple[RuleSpec, ...]:
    """The rules, less those whose id an earlier rule already has (each is an error)."""
    rules: list[RuleSpec] = []
    seen: dict[str, Span] = {}
    for index, rule in enumerate(written):
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
                locate=positions.locator(("rules", index, "when"), when),
                silenced=_silenced(rule.get("silence", []), ("rules", index, "silence"), positions),
            )
        )
    return tuple(rules)


def _identity_section(section: dict[str, Any] | None, positions: Positions) -> IdentitySection:
    if section is None:
        return IdentitySection(None, (), (), positions.key_span(("policy",)), declared=False)
    span = positions.key_span(("identity",))

    def names(field: str) -> tuple[tuple[str, Span], ...]:
        written = section.get(field, [])
        return tuple(
            (name, positions.value_span(("identity", field, i))) for i, name in enumerate(written)
        )

    roles = tuple(
        RoleSpec(
            name=name,
            when=when,
            span=positions.key_span(("identity", "roles", name)),
            locate=positions.locator(("identity", "roles", name), when),
        )
        for name, when in section.get("roles", {}).items()
    )
    principal = names("principal") if "principal" in section else None
    return IdentitySection(principal, names("groups"), roles, span, declared=True)


def _silenced(
    codes: list[str], path: tuple[Any, ...], positions: Positions
) -> tuple[tuple[str, Span], ...]:
    return tuple((code, positions.value_span((*path, i))) for i, code in enumerate(codes))


def _online(revocation: dict[str, Any]) -> dict[str, Any]:
    """``ocsp:`` and ``fetch:`` as values (the schema checked their forms)."""
    ocsp = revocation.get("ocsp") or {}
    fetch = revocation.get("fetch") or {}
    out: dict[str, Any] = {}
    if ocsp.get("responder") is not None:
        out["responder"] = ocsp["responder"]
    for key in ("timeout", "max_age"):
        if key in ocsp:
            out[key] = _seconds(ocsp[key])
    if "allow_hosts" in fetch:
        out["allow_hosts"] = tuple(fetch["allow_hosts"])
    size = fetch.get("max_bytes")
    if isinstance(size, str):
        size = int(size[:-3]) * (1024 if size.endswith("KiB") else 1 << 20)
    if size is not None:
        out["max_bytes"] = size
    return out


def _seconds(text: str) -> float:
    """``200ms``, ``2s``, ``1d``: seconds (the schema's patterns)."""
    if text.endswith("ms"):
        return int(text[:-2]) / 1000
    duration = parse_duration(text)
    return duration.total_seconds() if duration is not None else 0.0


def _trust_section(section: dict[str, Any] | None, positions: Positions) -> TrustSection | None:
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
    for index in range(len(revocation.get("sources", ()))):
        spans[("sources", index)] = positions.value_span(("trust", "revocation", "sources", index))
    if revocation.get("ocsp", {}).get("responder") is not None:
        spans[("responder", 0)] = positions.value_span(("trust", "revocation", "ocsp", "responder"))
    return TrustSection(
        anchors=files("anchors", ("trust", "anchors")),
        intermediates=files("intermediates", ("trust", "intermediates")),
        header_intermediates=section.get("header_intermediates", True),
        max_chain_depth=section.get("max_chain_depth", 4),
        client_auth_eku=section.get("client_auth_eku", "required"),
        crls=files("crls", ("trust", "revocation", "crls")),
        revocation="off" if mode is False else mode,
        revocation_check=revocation.get("check", "chain"),
        revocation_sources=tuple(revocation.get("sources", ("crls",))),
        online=_online(revocation),
        span=positions.key_span(("trust",)),
        spans=spans,
    )
