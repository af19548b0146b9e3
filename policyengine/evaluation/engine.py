"""The decision procedure: :class:`Policy`, a compiled policy, decides requests.

Evaluating a request runs, in order:

1. the path matches an exclusion path: allow (``excluded_path``), certificate unread;
2. what the proxy forwarded cannot be used: deny (``duplicate_header``, ...);
3. a certificate that cannot be read: deny (``malformed_certificate``);
4. no certificate: deny in ``required`` mode (``missing_certificate``); in the optional
   modes the rules run with ``present`` false and every certificate attribute absent;
5. any deny rule that holds: deny (``denied_by_rule``); one that cannot be evaluated
   also denies (``rule_error``);
6. the first allow rule that holds: allow (``allowed_by_rule``);
7. otherwise deny (``no_matching_rule``), naming the closest allow rule.

Evaluation never raises and never allows by accident: any unexpected error is a deny
with reason ``evaluation_error``.

There is one procedure (``Policy._evaluate``); a decision runs it with a record chosen
when it starts (:mod:`policyengine.evaluation.recording`): the plain one, or the tracer
of an explained decision. Steps 5 to 7 take two shortcuts that never change a decision
(docs/performance.md): a policy that reads only the certificate and the time remembers
its decision, by the certificate's facts, for the span of time it holds (the decision
memo of :mod:`policyengine.evaluation.memo`, the Policy's own: ``Policy._returning``
reads it, ``Policy._memoized`` writes it), and long rule
lists test only the rules their index says can hold (:mod:`policyengine.evaluation.index`).

Owns: Policy, Rule, the decision procedure and the decision memo's reads and writes.
Must not import: load/, integrations/, tooling/, cli/ (loading builds a Policy; this
module never reads a policy file).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from policyengine.errors import (
    CertificateError,
    Diagnostic,
    SourceError,
)
from policyengine.evaluation import decision as reasons
from policyengine.evaluation.attributes import read_fact
from policyengine.evaluation.compiler import CompiledCondition
from policyengine.evaluation.context import Context
from policyengine.evaluation.decision import Decision
from policyengine.evaluation.explain import (
    FAILED_HOW,
    absence_note,
    closest_allow_rule,
    plain_fact,
)
from policyengine.evaluation.identity import IdentitySpec, Role
from policyengine.evaluation.index import RuleIndex
from policyengine.evaluation.memo import DecisionMemo, SpeedLayers, memo_windows
from policyengine.evaluation.recording import PLAIN, Plain, RulePlan, Tracer
from policyengine.evaluation.trace import Step
from policyengine.language import ast
from policyengine.language.vocabulary import IDENTITY_NAMES, lookup
from policyengine.request.certificate import CertificateFacts, FactsCache
from policyengine.request.incoming import Request
from policyengine.request.sources import (
    Forwarded,
    HeaderMemo,
    SourceConfig,
    decode_header_value,
    read_forwarded,
)
from policyengine.request.trust import TrustStore
from policyengine.span import Span
from policyengine.values import as_utc, normalize_path

__all__ = ["Policy", "Request", "Rule", "SpeedLayers", "normalize_path"]


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


ALL_LAYERS = SpeedLayers()
"""Every speed layer on: what a loaded policy uses."""


class Policy:
    """A compiled policy. Immutable: every attribute is set once, when it is built (an
    assignment raises AttributeError); safe to share across threads."""

    __slots__ = (
        "__weakref__",
        "_allow",
        "_allow_index",
        "_allow_plan",
        "_deny",
        "_deny_index",
        "_deny_plan",
        "_exclusions",
        "_facts",
        "_header_memo",
        "_in_order",
        "_memo",
        "_memo_get",
        "_memo_windows",
        "_mode_steps",
        "_recall",
        "_sealed",
        "attributes",
        "description",
        "exclusion_paths",
        "file",
        "identity",
        "mode",
        "name",
        "rules",
        "sets",
        "source",
        "trust",
        "warnings",
    )

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
        layers: SpeedLayers = ALL_LAYERS,
        identity: IdentitySpec | None = None,
    ) -> None:
        """``facts_cache_size`` bounds each cache; ``layers``: which speed layers are on;
        ``identity``: the compiled ``identity:`` section (None: the default principal)."""
        self.name = name
        self.description = description
        self.mode = mode
        self.file = file
        self.exclusion_paths = exclusion_paths
        self.rules = rules
        self.warnings = warnings
        self.sets: Mapping[str, int] = MappingProxyType(dict(sets))
        self.source = source
        """Where the certificate comes from: the ``certificate:`` section."""
        twice, names = layers.second_sighting, layers.der_names
        self._facts = FactsCache(facts_cache_size, second_sighting=twice, der_names=names)
        self._header_memo = HeaderMemo(facts_cache_size, second_sighting=twice)
        self.trust = trust_store
        """Anchors, intermediates and CRLs from the ``trust:`` section, or None."""
        self._exclusions = tuple(p.lower() for p in exclusion_paths)
        self._deny = tuple(r for r in rules if r.effect == "deny")
        self._allow = tuple(r for r in rules if r.effect == "allow")
        self._in_order = self._deny + self._allow
        """The rules as the procedure tests them: every deny rule, then every allow rule."""
        self._deny_plan: RulePlan = tuple((r, r.condition.test, r.denied) for r in self._deny)
        self._allow_plan: RulePlan = tuple((r, r.condition.test, r.allowed) for r in self._allow)
        self.identity = IdentitySpec.default() if identity is None else identity
        """Who a certificate names: the ``identity:`` section, compiled. A decision carries
        its identity, so the roles' conditions count as the rules' do (memo, attributes)."""
        conditions: list[Rule | Role] = [*rules, *self.identity.roles]
        windows = memo_windows((c.condition.attributes, c.expression) for c in conditions)
        self._memo_windows = windows if layers.memo and facts_cache_size else None
        """None when the policy keeps no memo (see evaluation/memo.py; size 0 keeps none)."""
        kept = facts_cache_size if self._memo_windows is not None else 0
        self._memo = DecisionMemo(windows or (), kept)
        self._memo_get = self._memo.get  # the raw lookup: no recency (see BoundedCache)
        self._recall = layers.recall and self._memo_windows is not None
        self._mode_steps = _mode_steps(mode)
        """The explain trace's mode step, with a certificate and without."""
        build = RuleIndex.build if layers.index else (lambda conditions: None)
        self._deny_index = build([r.expression for r in self._deny])
        self._allow_index = build([r.expression for r in self._allow])
        self.attributes = frozenset().union(*(c.condition.attributes for c in conditions))
        """Every attribute some rule or role reads."""
        self._sealed = True

    def __setattr__(self, name: str, value: object) -> None:
        if getattr(self, "_sealed", False):
            raise AttributeError(f"a Policy is immutable: {name} cannot be set")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"a Policy is immutable: {name} cannot be deleted")

    def __copy__(self) -> Policy:
        return self  # immutable: a copy would be the same policy

    def __deepcopy__(self, memo: dict[int, object]) -> Policy:
        return self

    def __repr__(self) -> str:
        return f"<Policy {self.name!r} from {self.file!r}: {len(self.rules)} rules>"

    def certificate_facts(
        self, facts: CertificateFacts | None, now: datetime | None = None
    ) -> dict[str, object] | None:
        """The facts this policy reads from a certificate, as JSON-ready values (not the
        principal, groups and roles: a decision's ``identity`` has them)."""
        if facts is None:
            return None
        out: dict[str, object] = dict(facts.summary())
        at = datetime.now(UTC) if now is None else as_utc(now)
        ctx = Context(facts, at)
        for name in sorted(self.attributes):
            attribute = lookup(name)
            skip = (
                name == "fingerprint"
                or name in IDENTITY_NAMES
                or (
                    attribute is not None and not attribute.depends.isdisjoint(("request", "proxy"))
                )
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
            if (
                cert.__class__ is CertificateFacts
                and not explain
                and self._memo_windows is not None
            ):
                remembered = self._returning(cert, path, now)
                if remembered is not None:
                    return remembered
            return self._evaluate(cert, path, method, host, now, explain, None)
        except Exception as exc:  # fail closed, whatever happened
            return self._failed(exc)

    def evaluate_request(
        self,
        request: Request | None = None,
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

        ``request`` is a :class:`~policyengine.Request`; or give its fields as keyword
        arguments (``remote_addr`` is its ``peer``), not both. The policy's
        ``certificate:`` source reads the certificate from ``headers``, believing them
        only from a peer among its trusted proxies; the ``wsgi-environ`` and ``asgi-tls``
        sources read ``environ`` or ``scope`` instead. Then the request is decided as
        :meth:`evaluate` does. What the proxy forwarded that cannot be used is a deny
        whose reason says why (``duplicate_header``, ``header_too_large``,
        ``malformed_header``, ``chain_too_long``).
        """
        # the keywords are read as they come, not gathered into a Request: building one
        # costs about as much as the whole decision on a returning client
        try:
            if request is not None:
                given = (headers, remote_addr, path, method, host, environ, scope, now)
                if any(value is not None for value in given):
                    raise TypeError("evaluate_request takes a Request or keywords, not both")
                headers, remote_addr, path = request.headers, request.peer, request.path
                method, host, now = request.method, request.host, request.now
                environ, scope = request.environ, request.scope
            config = self.source
            scanned: tuple[str, str] | None = None
            if not explain and self._recall:
                # a returning client: the header memo knows the value, the memo the decision
                returning = self._header_memo.recall(config, headers, remote_addr)
                if returning.__class__ is Forwarded:
                    leaf = returning.leaf
                    facts = None if leaf is None else self._facts.get(leaf)
                    if facts is not None:
                        remembered = self._returning(facts, path, now)
                        if remembered is not None:
                            return remembered
                elif returning is not None:
                    scanned = returning  # type: ignore[assignment]
            context = config.record.context(environ, scope)

            def obtain() -> Forwarded:
                memo = self._header_memo
                return read_forwarded(
                    config, headers, remote_addr, context, memo=memo, scanned=scanned
                )

            return self._evaluate(None, path, method, host, now, explain, obtain)
        except Exception as exc:  # fail closed, whatever happened
            return self._failed(exc)

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
        note: str | None = None,
    ) -> Decision:
        """Decide one certificate-header value copied from a proxy's log. Never raises.

        ``source`` overrides the policy's source for decoding. Without ``peer`` the value
        counts as sent by a trusted proxy; with it, ``peer`` is checked against the
        policy's ``trusted_proxies`` as a live request would be. ``note``: what the trace
        says of where a value without ``peer`` came from (default: given offline).
        """
        try:
            config = self.source if source is None else self.source.read_as(source)
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
            offline = f"{config.source} header given offline, taken as sent by a trusted proxy"
            return Forwarded(leaf, chain, None, None, (note or offline,))

        try:
            return self._evaluate(None, path, method, host, now, explain, obtain)
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

    def _returning(
        self, facts: CertificateFacts, path: str | None, now: datetime | None
    ) -> Decision | None:
        """The decision memo: what it kept on these facts, when the path is excluded by
        nothing and ``now`` (an aware datetime; None is the current time) is within the
        span of time the decision holds for. Else None, and the procedure decides.

        Never raises: whatever this cannot vouch for (an odd ``now``, an excluded path),
        it leaves to the procedure, which decides it and says why.
        """
        kept = self._memo_get(facts)
        if kept is None:
            return None
        at = datetime.now(UTC) if now is None else now
        if at.__class__ is not datetime and not isinstance(at, datetime):
            return None
        if at.tzinfo is None:
            return None
        try:
            if not kept[0] <= at < kept[1]:
                return None
        except Exception:  # a tzinfo that gives no offset, say: the procedure says why
            return None
        if self._exclusions and isinstance(path, str) and self.excluded(path) is not None:
            return None
        return kept[2]

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
        """The decision procedure (the module docstring's steps), noted by one record."""
        record = Tracer(self, path) if explain else PLAIN
        at = datetime.now(UTC) if now is None else as_utc(now)
        if self._exclusions and isinstance(path, str):
            excluded_by = self.excluded(path)
            if excluded_by is not None:
                shown = normalize_path(path)
                message = (
                    f"The path {shown} is excluded from client-certificate checks by {excluded_by}."
                )
                record.excluded(shown, excluded_by)
                return record.decide(True, reasons.EXCLUDED_PATH, message, self)
        forwarded: Forwarded | None = None
        if obtain is not None:
            try:
                forwarded = obtain()
            except SourceError as exc:
                record.source_refused(exc)
                message = f"The forwarded certificate cannot be used: {exc.message}."
                return record.decide(False, exc.reason, message, self)
            record.source(forwarded)
            cert = forwarded.leaf
        facts: CertificateFacts | None = None
        kept = True  # the facts outlive this decision: the caller's, or the cache's
        if isinstance(cert, CertificateFacts):
            facts = cert
        elif cert is not None:
            try:
                facts, kept = self._facts.read_kept(cert)
            except CertificateError as exc:
                record.certificate_refused(exc)
                message = f"The client certificate could not be read: {exc}."
                return record.decide(False, reasons.MALFORMED_CERTIFICATE, message, self)
        record.certificate(facts)
        if facts is None:
            if self.mode == "required":
                return self._missing(forwarded, record)
        elif self._memo_windows is not None and record.remembers:
            remembered = self._returning(facts, None, at)
            if remembered is not None:
                return remembered
            if kept:  # facts read for this decision alone get no memo: none would ask it
                ctx = Context(facts, at, path, method, host, forwarded, self.trust)
                return self._memoized(ctx, facts, record)
        return self._rules(Context(facts, at, path, method, host, forwarded, self.trust), record)

    def _missing(self, forwarded: Forwarded | None, record: Plain) -> Decision:
        message = f"No client certificate was presented, and policy {self.name} requires one."
        note = absence_note(forwarded)
        if note:
            message = message[:-1] + f" ({note})."
        record.mode_refused()
        return record.decide(False, reasons.MISSING_CERTIFICATE, message, self)

    def _memoized(self, ctx: Context, facts: CertificateFacts, record: Plain) -> Decision:
        """The rules' decision, kept in the memo by the facts for the span of time it holds.

        A policy whose rules read only the certificate (no request, proxy or chain
        attribute) decides a certificate the same way until the time crosses one of its
        validity boundaries (notBefore, notAfter, the opening of each `expires within`
        window). So the decision is kept by the facts with the span of time between the
        boundaries around now, and returned while the time is within it (``_returning``):
        a returning client costs a lookup and two comparisons. The decision is immutable.
        """
        decision = self._rules(ctx, record)
        self._memo.keep(facts, ctx.now, decision)
        return decision

    def _rules(self, ctx: Context, record: Plain) -> Decision:
        """Deny rules first, then the first allow rule that holds, else no_matching_rule.

        The record says which rules are tested: with the plain record and an index (long
        rule lists), only those that can hold; the module
        :mod:`policyengine.evaluation.index` says why that never changes a decision.
        """
        facts = ctx.facts
        ctx.identity = identity = self.identity.identify(ctx)
        if record is not PLAIN:  # the plain record notes nothing: spare it the call
            record.identified(identity, ctx)
        for rule, test, message in record.plan(self._deny_plan, self._deny_index, ctx):
            try:
                holds = record.test(test, rule, ctx)
            except Exception as exc:
                return self._rule_error(rule, exc, ctx, record)
            if holds is True:
                return record.decide(
                    False,
                    reasons.DENIED_BY_RULE,
                    message,
                    self,
                    facts,
                    rule=rule.id,
                    identity=identity,
                )
        errors: list[str] | None = None
        for rule, test, message in record.plan(self._allow_plan, self._allow_index, ctx):
            try:
                holds = record.test(test, rule, ctx)
            except Exception as exc:
                if errors is None:
                    errors = []
                errors.append(f"rule {rule.id}: {exc}")
                continue
            if holds is True:
                found = () if errors is None else tuple(errors)
                return record.decide(
                    True,
                    reasons.ALLOWED_BY_RULE,
                    message + ctx.soft_pass(),
                    self,
                    facts,
                    rule=rule.id,
                    errors=found,
                    identity=identity,
                )
        return self._no_match(ctx, errors or [], record)

    def _rule_error(self, rule: Rule, exc: Exception, ctx: Context, record: Plain) -> Decision:
        message = f"Deny rule {rule.id} could not be evaluated ({exc}), so the request is denied."
        errors = (f"rule {rule.id}: {exc}",)
        return record.decide(
            False,
            reasons.RULE_ERROR,
            message,
            self,
            ctx.facts,
            rule=rule.id,
            errors=errors,
            identity=ctx.identity,
        )

    def _no_match(self, ctx: Context, errors: list[str], record: Plain) -> Decision:
        closest = closest_allow_rule(self._allow, self._allow_index, ctx)
        rule_id: str | None = None
        condition: str | None = None
        if closest is None:
            message = (
                "No allow rule holds, and the policy has no allow rule, so the request is denied."
            )
        else:
            rule, failed, outcome = closest
            rule_id, condition = rule.id, " ".join(failed.split())
            what = FAILED_HOW[outcome]
            message = f"No allow rule holds; the closest is {rule_id}, where `{condition}` {what}."
        return record.decide(
            False,
            reasons.NO_MATCHING_RULE,
            message,
            self,
            ctx.facts,
            errors=tuple(errors),
            closest=rule_id,
            failed=condition,
            identity=ctx.identity,
        )


def _mode_steps(mode: str) -> tuple[Step, Step]:
    return (
        Step("mode", "pass", f"{mode}: a certificate was presented"),
        Step("mode", "pass", f"{mode}: the rules run without a certificate"),
    )
