"""``/metrics``: the server's decisions in Prometheus' text format, through prometheus-client.

* ``policyengine_decisions_total{policy, decision, reason}``: a counter per verdict;
* ``policyengine_decision_seconds{policy}``: a histogram of the time to decide, from
  5 µs to 50 ms (the server's own time, not the network's);
* ``policyengine_policy_reload_failures{policy}``: 1 while a policy's last reload failed
  (the previous one is in force), else 0; each worker sets its own after every reload and
  every ``--reload-interval``, and ``/metrics`` shows the most of the live workers'.

With ``--workers N`` every worker counts its own; prometheus-client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, set by ``policyengine serve`` before the workers start)
sums them, so any worker answers ``/metrics`` for all.

Owns: Metrics. prometheus-client is imported here alone (the ``server`` extra).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

from policyengine.evaluation.decision import Decision
from policyengine.server.authorizer import Authorizer

__all__ = ["Metrics"]

_BUCKETS = (5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2)


class Metrics:
    """The server's metrics, in a registry of their own."""

    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.decisions = Counter(
            "policyengine_decisions",
            "Verdicts given, by policy, decision and reason code.",
            ("policy", "decision", "reason"),
            registry=None if self.multiprocess else self.registry,
        )
        self.latency = Histogram(
            "policyengine_decision_seconds",
            "Time to decide one request, in seconds.",
            ("policy",),
            buckets=_BUCKETS,
            registry=None if self.multiprocess else self.registry,
        )
        self.reload_failures = Gauge(
            "policyengine_policy_reload_failures",
            "1 while the policy's last reload failed (the previous policy is in force).",
            ("policy",),
            registry=None if self.multiprocess else self.registry,
            multiprocess_mode="livemax",
        )
        if self.multiprocess:
            multiprocess.MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]

    @staticmethod
    def forget(pid: int) -> None:
        """A worker is gone: its gauges no longer count (its counters still do)."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]

    def observe(self, policy: str, decision: Decision, seconds: float) -> None:
        self.decisions.labels(policy, decision.effect, decision.reason).inc()
        self.latency.labels(policy).observe(seconds)

    def track(self, authorizer: Authorizer) -> None:
        """Set this process's reload-failure gauges from its policies' state."""
        for name, provider in authorizer.providers.items():
            self.reload_failures.labels(name).set(1 if provider.last_error is not None else 0)

    def render(self, authorizer: Authorizer) -> tuple[bytes, str]:
        self.track(authorizer)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
