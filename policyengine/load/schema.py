"""The policy schema and its messages: JSON-Schema errors -> diagnostics at their place.

Owns the packaged schema (:func:`policy_schema`) and the one jsonschema import: every
validation error is turned into a message that names the place in the document's own
words (``rules[2].effect``), points at the key or value written there, and says what to
write instead. Where each value stands comes from
:class:`~policyengine.load.yaml_reader.Positions`.

Must not import: yaml (only yaml_reader does), evaluation/, request/, language/,
integrations/, tooling/, cli/.
"""

from __future__ import annotations

import difflib
import json
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from policyengine.errors import Diagnostic
from policyengine.load.yaml_reader import Path_, Positions
from policyengine.span import Span

__all__ = ["policy_schema", "schema_errors"]

_REQUIRED_HINTS = {
    "rules": "add a `rules:` list with at least one rule",
    "policy": "add `policy: NAME` at the top",
    "id": "give the rule an `id:`",
    "effect": "add `effect: allow` or `effect: deny`",
    "when": "add a `when:` condition, e.g. `when: valid`",
}

_TYPE_NAMES = {
    "string": "a string",
    "array": "a list",
    "object": "a mapping",
    "integer": "an integer",
}


@cache
def policy_schema() -> dict[str, Any]:
    text = resources.files("policyengine").joinpath("schema/policy.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def schema_errors(data: Any, positions: Positions, schema: dict[str, Any]) -> list[Diagnostic]:
    """Every way ``data`` breaks ``schema``, as diagnostics in the order of the file."""
    validator = jsonschema.Draft202012Validator(schema)
    found: list[Diagnostic] = []
    errors = validator.iter_errors(_sets_checked(data, schema))
    for error in sorted(errors, key=lambda e: [str(p) for p in e.path]):
        found.extend(_translate(error, positions))
    found.sort(key=lambda d: (d.span.line, d.span.column))
    return found


_SET = {"type": "array", "items": {"type": ["string", "integer"]}}


def _sets_checked(data: Any, schema: dict[str, Any]) -> Any:
    """``data`` with each set whose entries are all strings and integers emptied, when
    that is all the schema asks of an entry: the validator would take a second over a
    set of 100,000 entries that this reads in a hundredth. Any other set stays, and the
    validator says which entry is wrong and where, as before."""
    sets = data.get("sets") if isinstance(data, dict) else None
    declared = schema.get("properties", {}).get("sets", {}).get("additionalProperties", {})
    asked = {k: v for k, v in declared.items() if k != "description"}
    if not isinstance(sets, dict) or asked != _SET:  # the schema asks more: it checks all
        return data
    emptied = {
        name: []
        if isinstance(entries, list)
        and all(e.__class__ is str or e.__class__ is int for e in entries)
        else entries
        for name, entries in sets.items()
    }
    return {**data, "sets": emptied}


def _where(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the policy"


def _translate(error: jsonschema.ValidationError, positions: Positions) -> list[Diagnostic]:
    path: Path_ = tuple(error.absolute_path)
    where = _where(path)
    span = positions.value_span(path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        return _unknown_keys(error, error.instance, path, where, positions)
    if error.validator == "required":
        missing = str(error.message).split("'")[1] if "'" in error.message else "?"
        hint = _REQUIRED_HINTS.get(missing, "")
        return [Diagnostic(span, f"{where} has no `{missing}`", hint, code="schema")]
    found = _by_place(error, path, where, span, positions)
    return [found if found is not None else _by_validator(error, where, span)]


def _unknown_keys(
    error: jsonschema.ValidationError,
    instance: dict[str, Any],
    path: Path_,
    where: str,
    positions: Positions,
) -> list[Diagnostic]:
    allowed = list(error.schema.get("properties", {}))  # type: ignore[union-attr]
    out = []
    for key in instance:
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


_PATTERNS = {
    "timeout": ("a time to wait", "write milliseconds, seconds or minutes, e.g. 200ms or 2s"),
    "max_age": ("a duration", "write seconds, minutes, hours, days or weeks, e.g. 12h or 1d"),
    "responder": ("an http(s) URL", "e.g. http://ocsp.contoso.com, or null for each one's own"),
    "max_bytes": ("a size", "write bytes, or KiB or MiB, e.g. 1048576 or 1MiB"),
    "allow_hosts": ("a host name", "e.g. ocsp.contoso.com or *.contoso.com"),
}
"""What the value of a key with a pattern must be (``revocation.ocsp``, ``.fetch``)."""


def _by_place(
    error: jsonschema.ValidationError, path: Path_, where: str, span: Span, positions: Positions
) -> Diagnostic | None:
    """The message for a value whose place says what it is (a mode, a name, a header)."""
    last = path[-1] if path else ""
    if last == "mode":
        hint = (
            "use required, optional or optional_interactive_user "
            "(App Service's Required, Optional, OptionalInteractiveUser also work)"
        )
        return Diagnostic(span, f"unknown mode {_shown(error.instance)}", hint, code="schema")
    pattern = error.validator == "pattern"
    if pattern and last == "when":
        written = positions.written_text((*path[:-1], "id"))
        rule_id = f"`{written}` " if written is not None else ""
        hint = 'write a condition, e.g. `when: valid and subject.CN == "api-client"`'
        return Diagnostic(span, f"rule {rule_id}has an empty `when`", hint, code="schema")
    if pattern and last in ("policy", "id"):
        hint = "use letters, digits, `-`, `_` and `.`, starting with a letter or digit"
        message = f"{where} {_shown(error.instance)} is not a valid name"
        return Diagnostic(span, message, hint, code="schema")
    if pattern and last in ("header", "chain_header", "verify_header"):
        hint = "use letters, digits and `-`, e.g. X-SSL-Client-Cert"
        message = f"{where} {_shown(error.instance)} is not an HTTP header name"
        return Diagnostic(span, message, hint, code="schema")
    if pattern and path[:2] in (("identity", "principal"), ("identity", "groups")):
        hint = "name attributes of the certificate, e.g. `[san.uri, san.dns, subject.CN]`"
        message = f"{where}: {_shown(error.instance)} is not an attribute name"
        return Diagnostic(span, message, hint, code="schema")
    known = _PATTERNS.get(str(path[-2]) if path and isinstance(last, int) else str(last))
    if pattern and known is not None:
        message = f"{where} {_shown(error.instance)} is not {known[0]}"
        return Diagnostic(span, message, known[1], code="schema")
    if "propertyNames" in error.schema_path:
        # jsonschema reports a bad key as a `pattern` error on the mapping holding it
        if tuple(path) == ("identity", "roles"):
            what = "role name"
            hint = "use letters, digits, `_`, `.`, `:` and `-`, starting with a letter or digit"
        else:
            what, hint = "set name", "use letters, digits and `_`, not starting with a digit"
        return Diagnostic(
            positions.key_span((*path, error.instance)),
            f"{what} {_shown(error.instance)} is not a valid name",
            hint,
            code="schema",
        )
    return None


def _by_validator(error: jsonschema.ValidationError, where: str, span: Span) -> Diagnostic:
    """The message for a value that breaks a rule of its kind (a choice, a type, a count)."""
    validator = error.validator
    if validator == "enum":
        choices = [str(o) for o in error.validator_value]  # type: ignore[union-attr]
        if len(choices) <= 3:
            options = " or ".join(f"`{o}`" for o in choices)
        else:
            options = "one of " + ", ".join(choices)
        close = difflib.get_close_matches(str(error.instance), choices, n=1)
        return Diagnostic(
            span,
            f"{where} is {_shown(error.instance)}; it must be {options}",
            f"did you mean `{close[0]}`?" if close else "",
            code="schema",
        )
    if validator in ("type", "oneOf"):
        message = f"{where} must be {_expected_type(error)}, not {_type_name(error.instance)}"
        return Diagnostic(span, message, "", code="schema")
    if validator == "minItems":
        hint = "add at least one rule; without one every request is denied"
        return Diagnostic(span, f"{where} is empty", hint, code="schema")
    return Diagnostic(span, f"{where}: {error.message}", "", code="schema")


def _expected_type(error: jsonschema.ValidationError) -> str:
    schema = error.schema
    kinds: list[Any]
    if error.validator == "oneOf":
        kinds = [s.get("type") for s in schema.get("oneOf", [])]  # type: ignore[union-attr]
    else:
        declared = schema.get("type")  # type: ignore[union-attr]
        kinds = declared if isinstance(declared, list) else [declared]
    return " or ".join(_TYPE_NAMES.get(str(k), str(k)) for k in kinds)


def _type_name(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"YAML's {type(value).__name__} (a !!tag)"  # !!binary bytes, a !!timestamp date


def _shown(value: object) -> str:
    """A value the schema refused, as JSON would write it; a YAML-only value (``!!binary``
    bytes, a ``!!timestamp`` date) as its Python text, rather than a crash."""
    return json.dumps(value, default=repr)
