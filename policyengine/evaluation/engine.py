"""The decision procedure, and :func:`load_policy`, which builds a :class:`Policy`.

Loading runs the pipeline once: document (YAML + schema) -> parse each ``when:`` ->
check names and types -> compile to closures. Evaluating a request then runs, in order:

1. the path matches an exclusion path: allow (``excluded_path``), certificate unread;
2. a certificate that cannot be read: deny (``malformed_certificate``);
3. no certificate: deny in ``required`` mode (``missing_certificate``); in the optional
   modes the rules run with ``present`` false and every certificate attribute absent;
4. any deny rule that holds: deny (``denied_by_rule``); one that cannot be evaluated
   also denies (``rule_error``);
5. the first allow rule that holds: allow (``allowed_by_rule``);
6. otherwise deny (``no_matching_rule``), naming the closest allow rule.

Evaluation never raises and never allows by accident: any unexpected error is a deny
with reason ``evaluation_error``.

Steps 4 to 6 take two shortcuts that never change a decision (docs/performance.md):
a policy that reads only the certificate and the time remembers its decision on the
certificate's facts for the span of time it holds (``Policy._run``), and long rule lists
test only the rules their index says can hold (:mod:`policyengine.evaluation.index`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from policyengine.caches import BoundedCache
from policyengine.errors import (
    CertificateError,
    Diagnostic,
    FactError,
    SourceError,
)
from policyengine.evaluation import decision as reasons
from policyengine.evaluation.attributes import read_fact
from policyengine.evaluation.compiler import CompiledCondition, format_value
from policyengine.evaluation.context import Context
from policyengine.evaluation.decision import Decision
from policyengine.evaluation.index import RuleIndex
from policyengine.evaluation.trace import RuleTrace, Step, Trace, TraceNode
from policyengine.language import ast
from policyengine.language.vocabulary import Type, certificate_attributes, depends_of, lookup
from policyengine.request.certificate import CertificateFacts, FactsCache
from policyengine.request.sources import (
    Forwarded,
    HeaderMemo,
    SourceConfig,
    decode_header_value,
    read_forwarded,
)
from policyengine.request.trust import TrustStore
from policyengine.span import Span
from policyengine.values import Missing, as_utc, normalize_path

__all__ = ["Policy", "Rule", "normalize_path"]


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    effect: str
    when: str
    description: str
    span: Span
    condition: CompiledCondition
    expression: ast.Expr

    @property
    def allowed(self) -> str:
        """The message of a decision this rule allows."""
        return f"Allowed by rule {self.id}."

    @property
    def denied(self) -> str:
        """The message of a decision this rule denies."""
        return f"Denied by rule {self.id}."


_new = tuple.__new__
"""Builds a NamedTuple from a tuple of all its fields, without the generated ``__new__``
(a Python function): for the decisions and traces made on every request."""
_NO_EXCLUSION_PATHS = Step("path", "pass", "the policy has no exclusion paths")
_NO_CERTIFICATE = Step("certificate", "pass", "no certificate was presented")
_TICK = timedelta(seconds=1)
"""The evaluation time is compared with X.509 times (whole seconds) to the second: past
``not_after`` is ``now >= not_after + 1 s`` (see ``catalog._SECOND``)."""
_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)


def _memo_windows(rules: Iterable[Rule]) -> tuple[timedelta, ...] | None:
    """How far before notAfter each `expires within` window opens; None when a rule
    reads more than the certificate and the time (the request, the proxy, the chain)."""
    windows: set[timedelta] = set()
    for rule in rules:
        for name in rule.condition.attributes:
            if not depends_of(name) <= {"certificate", "time"}:
                return None
        windows.update(
            node.duration.value  # type: ignore[misc]
            for node in ast.walk(rule.expression)
            if isinstance(node, ast.ExpiresWithin)
        )
    return tuple(sorted(windows))


class Policy:
    """A compiled policy. Immutable after loading; safe to share across threads."""

    def __init__(
        self,
        *,
        name: str,
        description: str,
        mode: str,
        file: str,
        exclusion_paths: tuple[str, ...],
        sets: Mapping[str, int],
        source: SourceConfig,
        rules: tuple[Rule, ...],
        warnings: tuple[Diagnostic, ...],
        trust_store: TrustStore | None = None,
        facts_cache_size: int = 4096,
        index: bool = True,
        memo: bool = True,
        recall: bool = True,
        second_sighting: bool = True,
        der_names: bool = True,
    ) -> None:
        """``index``, ``memo``, ``recall``, ``second_sighting`` and ``der_names`` turn off
        the rule index, the decision memo, the header memo's returning-client lane, the
        caches' second-sighting admission and the hand-written DER name reader, for the
        tests and benchmarks that compare each with the plain path (docs/performance.md)."""
        self.name = name
        self.description = description
        self.mode = mode
        self.file = file
        self.exclusion_paths = exclusion_paths
        self.rules = rules
        self.warnings = warnings
        self.sets = dict(sets)
        self.source = source
        """Where the certificate comes from: the ``certificate:`` section."""
        self._facts = FactsCache(
            facts_cache_size, second_sighting=second_sighting, der_names=der_names
        )
        self._header_memo = HeaderMemo(facts_cache_size, second_sighting=second_sighting)
        self._recall = recall
        self.trust = trust_store
        """Anchors, intermediates and CRLs from the ``trust:`` section, or None."""
        self._exclusions = tuple(p.lower() for p in exclusion_paths)
        self._deny = tuple(r for r in rules if r.effect == "deny")
        self._allow = tuple(r for r in rules if r.effect == "allow")
        self._allow_plan = tuple((r.condition.test, r.id, r.allowed) for r in self._allow)
        self._memo: BoundedCache[CertificateFacts, tuple[datetime, datetime, Decision]] = (
            BoundedCache(facts_cache_size)
        )
        """The decision memo: what the rules decided on these facts (by identity), and the
        span of time it holds for (see ``_run``)."""
        self._memo_get = self._memo.get
        """Its raw lookup, for the returning client's path (no recency: see BoundedCache)."""
        self._mode_steps = (
            Step("mode", "pass", f"{self.mode}: a certificate was presented"),
            Step("mode", "pass", f"{self.mode}: the rules run without a certificate"),
        )
        """The explain trace's mode step, with a certificate and without."""
        self._memo_windows = _memo_windows(rules) if memo else None
        build = RuleIndex.build if index else (lambda conditions: None)
        self._deny_index = build([r.expression for r in self._deny])
        self._allow_index = build([r.expression for r in self._allow])
        attributes: set[str] = set()
        for rule in rules:
            attributes |= rule.condition.attributes
        self.attributes = frozenset(attributes)
        """Every attribute some rule reads."""

    def __repr__(self) -> str:
        return f"<Policy {self.name!r} from {self.file!r}: {len(self.rules)} rules>"

    def certificate_facts(
        self, facts: CertificateFacts | None, now: datetime | None = None
    ) -> dict[str, object] | None:
        """The facts this policy reads from a certificate, as JSON-ready values."""
        if facts is None:
            return None
        out: dict[str, object] = dict(facts.summary())
        at = datetime.now(UTC) if now is None else as_utc(now)
        ctx = Context(facts, at)
        for name in sorted(self.attributes):
            attribute = lookup(name)
            skip = name == "fingerprint" or (
                attribute is not None and not attribute.depends.isdisjoint(("request", "proxy"))
            )
            if name in out or attribute is None or skip:
                continue
            out[name] = plain_fact(read_fact(attribute, ctx), attribute.type)
        return out

    def excluded(self, path: str) -> str | None:
        """The exclusion path that ``path`` falls under, or None.

        The path must fall under it both as written (before the query) and as normalised
        (decoded, dot segments resolved). Servers and frameworks differ in how much they
        decode and resolve before routing, so an exclusion is granted only when every
        reading agrees: ``/public/../admin`` is not excluded by ``/public`` and neither is
        ``/admin/..%2Fpublic``.
        """
        if not self._exclusions:
            return None
        written = path.split("?", 1)[0].split("#", 1)[0].lower()
        normalized = normalize_path(path).lower()
        for prefix in self._exclusions:
            if written.startswith(prefix) and normalized.startswith(prefix):
                return prefix
        return None

    def evaluate(
        self,
        cert: object = None,
        *,
        path: str | None = None,
        method: str | None = None,
        host: str | None = None,
        now: datetime | None = None,
        explain: bool = False,
    ) -> Decision:
        """Decide one request. Never raises; see the module docstring for the procedure.

        ``cert`` is PEM or DER (bytes or text), a ``cryptography`` certificate,
        :class:`~policyengine.request.certificate.CertificateFacts`, or None. ``now`` defaults to
        the current time; a naive datetime is taken as UTC.
        """
        try:
            if cert.__class__ is CertificateFacts and not explain and not self._exclusions:
                # a returning client: what the memo kept, while the time is within its span
                at = datetime.now(UTC) if now is None else now
                if at.tzinfo is not None:
                    remembered = self._remembered(cert, at)
                    if remembered is not None:
                        return remembered
            return self._evaluate(cert, path, method, host, now, explain, None)
        except Exception as exc:  # fail closed, whatever happened
            return self._failed(exc)

    def evaluate_request(
        self,
        *,
        headers: Mapping[Any, Any] | Iterable[Any] | None = None,
        remote_addr: str | None = None,
        path: str | None = None,
        method: str | None = None,
        host: str | None = None,
        environ: Mapping[str, Any] | None = None,
        scope: Mapping[str, Any] | None = None,
        now: datetime | None = None,
        explain: bool = False,
    ) -> Decision:
        """Decide a request as a web framework sees it. Never raises.

        The policy's ``certificate:`` source reads the certificate from ``headers`` (a
        mapping, or a list of ``(name, value)`` pairs, names case-insensitive), believing
        them only from a ``remote_addr`` among its trusted proxies; the ``wsgi-environ``
        and ``asgi-tls`` sources read ``environ`` or ``scope`` instead. Then the request
        is decided as :meth:`evaluate` does. What the proxy forwarded that cannot be used
        is a deny whose reason says why (``duplicate_header``, ``header_too_large``,
        ``malformed_header``, ``chain_too_long``).
        """
        config = self.source
        memo = self._header_memo
        scanned: tuple[str, str] | None = None
        if not explain and self._recall:
            # a returning client: the header memo knows the value, the memo the decision
            try:
                returning = memo.recall(config, headers, remote_addr)
                if returning is not None and returning.__class__ is not Forwarded:
                    scanned, returning = returning, None  # type: ignore[assignment]
                leaf = None if returning is None else returning.leaf
                facts = None if leaf is None else self._facts.get(leaf)
                if facts is not None and (
                    not self._exclusions or not isinstance(path, str) or not self.excluded(path)
                ):
                    at = datetime.now(UTC) if now is None else now
                    if at.tzinfo is not None:
                        remembered = self._remembered(facts, at)
                        if remembered is not None:
                            return remembered
            except Exception:  # the full path below decides, and says why
                pass
        context = config.record.context(environ, scope)

        def obtain() -> Forwarded:
            return read_forwarded(config, headers, remote_addr, context, memo=memo, scanned=scanned)

        return self._safely(lambda: self._evaluate(None, path, method, host, now, explain, obtain))

    def evaluate_header(
        self,
        value: str | bytes,
        *,
        source: str | None = None,
        peer: str | None = None,
        path: str | None = None,
        method: str | None = None,
        host: str | None = None,
        now: datetime | None = None,
        explain: bool = False,
    ) -> Decision:
        """Decide one certificate-header value copied from a proxy's log. Never raises.

        ``source`` overrides the policy's source for decoding. Without ``peer`` the value
        counts as sent by a trusted proxy; with it, ``peer`` is checked against the
        policy's ``trusted_proxies`` as a live request would be.
        """
        try:
            config = self.source if source is None else _with_source(self.source, source)
        except ValueError as exc:
            return self._failed(exc)

        def obtain() -> Forwarded:
            if peer is not None and config.header_name is not None:
                return read_forwarded(config, [(config.header_name, value)], peer)
            leaf, chain = decode_header_value(
                config.source,
                value,
                max_header_bytes=config.max_header_bytes,
                max_chain_length=config.max_chain_length,
            )
            note = f"{config.source} header given offline, taken as sent by a trusted proxy"
            return Forwarded(leaf, chain, None, None, (note,))

        return self._safely(lambda: self._evaluate(None, path, method, host, now, explain, obtain))

    def _safely(self, decide: Callable[[], Decision]) -> Decision:
        try:
            return decide()
        except Exception as exc:  # fail closed, whatever happened
            return self._failed(exc)

    def _failed(self, exc: Exception) -> Decision:
        return Decision(
            allowed=False,
            reason=reasons.EVALUATION_ERROR,
            message=f"The request could not be evaluated, so it is denied: {exc}",
            policy=self.name,
            errors=(f"{type(exc).__name__}: {exc}",),
        )

    def _evaluate(
        self,
        cert: object,
        path: str | None,
        method: str | None,
        host: str | None,
        now: datetime | None,
        explain: bool,
        obtain: Callable[[], Forwarded] | None,
    ) -> Decision:
        steps: list[Step] = []
        at = datetime.now(UTC) if now is None else as_utc(now)
        if self._exclusions and isinstance(path, str):
            excluded_by = self.excluded(path)
            if excluded_by is not None:
                shown = normalize_path(path)
                message = (
                    f"The path {shown} is excluded from client-certificate checks by {excluded_by}."
                )
                if explain:
                    steps.append(
                        Step("path", "allow", f"{shown} matches exclusion path {excluded_by}")
                    )
                return self._decide(True, reasons.EXCLUDED_PATH, message, steps, (), explain)
        if explain:
            if self.exclusion_paths:
                written = (
                    normalize_path(path) if isinstance(path, str) else "no request path was given"
                )
                detail = f"{written} matches no exclusion path ({', '.join(self.exclusion_paths)})"
                steps.append(_new(Step, ("path", "pass", detail)))
            else:
                steps.append(_NO_EXCLUSION_PATHS)

        forwarded: Forwarded | None = None
        if obtain is not None:
            try:
                forwarded = obtain()
            except SourceError as exc:
                if explain:
                    steps.append(Step("source", "deny", exc.message))
                message = f"The forwarded certificate cannot be used: {exc.message}."
                return self._decide(False, exc.reason, message, steps, (), explain)
            if explain:
                steps.append(Step("source", "pass", "\n".join(forwarded.notes)))
            cert = forwarded.leaf

        facts: CertificateFacts | None = None
        kept = True  # the facts outlive this decision: the caller's, or the cache's
        if isinstance(cert, CertificateFacts):
            facts = cert
        elif cert is not None:
            try:
                facts, kept = self._facts.read_kept(cert)
            except CertificateError as exc:
                message = f"The client certificate could not be read: {exc}."
                if explain:
                    steps.append(Step("certificate", "deny", str(exc)))
                return self._decide(
                    False, reasons.MALFORMED_CERTIFICATE, message, steps, (), explain
                )
        if explain:
            if facts is None:
                steps.append(_NO_CERTIFICATE)
            else:
                steps.append(_new(Step, ("certificate", "pass", facts.description)))

        if facts is None and self.mode == "required":
            message = f"No client certificate was presented, and policy {self.name} requires one."
            note = _absence_note(forwarded)
            if note:
                message = message[:-1] + f" ({note})."
            if explain:
                steps.append(Step("mode", "deny", "required: a certificate is needed"))
            return self._decide(
                False, reasons.MISSING_CERTIFICATE, message, steps, (), explain, facts
            )

        if not explain and facts is not None:
            remembered = self._remembered(facts, at)
            if remembered is not None:
                return remembered
        ctx = Context(facts, at, path, method, host, forwarded, self.trust)
        if explain:
            steps.append(self._mode_steps[facts is None])
            return self._run_traced(ctx, steps, facts)
        if not kept:  # read for this decision alone: a memo on them would never be asked
            return self._scan(ctx, facts)
        return self._run(ctx, facts)

    def _decide(
        self,
        allowed: bool,
        reason: str,
        message: str,
        steps: list[Step],
        rule_traces: tuple[RuleTrace, ...],
        explain: bool,
        facts: CertificateFacts | None = None,
        rule: str | None = None,
        errors: tuple[str, ...] = (),
        closest: str | None = None,
        failed: str | None = None,
    ) -> Decision:
        trace = _new(Trace, (tuple(steps), rule_traces)) if explain else None
        return _new(
            Decision,
            (allowed, reason, message, self.name, rule, errors, closest, failed, trace, facts),
        )

    def _run(self, ctx: Context, facts: CertificateFacts | None) -> Decision:
        """The rules without a trace, their decision kept on the facts when the policy allows.

        A policy whose rules read only the certificate (no request, proxy or chain
        attribute) decides a certificate the same way until the time crosses one of its
        validity boundaries (notBefore, notAfter, the opening of each `expires within`
        window). So the decision is kept on the facts with the span of time between the
        boundaries around now, and returned while the time is within it: a returning
        client costs a lookup and two comparisons. The decision is immutable.
        """
        windows = self._memo_windows
        if windows is None or facts is None:
            return self._scan(ctx, facts)
        # _evaluate has looked in the memo already (see _remembered): decide, and keep it
        now = ctx.now
        decision = self._scan(ctx, facts)
        try:
            # every time predicate is a comparison of now with one of these instants, all
            # whole seconds (past notAfter is `now >= notAfter + 1 s`), so a time compared
            # with the span as given decides as its whole second does
            after = facts.not_after
            instants = [facts.not_before, after, after + _TICK]
            if windows:
                instants += [after - w for w in windows]
        except Exception:  # an unreadable validity, or an instant out of range: no memo
            return decision
        start, end = _EARLIEST, _LATEST
        for instant in instants:
            if instant <= now:
                if instant > start:
                    start = instant
            elif instant < end:
                end = instant
        self._memo.put(facts, (start, end, decision))
        return decision

    def _remembered(self, facts: CertificateFacts, at: datetime) -> Decision | None:
        """The decision the memo kept on these facts, if ``at`` is within its span."""
        kept = self._memo_get(facts)
        if kept is not None and kept[0] <= at < kept[1]:
            return kept[2]
        return None

    def _scan(self, ctx: Context, facts: CertificateFacts | None) -> Decision:
        """The rules without a trace: deny rules first, then the first allow rule that holds.

        With an index (long rule lists), only the rules that can hold are tested; the
        module :mod:`policyengine.evaluation.index` says why that never changes a decision.
        """
        deny = self._deny
        if self._deny_index is not None:
            positions = self._deny_index.candidates(ctx)
            if positions is not None:
                deny = tuple([deny[p] for p in positions])
        for rule in deny:
            try:
                holds = rule.condition.test(ctx)
            except Exception as exc:
                return self._rule_error(rule, exc, [], (), False, facts)
            if holds is True:
                return self._decide(
                    False, reasons.DENIED_BY_RULE, rule.denied, [], (), False, facts, rule.id
                )
        plan = self._allow_plan
        if self._allow_index is not None:
            positions = self._allow_index.candidates(ctx)
            if positions is not None:
                plan = tuple([plan[p] for p in positions])
        errors: list[str] | None = None
        for test, rule_id, message in plan:
            try:
                holds = test(ctx)
            except Exception as exc:
                if errors is None:
                    errors = []
                errors.append(f"rule {rule_id}: {exc}")
                continue
            if holds is True:
                found = () if errors is None else tuple(errors)
                allowed = reasons.ALLOWED_BY_RULE
                return _new(
                    Decision,
                    (True, allowed, message, self.name, rule_id, found, None, None, None, facts),
                )
        return self._no_match(ctx, errors or [], [], (), False, facts)

    def _run_traced(
        self, ctx: Context, steps: list[Step], facts: CertificateFacts | None
    ) -> Decision:
        """The rules with a trace: every rule in order, as a linear scan (no index)."""
        traces: list[RuleTrace] = []
        errors: list[str] = []
        deciding: Rule | None = None  # the rule that decides, once one has
        failure: str | None = None  # the error of a deny rule that could not be evaluated
        for rule in self._deny:
            if deciding is not None:
                traces.append(_skipped(rule))
                continue
            node = rule.condition.trace(ctx)
            traces.append(_rule_trace(rule, node))
            if node.outcome == "error":
                deciding, failure = rule, _first_error(node)
            elif node.outcome == "true":
                deciding = rule
        for rule in self._allow:
            if deciding is not None:
                traces.append(_skipped(rule))
                continue
            node = rule.condition.trace(ctx)
            traces.append(_rule_trace(rule, node))
            if node.outcome == "error":
                errors.append(f"rule {rule.id}: {_first_error(node)}")
            elif node.outcome == "true":
                deciding = rule
        if deciding is None:
            return self._no_match(ctx, errors, steps, tuple(traces), True, facts)
        if failure is not None:
            return self._rule_error(deciding, failure, steps, tuple(traces), True, facts)
        allowed = deciding.effect == "allow"
        return self._decide(
            allowed,
            reasons.ALLOWED_BY_RULE if allowed else reasons.DENIED_BY_RULE,
            deciding.allowed if allowed else deciding.denied,
            steps,
            tuple(traces),
            True,
            facts,
            deciding.id,
            tuple(errors),
        )

    def _rule_error(
        self,
        rule: Rule,
        exc: Exception | str,
        steps: list[Step],
        traces: tuple[RuleTrace, ...],
        explain: bool,
        facts: CertificateFacts | None,
    ) -> Decision:
        message = f"Deny rule {rule.id} could not be evaluated ({exc}), so the request is denied."
        return self._decide(
            False,
            reasons.RULE_ERROR,
            message,
            steps,
            traces,
            explain,
            facts,
            rule.id,
            (f"rule {rule.id}: {exc}",),
        )

    def _no_match(
        self,
        ctx: Context,
        errors: list[str],
        steps: list[Step],
        traces: tuple[RuleTrace, ...],
        explain: bool,
        facts: CertificateFacts | None,
    ) -> Decision:
        closest = self._closest(ctx)
        rule_id: str | None = None
        condition: str | None = None
        if closest is None:
            message = (
                "No allow rule holds, and the policy has no allow rule, so the request is denied."
            )
        else:
            rule, failed, outcome = closest
            what = {
                "false": "is false",
                "undefined": "is undefined",
                "error": "could not be evaluated",
            }[outcome]
            rule_id, condition = rule.id, " ".join(failed.split())
            message = f"No allow rule holds; the closest is {rule_id}, where `{condition}` {what}."
        return self._decide(
            False,
            reasons.NO_MATCHING_RULE,
            message,
            steps,
            traces,
            explain,
            facts,
            errors=tuple(errors),
            closest=rule_id,
            failed=condition,
        )

    def _closest(self, ctx: Context) -> tuple[Rule, str, str] | None:
        """The allow rule with the most leading parts holding, its first failing part."""
        best: tuple[int, Rule, str, str] | None = None
        rules = self._allow
        if self._allow_index is not None:
            positions = self._allow_index.closest_candidates(ctx)
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


def format_path(path: str | Missing) -> str:
    return path.reason if isinstance(path, Missing) else path


def _rule_trace(rule: Rule, node: TraceNode) -> RuleTrace:
    error = _first_error(node) if node.outcome == "error" else ""
    return _new(RuleTrace, (rule.id, rule.effect, node.outcome, node, error))


def _skipped(rule: Rule) -> RuleTrace:
    node = TraceNode("test", rule.when.strip(), "skipped", "", (), rule.span)
    return RuleTrace(rule.id, rule.effect, "skipped", node)


def _first_error(node: TraceNode) -> str:
    if node.outcome == "error" and not node.children:
        return node.detail
    for child in node.children:
        if child.outcome == "error":
            return _first_error(child)
    return node.detail


def _absence_note(forwarded: Forwarded | None) -> str:
    """Why a source yielded no certificate: the header was ignored, absent or empty."""
    if forwarded is None:
        return ""
    for note in forwarded.notes:
        if " is a trusted proxy" not in note:
            return note
    return ""


def _with_source(config: SourceConfig, source: str) -> SourceConfig:
    """The policy's certificate settings, read as another source would send them."""
    if source == config.source:
        return config
    # the policy's own list (or its source's default) stays: --source must not widen trust
    return SourceConfig(
        source=source,
        trusted_proxies=config.effective_trusted_proxies,
        max_header_bytes=config.max_header_bytes,
        max_chain_length=config.max_chain_length,
    )
