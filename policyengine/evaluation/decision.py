"""What the engine decided, and why: :class:`Decision` and the reason codes.

Reason codes are stable strings, safe to match on in code, logs and dashboards:

========================  ======  ==============================================================
reason                    effect  when
========================  ======  ==============================================================
``excluded_path``         allow   the path matches an exclusion path; no certificate is looked at
``allowed_by_rule``       allow   an allow rule holds and no deny rule does
``malformed_certificate`` deny    the certificate given cannot be read
``duplicate_header``      deny    the certificate header came twice: a client-sent copy got through
``header_too_large``      deny    the certificate header is over ``max_header_bytes``
``malformed_header``      deny    the header is not what the configured proxy sends
``chain_too_long``        deny    the proxy forwarded more intermediates than allowed
``missing_certificate``   deny    no certificate, in ``required`` mode
``denied_by_rule``        deny    a deny rule holds
``rule_error``            deny    a deny rule could not be evaluated (fail closed)
``no_matching_rule``      deny    no allow rule holds
``evaluation_error``      deny    anything else went wrong while deciding (fail closed)
========================  ======  ==============================================================

Owns: Decision (and its fast constructor, :func:`decided`), the reason codes' re-export.
Must not import: the engine, the request side at run time, load/, integrations/, cli/.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from policyengine.errors import (
    ALLOWED_BY_RULE,
    CHAIN_TOO_LONG,
    DENIED_BY_RULE,
    DUPLICATE_HEADER,
    EVALUATION_ERROR,
    EXCLUDED_PATH,
    HEADER_TOO_LARGE,
    MALFORMED_CERTIFICATE,
    MALFORMED_HEADER,
    MISSING_CERTIFICATE,
    NO_MATCHING_RULE,
    REASONS,
    RULE_ERROR,
)
from policyengine.evaluation.trace import Trace

if TYPE_CHECKING:
    from policyengine.evaluation.identity import Identity
    from policyengine.request.certificate import CertificateFacts

__all__ = [
    "ALLOWED_BY_RULE",
    "CHAIN_TOO_LONG",
    "DENIED_BY_RULE",
    "DUPLICATE_HEADER",
    "EVALUATION_ERROR",
    "EXCLUDED_PATH",
    "HEADER_TOO_LARGE",
    "MALFORMED_CERTIFICATE",
    "MALFORMED_HEADER",
    "MISSING_CERTIFICATE",
    "NO_MATCHING_RULE",
    "REASONS",
    "RULE_ERROR",
    "Decision",
    "decided",
]


@dataclass(frozen=True, slots=True, repr=False)
class Decision:
    """The outcome of evaluating one request against one policy.

    Immutable. Two decisions are equal (and hash alike) when they decide alike: ``trace``,
    ``certificate`` and ``identity`` ride along and are not compared. A decision is true
    when it allows.
    The engine builds its decisions with :func:`decided`, which costs about half of this
    class's own constructor.
    """

    allowed: bool
    reason: str
    """One of :data:`REASONS`."""
    message: str
    """One sentence for a person."""
    policy: str
    rule: str | None = None
    """The rule that decided, if one did."""
    errors: tuple[str, ...] = ()
    """Rules that could not be evaluated, and why. Never empty on ``rule_error``."""
    closest_rule: str | None = None
    """On ``no_matching_rule``: the allow rule that came closest to holding."""
    failed_condition: str | None = None
    """On ``no_matching_rule``: the first part of the closest rule that did not hold."""
    trace: Trace | None = field(default=None, compare=False)
    """Present when the evaluation was asked to explain."""
    certificate: CertificateFacts | None = field(default=None, compare=False)
    """The facts of the certificate that was evaluated, if one could be read."""
    identity: Identity | None = field(default=None, compare=False)
    """Who the certificate names (principal, groups, roles): on every decision the rules
    made; None when they did not run (an excluded path, a refused header or certificate,
    a missing one in ``required`` mode)."""

    @property
    def effect(self) -> str:
        return "allow" if self.allowed else "deny"

    @property
    def status(self) -> int:
        return 200 if self.allowed else 403

    def __bool__(self) -> bool:
        return self.allowed

    def __repr__(self) -> str:
        shown = ("allowed", "reason", "message", "policy", "rule", "errors", "closest_rule")
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in shown)
        return f"Decision({fields})"

    def to_dict(self) -> dict[str, Any]:
        """The decision as plain data (without the trace and the certificate)."""
        out: dict[str, Any] = {
            "decision": self.effect,
            "status": self.status,
            "reason": self.reason,
            "rule": self.rule,
            "policy": self.policy,
            "message": self.message,
        }
        if self.errors:
            out["errors"] = list(self.errors)
        if self.closest_rule is not None:
            out["closest_rule"] = self.closest_rule
            out["failed_condition"] = self.failed_condition
        if self.identity is not None:
            out["identity"] = self.identity.to_dict()
        return out


class _Draft:
    """A :class:`Decision` being filled in: the same slots, writable.

    A frozen dataclass sets each field through ``object.__setattr__`` (its own
    ``__setattr__`` refuses): about 1 µs for ten fields, half of what running the rules of
    a short policy costs. A draft's fields are plain slot stores, and its class is then
    switched to :class:`Decision` (the two have the same layout), so what the caller gets
    is a Decision like any other, refusing every assignment.
    """

    __slots__ = Decision.__slots__

    def __init__(
        self,
        allowed: bool,
        reason: str,
        message: str,
        policy: str,
        rule: str | None,
        errors: tuple[str, ...],
        closest_rule: str | None,
        failed_condition: str | None,
        trace: Trace | None,
        certificate: CertificateFacts | None,
        identity: Identity | None,
    ) -> None:
        self.allowed = allowed
        self.reason = reason
        self.message = message
        self.policy = policy
        self.rule = rule
        self.errors = errors
        self.closest_rule = closest_rule
        self.failed_condition = failed_condition
        self.trace = trace
        self.certificate = certificate
        self.identity = identity


def decided(
    allowed: bool,
    reason: str,
    message: str,
    policy: str,
    rule: str | None,
    errors: tuple[str, ...],
    closest_rule: str | None,
    failed_condition: str | None,
    trace: Trace | None,
    certificate: CertificateFacts | None,
    identity: Identity | None = None,
) -> Decision:
    """``Decision(...)`` with every field given in order, built for the request path (see
    :class:`_Draft`)."""
    draft = _Draft(
        allowed,
        reason,
        message,
        policy,
        rule,
        errors,
        closest_rule,
        failed_condition,
        trace,
        certificate,
        identity,
    )
    draft.__class__ = Decision  # type: ignore[assignment]
    return draft  # type: ignore[return-value]
