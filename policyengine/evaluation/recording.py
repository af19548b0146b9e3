"""What the decision procedure notes as it goes: nothing, or the explain trace.

The engine has one decision procedure (:mod:`policyengine.evaluation.engine`). Each
decision runs it with one of two records, chosen once when the decision starts:

- :data:`PLAIN` notes nothing, lets the decision memo answer, and tests only the rules the
  rule index says can hold (:mod:`policyengine.evaluation.index`);
- a :class:`Tracer` notes a :class:`~policyengine.evaluation.trace.Step` per stage and a
  :class:`~policyengine.evaluation.trace.RuleTrace` per rule, reads no memo, and tests
  every rule in order, a rule after the deciding one recorded as skipped.

The procedure asks its record which rules to test (:meth:`Plain.plan`), to test each
(:meth:`Plain.test`: the compiled test, or the traced one), and to build the decision
(:meth:`Plain.decide`: the tracer attaches its trace); the other methods note a stage.

Owns: Plain, PLAIN, Tracer, RuleFailed, RulePlan.
Must not import: the engine at run time, load/, integrations/, tooling/, cli/.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from policyengine.evaluation.decision import Decision, decided
from policyengine.evaluation.index import RuleIndex
from policyengine.evaluation.trace import RuleTrace, Step, Trace, TraceNode
from policyengine.values import normalize_path

if TYPE_CHECKING:
    from policyengine.errors import SourceError
    from policyengine.evaluation.context import Context
    from policyengine.evaluation.engine import Policy, Rule
    from policyengine.evaluation.identity import Identity
    from policyengine.request.certificate import CertificateFacts
    from policyengine.request.sources import Forwarded

__all__ = ["PLAIN", "Plain", "RulePlan", "Tracer"]

RulePlan = tuple[tuple["Rule", Callable[[Any], object], str], ...]
"""Rules in order, each with its test and the message of a decision it makes."""

_new = tuple.__new__
"""Builds a trace record (a NamedTuple) from the tuple of all its fields. The generated
``__new__`` is a Python function costing about three times as much, and an explained
decision builds a step per stage, a rule trace per rule and the trace (the explain row of
``benchmarks/decision.py``). Only this module builds trace records on the request path;
everywhere else their constructors are used."""
_NO_EXCLUSION_PATHS = Step("path", "pass", "the policy has no exclusion paths")
_NO_CERTIFICATE = Step("certificate", "pass", "no certificate was presented")


class Plain:
    """The record of a plain decision: no trace; the memo and the rule index apply."""

    __slots__ = ()

    def excluded(self, shown: str, prefix: str) -> None:
        """The path falls under exclusion path ``prefix``."""

    def source_refused(self, exc: SourceError) -> None:
        """What the proxy forwarded cannot be used."""

    def source(self, forwarded: Forwarded) -> None:
        """The source read the request."""

    def certificate_refused(self, exc: Exception) -> None:
        """The certificate cannot be read."""

    def certificate(self, facts: CertificateFacts | None) -> None:
        """The certificate was read (or none was presented)."""

    def mode_refused(self) -> None:
        """No certificate, and the policy requires one."""

    def identified(self, identity: Identity, ctx: Context) -> None:
        """The rules are about to run, with this identity."""

    remembers = True
    """Whether the decision memo may answer, and keep what the rules decide."""

    def plan(self, plan: RulePlan, index: RuleIndex | None, ctx: Context) -> RulePlan:
        """The rules to test, in order: those the index says can hold. Asked for the deny
        rules and then (unless one decided) the allow rules: the rules run from here on."""
        if index is not None:
            positions = index.candidates(ctx)
            if positions is not None:
                return tuple([plan[p] for p in positions])
        return plan

    def test(self, test: Callable[[Any], object], rule: Rule, ctx: Context) -> object:
        """Whether ``rule`` holds: its compiled ``test`` of ``ctx`` (True when it does);
        an exception when it cannot be evaluated."""
        return test(ctx)

    def decide(
        self,
        allowed: bool,
        reason: str,
        message: str,
        policy: Policy,
        facts: CertificateFacts | None = None,
        *,
        rule: str | None = None,
        errors: tuple[str, ...] = (),
        closest: str | None = None,
        failed: str | None = None,
        identity: Identity | None = None,
    ) -> Decision:
        """The decision, on ``facts`` (the certificate's, if one was read) and with
        ``identity`` (when the rules ran)."""
        return decided(
            allowed,
            reason,
            message,
            policy.name,
            rule,
            errors,
            closest,
            failed,
            None,
            facts,
            identity,
        )


PLAIN = Plain()
"""The one plain record: it keeps no state, so every plain decision shares it."""


class RuleFailed(Exception):
    """A traced rule that could not be evaluated; the message is the trace's first error."""


class Tracer(Plain):
    """The record of an explained decision: every step, every rule, no memo, no index."""

    __slots__ = ("_policy", "_rules", "_steps")

    def __init__(self, policy: Policy, path: str | None) -> None:
        """A trace of deciding a request for ``path``: its first step says that no
        exclusion path covers it (:meth:`excluded` replaces it when one does)."""
        self._policy = policy
        self._steps: list[Step] = [
            _path_step(policy, path) if policy.exclusion_paths else _NO_EXCLUSION_PATHS
        ]
        self._rules: list[RuleTrace] | None = None
        """The trace of each rule tested, in order; None until the rules run."""

    def excluded(self, shown: str, prefix: str) -> None:
        detail = f"{shown} matches exclusion path {prefix}"
        self._steps = [_new(Step, ("path", "allow", detail))]

    def source_refused(self, exc: SourceError) -> None:
        self._steps.append(_new(Step, ("source", "deny", exc.message)))

    def source(self, forwarded: Forwarded) -> None:
        self._steps.append(_new(Step, ("source", "pass", "\n".join(forwarded.notes))))

    def certificate_refused(self, exc: Exception) -> None:
        self._steps.append(_new(Step, ("certificate", "deny", str(exc))))

    def certificate(self, facts: CertificateFacts | None) -> None:
        if facts is None:
            self._steps.append(_NO_CERTIFICATE)
        else:
            self._steps.append(_new(Step, ("certificate", "pass", facts.description)))

    def mode_refused(self) -> None:
        self._steps.append(Step("mode", "deny", "required: a certificate is needed"))

    def identified(self, identity: Identity, ctx: Context) -> None:
        """The rules start: the mode step says with what, the identity step who it is (for
        a policy with an ``identity:`` section)."""
        self._rules = []
        self._steps.append(self._policy._mode_steps[ctx.facts is None])
        spec = self._policy.identity
        if spec.declared:
            lines = [identity.describe()]
            for role in spec.roles:
                if role.name not in identity.roles:
                    lines.append(f"role {role.name}: {_why_not(role.condition.trace(ctx))}")
            self._steps.append(_new(Step, ("identity", "pass", "\n".join(lines))))

    remembers = False

    def plan(self, plan: RulePlan, index: RuleIndex | None, ctx: Context) -> RulePlan:
        """Every rule, in order: a linear scan."""
        return plan

    def test(self, test: Callable[[Any], object], rule: Rule, ctx: Context) -> object:
        """The rule's trace, noted; True when the rule holds, RuleFailed when it errs."""
        node = rule.condition.trace(ctx)
        outcome = node.outcome
        error = _first_error(node) if outcome == "error" else ""
        traced = self._rules
        if traced is not None:  # always: identified() comes first
            traced.append(_new(RuleTrace, (rule.id, rule.effect, outcome, node, error)))
        if outcome == "error":
            raise RuleFailed(error)
        return outcome == "true"

    def decide(
        self,
        allowed: bool,
        reason: str,
        message: str,
        policy: Policy,
        facts: CertificateFacts | None = None,
        *,
        rule: str | None = None,
        errors: tuple[str, ...] = (),
        closest: str | None = None,
        failed: str | None = None,
        identity: Identity | None = None,
    ) -> Decision:
        rules: tuple[RuleTrace, ...] = ()
        if self._rules is not None:  # the rules not reached are listed, as not evaluated
            every: Sequence[Rule] = policy._in_order
            rules = tuple(self._rules)
            if len(rules) < len(every):
                rules += tuple([_skipped(r) for r in every[len(rules) :]])
        trace = _new(Trace, (tuple(self._steps), rules))
        return decided(
            allowed,
            reason,
            message,
            policy.name,
            rule,
            errors,
            closest,
            failed,
            trace,
            facts,
            identity,
        )


def _path_step(policy: Policy, path: str | None) -> Step:
    """The trace's path step when the policy's exclusion paths do not cover ``path``."""
    written = normalize_path(path) if isinstance(path, str) else "no request path was given"
    detail = f"{written} matches no exclusion path ({', '.join(policy.exclusion_paths)})"
    return _new(Step, ("path", "pass", detail))


def _skipped(rule: Rule) -> RuleTrace:
    node = TraceNode("test", rule.when.strip(), "skipped", "", (), rule.span)
    return RuleTrace(rule.id, rule.effect, "skipped", node)


def _why_not(node: TraceNode) -> str:
    """Why a condition did not hold: its first part that did not, and what that saw."""
    for child in node.children:
        if child.outcome in ("false", "undefined", "error"):
            return _why_not(child)
    detail = node.detail.removeprefix(f"{node.outcome}: ")
    return f"`{' '.join(node.text.split())}` is {node.outcome}: {detail}"


def _first_error(node: TraceNode) -> str:
    if node.outcome == "error" and not node.children:
        return node.detail
    for child in node.children:
        if child.outcome == "error":
            return _first_error(child)
    return node.detail
