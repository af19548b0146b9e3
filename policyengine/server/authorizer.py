"""The decisions of ``policyengine serve``, with no web or gRPC library: a verdict per request.

An :class:`Authorizer` holds the policies the server was started with, each a
:class:`~policyengine.integrations.runtime.ReloadingPolicy` known by its name, and answers one
question: may this request, described as the proxy described it, pass? The answer is a
:class:`Verdict`: the status for the proxy (200 or 403), the identity headers to set on the
request it forwards and the ones to remove (a client's copies), and for a refusal the JSON
body with the reason code and its generic sentence, never what the policy expected.

The HTTP authorizer (``server/http.py``) and Envoy's ext_authz over gRPC (``server/grpc.py``)
turn the wire request into a request view and the verdict into their response; nothing of
the decision lives there. Every failure is a refusal: an unknown policy name, a request the
server cannot read, anything that raises.

Owns: Authorizer, Verdict, the server's reason codes (UNKNOWN_POLICY, BAD_REQUEST).
May import: ``integrations/`` (the decision log, reloading, refusals, identity headers) and
everything below. Must not import: ``cli/``, ``tooling/``, any web or gRPC library.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policyengine.caches import BoundedCache
from policyengine.errors import Diagnostic, PolicyError, SourceError
from policyengine.evaluation.decision import Decision
from policyengine.evaluation.engine import Policy
from policyengine.integrations import (
    BAD_REQUEST,
    UNKNOWN_POLICY,
    Decided,
    decide_request,
    log_decision,
    refusal_detail,
)
from policyengine.integrations.headers import DEFAULT_HEADERS, IdentityHeaders, identity_headers
from policyengine.integrations.runtime import DecisionLog, ReloadingPolicy, current_policy
from policyengine.request.sources import decode_header_value
from policyengine.span import Source

PEER_SOURCE = "nginx"
"""How a certificate the proxy hands over itself is encoded: URL-encoded PEM, as nginx's
``$ssl_client_escaped_cert`` and Envoy's ``attributes.source.certificate`` are."""

__all__ = ["BAD_REQUEST", "UNKNOWN_POLICY", "Authorizer", "Verdict"]

_log = logging.getLogger("policyengine.server")

Observer = Callable[[str, Decision, float], None]
"""Told of every verdict: the policy's name ("" when the request named none this server
has), the decision, and the seconds it took."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the server answers the proxy for one request."""

    decision: Decision
    set_headers: tuple[tuple[str, str], ...]
    """On an allow: the identity headers the proxy sets on the forwarded request,
    replacing any copy the client sent."""
    remove_headers: tuple[str, ...]
    """On an allow: the identity headers this answer has no value for, to remove."""
    body: bytes
    """On a refusal: ``{"reason": ..., "message": ...}`` as JSON; empty on an allow."""

    @property
    def allowed(self) -> bool:
        return self.decision.allowed

    @property
    def status(self) -> int:
        return 200 if self.decision.allowed else 403

    @property
    def reason(self) -> str:
        return self.decision.reason


class Authorizer:
    """The policies of one server, by name, and the verdicts they give.

    ``paths``: the policy files, each loaded now (a :class:`~policyengine.errors.PolicyError`
    with file, line and column when one does not load) and reloaded when it changes
    (``interval`` seconds between checks), keeping the last good policy. Each is known by
    its ``name:``; two policies of one name are refused. ``log``: the decision log (None:
    off). ``headers``: the identity headers' names. ``observe``: told of every verdict
    (the server's metrics).
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        *,
        interval: float = 1.0,
        log: DecisionLog | None = None,
        headers: IdentityHeaders = DEFAULT_HEADERS,
        observe: Observer | None = None,
    ) -> None:
        if not paths:
            raise ValueError("the server needs at least one policy file")
        self.providers: dict[str, ReloadingPolicy] = {}
        for path in paths:
            provider = ReloadingPolicy(path, interval=interval)
            name = provider.current().name
            provider.accept = _same_name(path, name)
            if name in self.providers:
                first = self.providers[name].path
                raise ValueError(f"{path} and {first} are both policy {name!r}: rename one")
            self.providers[name] = provider
            source = provider.current().source
            if source.record.read_direct is not None:
                _log.warning(
                    "policy %s reads source %s, the server's own TLS, which the HTTP"
                    " authorizer never has: over HTTP every request comes without a"
                    " certificate (gRPC reads Envoy's peer certificate); name the proxy's"
                    " source in its certificate: section",
                    name,
                    source.source,
                )
        self._peer_leaves: BoundedCache[tuple[int, int, str], bytes] = BoundedCache(
            4096, second_sighting=True
        )
        self.log = log
        self.headers = headers
        self.observe = observe

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.providers)

    def provider(self, name: str | None) -> ReloadingPolicy | None:
        """The policy a request names; with no name, the only one (None when there are
        several: the request must say which)."""
        if name is None:
            if len(self.providers) == 1:
                return next(iter(self.providers.values()))
            return None
        return self.providers.get(name)

    def reload(self) -> bool:
        """Load every policy file now (SIGHUP); True when all of them loaded."""
        results = [provider.reload() for provider in self.providers.values()]
        return all(results)

    def authorize(
        self, name: str | None, view: Mapping[str, Any], *, policy: Policy | None = None
    ) -> Verdict:
        """Decide a request view (``evaluate_request``'s keywords as a mapping) with the
        policy ``name``; the policy's ``certificate:`` source reads the headers. ``policy``:
        the one the caller already read for this request (``name``'s, read once, so that a
        reload between two reads cannot decide with a policy the caller did not look at)."""
        provider = self.provider(name) if policy is None else policy
        if provider is None:
            return self._unknown(name, view)
        try:
            decided = decide_request(provider, view, self.log)
        except Exception as exc:  # fail closed
            return self._failed(name, view, exc)
        return self._verdict(name, decided.decision, decided.elapsed_us)

    def authorize_certificate(
        self,
        name: str | None,
        certificate: str,
        view: Mapping[str, Any],
        *,
        given_by: str,
        policy: Policy | None = None,
    ) -> Verdict:
        """Decide a request whose client certificate the proxy handed over itself: URL-encoded
        PEM (Envoy's ``attributes.source.certificate``, nginx's ``$ssl_client_escaped_cert``),
        or "" for none. It comes from the proxy's own TLS connection, not from a header a
        client could write, so no trusted-proxy check applies; ``given_by`` says where for
        the trace; ``policy`` as for :meth:`authorize`."""
        provider = self.provider(name) if policy is None else policy
        if provider is None:
            return self._unknown(name, view)
        started = time.perf_counter()
        try:
            policy = current_policy(provider)
            explain = self.log is not None and self.log.trace
            leaf = None if explain or not certificate else self._peer_leaf(policy, certificate)
            if leaf is not None:  # the returning client: decoded before, decided from DER
                decision = policy.evaluate(
                    leaf, path=view.get("path"), method=view.get("method"), host=view.get("host")
                )
            else:  # first sight, no certificate, or one that does not decode: it says why
                decision = policy.evaluate_header(
                    certificate,
                    source=PEER_SOURCE,
                    path=view.get("path"),
                    method=view.get("method"),
                    host=view.get("host"),
                    explain=explain,
                    note=given_by,
                )
            decided = Decided(decision, policy, (time.perf_counter() - started) * 1e6)
            if self.log is not None:
                log_decision(self.log, decided, view)
        except Exception as exc:  # fail closed
            return self._failed(name, view, exc)
        return self._verdict(name, decided.decision, decided.elapsed_us)

    def _peer_leaf(self, policy: Policy, certificate: str) -> bytes | None:
        """The DER of a peer certificate decoded before under the same limits, else None;
        a value seen the second time is kept. Decoding a PEM costs more than deciding a
        returning client, and Envoy sends the same value on every request of a client."""
        source = policy.source
        key = (source.max_header_bytes, source.max_chain_length, certificate)
        leaf = self._peer_leaves.get(key)
        if leaf is None:
            try:
                found, chain = decode_header_value(
                    PEER_SOURCE,
                    certificate,
                    max_header_bytes=source.max_header_bytes,
                    max_chain_length=source.max_chain_length,
                )
            except SourceError:
                return None
            if found is None or chain:
                return None
            self._peer_leaves.put(key, found)
            leaf = found
        return leaf

    def refuse(
        self, name: str | None, reason: str, message: str, view: Mapping[str, Any]
    ) -> Verdict:
        """A refusal the server makes before any policy decides (a request it cannot read)."""
        decision = Decision(allowed=False, reason=reason, message=message, policy=name or "")
        if self.log is not None:
            try:
                self.log.record(
                    decision,
                    method=view.get("method"),
                    path=view.get("path"),
                    peer=view.get("remote_addr"),
                    elapsed_us=0.0,
                )
            except Exception:  # the refusal stands; a log that fails must not crash it
                _log.exception("policy %s: a refusal could not be logged", name)
        return self._verdict(name, decision, 0.0)

    def _unknown(self, name: str | None, view: Mapping[str, Any]) -> Verdict:
        if name is None:
            message = (
                f"The request names no policy, and this server decides {len(self.providers)}:"
                f" {', '.join(self.providers)}; ask /authorize/<policy> (gRPC: the"
                " context extension 'policy')."
            )
        else:
            message = f"This server decides no policy named {name!r}: {', '.join(self.providers)}."
        return self.refuse(name, UNKNOWN_POLICY, message, view)

    def _failed(self, name: str | None, view: Mapping[str, Any], exc: Exception) -> Verdict:
        if name is None and len(self.providers) == 1:
            name = self.names[0]  # the one policy it was decided with, for the log and label
        _log.exception("policy %s: the request could not be decided", name)
        message = f"The request could not be decided, so it is refused: {exc}"
        return self.refuse(name, "evaluation_error", message, view)

    def _verdict(self, name: str | None, decision: Decision, elapsed_us: float) -> Verdict:
        if self.observe is not None:
            # a name no policy has is not a label: clients would choose the metrics' size
            label = decision.policy if decision.policy in self.providers else ""
            try:
                self.observe(label, decision, elapsed_us / 1e6)
            except Exception as exc:  # fail closed: a verdict not counted is not an allow
                _log.exception("policy %s: the verdict could not be counted", name)
                if decision.allowed:
                    message = f"The verdict could not be counted, so it is refused: {exc}"
                    decision = Decision(
                        allowed=False,
                        reason="evaluation_error",
                        message=message,
                        policy=decision.policy,
                    )
        if not decision.allowed:
            body = json.dumps(refusal_detail(decision)).encode()
            return Verdict(decision, (), (), body)
        given = identity_headers(decision.identity, self.headers)
        return Verdict(decision, given, _unset(self.headers.names, given), b"")


def _unset(names: Iterable[str], given: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    have = {name.lower() for name, _ in given}
    return tuple(name for name in names if name.lower() not in have)


def _same_name(path: str | Path, served: str) -> Callable[[Policy], PolicyError | None]:
    """A reload's check that the policy keeps the name it is served under: a policy renamed
    in its file would otherwise go on deciding the requests for the old name, and the new
    name would be unknown. Renaming is a change of routes: restart the server for it."""

    def accept(policy: Policy) -> PolicyError | None:
        if policy.name == served:
            return None
        text = Path(path).read_text(encoding="utf-8", errors="replace")
        source = Source(str(path), text)
        found = re.search(r"^policy\s*:", text, re.M)
        span = source.span_at(found.start(), 6) if found else source.file_span()
        message = f"the policy is served as {served!r}; it cannot become {policy.name!r}"
        hint = "restart policyengine serve to serve it under the new name"
        return PolicyError([Diagnostic(span, message, hint=hint)])

    return accept
