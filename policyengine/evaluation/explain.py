"""What a person reads about a decision: the allow rule that came closest to holding (a
``no_matching_rule`` decision names it), why a source yielded no certificate, and a
certificate's facts as ``policyengine eval``, ``policyengine explain`` and the policy
tests show them.

Owns: closest_allow_rule, FAILED_HOW, absence_note, plain_fact, describe_certificate.
Must not import: the engine at run time, load/, integrations/, tooling/, cli/.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from policyengine.errors import FactError
from policyengine.evaluation.attributes import read_fact
from policyengine.evaluation.context import Context
from policyengine.evaluation.trace import format_value
from policyengine.language.vocabulary import Type, certificate_attributes
from policyengine.request.certificate import CertificateFacts
from policyengine.values import Missing, as_utc

if TYPE_CHECKING:
    from policyengine.evaluation.engine import Rule
    from policyengine.evaluation.identity import IdentitySpec
    from policyengine.evaluation.index import RuleIndex
    from policyengine.request.sources import Forwarded
    from policyengine.request.trust import TrustStore

__all__ = [
    "FAILED_HOW",
    "absence_note",
    "closest_allow_rule",
    "describe_certificate",
    "plain_fact",
]

FAILED_HOW = {"false": "is false", "undefined": "is undefined", "error": "could not be evaluated"}
"""How the closest rule's first failing part failed, in words."""


def closest_allow_rule(
    rules: Sequence[Rule], index: RuleIndex | None, ctx: Context
) -> tuple[Rule, str, str] | None:
    """The allow rule with the most leading parts holding: the rule, its first failing
    part's text, and how it failed (``false``, ``undefined`` or ``error``); the index, if
    any, names the rules that can come closest."""
    best: tuple[int, Rule, str, str] | None = None
    if index is not None:
        positions = index.closest_candidates(ctx)
        if positions is not None:
            rules = tuple(rules[p] for p in positions)
    for rule in rules:
        score = 0
        failed, outcome = rule.when, "false"
        for text, test in rule.condition.conjuncts:
            try:
                result = test(ctx)
            except Exception:
                failed, outcome = text, "error"
                break
            if result is not True:
                failed, outcome = text, "false" if result is False else "undefined"
                break
            score += 1
        if best is None or score > best[0]:
            best = (score, rule, failed, outcome)
    if best is None:
        return None
    return best[1], best[2], best[3]


def plain_fact(value: object, t: Type) -> object:
    """A fact as a JSON value: timestamps and serials as the trace writes them, an
    unreadable fact as ``{"error": ...}``, an undefined one as null."""
    if isinstance(value, FactError):
        return {"error": str(value)}
    if isinstance(value, Missing):
        return None
    if isinstance(value, tuple):
        return [plain_fact(v, t) for v in value]
    if isinstance(value, (datetime, timedelta)) or (t is Type.SERIAL and isinstance(value, int)):
        return format_value(value, t)
    return value


def describe_certificate(
    facts: CertificateFacts, now: datetime | None = None
) -> list[tuple[str, object, str]]:
    """Every certificate fact a policy can use: ``(name, JSON value, value as text)``."""
    at = datetime.now(UTC) if now is None else as_utc(now)
    ctx = Context(facts, at)
    rows = []
    for attribute in certificate_attributes():
        value = read_fact(attribute, ctx)
        if isinstance(value, FactError):
            shown = f"error: {value}"
        else:
            shown = format_value(value, attribute.type)
        rows.append((attribute.name, plain_fact(value, attribute.type), shown))
    return rows


def describe_identity(
    spec: IdentitySpec,
    facts: CertificateFacts,
    now: datetime | None = None,
    trust: TrustStore | None = None,
) -> list[tuple[str, object, str]]:
    """Who the certificate names under ``spec`` (a policy's, or the default): the rows
    ``principal`` (with where it came from), ``groups``, and ``roles`` when there are any
    (decided for a request with no path, method or host)."""
    at = datetime.now(UTC) if now is None else as_utc(now)
    identity = spec.identify(Context(facts, at, trust_store=trust))
    how = identity.describe_principal().removeprefix("principal ")
    rows: list[tuple[str, object, str]] = [("principal", identity.principal, how)]
    if spec.groups:
        shown = format_value(identity.groups) + f" from {', '.join(spec.group_names)}"
        rows.append(("groups", list(identity.groups), shown))
    if spec.roles:
        rest = [r.name for r in spec.roles if r.name not in identity.roles]
        shown = format_value(identity.roles) + (f" ({', '.join(rest)} not held)" if rest else "")
        rows.append(("roles", list(identity.roles), shown))
    return rows


def absence_note(forwarded: Forwarded | None) -> str:
    """Why a source yielded no certificate: the header was ignored, absent or empty."""
    if forwarded is None:
        return ""
    for note in forwarded.notes:
        if " is a trusted proxy" not in note:
            return note
    return ""
