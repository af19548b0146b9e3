"""The per-request context: what one evaluation of a policy sees.

:class:`Context` holds the certificate's facts, the evaluation time, the request's path,
method and host as received, what the proxy source yielded, and the policy's trust store;
it normalises the request's parts and verifies the chain lazily, on first read, and at
most once per evaluation. The readers in :mod:`policyengine.evaluation.attributes` take
one and return a value.

Must not import: ``policyengine.language`` (the vocabulary knows nothing of requests),
``load``, ``integrations``, ``tooling``, ``cli``. The request side is named for types only.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from policyengine.values import ABSENT, Missing, normalize_host, normalize_path

if TYPE_CHECKING:
    from policyengine.evaluation.identity import Identity
    from policyengine.request.certificate import CertificateFacts
    from policyengine.request.sources import Forwarded
    from policyengine.request.trust import TrustResult, TrustStore

__all__ = ["Context"]


class Context:
    """What one evaluation sees: the certificate's facts, the request, and the time.

    The request's path, method and host are given as received and normalised on first
    read, so a policy that never looks at them never pays for it.
    """

    __slots__ = (
        "_host",
        "_method",
        "_path",
        "_trust",
        "facts",
        "forwarded",
        "identity",
        "now",
        "raw_host",
        "raw_method",
        "raw_path",
        "soft",
        "trust_store",
    )

    _path: str | Missing
    _method: str | Missing
    _host: str | Missing
    _trust: TrustResult | Missing

    excluded = False
    """``path excluded`` inside a rule: always false, since rules run only for requests
    whose path no exclusion covers (an excluded path is allowed before any rule runs)."""

    def __init__(
        self,
        facts: CertificateFacts | None,
        now: datetime,
        path: str | None = None,
        method: str | None = None,
        host: str | None = None,
        forwarded: Forwarded | None = None,
        trust_store: TrustStore | None = None,
    ) -> None:
        self.facts = facts
        self.now = now
        self.raw_path = path
        self.raw_method = method
        self.raw_host = host
        self.forwarded = forwarded
        """What the proxy source yielded, when the request came through one."""
        self.trust_store = trust_store
        self.identity: Identity | None = None
        """Who the certificate names: set by the decision procedure before the rules run."""
        self.soft = ""
        """Why the revocation status is unknown, when ``revoked`` read it so in soft mode."""

    @property
    def path(self) -> str | Missing:
        """The request path as an application routes it (see ``normalize_path``)."""
        try:
            return self._path
        except AttributeError:
            raw = self.raw_path
            self._path = normalize_path(raw) if isinstance(raw, str) else _NO_PATH
            return self._path

    @property
    def method(self) -> str | Missing:
        try:
            return self._method
        except AttributeError:
            raw = self.raw_method
            self._method = raw.upper() if isinstance(raw, str) and raw else _NO_METHOD
            return self._method

    @property
    def host(self) -> str | Missing:
        try:
            return self._host
        except AttributeError:
            raw = self.raw_host
            self._host = normalize_host(raw) if isinstance(raw, str) and raw.strip() else _NO_HOST
            return self._host

    def trust(self) -> TrustResult | Missing:
        """Chain verification for this certificate, done once per evaluation (and cached
        by the trust store across evaluations)."""
        try:
            return self._trust
        except AttributeError:
            pass
        result: TrustResult | Missing
        if self.facts is None:
            result = ABSENT
        elif self.trust_store is None:
            result = Missing("the policy has no trust anchors")
        else:
            chain = self.forwarded.chain if self.forwarded is not None else ()
            result = self.trust_store.verify(self.facts, chain, self.now)
        self._trust = result
        return result

    def soft_pass(self) -> str:
        """A sentence for an allow when ``revoked`` was read and the revocation status was
        unknown, which ``mode: soft`` lets pass (a responder that is down): else "". The
        decision's message carries it, so the decision log says so."""
        if not self.soft:
            return ""
        return f" Revocation status unknown, let pass in soft mode ({self.soft})."

    def with_facts(self, facts: CertificateFacts) -> Context:
        """The same request seen through another certificate (one of the chain)."""
        return Context(facts, self.now, self.raw_path, self.raw_method, self.raw_host)


_NO_PATH = Missing("no request path was given")
_NO_METHOD = Missing("no method was given")
_NO_HOST = Missing("no host was given")
